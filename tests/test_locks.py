"""Run locks (npgpt/locks.py): a second process is refused in one line naming the owner, a lock left by
a dead process is taken over, and a lock file removed under a waiting process cannot give the lock
to two processes."""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from npgpt import locks
from npgpt.checks import UsageError
from npgpt.locks import RunInUse, hold_lock

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import sys
from npgpt.locks import hold_lock
with hold_lock(sys.argv[1], "the folder"):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def start_holder(path, *extra_argv):
    """A real process holding the lock on ``path`` until its stdin gets a line."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *extra_argv], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_in_one_line_naming_the_owner(tmp_path):
    path = tmp_path / "out" / ".npgpt.lock"
    holder = start_holder(path, "--out-dir", "out")
    try:
        with pytest.raises(RunInUse) as refused, hold_lock(path, "--out-dir out"):
            pass
        message = str(refused.value)
        assert message.startswith(f"--out-dir out is in use by another npgpt run (pid {holder.pid}, started 20")
        assert message.endswith("--out-dir out); wait for it to finish or choose another")
        assert "\n" not in message and isinstance(refused.value, UsageError)
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
    assert holder.stdout.readline().strip() == "released" and holder.wait(timeout=30) == 0
    assert not path.exists()                       # released: the lock file goes with the lock
    with hold_lock(path, "--out-dir out"):         # and the next run takes it
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / "run.lock"
    holder = start_holder(path)
    holder.kill()                                  # SIGKILL: no cleanup, the lock file stays
    holder.wait()
    assert json.loads(path.read_text())["pid"] == holder.pid
    with hold_lock(path, "the run"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    path = tmp_path / "run.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": "h", "started": 0, "command": "npgpt train"}))
    with hold_lock(path, "the run"):
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["started"] > 0


def test_the_message_stays_one_line_whatever_the_lock_file_holds(tmp_path):
    path = tmp_path / "run.lock"
    holder = start_holder(path, "line one\nline two" + "x" * 5000)
    try:
        with pytest.raises(RunInUse) as refused, hold_lock(path, "the run"):
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 400 and "line one line two" in message
    assert locks.describe({"pid": True, "started": 1e300, "command": ["x"]}) == "pid unknown"


def test_re_entrant_in_one_thread_refused_to_another(tmp_path):
    path = tmp_path / "run.lock"
    seen = []

    def other_thread():
        try:
            with hold_lock(path, "the run"):
                seen.append("held")
        except RunInUse as e:
            seen.append(str(e))

    with hold_lock(path, "the run"):
        with hold_lock(path, "the run"):            # a command, then a library call it makes
            pass
        assert path.exists()                         # the inner exit keeps the outer's lock
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(seen) == 1 and seen[0].startswith(f"the run is in use by another npgpt run (pid {os.getpid()}")
    assert not path.exists()


def test_a_lock_file_removed_after_it_was_opened_is_not_locked(tmp_path, monkeypatch):
    """The race of removing lock files: this process opens the lock file, its owner releases it
    (removes it) and a third process creates a new one and locks it; this process's flock on the old,
    removed file succeeds, but it must not count as holding the lock."""
    path = tmp_path / "run.lock"
    real_open = locks._open
    third = []

    def open_then_lose_the_race(p, what):
        fd = real_open(p, what)
        if not third:
            os.unlink(p)                            # the owner released the lock
            third.append(start_holder(path))        # and another run took the name
        return fd

    monkeypatch.setattr(locks, "_open", open_then_lose_the_race)
    try:
        with pytest.raises(RunInUse) as refused, hold_lock(path, "the run"):
            pass
        assert f"(pid {third[0].pid}, started" in str(refused.value)
    finally:
        for proc in third:
            proc.stdin.close()
            proc.wait(timeout=30)


def test_a_folder_where_no_lock_file_can_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"^cannot lock the run: .*/file is a file, not a folder$"), \
            hold_lock(tmp_path / "file" / "run.lock", "the run"):
        pass


def test_a_read_only_folder_is_one_line(tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user that writes into read-only folders (root)")
        with pytest.raises(UsageError, match=r"^cannot lock the run: cannot create .*/run.lock: Permission denied$"), \
                hold_lock(tmp_path / "run.lock", "the run"):
            pass
    finally:
        os.chmod(tmp_path, 0o700)


def test_a_signal_while_held_still_releases(tmp_path):
    path = tmp_path / "run.lock"
    with pytest.raises(KeyboardInterrupt), hold_lock(path, "the run"):
        signal.raise_signal(signal.SIGINT)
    assert not path.exists()
