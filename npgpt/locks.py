"""Run locks: one npgpt run at a time writes into a folder or a checkpoint.

``with hold_lock(path, what):`` takes an exclusive ``fcntl.flock`` on the lock file ``path`` (for
example ``<out_dir>/.npgpt.lock``) and writes into it who holds it: pid, host, start time and
command. Another process asking for the same lock gets :class:`RunInUse`, one line naming the
owner. The kernel drops a flock when its owner exits however it exits (kill -9 included), so a lock
file left by a dead process is simply taken over: there is no stale-pid guessing to get wrong.

The lock file is removed when the lock is released. Removing a lock file races with a process
that opened it just before: it would lock the removed inode while a third process creates and
locks a new file at the same name, and both would think they hold the lock. So after its flock
succeeds, a process checks that ``path`` still names the inode it locked, and starts over if not;
the owner removes the file while it still holds the flock, so whoever locked the old inode sees
that and retries on the new one.

Within one thread the lock is re-entrant (a command that holds its output folder's lock may call
a library function that takes the same lock); another thread of the same process is refused like
another process.
"""
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .checks import UsageError

log = logging.getLogger(__name__)

MAX_OWNER_BYTES = 4096        # what is read of a lock file: a hostile or broken one cannot flood the message
MAX_COMMAND_CHARS = 200       # the owner's command as shown in the one-line message
OWNER_WAIT_S = 1.0            # how long to wait for a new owner to finish writing its name into the file
_held: dict[tuple[str, int], int] = {}       # (lock path, thread id) -> how many times it is held there
_held_guard = threading.Lock()


FOLDER_LOCK = ".npgpt.lock"     # the lock file of an output folder


def folder_lock(folder: str | os.PathLike[str]) -> str:
    """The lock file of the output folder ``folder``: ``<folder>/.npgpt.lock``."""
    return os.path.join(os.fspath(folder), FOLDER_LOCK)


class RunInUse(UsageError):
    """Another live npgpt run holds the lock: the message names it (pid, start time, command)."""


@contextmanager
def hold_lock(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold the exclusive lock ``path`` (a lock file, created with its missing parent folders) for
    the block. ``what`` names the thing locked in the refusal, e.g. "--out-dir runs/baby": another
    live process holding it raises :class:`RunInUse`; a folder where the lock file cannot be made
    raises :class:`~npgpt.checks.UsageError`. Both are one line."""
    key = (os.path.abspath(os.fspath(path)), threading.get_ident())
    with _held_guard:
        if key in _held:                      # this thread holds it already: re-entrant
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd = _acquire(key[0], what)
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
        _release(key[0], fd)


def _acquire(path: str, what: str) -> int | None:
    """The descriptor of the locked file at ``path`` (None where the file system has no locks)."""
    while True:
        fd = _open(path, what)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunInUse(f"{what} is in use by another npgpt run ({describe(owner)}); wait for it to "
                           f"finish or choose another") from None
        except OSError as e:          # ENOLCK, EOPNOTSUPP: a file system without locks (some network mounts)
            os.close(fd)
            log.warning("cannot lock %s (%s): nothing stops another npgpt run from writing there too",
                        path, e.strerror)
            return None
        if _names_inode(path, fd):
            _write_owner(fd)
            return fd
        os.close(fd)                  # the owner we waited for removed the file after we opened it: again


def _open(path: str, what: str) -> int:
    folder = os.path.dirname(path) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"cannot lock {what}: {folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise UsageError(f"cannot lock {what}: cannot create {path}: {e.strerror or e}") from None


def _names_inode(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        here, there = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _release(path: str, fd: int | None) -> None:
    if fd is None:
        return
    try:
        if _names_inode(path, fd):
            os.unlink(path)           # while still locked: see the module docstring
    except OSError:
        pass                          # a lock file left behind is harmless: the next run takes it over
    finally:
        os.close(fd)                  # closing the last descriptor drops the flock


def _write_owner(fd: int) -> None:
    owner = {"pid": os.getpid(), "host": socket.gethostname()[:255], "started": time.time(),
             "command": command_line()[:1000]}      # the file stays well within MAX_OWNER_BYTES
    data = (json.dumps(owner) + "\n").encode("utf-8", "replace")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError as e:              # a full disk: the lock holds all the same, the message is vaguer
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise


def command_line() -> str:
    """This process's command as a user would type it: ``python -m npgpt train ...`` rather than the
    path of npgpt's ``__main__.py`` that ``sys.argv`` holds under ``-m``."""
    argv = list(sys.argv) or [""]
    head = argv[0]
    if os.path.basename(head) == "__main__.py":
        argv[0:1] = ["python", "-m", os.path.basename(os.path.dirname(head))]
    return shlex.join(argv)


def _read_owner(fd: int) -> dict[str, Any]:
    """What the owner wrote in the lock file; {} if it is unreadable (it may not have written yet)."""
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        try:
            owner = json.loads(os.pread(fd, MAX_OWNER_BYTES, 0).decode("utf-8"))
            if isinstance(owner, dict):
                return owner
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.02)


def describe(owner: dict[str, Any]) -> str:
    """"pid N, started <time>: <command>" for the refusal, from what a lock file holds (any part
    missing or of the wrong type is left out; the command is cut to a line's length)."""
    pid = owner.get("pid")
    parts = [f"pid {pid}" if isinstance(pid, int) and not isinstance(pid, bool) else "pid unknown"]
    host = owner.get("host")
    if isinstance(host, str) and host != socket.gethostname():
        parts[0] += f" on {one_line(host, 64)}"
    started, command = owner.get("started"), owner.get("command")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        with suppress(OverflowError, OSError, ValueError):      # a time no calendar holds: left out
            parts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)))
    text = ", ".join(parts)
    if isinstance(command, str):
        text += ": " + one_line(command, MAX_COMMAND_CHARS)
    return text


def one_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters (control characters shown as spaces)."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."
