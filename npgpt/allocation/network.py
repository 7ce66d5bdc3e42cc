r"""What data-parallel training spends on talking (document sections 2 and 7): a cost model of the
ring all-reduce, to predict a step's time on more ranks than this machine has.

**The $\alpha$-$\beta$ model.** Sending a message of $m$ bytes between two ranks costs
$\alpha + m/\beta$: a latency $\alpha$ (seconds) and a bandwidth $\beta$ (bytes per second).

**Ring all-reduce** of $n$ bytes over $p$ ranks (Patarasuk & Yuan, 2009; what MPI libraries and NCCL
use for large buffers): the ranks stand in a ring and the buffer is cut into $p$ chunks. In
$p - 1$ rounds of reduce-scatter each rank sends one chunk to its neighbour and adds the one it
receives, after which each rank holds one chunk summed over all ranks; $p - 1$ rounds of
all-gather pass the summed chunks round. Each round moves $n/p$ bytes per rank, so

$$T_{\text{all-reduce}}(n, p) = 2(p-1)\,\alpha + \frac{2(p-1)}{p}\,\frac{n}{\beta}.$$

The bytes each rank sends, $2(p-1)n/p$, approach $2n$ and stop growing with $p$; the latency term
grows linearly. So the all-reduce of a model's gradients costs about the same at 8 ranks as at
512 unless the buffer is small or the latency large. An all-gather (ZeRO-1's extra step,
:class:`npgpt.training.distributed.ZeroAdamW`) is the second half alone:
$T_{\text{all-gather}} = (p-1)\alpha + \frac{p-1}{p}\frac{n}{\beta}$. Sending the gradients as
$k$ buckets pays the latency $k$ times.

**A step.** npgpt reduces after the backward pass, without overlapping the two, so with weak
scaling (each rank keeps its micro-batch; the global batch grows with $p$)

$$T_{\text{step}}(p) = T_{\text{compute}} + T_{\text{all-reduce}}(n, p)\;[+\,T_{\text{all-gather}}(n, p)]$$

and the parallel efficiency is $T_{\text{compute}} / T_{\text{step}}$.

Left out: contention between the rings of several jobs, the switch topology (a fat tree keeps
$\beta$ per link; an oversubscribed one does not), and tree algorithms that MPI uses for small
buffers (latency $\log p$ instead of $p$). :func:`fit_network` measures $\alpha$ and $\beta$ of
the local all-reduce; :data:`NETWORKS` holds typical values for two real networks.
"""
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError, check_int, check_real


@dataclass(frozen=True)
class Network:
    """A network in the $\\alpha$-$\\beta$ model: ``latency_s`` per message, ``bandwidth`` bytes/s."""
    name: str
    latency_s: float
    bandwidth: float

    def __post_init__(self):
        check_real("latency_s", self.latency_s, low=0.0)
        check_real("bandwidth", self.bandwidth, low=0.0, low_open=True)


# Typical figures (vendor data sheets and the OSU micro-benchmarks' usual results), not measured here.
NETWORKS = {
    "10GbE": Network("10 Gb/s Ethernet, TCP", latency_s=30e-6, bandwidth=1.1e9),
    "IB-HDR": Network("200 Gb/s InfiniBand HDR, RDMA", latency_s=1.5e-6, bandwidth=23e9),
}


def _check(n_bytes, ranks, messages):
    return (check_real("n_bytes", n_bytes, low=0.0), check_int("ranks", ranks, 1),
            check_int("messages", messages, 1))


def allreduce_seconds(n_bytes, ranks, network, messages=1):
    r"""Ring all-reduce of ``n_bytes`` on ``ranks`` ranks, sent as ``messages`` buckets:
    $2(p-1)(k\alpha + n/(p\beta))$."""
    n_bytes, p, k = _check(n_bytes, ranks, messages)
    return 2 * (p - 1) * (k * network.latency_s + n_bytes / (p * network.bandwidth))


def allgather_seconds(n_bytes, ranks, network, messages=1):
    r"""Ring all-gather of a ``n_bytes`` buffer (each rank owns $n/p$): $(p-1)(k\alpha + n/(p\beta))$."""
    n_bytes, p, k = _check(n_bytes, ranks, messages)
    return (p - 1) * (k * network.latency_s + n_bytes / (p * network.bandwidth))


def fit_network(n_bytes, seconds, ranks, name="measured"):
    r"""$\alpha$ and $\beta$ from all-reduce times ``seconds`` of buffers of ``n_bytes`` on ``ranks``
    ranks: a least-squares line $T = a + b\,n$, then $\alpha = a / (2(p-1))$ and
    $\beta = 2(p-1) / (p\, b)$. The fit weighs each point by $1/T$ (relative errors), so the small
    buffers that fix $\alpha$ count as much as the large ones that fix $\beta$."""
    n_bytes, seconds = np.asarray(n_bytes, float), np.asarray(seconds, float)
    p = check_int("ranks", ranks, 2)
    if n_bytes.shape != seconds.shape or n_bytes.ndim != 1 or len(n_bytes) < 2:
        raise UsageError(f"fit_network needs two equal-length lists of at least 2 sizes and times, got "
                         f"shapes {n_bytes.shape} and {seconds.shape}")
    if not (np.all(np.isfinite(seconds)) and np.all(seconds > 0)):
        raise UsageError(f"all-reduce times must be positive and finite, got {seconds.tolist()}")
    weights = 1.0 / seconds
    design = np.stack([np.ones_like(n_bytes), n_bytes], axis=1) * weights[:, None]
    (a, b), *_ = np.linalg.lstsq(design, seconds * weights, rcond=None)
    if b <= 0:
        raise UsageError("the all-reduce times do not grow with the buffer size; measure larger buffers")
    return Network(name, latency_s=max(a, 0.0) / (2 * (p - 1)), bandwidth=2 * (p - 1) / (p * b))


def predict_step(compute_s, grad_bytes, ranks, network, messages=1, zero=0):
    """A data-parallel step on ``ranks`` ranks that each compute for ``compute_s`` seconds, then
    all-reduce ``grad_bytes`` in ``messages`` buckets (and all-gather the parameters under ZeRO-1):
    ``{"compute_s", "communication_s", "step_s", "efficiency"}``."""
    compute_s = check_real("compute_s", compute_s, low=0.0)
    talk = allreduce_seconds(grad_bytes, ranks, network, messages)
    if zero:
        talk += allgather_seconds(grad_bytes, ranks, network, messages)
    step = compute_s + talk
    return {"compute_s": compute_s, "communication_s": talk, "step_s": step,
            "efficiency": compute_s / step if step > 0 else 1.0}
