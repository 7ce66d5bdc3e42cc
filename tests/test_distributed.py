"""Data-parallel training: accumulation and 2 MPI ranks give the one-process step; the checkpoint of
2 ranks resumes on 1; bad flags and failing ranks end the job quickly (npgpt/training/distributed.py)."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from references import missing_reference, optional_reference

import npgpt
import npgpt.cli
from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer
from npgpt.io.checkpoint import read_checkpoint
from npgpt.training import distributed
from npgpt.training.distributed import DataParallelTrainer, GradientBuckets, SingleProcess, ZeroAdamW
from npgpt.training.optim import AdamW

ROOT = Path(__file__).resolve().parents[1]
TEXT = "the quick brown fox jumps over the lazy dog. " * 40
STEPS = 20
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="session")
def mpi():
    """mpi4py and an mpiexec (the mpich wheel's), optional references: skipped without them. Session
    scope, so that it is set up (and skips) before the module-scoped runs that need it."""
    optional_reference("mpi4py", reason="data-parallel training runs over MPI")
    if MPIEXEC is None:
        missing_reference("mpich", reason="no mpiexec on PATH or beside the Python executable")


needs_mpi = pytest.mark.usefixtures("mpi")
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
from npgpt.training.distributed import DataParallelTrainer, world
text, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
grad_accum, steps, zero = map(int, sys.argv[4:7])
data = Dataset(text, cache=False)
config = GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
train = TrainConfig(max_iters=steps, batch_size=8, lr=3e-3, warmup_iters=10, eval_interval=steps, eval_iters=2)
trainer = DataParallelTrainer(GPT(config, seed=0, dtype=np.dtype(dtype)), data, train, data.tokenizer,
                              comm=world(), grad_accum=grad_accum, zero=zero)
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
    with pytest.raises(ValueError, match=r"batch_size=8 .* ranks x grad_accum = 1 x 3 = 3"):
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


@pytest.mark.slow
def test_importing_npgpt_does_not_import_mpi4py():
    code = "import sys, npgpt, npgpt.cli; print('mpi4py' in sys.modules)"
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
def two_ranks(mpi, tmp_path_factory):
    """Checkpoints of 2-rank runs (and one of 4): {(dtype, grad_accum, steps, zero, ranks): path}."""
    folder = tmp_path_factory.mktemp("two_ranks")
    runs = {}
    for key in (("float64", 1, STEPS, 0, 2), ("float64", 2, STEPS, 0, 2), ("float32", 1, STEPS, 0, 2),
                ("float64", 1, 10, 0, 2), ("float64", 1, STEPS, 1, 2), ("float64", 2, STEPS, 1, 2),
                ("float32", 1, STEPS, 1, 2), ("float64", 1, 10, 1, 2), ("float64", 1, STEPS, 1, 4)):
        path = folder / ("-".join(map(str, key)) + ".npz")
        done = mpiexec(["-c", RUN, TEXT, str(path), *map(str, key[:4])], timeout=180, ranks=key[4])
        assert done.returncode == 0, done.stderr[-2000:]
        runs[key] = path
    return runs


def saved_run(path):
    _, arrays = read_checkpoint(path)
    losses = arrays["history/train_loss"]
    return losses, {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
@pytest.mark.parametrize("grad_accum", [1, 2])
@pytest.mark.slow
def test_two_ranks_give_the_one_process_run_in_float64(two_ranks, one_process, grad_accum, zero):
    assert_same_run(*saved_run(two_ranks["float64", grad_accum, STEPS, zero, 2]), one_process["float64"])


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
@pytest.mark.slow
def test_two_ranks_give_the_one_process_run_in_float32_up_to_summation_order(two_ranks, one_process, zero):
    losses, params = saved_run(two_ranks["float32", 1, STEPS, zero, 2])
    assert_same_run(losses, params, one_process["float32"], **FLOAT32)


@needs_mpi
@pytest.mark.slow
def test_four_ranks_with_zero_1_give_the_one_process_run_in_float64(two_ranks, one_process):
    assert_same_run(*saved_run(two_ranks["float64", 1, STEPS, 1, 4]), one_process["float64"])


@needs_mpi
@pytest.mark.slow
def test_zero_1_writes_the_one_process_optimizer_state(two_ranks):
    """The moments gathered from the shards are the moments of the plain 2-rank run (same layout)."""
    _, sharded = read_checkpoint(two_ranks["float64", 1, STEPS, 1, 2])
    _, whole = read_checkpoint(two_ranks["float64", 1, STEPS, 0, 2])
    optim = sorted(k for k in whole if k.startswith("optim/"))
    assert optim == sorted(k for k in sharded if k.startswith("optim/")) and len(optim) > 3
    for key in optim:
        np.testing.assert_allclose(sharded[key], whole[key], rtol=1e-12, atol=1e-300, err_msg=key)


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
@pytest.mark.slow
def test_a_checkpoint_of_two_ranks_resumes_on_one(two_ranks, one_process, zero):
    path = two_ranks["float64", 1, 10, zero, 2]
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
@pytest.mark.slow
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
from npgpt.cli import main
from npgpt.training import distributed

step = distributed.DataParallelTrainer._loss_and_grads
def fail_on_rank_1(self):
    if self.comm.rank == 1 and self.step == 2:
        raise RuntimeError("injected failure on rank 1")
    return step(self)
distributed.DataParallelTrainer._loss_and_grads = fail_on_rank_1
sys.exit(main(sys.argv[1:]))
"""


@needs_mpi
@pytest.mark.slow
def test_a_rank_that_raises_brings_the_job_down_with_its_error(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    done = mpiexec(["-c", FAIL_ON_RANK_1, *TRAIN[2:], "--data", str(corpus), "--out-dir", str(tmp_path / "run"),
                    "--max-iters", "50", "--batch-size", "4"], timeout=60)
    assert done.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in done.stderr


RESUME = """
import sys
from npgpt import Dataset
from npgpt.training.distributed import DataParallelTrainer, world
text, path, out, steps, zero = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = Dataset(text, cache=False)
trainer = DataParallelTrainer.from_checkpoint(path, data, data.tokenizer, comm=world(), zero=zero, max_iters=steps)
trainer.train(checkpoint_path=out, progress=False)
"""


@needs_mpi
@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_on_two_ranks_with_zero_1(tmp_path, one_process):
    halfway = make_trainer(max_iters=10)
    halfway.train(checkpoint_path=tmp_path / "one.npz", progress=False, log=lambda *_: None)
    done = mpiexec(["-c", RESUME, TEXT, str(tmp_path / "one.npz"), str(tmp_path / "two.npz"), str(STEPS), "1"],
                   timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_run(*saved_run(tmp_path / "two.npz"), one_process["float64"])


MEMORY = """
import os, sys, tracemalloc
import numpy as np
from npgpt import GPT, Dataset, GPTConfig, TrainConfig
from npgpt.training.distributed import DataParallelTrainer, ZeroAdamW, world
comm = world()
data = Dataset(sys.argv[1], cache=False)
model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32), seed=0)
trainer = DataParallelTrainer(model, data, TrainConfig(batch_size=8), comm=comm)
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
optimizer = ZeroAdamW(model.params, trainer.buckets, comm)
allocated = tracemalloc.get_traced_memory()[0] - before
os.write(1, f"{comm.rank} {model.num_params()} {optimizer.state_bytes()} {allocated}\\n".encode())  # one write
"""


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.slow
def test_zero_1_keeps_one_rankth_of_the_moments_on_each_rank(ranks):
    """Measured with tracemalloc: the bytes a ZeroAdamW allocates are 2 moments x P / ranks numbers
    (plus a few hundred bytes of bookkeeping), against 2P for AdamW."""
    done = mpiexec(["-c", MEMORY, TEXT], timeout=120, ranks=ranks)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = sorted(tuple(map(int, line.split())) for line in done.stdout.splitlines())
    assert [r[0] for r in rows] == list(range(ranks))
    n_params = rows[0][1]
    for rank, _, state_bytes, allocated in rows:
        shard = n_params * (rank + 1) // ranks - n_params * rank // ranks
        assert state_bytes == 2 * shard * 4                          # float32 m and v of the shard
        assert state_bytes <= allocated <= state_bytes + 16_384, (rank, allocated)
        assert allocated < 2 * n_params * 4 / ranks * 1.05            # 1/ranks of AdamW's 2P numbers


def fake_rank(rank, size):
    comm = SingleProcess()
    comm.rank, comm.size = rank, size
    return comm


def test_the_shards_of_zero_1_cover_every_parameter_once_and_load_their_part_of_a_state():
    model = make_trainer().model
    full = AdamW(model.params)
    rng = np.random.default_rng(0)
    for arrays in full.buffers.values():
        for a in arrays.values():
            a[...] = rng.normal(size=a.shape)
    full.t = 7
    buckets = GradientBuckets(model.params, bucket_bytes=4096)
    rebuilt = {key: np.zeros(np.shape(value)) for key, value in full.state_dict().items()}
    for rank in range(3):
        sharded = ZeroAdamW(model.params, buckets, fake_rank(rank, 3))
        sharded.load_state_dict(full.state_dict())
        assert sharded.t == 7
        for kind, shard in sharded.buffers.items():
            for name, first, last, at in sharded.pieces:
                target = rebuilt[f"{kind}.{name}"].reshape(-1)[first:last]
                assert not target.any(), f"{name}[{first}:{last}] is in two shards"
                target[...] = shard[at:at + last - first]
    for key, value in full.state_dict().items():
        if key != "step":
            np.testing.assert_array_equal(rebuilt[key], value, err_msg=key)


def test_zero_1_needs_several_ranks_and_adamw():
    """The library names its parameters (the command line names its flags: the test below)."""
    with pytest.raises(ValueError, match=r"zero=1 .* this run has 1 rank: start it with mpiexec -n N"):
        make_trainer(cls=DataParallelTrainer, zero=1)
    with pytest.raises(ValueError, match=r"zero=2: .* expected 0 or 1"):
        distributed.check_zero(2, 2)
    with pytest.raises(ValueError, match=r"optimizer='sgd' has none to shard"):
        distributed.check_zero(1, 2, "sgd")


def test_the_cli_refuses_zero_1_on_one_process(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    code = npgpt.cli.main([*TRAIN[2:], "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--zero", "1"])
    assert code == 2
    assert "--zero 1 shards the optimizer's state over the ranks, but this run has 1 rank" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


THREADS = """
import os
import numba, npgpt
from npgpt.runtime.threads import get_threads
def counts():
    return f"{numba.get_num_threads()} {get_threads()}"
before = counts()
with npgpt.runtime.configure():
    inside = counts()
os.write(1, f"{before} {inside} {counts()} {'NUMBA_NUM_THREADS' in os.environ}\\n".encode())   # one write
"""


@needs_mpi
@pytest.mark.slow
def test_ranks_on_one_machine_share_its_cores_unless_told_otherwise():
    """Two ranks on c cores run max(1, c // 2) numba and BLAS threads each inside configure(), and
    all of them again after it; importing npgpt sets no environment variable; a count the user set
    is kept."""
    env = {k: v for k, v in os.environ.items() if k not in npgpt.runtime.ranks.THREAD_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    share = npgpt.runtime.ranks.threads_per_rank({"MPI_LOCALNRANKS": "2"})
    cores = str(os.cpu_count())
    for extra, expected in (({}, [cores, cores, str(share), str(share), cores, cores, "False"]),
                            ({"NUMBA_NUM_THREADS": cores, "OMP_NUM_THREADS": cores}, [cores] * 6 + ["True"])):
        done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", THREADS], capture_output=True, text=True,
                              timeout=60, env={**env, **extra}, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected * 2, (extra, done.stdout)


def test_one_process_keeps_every_core():
    assert npgpt.runtime.ranks.threads_per_rank({}) is None
    assert npgpt.runtime.ranks.threads_per_rank({"MPI_LOCALNRANKS": "1"}) is None
    assert npgpt.runtime.ranks.shares({}) == {}
    many = {"OMPI_COMM_WORLD_LOCAL_SIZE": str(4 * (os.cpu_count() or 1))}
    share = npgpt.runtime.ranks.threads_per_rank(many)
    assert share == 1 or len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)
    assert npgpt.runtime.ranks.shares(many) == {"numba": share, "blas": share}
    assert npgpt.runtime.ranks.shares({**many, "OMP_NUM_THREADS": "3"}) == {"numba": share}    # the user's count wins
    assert npgpt.runtime.ranks.shares({**many, "NUMBA_NUM_THREADS": "3"}) == {"blas": share}


@needs_mpi
@pytest.mark.slow
def test_sigterm_to_mpiexec_stops_every_rank_at_one_step_and_saves(tmp_path):
    """mpiexec (Hydra) passes SIGTERM on to the ranks; they agree on it at the next step boundary,
    rank 0 saves there, and the job exits 143 (128 + SIGTERM) with a checkpoint that resumes."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"}
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, *TRAIN, "--data", str(corpus), "--out-dir",
                            str(tmp_path / "run"), "--max-iters", "1000000", "--eval-interval", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in job.stdout:                         # wait until both ranks are past compiling
            if line.startswith("step 40:"):
                break
        job.send_signal(signal.SIGTERM)
        out, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 143, err
    stopped = [line for line in out.splitlines() if line.startswith("SIGTERM: stopped at step")]
    assert len(stopped) == 1, out + err
    step = int(stopped[0].split("step ")[1].split(";")[0])
    meta, arrays = read_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert meta["step"] == step >= 40 and len(arrays["history/train_loss"]) == step


def test_the_launchers_variables_are_read_in_one_place(monkeypatch):
    """Open MPI, MPICH (Hydra) and PMIx name the world's size, this rank and the ranks on this
    machine differently; runtime/ranks.py reads them all, and the trainer asks it."""
    ranks = npgpt.runtime.ranks
    assert (ranks.launched_size({}), ranks.launched_rank({}), ranks.local_ranks({})) == (1, 0, 1)
    hydra = {"PMI_SIZE": "4", "PMI_RANK": "2", "MPI_LOCALNRANKS": "2"}
    assert (ranks.launched_size(hydra), ranks.launched_rank(hydra), ranks.local_ranks(hydra)) == (4, 2, 2)
    assert ranks.launched_size({"OMPI_COMM_WORLD_SIZE": "", "PMIX_SIZE": "3"}) == 3    # the first number wins
    for name in ranks.WORLD_SIZE_VARIABLES + ranks.WORLD_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "5")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert (ranks.launched_size(), ranks.launched_rank()) == (5, 3)      # the process's environment by default
    assert distributed.launched_size is ranks.launched_size and distributed.launched_rank is ranks.launched_rank
