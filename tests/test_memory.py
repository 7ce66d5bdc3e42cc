"""keep_freed_memory: after it, reallocating freed arrays costs no page faults; require_memory:
a size that cannot fit is refused in one line before it is allocated."""
import os
import resource
import subprocess
import sys
import textwrap

import pytest

import npgpt.runtime.memory as memory_module
from npgpt.checks import UsageError
from npgpt.runtime.memory import USER_SETTINGS, available_memory, keep_freed_memory, require_memory

# Six 1.5 MB arrays (a baby step's MLP activation size) freed together leave 9 MB free at the
# heap's top: more than glibc's default trim threshold (twice the largest block), so by default it
# goes back to the kernel every round, and the next round faults its 6 x 384 pages again.
PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from npgpt.runtime.memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def churn():
        arrays = [np.ones(384 << 10, dtype=np.float32) for _ in range(6)]
        del arrays
    churn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode):
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    run = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/etc/alpine-release"),
                    reason="mallopt is glibc's (Linux); elsewhere keep_freed_memory does nothing")
@pytest.mark.slow
def test_freed_memory_is_reused_without_page_faults():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 20 * 6 * 384 // 2, f"expected the default malloc to re-fault every round, got {default}"
    assert kept < default / 20, f"{kept} page faults with keep_freed_memory, {default} without"


def test_user_malloc_settings_win(monkeypatch):
    import npgpt.runtime.memory as memory
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False


def test_the_setting_can_be_turned_off(monkeypatch):
    import npgpt.runtime.memory as memory
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("NPGPT_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


# ----------------------------------------------------------------------------- require_memory
GiB = 2**30


def _meminfo(tmp_path, available_kb):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       16000000 kB\nMemFree:         1000000 kB\n"
                    f"MemAvailable:   {available_kb} kB\nBuffers:          100000 kB\n")
    return str(path)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with 4 GiB available and no RLIMIT_AS, as read from files the test writes."""
    monkeypatch.setattr(memory_module, "MEMINFO", _meminfo(tmp_path, 4 * GiB // 1024))
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmSize:\t 1048576 kB\nVmRSS:\t 1000 kB\n")  # holds 1 GiB
    monkeypatch.setattr(memory_module, "SELF_STATUS", str(status))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    return monkeypatch


def test_a_size_that_fits_passes(machine):
    assert available_memory() == 4 * GiB
    require_memory(4 * GiB, "a model")


def test_a_size_that_does_not_fit_is_refused_in_one_line(machine):
    with pytest.raises(UsageError) as error:
        require_memory(36 * GiB, "a GPT of n_embd 8192, n_layer 48")
    assert str(error.value) == ("a GPT of n_embd 8192, n_layer 48 needs about 36.0 GiB of memory; "
                                "this machine has 4.0 GiB available")


def test_the_address_space_limit_counts(machine):
    # ulimit -v 3 GiB with 1 GiB already mapped leaves 2 GiB, less than MemAvailable's 4 GiB
    machine.setattr(resource, "getrlimit", lambda which: (3 * GiB, resource.RLIM_INFINITY))
    assert available_memory() == 2 * GiB
    with pytest.raises(UsageError, match="needs about 3.0 GiB of memory; this machine has 2.0 GiB"):
        require_memory(3 * GiB, "a batch")


def test_a_small_remainder_is_not_shown_as_zero(machine):
    machine.setattr(resource, "getrlimit", lambda which: (GiB + (10 << 20), resource.RLIM_INFINITY))
    with pytest.raises(UsageError, match="this machine has 0.0098 GiB available"):
        require_memory(GiB, "a table")


def test_without_proc_nothing_is_refused(machine, tmp_path):
    machine.setattr(memory_module, "MEMINFO", str(tmp_path / "no-such-file"))
    assert available_memory() is None
    require_memory(2**60, "anything")


def test_a_petabyte_is_refused_on_this_machine():
    if available_memory() is None:
        pytest.skip("this system does not report its available memory (no /proc/meminfo)")
    with pytest.raises(UsageError, match=r"^a petabyte needs about 1,048,576.0 GiB of memory; this machine has [\d,.]+ GiB available$"):
        require_memory(2**50, "a petabyte")
