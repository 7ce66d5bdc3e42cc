"""Faults injected into ``python -m npgpt app NAME train|run`` (issue 28, "Applications"): a signal
sent to a real training process, a read-only folder, a full disk (a small tmpfs), a checkpoint path
that is a folder or under a file, a save that fails after training, a second training of the same
checkpoint, a stale temporary file of a killed save, options before the input, a beam width or a
token count without bound. A finished model is never replaced by a half-trained one, every refusal
is one line, and the exit code says what happened (2: refused, 130/143: stopped by SIGINT/SIGTERM)."""
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mounts import tmpfs
from test_app_files import tiny_models, write_app_file
from zip_craft import capped

from npgpt.apps import generation, sentiment, translation
from npgpt.checks import UsageError
from npgpt.cli import main
from npgpt.io.checkpoint import temporary_files
from npgpt.training import trainer as trainer_module

ROOT = Path(__file__).resolve().parents[1]
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
# The command line, offline: Tiny Shakespeare is not fetched (generation then trains on the built-in
# corpus), whatever the machine's cache holds (XDG_CACHE_HOME is the test's own folder).
OFFLINE_MAIN = """
import sys
import npgpt.text.corpus as corpus
def offline(*args, **kwargs):
    raise OSError("the tests never use the network")
corpus._fetch_url = offline
from npgpt.cli import main
sys.exit(main(sys.argv[1:]))
"""
LONG = "100000"          # steps a run never finishes in a test: it is always stopped by the signal


def environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NPGPT_DATA_DIR"}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "NPGPT_THREADS": "1"}


def app_command(app, ckpt, *extra):
    return [sys.executable, "-c", OFFLINE_MAIN, "app", app, "train", "--ckpt", str(ckpt), "--batch-size", "2",
            *extra]


