"""Atomic file writes: a reader sees the old file or the new one, never half of the new one.

The bytes go to a temporary file in the destination's own directory (so both sit on one file
system), are flushed to disk, and then ``os.replace`` swaps the name over in one step. A crash or an
exception part-way leaves the destination untouched and removes the temporary file.
"""
import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask, read when a file is written (not on import). Linux shows it in
    /proc/self/status; elsewhere the only way is to set it and set it back, done once (a thread
    creating a file in between would see the temporary mask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _umask_by_setting_it()


@functools.cache
def _umask_by_setting_it() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as f: f.write(b"...")`` -- a binary file that becomes ``path`` only
    when the block finishes without an exception. Missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())   # mkstemp makes owner-only files; give what open() would
        os.replace(tmp_name, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a stray temporary file behind.
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
