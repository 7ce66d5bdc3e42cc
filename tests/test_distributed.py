"""Data-parallel training: accumulation and 2 MPI ranks give the one-process step; the checkpoint of
2 ranks resumes on 1; bad flags and failing ranks end the job quickly (npgpt/allocation/distributed.py)."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npgpt
from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.allocation.distributed import DataParallelTrainer, GradientBuckets, SingleProcess
from npgpt.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TEXT = "the quick brown fox jumps over the lazy dog. " * 40
STEPS = 20
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
NO_MPI = ("mpi4py is not installed (pip install -e '.[mpi]')" if importlib.util.find_spec("mpi4py") is None
          else "no mpiexec on PATH or beside the Python executable" if MPIEXEC is None else None)
needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=NO_MPI or "")
# float32: the 2-rank gradient is the same sum in another order (float32 rounding, ~6e-8 relative,
# per step), which AdamW's m / sqrt(v) passes on for 20 steps. Measured: 2e-9 relative on the losses,
# 2e-7 on every parameter tensor but the qkv bias, 8e-5 (its key third has gradient 0 in theory and
# holds rounding noise only). Tolerances: 1e-6 on losses, 2e-4 on tensors: above the noise, and far
# below what one step changes (lr 3e-3 per entry, ~3e-2 of a tensor's norm).
FLOAT32 = {"loss_rtol": 1e-6, "param_rtol": 2e-4}

RUN = """
import sys
import numpy as np
from npgpt import GPT, Dataset, GPTConfig, TrainConfig
from npgpt.allocation.distributed import DataParallelTrainer, world
text, out, dtype, grad_accum, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = Dataset(text, cache=False)
config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
train = TrainConfig(max_iters=steps, batch_size=8, lr=3e-3, warmup_iters=10, eval_interval=steps, eval_iters=2)
trainer = DataParallelTrainer(GPT(config, seed=0, dtype=np.dtype(dtype)), data, train, data.tokenizer,
                              comm=world(), grad_accum=grad_accum)
