r"""Data-parallel training (document section 2: distributed training as a way to allocate compute).

$n$ processes ("ranks") each hold the whole model. One optimizer step of global batch $B$ runs
$K$ micro-steps (gradient accumulation) on every rank, each on $b = B / (nK)$ sequences, and
averages the $nK$ micro-batch gradients before the one update every rank applies:

$$g = \frac{1}{nK}\sum_{r=0}^{n-1}\sum_{k=0}^{K-1} \nabla_\theta L_{r,k},\qquad
  L = \frac{1}{nK}\sum_{r,k} L_{r,k}$$

Every micro-batch has $bT$ tokens and $L_{r,k}$ is their mean loss, so $g$ and $L$ are the
gradient and the loss of the one-process batch of $B$ sequences: the same numbers, summed in
another order.

**The batches.** Every rank draws the whole global batch from the shared seeded generator (the
same draw a single process makes) and keeps its rows: rank $r$ takes rows $[rKb, (r+1)Kb)$, and
micro-step $k$ the $b$ rows from $rKb + kb$. Drawing $B$ offsets costs nothing beside a step, no
message is needed, the union of the micro-batches is the one-process batch exactly, and the
generator's state stays the same on every rank, so a checkpoint does not depend on $n$ and a run
resumes on any number of ranks. (Drawing on rank 0 and scattering would save nothing and add a
message per step.)

**The reduction.** The gradients are packed into a few contiguous buffers ("buckets", at most
``BUCKET_BYTES`` each), summed over the micro-steps in place, summed over the ranks by one
``Allreduce`` per bucket (in place, on the NumPy buffer: no pickling), divided by $nK$ and
unpacked. Every rank then holds the same $g$, clips it and applies the same update, so the
parameters stay equal without being sent.

**ZeRO stage 1** (``zero=1``, :class:`ZeroAdamW`). Every rank holding all of AdamW's moments
keeps $2P$ numbers that each rank needs only a $1/n$ of: rank $r$ keeps the moments of shard $r$
of the flattened parameters, updates those parameters, and an all-gather hands the shards round.
Per rank the optimizer's state drops from $2P$ to $2P/n$ numbers; the traffic per step grows by
the all-gather, about half an all-reduce.

**Everything else.** Evaluation is sharded: batch $i$ of an evaluation is scored by rank
$i \bmod n$ and the sums are reduced, so every rank knows the losses. Rank 0 alone prints and
writes checkpoints, which keep the one-process layout. A stop signal (SIGINT, SIGTERM) is agreed on
at each step boundary, so every rank stops at the same step. The dropout generator is the same on
every rank (it is saved once), so with dropout the ranks share masks and the run is not equal to
the one-process run, only like it.

MPI is optional: :func:`world` imports ``mpi4py`` only when the environment says the process was
started by ``mpiexec`` with more than one rank.
"""
import itertools
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, NoReturn, Protocol, Self, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from ..checks import UsageError, check_int
from ..kernels import backend
from ..models.base import params_dtype
from ..runtime.ranks import (  # noqa: F401  (launched_rank: npgpt.training.distributed's public names)
    launched_rank,
    launched_size,
)
from .config import TrainConfig
from .optim import AdamW, decays
from .trainer import (
    BatchSource,
    CheckpointPath,
    EvaluationStopped,
    SavedTokenizer,
    StopSignals,
    TrainableModel,
    Trainer,
    TrainingDiverged,
)

BUCKET_BYTES = 4 * 2**20            # 4 MiB: a few Allreduce calls for the baby model, not one per tensor
T = TypeVar("T")
# Where one gradient lives in a bucket: (parameter name, start, stop, shape).
Slot = tuple[str, int, int, tuple[int, ...]]


