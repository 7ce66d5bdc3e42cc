"""The thread policy of a training loop: NPGPT_THREADS is parsed strictly, a fixed count is applied
to BLAS and numba and restored afterwards, and the governor, fed the step times of a simulated
2-core machine that turns busy and then quiet, drops to one thread and comes back to two."""
import itertools

import numba
import numpy as np
import pytest

from npgpt.runtime import threads
from npgpt.runtime.threads import Change, StepThreads, ThreadGovernor, parse_threads


@pytest.fixture
def eight_cores(monkeypatch):
    """A process that may run on 8 cores, whose capped counts have not been said yet."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "_noted", set())


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (" AUTO ", "auto"), ("3", 3), (1, 1), ("8", 8)])
def test_parse_threads(value, expected, eight_cores):
    assert parse_threads(value) == expected


def test_more_threads_than_cores_are_capped_with_a_note(eight_cores, caplog):
    assert parse_threads("100000", "threads") == 8
    assert parse_threads(100000, "threads") == 8          # said once, not at every call
    assert [r.getMessage() for r in caplog.records] == [
        "threads=100000 is more than the 8 cores this process may use; using 8"]
    assert caplog.records[0].levelname == "WARNING"


def test_set_threads_applies_at_most_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "_noted", set())
    with StepThreads(1):           # restores the counts the test started with
        assert threads.set_threads(100000) == threads.usable_cores()
        assert threads.get_threads() <= threads.usable_cores()
        assert numba.get_num_threads() <= threads.usable_cores()


def test_train_threads_100000_is_capped_at_the_cores(monkeypatch, caplog):
    from npgpt.cli import build_parser
    monkeypatch.setattr(threads, "_noted", set())
    args = build_parser().parse_args(["train", "--threads", "100000"])
    cores = threads.usable_cores()
    assert args.threads == cores
    assert f"threads=100000 is more than the {cores} cores this process may use; using {cores}" in caplog.text


def test_the_environment_variable_is_capped_too(monkeypatch, eight_cores):
    monkeypatch.setenv("NPGPT_THREADS", "64")
    assert threads.threads_setting() == 8


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "", None, 2.5, True])
def test_parse_threads_names_the_bad_value(value):
    with pytest.raises(ValueError, match="NPGPT_THREADS must be 'auto' or a whole number"):
        parse_threads(value)


def test_threads_setting_reads_the_environment(monkeypatch):
    monkeypatch.delenv("NPGPT_THREADS", raising=False)
    assert threads.threads_setting() == "auto"
    monkeypatch.setenv("NPGPT_THREADS", "1")
    assert threads.threads_setting() == 1
    monkeypatch.setenv("NPGPT_THREADS", "many")
    with pytest.raises(ValueError, match="'many'"):
        threads.threads_setting()


class SimulatedMachine:
    """Step times of a 2-core machine: quiet, 2 threads take 30 ms and 1 thread 50 ms; with one
    busy program, 2 threads wait for time slices (93 ms) and 1 thread runs on the free core
    (52 ms). A little deterministic jitter keeps the medians honest."""
    def __init__(self):
        self.ms = {False: {2: 30.0, 1: 50.0}, True: {2: 93.0, 1: 52.0}}
        self.busy, self.applied, self.i = False, [], 0

    def apply(self, n):
        self.applied.append(n)

    def step_seconds(self, n):
        self.i += 1
        return 1e-3 * self.ms[self.busy][n] * (1 + 0.03 * np.sin(self.i))


def run(governor, machine, steps):
    """The counts the governor ran each step on, and the changes it reported."""
    counts, changes = [], []
    for _ in range(steps):
        counts.append(governor.threads)
        change = governor.record(machine.step_seconds(governor.threads))
        if change:
            changes.append(change)
    return counts, changes


def test_governor_drops_a_thread_under_load_and_takes_it_back_when_free():
    machine = SimulatedMachine()
    governor = ThreadGovernor(2, apply=machine.apply)
    counts, changes = run(governor, machine, 60)
    assert counts[-30:] == [2] * 30 and changes == []          # quiet: one trial of 1 thread lost
    assert 1 in counts[:10]
    machine.busy = True
    counts, changes = run(governor, machine, 60)
    assert counts[-40:].count(1) >= 34                         # two short probes of 2 threads (3 steps each)
    assert changes[0][:2] == (2, 1) and changes[0].before_ms > 80 and changes[0].after_ms < 60
    assert counts.index(1) <= 6                                # noticed within two windows
    machine.busy = False
    counts, changes = run(governor, machine, 300)
    back = counts.index(2)
    assert counts[back:].count(1) <= 3 and back <= 260         # back within the longest probe interval
    assert changes and changes[-1][:2] == (1, 2)
    assert "free again" in changes[-1].message() and "another program" in Change(2, 1, 90, 50).message()


def test_governor_backs_off_while_the_load_lasts():
    machine = SimulatedMachine()
    machine.busy = True
    governor = ThreadGovernor(2, apply=machine.apply)
    counts, _ = run(governor, machine, 600)
    probes = sum(1 for a, b in itertools.pairwise(counts) if (a, b) == (1, 2))
    assert counts[3] == 1 or counts[5] == 1                    # the first trial already wins
    assert 2 <= probes <= 8, probes                            # intervals double: 16, 32, ... 256 steps
    assert counts[-100:].count(2) <= 3


def test_one_thread_governor_and_non_finite_times_do_nothing():
    calls = []
    governor = ThreadGovernor(1, apply=calls.append)
    assert not governor.active and governor.record(0.01) is None
    governor = ThreadGovernor(2, apply=calls.append)
    for _ in range(10):
        assert governor.record(float("nan")) is None
    assert calls == [] and governor.threads == 2


def two_threads():
    """2, where the machine has two cores: the test suite itself runs on one (tests/conftest.py), so
    a count of 2 is one the policy must really set."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a machine with two cores")
    return 2