trainer.train(checkpoint_path=out, progress=False)
"""


def make_trainer(dtype=np.float64, max_iters=STEPS, cls=Trainer, **kwargs):
    data = Dataset(TEXT, cache=False)
    config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    train = TrainConfig(max_iters=max_iters, batch_size=8, lr=3e-3, warmup_iters=10, eval_interval=STEPS,
                        eval_iters=2)
    return cls(GPT(config, seed=0, dtype=np.dtype(dtype)), data, train, data.tokenizer, **kwargs)


def quiet(trainer, **kwargs):
    trainer.train(progress=False, log=lambda *_: None, **kwargs)
    return trainer


@pytest.fixture(scope="module")
def one_process():
    return {dtype: quiet(make_trainer(dtype)) for dtype in ("float64", "float32")}


def assert_same_run(losses, params, reference, loss_rtol=1e-12, param_rtol=1e-12):
    """Losses within ``loss_rtol`` each; each parameter tensor within ``param_rtol`` of its norm,
    ||p - p_ref|| <= rtol ||p_ref|| (per entry would not do: the key bias's gradient is exactly 0
    in theory, so that bias holds rounding noise of ~1e-15 whose digits the summation order sets)."""
    np.testing.assert_allclose(losses, reference.history["train_loss"], rtol=loss_rtol, atol=0)
    assert len(losses) == STEPS
    for name, p in reference.model.params.items():
        error = np.linalg.norm(params[name] - p) / np.linalg.norm(p)
        assert error <= param_rtol, (name, error)


# --------------------------------------------------------------------------- one process
@pytest.mark.parametrize("grad_accum", [2, 4, 8])
def test_gradient_accumulation_equals_one_big_batch(one_process, grad_accum):
    accumulated = quiet(make_trainer(cls=DataParallelTrainer, grad_accum=grad_accum))
    assert accumulated.micro_batch == 8 // grad_accum
    assert_same_run(accumulated.history["train_loss"], accumulated.model.params, one_process["float64"])


def test_one_micro_step_on_one_process_is_the_plain_trainer_bit_for_bit(one_process):
    plain = quiet(make_trainer(cls=DataParallelTrainer))
    assert plain.history["train_loss"] == one_process["float64"].history["train_loss"]
    for name, p in one_process["float64"].model.params.items():
        np.testing.assert_array_equal(plain.model.params[name], p, err_msg=name)


def test_a_global_batch_that_does_not_split_is_named():
    with pytest.raises(ValueError, match=r"--batch-size 8 .* ranks x --grad-accum = 1 x 3 = 3"):
        make_trainer(cls=DataParallelTrainer, grad_accum=3)


def test_buckets_pack_every_gradient_once_and_average_them():
    model = make_trainer().model
    grads = {name: np.random.default_rng(0).normal(size=p.shape) for name, p in model.params.items()}
    buckets = GradientBuckets(model.params, bucket_bytes=4096)
    assert len(buckets.buffers) > 1
    assert sum(b.size for b in buckets.buffers) == sum(p.size for p in model.params.values())
    buckets.zero()
    buckets.add(grads)
    buckets.add(grads)
    buckets.average(SingleProcess(), 2)
    out = buckets.unpack({name: np.zeros_like(g) for name, g in grads.items()})
    for name, g in grads.items():
        np.testing.assert_array_equal(out[name], g, err_msg=name)


def test_importing_npgpt_does_not_import_mpi4py():
    code = "import sys, npgpt, npgpt.__main__; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "False"
    assert npgpt is not None


# --------------------------------------------------------------------------- two ranks, for real
def mpiexec(args, timeout, ranks=2):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"}
    return subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Checkpoints of 2-rank runs: {(dtype, grad_accum, steps): path}."""
    folder = tmp_path_factory.mktemp("two_ranks")
    runs = {}
    for key in (("float64", 1, STEPS), ("float64", 2, STEPS), ("float32", 1, STEPS), ("float64", 1, 10)):
        path = folder / f"{key[0]}-{key[1]}-{key[2]}.npz"
        done = mpiexec(["-c", RUN, TEXT, str(path), *map(str, key)], timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[key] = path
    return runs


def saved_run(path):
    _, arrays = read_checkpoint(path)
    losses = arrays["history/train_loss"]
    return losses, {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}


@needs_mpi
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_two_ranks_give_the_one_process_run_in_float64(two_ranks, one_process, grad_accum):
    assert_same_run(*saved_run(two_ranks["float64", grad_accum, STEPS]), one_process["float64"])


@needs_mpi
def test_two_ranks_give_the_one_process_run_in_float32_up_to_summation_order(two_ranks, one_process):
    losses, params = saved_run(two_ranks["float32", 1, STEPS])
    assert_same_run(losses, params, one_process["float32"], **FLOAT32)


@needs_mpi
def test_a_checkpoint_of_two_ranks_resumes_on_one(two_ranks, one_process):
    path = two_ranks["float64", 1, 10]
    meta, _ = read_checkpoint(path)
    halfway = quiet(make_trainer(max_iters=10))
    assert meta["step"] == 10
    assert meta["batch_rng"] == halfway.batch_rng.bit_generator.state    # the same batches from here on
    resumed = quiet(Trainer.from_checkpoint(path, halfway.data, halfway.tokenizer, max_iters=STEPS))
    assert_same_run(resumed.history["train_loss"], resumed.model.params, one_process["float64"])


TRAIN = ["-m", "npgpt", "train", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16",
         "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2", "--final-eval-iters", "2",
         "--sample-tokens", "0", "--no-progress"]


@needs_mpi
def test_a_batch_that_does_not_split_over_the_ranks_exits_2_on_every_rank(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    done = mpiexec([*TRAIN, "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--batch-size", "6",
                    "--grad-accum", "2"], timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "must be divisible" in line]
    assert len(lines) == 2 and "rank 0 of 2" in done.stderr and "rank 1 of 2" in done.stderr, done.stderr
    assert "ranks x --grad-accum = 2 x 2 = 4" in lines[0]
    assert not (tmp_path / "run").exists()


FAIL_ON_RANK_1 = """
import sys
from npgpt.__main__ import main
from npgpt.allocation import distributed

step = distributed.DataParallelTrainer._loss_and_grads
def fail_on_rank_1(self):
    if self.comm.rank == 1 and self.step == 2:
        raise RuntimeError("injected failure on rank 1")
    return step(self)
distributed.DataParallelTrainer._loss_and_grads = fail_on_rank_1
sys.exit(main(sys.argv[1:]))
"""


@needs_mpi
def test_a_rank_that_raises_brings_the_job_down_with_its_error(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    done = mpiexec(["-c", FAIL_ON_RANK_1, *TRAIN[2:], "--data", str(corpus), "--out-dir", str(tmp_path / "run"),
                    "--max-iters", "50", "--batch-size", "4"], timeout=60)
    assert done.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in done.stderr