def finished_model(app, ckpt, tmp_path):
    """A finished run of one step: the model a stopped run must not replace."""
    done = subprocess.run(app_command(app, ckpt, "--max-iters", "1", "--no-progress"), cwd=ROOT,
                          env=environment(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "trained 1 steps" in done.stdout
    return ckpt.read_bytes()


class Training:
    """A real ``app NAME train`` in a subprocess, its stderr (where the progress bar goes) read as it
    comes, so that a test can wait until steps are running."""

    def __init__(self, command, env):
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.err = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            self.err += chunk

    def wait_for_steps(self, timeout=240):
        """Until the progress bar shows a step of the run (steps run now), or the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if re.search(rb"\d+/" + LONG.encode(), self.err):
                return
            time.sleep(0.05)
        raise AssertionError(f"no progress line; exit {self.proc.poll()}; stderr: {self.err.decode()[-2000:]}")

    def finish(self, timeout=240):
        out = self.proc.stdout.read().decode()
        self.proc.wait(timeout)
        self.reader.join(timeout)
        return self.proc.returncode, out, self.err.decode()


# ----------------------------------------------------------------------------- signals
@pytest.mark.slow
@pytest.mark.parametrize("app, signum", [("sentiment", signal.SIGINT), ("translation", signal.SIGTERM),
                                         ("generation", signal.SIGTERM), ("qa", signal.SIGINT)])
def test_a_signal_during_app_training_stops_it_and_keeps_the_finished_model(app, signum, tmp_path):
    """The issue's runs: SIGINT/SIGTERM during `app NAME train` printed `stopped at step 181`, then
    `trained 3000 steps` and exited 0 with the half-trained model saved over the finished one. Now
    the run stops at a step boundary, saves nothing (an app checkpoint holds a finished model: it has
    no optimizer state to resume from), says the step it reached and exits 130/143."""
    ckpt = tmp_path / "ckpt.npz"
    before = finished_model(app, ckpt, tmp_path)
    run = Training(app_command(app, ckpt, "--max-iters", LONG, "--force"), environment(tmp_path))
    run.wait_for_steps()
    run.proc.send_signal(signum)
    code, out, err = run.finish()
    assert code == SIGNAL_EXIT[signum], out + err
    assert "Traceback" not in err and "trained" not in out, out + err
    stopped = re.search(rf"{app}: stopped by {signal.Signals(signum).name} at step (\d+) of {LONG}; "
                        rf"nothing saved: {re.escape(str(ckpt))} is unchanged", out)
    assert stopped, out
    assert 1 <= int(stopped.group(1)) < int(LONG)
    assert ckpt.read_bytes() == before and temporary_files(ckpt) == []


# ----------------------------------------------------------------------------- save failures, up front
def no_training(monkeypatch):
    """Make a training step a failure of the test: a refusal must come before step 1."""
    def step(self):
        raise AssertionError("a training step ran before the refusal")
    monkeypatch.setattr(trainer_module.Trainer, "train_step", step)


def refused(capsys, *argv):
    """(exit code, the one line on stderr) of `app sentiment train` with ``argv``."""
    code = main(["app", "sentiment", "train", "--max-iters", "3", "--batch-size", "2", "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return code, err


def test_a_read_only_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    no_training(monkeypatch)
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        code, err = refused(capsys, "--ckpt", str(ro / "ckpt.npz"))
    assert code == 2 and str(ro) in err and ("not writable" in err or "Read-only file system" in err), err


def test_a_full_disk_is_refused_before_training(tmp_path, capsys, monkeypatch):
    """A 64 kB disk cannot hold the sentiment model (about half a megabyte)."""
    no_training(monkeypatch)
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        code, err = refused(capsys, "--ckpt", str(disk / "ckpt.npz"))
        assert not (disk / "ckpt.npz").exists()
    assert code == 2 and re.search(r"MB free; a checkpoint needs about [\d.]+ MB", err), err


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_ckpt_that_is_a_folder_is_named(tmp_path, capsys, monkeypatch, force):
    no_training(monkeypatch)
    folder = tmp_path / "models"
    folder.mkdir()
    code, err = refused(capsys, "--ckpt", str(folder), *force)
    assert code == 2 and f"{folder} is a folder" in err, err


def test_a_ckpt_under_a_file_is_named(tmp_path, capsys, monkeypatch):
    no_training(monkeypatch)
    (tmp_path / "notes").write_text("a file, not a folder")
    code, err = refused(capsys, "--ckpt", str(tmp_path / "notes" / "ckpt.npz"))
    assert code == 2 and str(tmp_path / "notes") in err and ("is a file" in err or "Not a directory" in err), err


@pytest.mark.slow
def test_a_save_that_fails_after_training_is_one_line_and_keeps_the_old_model(tmp_path, capsys, monkeypatch):
    """The disk fills while the model trains: the save fails, in one line, and the previous model stays."""
    ckpt = tmp_path / "ckpt.npz"
    args = ["app", "sentiment", "train", "--ckpt", str(ckpt), "--max-iters", "1", "--batch-size", "2", "--no-progress"]
    assert main(args) == 0
    before = ckpt.read_bytes()
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    assert main([*args, "--force"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert f"could not write the sentiment checkpoint {ckpt}: No space left on device; the previous one is " \
           f"intact" in err and "trained" not in out, out + err
    assert ckpt.read_bytes() == before and temporary_files(ckpt) == []


@pytest.mark.slow
def test_a_stale_temporary_file_of_a_killed_save_is_removed_at_the_next_save(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.npz"
    stale = tmp_path / f".{ckpt.name}.killed.tmp"          # the atomic writer's name, as a kill leaves it
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert main(["app", "sentiment", "train", "--ckpt", str(ckpt), "--max-iters", "1", "--batch-size", "2",
                 "--no-progress"]) == 0
    assert not stale.exists() and (tmp_path / "notes.tmp").exists() and ckpt.exists()


# ----------------------------------------------------------------------------- run: flags and bounds
@pytest.fixture(scope="module")
def translation_file(tmp_path_factory):
    kind, config, net, tok = tiny_models()["translation"]
    path = tmp_path_factory.mktemp("translation") / "ckpt.npz"
    return write_app_file(path, "translation", kind, config, net.params, tok.to_json()), tok


def test_the_input_may_follow_the_options(translation_file, capsys):
    path, _ = translation_file
    assert main(["app", "translation", "run", "three thousand and five", "--ckpt", str(path)]) == 0
    expected = capsys.readouterr().out
    assert main(["app", "translation", "run", "--ckpt", str(path), "three thousand and five"]) == 0
    assert capsys.readouterr().out == expected


def test_a_beam_of_100000_is_refused_by_the_flag(capsys):
    """`--beam 100000` ran without bound: the flag takes at most translation.MAX_BEAM (a wider beam
    costs more and, past a few hypotheses, translates worse, not better)."""
    with pytest.raises(SystemExit) as exit_:
        main(["app", "translation", "run", "three", "--beam", "100000"])
    assert exit_.value.code == 2
    assert f"argument --beam: expected an integer in [1, {translation.MAX_BEAM}], got '100000'" in \
        capsys.readouterr().err
    with pytest.raises(UsageError, match=f"beam_width must be at most {translation.MAX_BEAM}"):
        translation.check_beam_width(100000, 10 ** 6)


def test_a_beam_wider_than_the_vocabulary_is_refused(translation_file, capsys):
    """Beam search's first step extends one hypothesis, so it keeps at most one per token: a beam
    wider than the vocabulary (11 tokens here) is refused, on the command line and in the library."""
    path, tok = translation_file
    wide = str(tok.vocab_size + 1)
    with capped(512 << 20, 20):
        assert main(["app", "translation", "run", "three", "--ckpt", str(path), "--beam", wide]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--beam {wide} is more than the model's vocabulary of {tok.vocab_size} " \
                                   f"tokens" in err, err
    model, tokenizer = translation.load(str(path))
    with pytest.raises(UsageError, match=f"beam_width {wide} is more than the model's vocabulary"):
        translation.run("three", model=model, tokenizer=tokenizer, beam_width=int(wide))
    assert main(["app", "translation", "run", "three", "--ckpt", str(path), "--beam", str(tok.vocab_size)]) == 0


def test_a_token_count_without_bound_is_refused_at_once():
    kind, config, model, tok = tiny_models()["generation"]
    # 20 s: a refusal takes microseconds; the old code generated until the alarm stopped it
    with capped(512 << 20, 20), pytest.raises(UsageError, match="max_new_tokens must be at most 10,000"):
        generation.run("ROMEO:", model=model.eval(), tokenizer=tok, max_new_tokens=10 ** 12)
    assert generation.MAX_NEW_TOKENS == 10_000
    assert len(generation.run("ROMEO:", model=model.eval(), tokenizer=tok, max_new_tokens=3, strategy="greedy")) == 9


# ----------------------------------------------------------------------------- one run per checkpoint
def test_app_training_under_mpiexec_is_refused(monkeypatch, capsys):
    """`mpiexec -n 2 python -m npgpt app sentiment train` ran two full trainings writing one file.
    The command line refuses every command but train under mpiexec (npgpt.cli); the library's
    app training refuses too, for a script run under mpiexec."""
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    no_training(monkeypatch)
    assert main(["app", "sentiment", "train", "--max-iters", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs on one process, but mpiexec started 2" in err, err
    with pytest.raises(UsageError, match="app training runs on one process, but mpiexec started 2"):
        sentiment.train(max_iters=1, progress=False)


@pytest.mark.slow
def test_a_second_training_of_the_same_checkpoint_is_refused_while_the_first_runs(tmp_path, capsys):
    """Two `app sentiment train --ckpt F` at once: the second is refused in one line naming the
    first, before it does any work, and leaves alone the temporary file the first may be writing."""
    ckpt = tmp_path / "ckpt.npz"
    first = Training(app_command("sentiment", ckpt, "--max-iters", LONG), environment(tmp_path))
    try:
        first.wait_for_steps()
        live = tmp_path / f".{ckpt.name}.live.tmp"          # as the first run's save would be writing it
        live.write_bytes(b"the first run's save, half written")
        assert main(["app", "sentiment", "train", "--ckpt", str(ckpt), "--max-iters", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert f"the sentiment checkpoint {ckpt} is in use by another npgpt run (pid {first.proc.pid}" in err, err
        assert live.exists() and not ckpt.exists()
    finally:
        first.proc.send_signal(signal.SIGINT)
    code, out, err = first.finish()
    assert code == 130, out + err


LOCK_HOLDER = """
import sys, time
from npgpt.locks import hold_lock
with hold_lock(sys.argv[1], "a checkpoint"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_temporary_file_is_left_alone_while_another_run_holds_the_checkpoint(tmp_path, capsys, monkeypatch):
    no_training(monkeypatch)
    ckpt = tmp_path / "ckpt.npz"
    live = tmp_path / f".{ckpt.name}.live.tmp"
    live.write_bytes(b"another run's save, half written")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, f"{ckpt}.lock"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = refused(capsys, "--ckpt", str(ckpt))
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"is in use by another npgpt run (pid {holder.pid}" in err, err
    assert live.exists()