def test_fixed_threads_are_applied_and_restored():
    before = (threads.get_threads(), numba.get_num_threads())
    with StepThreads(two_threads()) as policy:
        assert threads.get_threads() == 2 and numba.get_num_threads() == 2
        assert policy.count == 2 and policy.record(0.5) is None
    assert (threads.get_threads(), numba.get_num_threads()) == before != (2, 2)


def test_auto_threads_start_from_the_current_count(monkeypatch):
    monkeypatch.setenv("NPGPT_THREADS", "auto")
    with StepThreads() as policy:
        assert policy.governor is not None and policy.count == threads.get_threads()



def make_trainer(tmp_path, threads=None, max_iters=12):
    from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer
    data = Dataset("the quick brown fox jumps over the lazy dog. " * 30, cache_dir=tmp_path / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    train = TrainConfig(max_iters=max_iters, batch_size=4, warmup_iters=2, eval_interval=max_iters, eval_iters=1)
    return Trainer(GPT(config, seed=0), data, train, data.tokenizer, threads=threads)


def test_trainer_runs_its_steps_on_the_fixed_thread_count(tmp_path):
    trainer = make_trainer(tmp_path, threads=two_threads())
    seen, get_batch = [], trainer.data.get_batch
    trainer.data.get_batch = lambda *a: (seen.append((threads.get_threads(), numba.get_num_threads())), get_batch(*a))[1]
    before = threads.get_threads()
    trainer.train(progress=False, log=lambda *_: None)
    assert set(seen) == {(2, 2)} and threads.get_threads() == before != 2
    assert trainer.last_thread_count == 2            # the CLI's final evaluation runs on it
    with pytest.raises(ValueError, match="threads must be 'auto' or a whole number of threads >= 1, got 0"):
        make_trainer(tmp_path, threads=0)


def test_trainer_reports_a_thread_change(tmp_path, monkeypatch):
    """The loop hands every step's time (after the compiling first) to the policy and prints what
    it reports."""
    recorded = []

    class Policy(StepThreads):
        def record(self, seconds):
            recorded.append(seconds)
            return Change(2, 1, 90.0, 50.0) if len(recorded) == 5 else None

    monkeypatch.setattr("npgpt.training.trainer.StepThreads", Policy)
    lines = []
    make_trainer(tmp_path, max_iters=8).train(progress=False, log=lines.append)
    assert len(recorded) == 7 and all(s > 0 for s in recorded)
    assert "threads 2 -> 1: a step took 90 ms on 2, 50 ms on 1 (another program is using the cores)" in lines


@pytest.mark.parametrize("how", ["flag", "environment"])
@pytest.mark.slow
def test_train_command_rejects_a_bad_thread_count_before_loading_anything(how, tmp_path):
    import os
    import subprocess
    import sys
    env = {**os.environ, "NPGPT_THREADS": "x" if how == "environment" else "auto"}
    flags = ["--threads", "two"] if how == "flag" else []
    run = subprocess.run([sys.executable, "-m", "npgpt", "train", "--data", str(tmp_path / "missing.txt"),
                          "--out-dir", str(tmp_path / "run"), *flags], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    bad = "'two'" if how == "flag" else "'x'"
    assert f"must be 'auto' or a whole number of threads >= 1, got {bad}" in run.stderr
    assert not (tmp_path / "run").exists()
