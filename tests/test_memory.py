"""keep_freed_memory: after it, reallocating freed arrays costs no page faults."""
import os
import subprocess
import sys
import textwrap

import pytest

from npgpt.runtime.memory import USER_SETTINGS, keep_freed_memory

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