# --------------------------------------------------------------------------- communicators
class Communicator(Protocol):
    """What data-parallel training asks of the ranks' communicator (:class:`SingleProcess`,
    :class:`MPICommunicator`): this process's ``rank`` among ``size``, two in-place collectives on
    contiguous float arrays, a broadcast of a small object, a barrier, and ending the whole job."""

    rank: int
    size: int

    def allreduce(self, buffer: np.ndarray) -> np.ndarray: ...
    def allgatherv(self, buffer: np.ndarray, counts: Sequence[int]) -> np.ndarray: ...
    def broadcast(self, obj: T, root: int = 0) -> T: ...
    def barrier(self) -> None: ...
    def abort(self, code: int) -> NoReturn: ...


class SingleProcess:
    """The communicator of a run on one process: every collective is the identity."""

    rank, size = 0, 1

    def allreduce(self, buffer: np.ndarray) -> np.ndarray:
        return buffer

    def allgatherv(self, buffer: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        return buffer

    def broadcast(self, obj: T, root: int = 0) -> T:
        return obj

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> NoReturn:
        sys.exit(code)


ABORT_GRACE_S = 0.5     # a traceback printed just before MPI_Abort was lost once on a busy machine


class MPICommunicator:
    """``mpi4py``'s world communicator: ``allreduce`` sums a contiguous float array in place over the
    ranks (buffer-based ``Allreduce``), ``broadcast`` sends a small Python object from ``root``,
    ``abort`` ends every rank of the job with exit status ``code``."""

    def __init__(self) -> None:
        from mpi4py import MPI  # initialises MPI; imported only here
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce(self, buffer: np.ndarray) -> np.ndarray:
        self._check(buffer, "allreduce")
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return buffer

    def allgatherv(self, buffer: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        """Rank ``r`` owns ``buffer[sum(counts[:r]) : sum(counts[:r+1])]``; afterwards every rank holds
        every rank's piece (in place, ``Allgatherv``; a count may be 0)."""
        self._check(buffer, "allgatherv")
        displacements = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        kind = self._mpi.DOUBLE if buffer.dtype == np.float64 else self._mpi.FLOAT
        self.comm.Allgatherv(self._mpi.IN_PLACE, [buffer, (list(counts), displacements), kind])
        return buffer

    @staticmethod
    def _check(buffer: object, what: str) -> None:
        if (not isinstance(buffer, np.ndarray) or buffer.dtype not in (np.float32, np.float64)
                or not buffer.flags.c_contiguous):
            raise UsageError(f"{what} needs a contiguous float32 or float64 array, got "
                             f"{type(buffer).__name__} {getattr(buffer, 'dtype', '')}")

    def broadcast(self, obj: T, root: int = 0) -> T:
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)       # let mpiexec forward this rank's last lines before it kills the job
        self.comm.Abort(code)


def world() -> Communicator:
    """:class:`MPICommunicator` when the launcher started more than one rank, else :class:`SingleProcess`."""
    size = launched_size()
    if size == 1:
        return SingleProcess()
    try:
        return MPICommunicator()
    except ImportError:
        raise UsageError(f"this process is one of {size} started by mpiexec, but mpi4py is not "
                         f"installed: pip install -e '.[mpi]'") from None


def agree(comm: Communicator, error: Exception | None) -> None:
    """Raise ``error`` on the ranks that found one and a ValueError on the others, if any rank found
    one; return otherwise. Every rank must call it (it is a collective), so a problem found by
    one rank before training stops them all cleanly instead of leaving the others waiting."""
    failed = comm.allreduce(np.array([0.0 if error is None else 1.0]))[0]
    if error is not None:
        raise error
    if failed:
        raise UsageError(f"{int(failed)} other rank(s) found a problem before step 1 (printed above)")


# --------------------------------------------------------------------------- gradient buckets
class GradientBuckets:
    """The gradients of ``params`` as contiguous buffers of at most ``bucket_bytes`` each (a tensor
    larger than that gets a bucket of its own): ``add`` sums a grads dict into them, ``average``
    all-reduces and divides them, ``unpack`` writes them back into a grads dict."""

    def __init__(self, params: Mapping[str, np.ndarray], bucket_bytes: int = BUCKET_BYTES) -> None:
        bucket_bytes = check_int("bucket_bytes", bucket_bytes)
        self.dtype = params_dtype(params)               # one dtype: the buckets are plain arrays
        self.layout: list[list[Slot]] = []              # per bucket, its slots
        bucket: list[Slot] = []
        size = 0
        for name, p in params.items():
            if bucket and (size + p.size) * p.itemsize > bucket_bytes:
                self.layout.append(bucket)
                bucket, size = [], 0
            bucket.append((name, size, size + p.size, p.shape))
            size += p.size
        self.layout.append(bucket)
        self.buffers = [np.zeros(slots[-1][2], self.dtype) for slots in self.layout]

    def zero(self) -> None:
        for buffer in self.buffers:
            buffer[...] = 0

    def add(self, grads: Mapping[str, np.ndarray]) -> None:
        for buffer, slots in zip(self.buffers, self.layout):
            for name, start, stop, _ in slots:
                buffer[start:stop] += grads[name].ravel()

    def average(self, comm: Communicator, count: int) -> None:
        """Sum over the ranks, then divide by ``count`` (ranks x micro-steps)."""
        for buffer in self.buffers:
            comm.allreduce(buffer)
            buffer /= count

    def unpack(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for buffer, slots in zip(self.buffers, self.layout):
            for name, start, stop, shape in slots:
                grads[name][...] = buffer[start:stop].reshape(shape)
        return grads


# --------------------------------------------------------------------------- ZeRO stage 1
def shard_bounds(total: int, ranks: int, rank: int) -> tuple[int, int]:
    """``[start, stop)``: rank ``rank``'s contiguous share of ``total`` numbers (shares differ by <= 1)."""
    return total * rank // ranks, total * (rank + 1) // ranks


def check_zero(zero: int, ranks: int, optimizer: str = "adamw") -> int:
    """``zero`` as a ZeRO stage npgpt runs with ``ranks`` ranks and ``optimizer``, else a UsageError
    naming the parameters (the command line checks its flags first, :mod:`npgpt.cli.train`)."""
    if zero not in (0, 1):
        raise UsageError(f"zero={zero!r}: npgpt implements ZeRO stage 0 (off) and 1 (AdamW's moments "
                         f"sharded over the ranks), expected 0 or 1")
    if zero and ranks == 1:
        raise UsageError("zero=1 shards the optimizer's state over the ranks, but this run has 1 rank: "
                         "start it with mpiexec -n N (N >= 2), or use zero=0")
    if zero and optimizer != "adamw":
        raise UsageError(f"zero=1 shards AdamW's moments; optimizer={optimizer!r} has none to shard "
                         f"(use optimizer='adamw', or zero=0)")
    return zero


class ZeroAdamW(AdamW):
    r"""AdamW with its moments sharded over the ranks: ZeRO stage 1 (Rajbhandari et al., 2020).

    Line the $P$ parameters up in one flat vector (in ``params`` order, the order of the gradient
    buckets) and cut it into ``comm.size`` contiguous shards. Rank $r$ keeps $m$ and $v$ for shard
    $r$ only, $2P/n$ numbers instead of $2P$, and updates only those parameters, with the same
    elementwise formula (:func:`npgpt.ops.adamw.adamw_update`) and the same averaged gradient as
    every rank holds after the all-reduce; then an ``Allgatherv`` (through the gradient buckets,
    which are free at that point: no extra memory) gives every rank every shard. Each parameter is
    computed by one rank with the numbers every rank would have used, so the result equals
    :class:`AdamW`'s exactly.

    The checkpoint keeps the one-process layout: :meth:`state_dict` gathers the moments to rank 0
    (a collective: every rank calls it) and returns ``None`` on the others; :meth:`load_state_dict`
    takes a one-process state and keeps this rank's shard, so a run resumes on any number of ranks.
    """

    def __init__(self, params: dict[str, np.ndarray], buckets: GradientBuckets, comm: Communicator,
                 lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.comm, self.buckets = comm, buckets
        not_contiguous = [name for name, p in params.items() if not p.flags.c_contiguous]
        if not_contiguous:
            raise UsageError(f"ZeRO-1 updates flat views of the parameters, so they must be C-contiguous; "
                             f"these are not: {not_contiguous}")
        total = sum(p.size for p in params.values())
        self.start, self.stop = shard_bounds(total, comm.size, comm.rank)
        # (name, first, last, at): params[name].flat[first:last] <-> shard[at:...]
        self.pieces: list[tuple[str, int, int, int]] = []
        offset = 0
        for name, p in params.items():
            first, last = max(self.start - offset, 0), min(self.stop - offset, p.size)
            if first < last:
                self.pieces.append((name, first, last, offset + first - self.start))
            offset += p.size
        bucket_starts = np.cumsum([0] + [b.size for b in buckets.buffers])
        self.bucket_counts = [[max(0, min(end, stop) - max(begin, start)) for start, stop in
                               (shard_bounds(total, comm.size, r) for r in range(comm.size))]
                              for begin, end in itertools.pairwise(bucket_starts)]
        self.bucket_starts = bucket_starts[:-1]
        super().__init__(params, lr, betas, eps, weight_decay)

    def _new_buffers(self, kinds: Iterable[str]) -> dict[str, Any]:
        dtype = next(iter(self.params.values())).dtype
        return {kind: np.zeros(self.stop - self.start, dtype) for kind in kinds}

    def step(self, grads: Mapping[str, np.ndarray], lr: float | None = None) -> None:
        """Update this rank's shard in place, then gather every shard to every rank."""
        lr = self._begin_step(grads, lr)
        update, (m, v) = backend.ops().adamw_update, (self.buffers["m"], self.buffers["v"])
        for name, first, last, at in self.pieces:
            p, n = self.params[name], last - first
            decay = self.weight_decay if decays(p) else 0.0
            update(p.reshape(-1)[first:last], grads[name].reshape(-1)[first:last], m[at:at + n], v[at:at + n],
                   lr, *self.betas, self.eps, decay, self.t)
        self.buckets.zero()
        self.buckets.add(self.params)
        self._gather_buckets()
        self.buckets.unpack(self.params)

    def _gather_buckets(self) -> None:
        for buffer, counts in zip(self.buckets.buffers, self.bucket_counts):
            self.comm.allgatherv(buffer, counts)

    # None on the ranks other than 0 breaks AdamW.state_dict's promise of a dict, and mypy says so
    # [override]; the promise holds where a state is used (rank 0, which alone writes checkpoints).
    # Keeping it everywhere would change what this returns (a dict on every rank) or make every
    # optimizer's state_dict optional for this one case; so a type: ignore, though not for numpy's stubs.
    def state_dict(self) -> dict[str, np.ndarray] | None:  # type: ignore[override]
        """The one-process state dict on rank 0 (gathered from every rank), ``None`` on the others."""
        state = {"step": np.array(self.t, dtype=np.int64)}
        for kind, shard in self.buffers.items():
            for buffer, begin in zip(self.buckets.buffers, self.bucket_starts):
                lo, hi = max(begin, self.start), min(begin + buffer.size, self.stop)
                if lo < hi:
                    buffer[lo - begin:hi - begin] = shard[lo - self.start:hi - self.start]
            self._gather_buckets()
            if self.comm.rank == 0:
                full = {name: np.empty_like(p) for name, p in self.params.items()}
                state.update({f"{kind}.{name}": a for name, a in self.buckets.unpack(full).items()})
        return state if self.comm.rank == 0 else None

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"step": (), **{f"{kind}.{name}": p.shape for kind in self.buffers for name, p in self.params.items()}}

    def _load_buffers(self, state: Mapping[str, ArrayLike]) -> None:
        for kind, shard in self.buffers.items():
            for name, first, last, at in self.pieces:
                shard[at:at + last - first] = np.asarray(state[f"{kind}.{name}"]).reshape(-1)[first:last]


# --------------------------------------------------------------------------- the trainer
def micro_batch_size(batch_size: int, ranks: int, grad_accum: int) -> int:
    """Sequences per micro-step, ``batch_size / (ranks * grad_accum)``, which must be a whole number
    (a UsageError naming the parameters otherwise; the command line checks its flags first)."""
    if batch_size % (ranks * grad_accum):
        raise UsageError(f"batch_size={batch_size} (the global batch) must be divisible by ranks x "
                         f"grad_accum = {ranks} x {grad_accum} = {ranks * grad_accum}")
    return batch_size // (ranks * grad_accum)


class DataParallelTrainer(Trainer):
    """A :class:`Trainer` whose step averages the gradients of ``grad_accum`` micro-steps on each of
    ``comm.size`` ranks (``comm``: :class:`SingleProcess` by default, so it also serves gradient
    accumulation on one process). ``config.batch_size`` stays the global batch."""

    def __init__(self, model: TrainableModel, data: BatchSource, config: TrainConfig | None = None,
                 tokenizer: SavedTokenizer | None = None, masks: Mapping[str, np.ndarray] | None = None,
                 comm: Communicator | None = None, grad_accum: int = 1, zero: int = 0,
                 block_size: int | None = None) -> None:
        super().__init__(model, data, config, tokenizer, masks, block_size=block_size)
        self._parallel(comm, grad_accum, zero)

    def _parallel(self, comm: Communicator | None, grad_accum: int, zero: int) -> None:
        self.comm: Communicator = SingleProcess() if comm is None else comm
        self.grad_accum = check_int("grad_accum", grad_accum)
        self.micro_batch = micro_batch_size(self.config.batch_size, self.comm.size, self.grad_accum)
        self.zero = check_zero(zero, self.comm.size, self.config.optimizer)
        self.buckets = GradientBuckets(self.model.params)
        if self.zero:                    # keep this rank's shard of the moments (of a resumed run too)
            c, state = self.config, self.optimizer.state_dict()
            self.optimizer = ZeroAdamW(self.model.params, self.buckets, self.comm, lr=c.lr,
                                       betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
            self.optimizer.load_state_dict(state)

    @classmethod
    def from_checkpoint(cls, path: CheckpointPath, data: BatchSource, tokenizer: SavedTokenizer | None = None,
                        comm: Communicator | None = None, grad_accum: int = 1, zero: int = 0,
                        **overrides: Any) -> Self:
        """:meth:`Trainer.from_checkpoint` on ``comm.size`` ranks (any number: see the module doc)."""
        trainer = super().from_checkpoint(path, data, tokenizer, **overrides)
        trainer._parallel(comm, grad_accum, zero)
        return trainer

    def _loss_and_grads(self) -> tuple[float, dict[str, np.ndarray]]:
        c, b = self.config, self.micro_batch
        x, y = self.data.get_batch("train", c.batch_size, self.block_size, self.batch_rng)
        first = self.comm.rank * self.grad_accum * b
        self.buckets.zero()
        loss_sum = np.zeros(1)
        for k in range(self.grad_accum):
            rows = slice(first + k * b, first + (k + 1) * b)
            loss_sum += self._forward(x[rows], y[rows])[1]
            grads = self.model.backward()
            self.buckets.add(grads)
        count = self.comm.size * self.grad_accum
        loss = float(self.comm.allreduce(loss_sum)[0] / count)
        if not np.isfinite(loss):        # the global loss: every rank stops at the same step
            raise TrainingDiverged(f"the training loss became {loss} at step {self.step + 1}; lower the "
                                   f"learning rate (lr={c.lr}) or keep gradient clipping on")
        self.buckets.average(self.comm, count)
        return loss, self.buckets.unpack(grads)          # the averages, in the last micro-step's arrays

    def _stop_signal(self, stop: StopSignals) -> int | None:
        """The signal any rank received, agreed on by all (SIGTERM wins over SIGINT)."""
        votes = self.comm.allreduce(np.array([stop.signal == signal.SIGINT, stop.signal == signal.SIGTERM],
                                             dtype=np.float64))
        agreed = signal.SIGTERM if votes[1] else signal.SIGINT if votes[0] else None
        if agreed is not None and stop.signal is None:
            stop.signal = agreed
        return agreed

    def evaluate(self, n_batches: int | None = None, progress: bool = False,
                 stop: StopSignals | None = None) -> dict[str, float]:
        """:meth:`Trainer.evaluate` sharded: rank ``i % size`` scores batch ``i``; the sums are reduced.
        Only rank 0 shows the progress bar. A signal any rank's ``stop`` caught travels with the sums:
        a rank that got one stops scoring, the others finish their share, and all of them raise
        :class:`EvaluationStopped` together (no rank is left waiting in a collective)."""
        return super().evaluate(n_batches, progress and self.comm.rank == 0, stop)

    def _scores_batch(self, i: int) -> bool:
        return i % self.comm.size == self.comm.rank

    def _mean_losses(self, scored: dict[str, list[float]], n_batches: int,
                     stop: StopSignals | None = None) -> dict[str, float]:
        """Each rank's sum of its losses, summed over the ranks (one Allreduce), over ``n_batches``;
        with ``stop``, two more numbers in the same Allreduce say whether a rank caught SIGINT or
        SIGTERM (SIGTERM wins), and then every rank raises :class:`EvaluationStopped`."""
        sums = np.zeros(len(scored) + (2 if stop is not None else 0))
        for j, losses in enumerate(scored.values()):
            for loss in losses:
                sums[j] += loss
        if stop is not None:
            sums[len(scored):] = [stop.signal == signal.SIGINT, stop.signal == signal.SIGTERM]
        reduced = self.comm.allreduce(sums)
        if stop is not None and reduced[len(scored):].any():
            stop.signal = signal.SIGTERM if reduced[-1] else signal.SIGINT
            raise EvaluationStopped(stop.signal)
        means = reduced[:len(scored)] / n_batches
        return {split: float(mean) for split, mean in zip(scored, means)}

    def check_before_training(self, checkpoint_path: CheckpointPath | None = None) -> None:
        """Every rank checks its splits, rank 0 the checkpoint's folder; then they :func:`agree`."""
        error: ValueError | None = None
        try:
            super().check_before_training(checkpoint_path if self.comm.rank == 0 else None)
        except ValueError as e:
            error = e
        agree(self.comm, error)

    @contextmanager
    def _hold_checkpoint(self, checkpoint_path: CheckpointPath | None) -> Iterator[None]:
        """Rank 0, which alone writes the checkpoint, holds its lock; then the ranks :func:`agree`,
        so a checkpoint in use by another run stops every rank before step 1."""
        with ExitStack() as held:
            error: ValueError | None = None
            try:
                if self.comm.rank == 0:
                    held.enter_context(super()._hold_checkpoint(checkpoint_path))
            except ValueError as e:
                error = e
            agree(self.comm, error)
            yield

    def train(self, checkpoint_path: CheckpointPath | None = None, progress: bool = True,
              log: Callable[[str], object] = print) -> dict[str, list[float]]:
        if self.comm.rank != 0:
            progress, log = False, lambda *args, **kwargs: None
        return super().train(checkpoint_path, progress, log)

    def save_checkpoint(self, path: CheckpointPath) -> None:
        """Rank 0 writes (the one-process layout); the other ranks never write, but under ZeRO-1
        they send their shards of the moments (every rank calls this)."""
        optimizer_state = self.optimizer.state_dict()
        if self.comm.rank == 0:
            self._write_checkpoint(path, optimizer_state)
        else:
            self.saved_step = self.step
