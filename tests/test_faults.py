"""Fault injection: kill the process, send SIGTERM, corrupt or tamper with the checkpoint, fill the
disk, feed NaN, change flags on resume, break a benchmark worker. A user's finished work is never
lost, a broken model is never saved, and every bad file or flag gets a one-line answer."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npgpt
import npgpt.locks
from npgpt import GPT, BPETokenizer, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.cli import main
from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint, temporary_files
from npgpt.perf import bench
from npgpt.training import trainer as trainer_module
from npgpt.training.trainer import CheckpointNotSaved, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
TEXT = "To be, or not to be, that is the question.\n" * 30
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "3", "--eval-iters", "2", "--final-eval-iters", "2", "--no-progress",
        "--warmup-iters", "2", "--sample-tokens", "0"]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def train(corpus, out_dir, *extra):
    return main(["train", "--data", str(corpus), "--out-dir", str(out_dir), *TINY, *extra])


def make_trainer(tmp_path, **train_kwargs):
    data = Dataset(TEXT, cache_dir=tmp_path / "cache")
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    defaults = dict(max_iters=12, batch_size=4, warmup_iters=2, eval_interval=3, eval_iters=2)
    return Trainer(GPT(config), data, TrainConfig(**{**defaults, **train_kwargs}), data.tokenizer)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """A real checkpoint, written once and copied by the tests that spoil it."""
    folder = tmp_path_factory.mktemp("good")
    trainer = make_trainer(folder, max_iters=3)
    trainer.train(checkpoint_path=folder / "ckpt.npz", progress=False, log=lambda *_: None)
    return folder / "ckpt.npz"


def rewrite(source, target, meta=None, arrays=None):
    """Copy a checkpoint, letting ``meta(dict)`` and ``arrays(dict)`` change it on the way."""
    with np.load(source, allow_pickle=False) as f:
        content = {k: f[k] for k in f.files}
    m = json.loads(str(content.pop("meta")))
    if meta:
        meta(m)
    if arrays:
        arrays(content)
    np.savez(target, meta=np.array(json.dumps(m)), **content)
    return target


# ----------------------------------------------------------------------------- a run guards its work
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_keeps_the_last_good_checkpoint_and_fails(corpus, tmp_path, capsys):
    """lr 1e6 with an evaluation every step: the NaN state is never written over a good one."""
    code = train(corpus, tmp_path / "run", "--lr", "1e6", "--min-lr", "0", "--eval-interval", "1",
                 "--max-iters", "30", "--grad-clip", "0")
    err = capsys.readouterr().err
    assert code == 1 and "training diverged" in err and "at step" in err
    meta, arrays = read_checkpoint(tmp_path / "run" / "ckpt.npz")           # readable, finite
    assert f"the last good checkpoint, of step {meta['step']}, is kept" in err
    model = model_from_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert all(np.isfinite(p).all() for p in model.params.values())


def test_a_nan_at_an_eval_step_stops_the_run(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: (
        {"train": float("nan"), "val": 1.0} if trainer.step == 6 else real(*a, **k)))
    with pytest.raises(TrainingDiverged, match="evaluation at step 6") as e:
        trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    assert read_checkpoint(tmp_path / "ckpt.npz")[0]["step"] == 3
    assert "of step 3, is kept" in e.value.kept


def test_a_nan_in_the_final_evaluation_exits_non_zero(corpus, tmp_path, monkeypatch, capsys):
    real = Trainer.evaluate

    def final_is_nan(self, n_batches=None, progress=False, stop=None):   # periodic evaluations pass no count
        return real(self) if n_batches is None else {"train": 1.0, "val": float("inf")}

    monkeypatch.setattr(Trainer, "evaluate", final_is_nan)
    assert train(corpus, tmp_path / "run", "--max-iters", "3") == 1
    assert "the final evaluation gave train loss 1.0, val loss inf" in capsys.readouterr().err


def test_a_nan_gradient_stops_before_the_update(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, grad_clip=0.0)
    real_backward = trainer.model.backward

    def poisoned():
        grads = real_backward()
        if trainer.step == 4:
            grads["transformer.wte.weight"][0, 0] = np.nan
        return grads

    monkeypatch.setattr(trainer.model, "backward", poisoned)
    with pytest.raises(TrainingDiverged, match="a gradient became nan at step 5"):
        trainer.train(progress=False, log=lambda *_: None)
    assert trainer.step == 4 and all(np.isfinite(p).all() for p in trainer.model.params.values())


def test_a_broken_model_is_never_saved(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    before = (tmp_path / "ckpt.npz").read_bytes()
    trainer.model.params["transformer.ln_f.weight"][0] = np.inf
    with pytest.raises(TrainingDiverged, match="hold NaN or infinite values"):
        trainer.save_checkpoint(tmp_path / "ckpt.npz")
    assert (tmp_path / "ckpt.npz").read_bytes() == before


def test_problems_visible_before_step_1_are_found_before_step_1(corpus, tmp_path, capsys, monkeypatch):
    steps = []
    monkeypatch.setattr(Trainer, "train_step", lambda self: steps.append(1))
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 12, encoding="utf-8")       # 120 characters: the val split has 12
    assert main(["train", "--data", str(short), "--out-dir", str(tmp_path / "a"), *TINY]) == 2
    assert "the val split has 12 tokens, too few for block_size=16" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert train(corpus, tmp_path / "file" / "sub") == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert steps == []                                            # no step was taken in either


def test_an_out_dir_that_is_a_file_is_named(corpus, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert train(corpus, tmp_path / "file") == 2
    assert f"--out-dir {tmp_path / 'file'} is a file, expected a folder" in capsys.readouterr().err


def test_an_unwritable_out_dir_is_named_before_step_1(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    monkeypatch.setattr(trainer_module.os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="is not writable"):
        trainer.train(checkpoint_path=tmp_path / "out" / "ckpt.npz", progress=False)
    assert trainer.step == 0


def test_no_room_for_a_checkpoint_is_found_before_step_1(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    monkeypatch.setattr(trainer_module.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(ValueError, match="MB free; a checkpoint needs about"):
        trainer.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False)
    assert trainer.step == 0


# ----------------------------------------------------------------------------- sizes beyond memory (issue 28)
MEMORY_CAP = 2 * 2**30       # zip_craft.capped: a regression would raise MemoryError, not use the machine's memory


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1000000"], "training at --batch-size 1000000 (1,000,000 sequences of 16 tokens) needs about "),
    (["--n-embd", "100000"], " parameters in float32 needs about "),
], ids=["batch", "width"])
def test_sizes_beyond_memory_are_refused_in_one_line_before_step_1(corpus, tmp_path, capsys, monkeypatch, argv,
                                                                   message):
    """Before: MemoryError tracebacks after the allocation was tried (--batch-size 1000000 asked for
    7.6 GiB in one array). The run's estimate (allocation/costs.py's, byte for byte a GPT's caches)
    is checked against the memory available, here the room under the cap."""
    from zip_craft import capped
    steps = []
    monkeypatch.setattr(Trainer, "train_step", lambda self: steps.append(1))
    with capped(MEMORY_CAP, 60):
        code = train(corpus, tmp_path / "run", *argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and " GiB available" in err, err
    assert steps == [] and not (tmp_path / "run" / "ckpt.npz").exists()


def test_a_recurrent_run_and_a_resumed_one_are_checked_too(corpus, tmp_path, capsys):
    from zip_craft import capped
    lstm = ["train", "--data", str(corpus), "--out-dir", str(tmp_path / "lstm"), "--model", "lstm",
            "--block-size", "16", "--no-progress", "--batch-size", "1000000"]
    with capped(MEMORY_CAP, 60):
        assert main(lstm) == 2
    assert "training at --batch-size 1000000 (1,000,000 sequences of 16 tokens) needs about" in capsys.readouterr().err
    assert train(corpus, tmp_path / "run", "--max-iters", "3") == 0
    capsys.readouterr()
    with capped(MEMORY_CAP, 60):
        assert train(corpus, tmp_path / "run", "--max-iters", "6", "--resume", "--batch-size", "400000") == 2
    err = capsys.readouterr().err
    assert err.startswith("npgpt train: error: training at --batch-size 400000 (400,000 sequences of 16 tokens) "
                          "needs about ") and err.count("\n") == 1
    assert read_checkpoint(tmp_path / "run" / "ckpt.npz")[0]["step"] == 3


def test_the_memory_estimate_of_a_gpt_run_is_what_costs_predicts_beside_what_is_held(tmp_path):
    from npgpt.allocation.costs import training_memory
    from npgpt.cli.train import step_bytes
    trainer = make_trainer(tmp_path)
    config = trainer.model.config
    total = training_memory(config, 4, 16, np.float32, "adamw").total
    held = sum(p.nbytes for p in trainer.model.params.values()) * 3          # parameters and AdamW's m, v
    assert step_bytes(trainer.model, 4, 16, "adamw") == total - held


# ----------------------------------------------------------------------------- signals and kills
def test_a_signal_inside_a_step_saves_a_state_that_resumes_exactly(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a step (here: between backward and the update) no longer saves a
    half-updated state: the step finishes, the save holds a step boundary, and resuming gives the
    uninterrupted run bit for bit."""
    straight = make_trainer(tmp_path / "a")
    straight.train(progress=False, log=lambda *_: None)

    cut = make_trainer(tmp_path / "b")
    real_update = cut.optimizer.step
    calls = []

    def update_with_ctrl_c(grads, lr=None):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)       # lands while the optimizer updates the params
        return real_update(grads, lr=lr)

    monkeypatch.setattr(cut.optimizer, "step", update_with_ctrl_c)
    cut.train(checkpoint_path=tmp_path / "ckpt.npz", progress=False, log=lambda *_: None)
    assert cut.step == 5 and cut.stopped_by == signal.SIGINT
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz", cut.data, cut.tokenizer)
    resumed.train(progress=False, log=lambda *_: None)
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    for name, p in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], p, err_msg=name)


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(corpus, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", "train", "--data", str(corpus), "--out-dir",
                             str(out), *TINY, "--max-iters", "100000"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "ckpt.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "SIGTERM: stopped at step" in stdout + stderr
    meta, _ = read_checkpoint(out / "ckpt.npz")
    assert meta["step"] >= 3 and f"stopped at step {meta['step']}" in stdout + stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_final_evaluation_exits_with_its_code_and_the_checkpoint_saved(corpus, tmp_path,
                                                                                        signum):
    """Before: SIGTERM here ended the run with -15 and no word. The checkpoint of the last step is
    written before the final evaluation starts (--final-eval-iters 100000 keeps the run there)."""
    out = tmp_path / "run"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", "train", "--data", str(corpus), "--out-dir", str(out),
                             *TINY, "--max-iters", "3", "--final-eval-iters", "100000"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "ckpt.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)                                # into the final evaluation
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == SIGNAL_CODE[signum], stderr
    name = signal.Signals(signum).name
    assert (f"{name}: stopped during the final evaluation; the checkpoint of step 3 is saved in {out / 'ckpt.npz'}"
            in stdout + stderr) and "Traceback" not in stderr and "final:" not in stdout
    assert read_checkpoint(out / "ckpt.npz")[0]["step"] == 3


SIGNAL_CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.mark.parametrize("extra", [[], ["--grad-accum", "2"]], ids=["plain", "data-parallel"])
def test_a_signal_at_the_first_batch_of_the_final_evaluation_ends_the_run_with_143(corpus, tmp_path, capsys,
                                                                                   monkeypatch, extra):
    """The signal lands as the final evaluation starts; the data-parallel trainer (here one rank of
    two micro-steps) takes the path where the ranks agree on it through the evaluation's Allreduce."""
    import npgpt.cli.train

    class SignalledAtOnce(trainer_module.StopSignals):
        def __enter__(self):
            entered = super().__enter__()
            os.kill(os.getpid(), signal.SIGTERM)
            return entered

    evaluated = []
    real_forward = Trainer._forward
    monkeypatch.setattr(Trainer, "_forward", lambda self, x, y: evaluated.append(self.step) or real_forward(self, x, y))
    monkeypatch.setattr(npgpt.cli.train, "StopSignals", SignalledAtOnce, raising=False)
    assert train(corpus, tmp_path / "run", "--max-iters", "3", *extra) == 143
    out, err = capsys.readouterr()
    assert "SIGTERM: stopped during the final evaluation; the checkpoint of step 3 is saved in" in out + err
    assert "final:" not in out and read_checkpoint(tmp_path / "run" / "ckpt.npz")[0]["step"] == 3
    periodic = 3 * (2 if extra else 1) + 2 * 2                   # the steps' forwards, one evaluation's batches
    assert len(evaluated) == periodic                            # and not one batch of the final evaluation


KILL_LOOP = """
import sys
import numpy as np
from npgpt import GPT, GPTConfig, TrainConfig, Trainer
class NoData:
    pass
model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=4, n_head=4, n_embd=128))
trainer = Trainer(model, NoData(), TrainConfig())
print("ready", flush=True)
while True:
    trainer.save_checkpoint(sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_during_saves_never_damages_the_checkpoint_and_the_next_start_cleans_up(tmp_path):
    path = tmp_path / "ckpt.npz"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, str(path)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()                                   # SIGKILL: no handler, no cleanup
        proc.wait()
        meta, arrays = read_checkpoint(path)          # the last complete save, whole
        assert meta["step"] == 0 and "param/transformer.wte.weight" in arrays
    trainer = make_trainer(tmp_path)
    (tmp_path / f".{path.name}.killed.tmp").write_bytes(b"half a checkpoint")   # as a kill leaves
    (tmp_path / "notes.tmp").write_text("not ours")
    trainer.check_before_training(path)
    assert temporary_files(path) == [] and (tmp_path / "notes.tmp").exists()


# ----------------------------------------------------------------------------- no run writes over another (issue 28)
HOLD_LOCK = """
import sys
from npgpt.locks import hold_lock
with hold_lock(sys.argv[1], "x"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def start_run(corpus, out_dir, tmp_path, *extra):
    """A real ``npgpt train`` process into ``out_dir``, returned once its first checkpoint is saved."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", "train", "--data", str(corpus), "--out-dir",
                             str(out_dir), *TINY, "--max-iters", "100000", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out_dir / "ckpt.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.mark.slow
def test_a_second_train_into_a_folder_in_use_is_refused_and_the_first_run_goes_on(corpus, tmp_path, capsys):
    """Before: both runs exited 0 and one model was lost, and the second run's start-up cleanup could
    delete the file the first run was saving."""
    out = tmp_path / "run"
    first = start_run(corpus, out, tmp_path)
    try:
        in_flight = out / ".ckpt.npz.first-run-saving.tmp"     # as the first run's save leaves it mid-write
        in_flight.write_bytes(b"half of the first run's next checkpoint")
        capsys.readouterr()
        for extra in (["--force"], ["--resume"], []):
            assert train(corpus, out, "--max-iters", "2", *extra) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(
                f"npgpt train: error: --out-dir {out} is in use by another npgpt run (pid {first.pid}, started ")
            assert "-m npgpt train --data" in err and err.endswith("wait for it to finish or choose another\n")
            assert in_flight.exists()
        in_flight.unlink()
        assert not (out / "loss.png").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr
    meta, _ = read_checkpoint(out / "ckpt.npz")
    assert f"stopped at step {meta['step']}" in stdout + stderr         # the first run's own, whole
    assert not (out / ".npgpt.lock").exists() and not (out / "ckpt.npz.lock").exists()
    assert train(corpus, out, "--max-iters", str(meta["step"] + 1), "--resume") == 0


def test_a_trainer_refuses_a_checkpoint_another_process_writes_before_cleaning_up(tmp_path):
    path = tmp_path / "ckpt.npz"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, f"{path}.lock"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        live = tmp_path / f".{path.name}.live.tmp"      # the other process's save in progress
        live.write_bytes(b"half a checkpoint")
        trainer = make_trainer(tmp_path)
        with pytest.raises(npgpt.locks.RunInUse, match=rf"^the checkpoint {path} is in use by another npgpt "
                                                       rf"run \(pid {holder.pid}, started "):
            trainer.train(checkpoint_path=path, progress=False)
        with pytest.raises(npgpt.locks.RunInUse):
            trainer.check_before_training(path)
        assert live.exists() and trainer.step == 0 and not path.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    trainer.check_before_training(path)                # the owner is gone: its leftovers are stale
    assert temporary_files(path) == []


# ----------------------------------------------------------------------------- bad checkpoints
def test_truncated_and_bit_flipped_checkpoints_are_named(good_checkpoint, tmp_path):
    data = good_checkpoint.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz' is truncated or corrupted"):
        read_checkpoint(truncated)
    with zipfile.ZipFile(good_checkpoint) as z:
        info = z.getinfo("param/transformer.wte.weight.npy")
    flipped = bytearray(data)
    flipped[info.header_offset + 30 + len(info.filename) + 200] ^= 0x10     # inside the array's data
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="truncated or corrupted.*CRC"):
        read_checkpoint(tmp_path / "flipped.npz")


@pytest.mark.parametrize("spoil, message", [
    (lambda m: m["model_config"].update(n_experts=4), r"unknown keys \['n_experts'\]"),
    (lambda m: m.update(model_config=[1, 2]), "'model_config' is \\[1, 2\\], expected a JSON dict"),
    (lambda m: m.pop("model_config"), "metadata lacks model_config"),
    (lambda m: m.update(step="12"), "'step' is '12', expected a JSON int"),
    (lambda m: m["model_config"].update(n_embd=300_000), r"has shape \(\d+, 16\), expected \(\d+, 300000\)"),
    (lambda m: m["model_config"].update(bias="yes"), "'bias' is 'yes', expected true or false"),
    (lambda m: m.update(dtype="float16"), "'dtype' is 'float16'"),
    (lambda m: m.update(batch_rng={"bit_generator": "PCG64"}), "'batch_rng' is not a random generator's state"),
    (lambda m: m["model_config"].pop("n_head"), "model_config is incomplete"),
    (lambda m: m.update(format=2), "format 2, expected 1"),
    (lambda m: m["model_config"].update(layer_norm_epsilon=0), "layer_norm_epsilon must be a finite number > 0"),
    (lambda m: m["model_config"].update(layer_norm_epsilon="1e-5"), "layer_norm_epsilon must be a finite number"),
])
def test_tampered_metadata_is_named_before_anything_is_allocated(good_checkpoint, tmp_path, spoil, message):
    target = rewrite(good_checkpoint, tmp_path / "tampered.npz", meta=spoil)
    with pytest.raises(ValueError, match=message):
        read_checkpoint(target)


def test_checkpoints_from_before_layer_norm_epsilon_load_with_gpt2s(good_checkpoint, tmp_path):
    """Checkpoints written before GPTConfig had ``layer_norm_epsilon`` have no such key: they ran with
    1e-5, and load with it; a checkpoint that names another epsilon gives a model that uses it."""
    meta, _ = read_checkpoint(good_checkpoint)
    assert meta["model_config"].layer_norm_epsilon == 1e-5
    old = rewrite(good_checkpoint, tmp_path / "old.npz", meta=lambda m: m["model_config"].pop("layer_norm_epsilon"))
    assert model_from_checkpoint(old).config == meta["model_config"]
    other = rewrite(good_checkpoint, tmp_path / "eps.npz",
                    meta=lambda m: m["model_config"].update(layer_norm_epsilon=0.5))
    model, reference = model_from_checkpoint(other), model_from_checkpoint(old)
    assert model.config.layer_norm_epsilon == 0.5
    idx = np.zeros((1, 4), dtype=np.int64)
    assert not np.allclose(model.forward(idx)[0], reference.forward(idx)[0])


def test_nan_weights_and_a_foreign_tokenizer_are_refused(good_checkpoint, tmp_path, capsys):
    def poison(arrays):
        arrays["param/transformer.h.0.mlp.c_fc.weight"][3, 3] = np.nan

    target = rewrite(good_checkpoint, tmp_path / "nan.npz", arrays=poison)
    assert main(["sample", "--ckpt", str(target), "--max-new-tokens", "5"]) == 2
    assert "NaN or infinite values in param/transformer.h.0.mlp.c_fc.weight" in capsys.readouterr().err

    two = npgpt.CharTokenizer(["a", "b"]).to_json()
    target = rewrite(good_checkpoint, tmp_path / "foreign.npz", meta=lambda m: m.update(tokenizer=two))
    assert main(["sample", "--ckpt", str(target), "--max-new-tokens", "5"]) == 2
    assert "tokenizer has 2 symbols but the model has vocab_size=" in capsys.readouterr().err


def test_a_folder_given_as_checkpoint_is_named(tmp_path, capsys):
    assert main(["sample", "--ckpt", str(tmp_path)]) == 2
    assert "is a directory, expected a checkpoint file" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_give_a_clear_value_error(tmp_path, data):
    path = tmp_path / "random.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="random.npz"):
        read_checkpoint(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10**9), st.integers(1, 64))
def test_randomly_damaged_checkpoints_only_ever_give_a_clear_value_error(good_checkpoint, tmp_path, where, n):
    data = bytearray(good_checkpoint.read_bytes())
    start = where % len(data)
    data[start:start + n] = bytes((b + 97) % 256 for b in data[start:start + n])
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    try:
        read_checkpoint(path)            # a change inside padding can leave a valid file
    except ValueError as e:
        assert "damaged.npz" in str(e)


# ----------------------------------------------------------------------------- disk full
def test_disk_full_ends_with_a_clear_message_and_the_old_checkpoint_intact(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    before = (tmp_path / "ckpt.npz").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    trainer.train_step()
    with pytest.raises(CheckpointNotSaved, match="No space left on device; the previous checkpoint is intact"):
        trainer.save_checkpoint(tmp_path / "ckpt.npz")
    assert (tmp_path / "ckpt.npz").read_bytes() == before and temporary_files(tmp_path / "ckpt.npz") == []


def test_a_real_full_disk_keeps_the_old_checkpoint(tmp_path):
    """A file system with room for one checkpoint and a half: the second save runs out of space."""
    trainer = make_trainer(tmp_path)
    trainer.save_checkpoint(tmp_path / "probe.npz")
    size = (tmp_path / "probe.npz").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    pages = (3 * size // 2) // 4096 + 1
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        path = disk / "ckpt.npz"
        trainer.save_checkpoint(path)
        before = path.read_bytes()
        trainer.train_step()
        with pytest.raises(CheckpointNotSaved, match="No space left on device"):
            trainer.save_checkpoint(path)
        assert path.read_bytes() == before and temporary_files(path) == []
        assert read_checkpoint(path)[0]["step"] == 0
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ----------------------------------------------------------------------------- resume
@pytest.mark.slow
def test_resume_refuses_architecture_changes_and_applies_training_ones(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "3") == 0
    capsys.readouterr()
    resume = ["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume", "--no-progress",
              "--sample-tokens", "0", "--final-eval-iters", "2"]
    assert main([*resume, "--n-embd", "32", "--block-size", "8", "--max-iters", "4"]) == 2
    err = capsys.readouterr().err
    assert "--n-embd 32 (the checkpoint has 16)" in err and "--block-size 8 (the checkpoint has 16)" in err
    assert main([*resume, "--lr", "0.5", "--batch-size", "8", "--dropout", "0.25", "--max-iters", "5"]) == 0
    out = capsys.readouterr().out
    for note in ("--lr 0.5 for the rest of the run (the checkpoint had 0.001)",
                 "--batch-size 8 for the rest of the run (the checkpoint had 4)",
                 "--dropout 0.25 for the rest of the run (the checkpoint had 0.0)"):
        assert note in out
    meta, _ = read_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert meta["train_config"]["lr"] == 0.5 and meta["train_config"]["batch_size"] == 8
    assert meta["model_config"].dropout == 0.25 and meta["step"] == 5


def test_resume_on_another_corpus_says_so(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "3") == 0
    other = tmp_path / "other.txt"
    other.write_text("&" + TEXT, encoding="utf-8")
    assert main(["train", "--data", str(other), "--out-dir", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is not the corpus" in err and "'&'" in err and "unknown=" not in err


# ----------------------------------------------------------------------------- flags and inputs
@pytest.mark.parametrize("argv, message", [
    (["train", "--final-eval-iters", "-1"], "argument --final-eval-iters: expected an integer >= 1, got '-1'"),
    (["train", "--final-eval-iters", "0"], "argument --final-eval-iters: expected an integer >= 1"),
    (["train", "--sample-tokens", "-1"], "argument --sample-tokens: expected an integer >= 0"),
    (["train", "--seed", "-3"], "argument --seed: expected an integer >= 0, got '-3'"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite number >= 0, got 'nan'"),
    (["train", "--dropout", "1"], r"argument --dropout: expected in \[0, 1\), got '1'"),
    (["train", "--model", "lstm", "--n-hidden", "0"], "argument --n-hidden: expected an integer >= 1, got '0'"),
    (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["sample", "--ckpt", "x", "--num-samples", "0"], "argument --num-samples: expected an integer >= 1"),
    (["sample", "--ckpt", "x", "--top-p", "0"], r"argument --top-p: expected in \(0, 1\], got '0'"),
    (["bench", "--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    (["bench", "--rounds", "0"], "argument --rounds: expected an integer >= 1"),
    (["bench", "--steps", "-1"], "argument --steps: expected an integer >= 1"),
    (["bench", "--gen-tokens", "-5"], "argument --gen-tokens: expected an integer >= 1"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_failing_benchmark_worker_is_reported_within_seconds():
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    x = np.zeros((2, 8), dtype=np.int64)
    start = time.monotonic()
    with pytest.raises(bench.BenchmarkError, match="backend must be one of"):
        bench.time_training([partial(bench.NpgptContender, cfg, "fortran", x, x, 1)], 1, 1, 1, pause_s=0)
    with pytest.raises(bench.BenchmarkError, match=r"died \(exit code 3\)"):
        bench.time_training([partial(os._exit, 3)], 1, 1, 1, pause_s=0)
    assert time.monotonic() - start < 60


def test_an_mfu_over_100_percent_is_not_reported(monkeypatch):
    monkeypatch.setattr(bench, "matmul_peak_gflops", lambda *a, **k: 0.001)
    monkeypatch.setattr(bench, "time_training", lambda makers, *a, **k: {"npgpt-numba": 0.01})
    notes = []
    result = bench.bench_preset("baby", 1, 0, 1, 1, peak=0.001, with_torch=False, log=notes.append)
    assert result["training"]["npgpt-numba"]["mfu"] is None
    assert any("MFU would be" in n for n in notes)
    assert "-" in bench.format_table({"matmul_peak_gflops": 1, "threads": 1, "presets": {"baby": result},
                                      "generation_baby": {"new_tokens": 1, "tokens_per_s_with_cache": 1,
                                                          "tokens_per_s_without_cache": 1, "cache_speedup": 1}})


def test_load_state_dict_is_all_or_nothing_and_refuses_nan():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    state = model.state_dict()
    before = {k: v.copy() for k, v in model.params.items()}
    for bad in ([np.nan], ["x"]):
        spoiled = {k: v + 1 for k, v in state.items()}
        last = list(spoiled)[-1]
        spoiled[last] = np.full(state[last].shape, bad[0], dtype=object if bad[0] == "x" else float)
        with pytest.raises(ValueError, match=last):
            model.load_state_dict(spoiled)
        for k, v in before.items():
            np.testing.assert_array_equal(model.params[k], v)       # nothing was overwritten


def test_bpe_decode_refuses_what_is_not_a_list_of_integer_ids():
    tok = BPETokenizer()
    tok.train("hello hello world", 260)
    for bad in (None, [1.0], [True], "abc", [[1, 2]]):
        with pytest.raises(ValueError, match="ids must be a 1-D sequence of integer token ids"):
            tok.decode(bad)
    assert tok.decode([]) == "" and tok.decode(np.array(tok.encode("hello"))) == "hello"


def test_a_truncated_merges_file_is_refused(tmp_path):
    tok = BPETokenizer()
    tok.train("the cat's hat and the cat's mat, x's and y's " * 20, 270)
    tok.save_hf(tmp_path)
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "merges.txt").write_text("\n".join(merges[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merges.txt looks truncated"):
        BPETokenizer.load_hf(tmp_path / "vocab.json", tmp_path / "merges.txt")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_tokenizer_files_of_random_bytes_only_ever_give_a_value_error(tmp_path, vocab, merges):
    (tmp_path / "vocab.json").write_bytes(vocab)
    (tmp_path / "merges.txt").write_bytes(merges)
    (tmp_path / "tok.json").write_bytes(vocab)
    (tmp_path / "ranks.tiktoken").write_bytes(merges)
    for load in (lambda: BPETokenizer.load_hf(tmp_path / "vocab.json", tmp_path / "merges.txt"),
                 lambda: BPETokenizer.load(tmp_path / "tok.json"),
                 lambda: BPETokenizer.load_tiktoken(tmp_path / "ranks.tiktoken", "gpt2"),
                 lambda: npgpt.CharTokenizer.load(tmp_path / "tok.json")):
        with pytest.raises(ValueError):
            load()


def test_numpy_integers_are_integers():
    config = GPTConfig(vocab_size=np.int64(10), block_size=np.int32(8), n_layer=1, n_head=2, n_embd=8)
    assert config.vocab_size == 10 and type(config.vocab_size) is int


@pytest.mark.slow
def test_a_clone_named_npgpt_does_not_shadow_the_installed_package(tmp_path):
    """A folder called npgpt (a clone, say) in the directory a script runs from: ``import npgpt``
    still finds the package (the editable install puts the project on sys.path)."""
    (tmp_path / "npgpt").mkdir()
    run = subprocess.run([sys.executable, "-c", "import npgpt; print(npgpt.GPT.__name__)"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.stdout.strip() == "GPT", run.stderr


def test_progress_shows_the_final_evaluation_and_leaves_compile_time_out_of_the_eta(tmp_path, capsys,
                                                                                   monkeypatch):
    """The bar starts after the first step (numba's compile would make the ETA hours long), says
    why when that step was slow, and the final evaluation has a bar of its own."""
    bars, real_tqdm = [], trainer_module.tqdm
    monkeypatch.setattr(trainer_module, "tqdm", lambda *a, **k: bars.append(k) or real_tqdm(*a, **k))
    monkeypatch.setattr(trainer_module, "FIRST_STEP_NOTE_S", 0.0)
    trainer = make_trainer(tmp_path, max_iters=4, eval_interval=4)
    trainer.train(progress=True, log=lambda *_: None)
    assert bars[0]["initial"] == 1 and bars[0]["total"] == 4
    assert "numba compiles its kernels on first use; the rate and ETA count from step 2" in capsys.readouterr().out
    trainer.evaluate(3, progress=True)
    assert "evaluating" in capsys.readouterr().err and bars[-1]["total"] == 6
