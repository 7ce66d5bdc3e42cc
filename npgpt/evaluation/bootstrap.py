r"""A confidence interval for a corpus mean by bootstrap resampling (document section 8), as
``rouge_score.scoring.BootstrapAggregator`` computes it.

A corpus score is the mean of per-example scores $x_1 \dots x_S$. How much would it move with another
sample of examples? Draw $S$ examples *with replacement*, $B$ times, and take each resample's mean
$\bar x^{(b)}$; the spread of those means estimates the spread of the corpus mean:

$$\mathrm{low}, \mathrm{mid}, \mathrm{high} = \mathrm{percentile}\big(\{\bar x^{(b)}\}_{b=1}^{B},\;
  100\cdot\big(\tfrac{1-c}{2},\ \tfrac12,\ \tfrac{1+c}{2}\big)\big)$$

for confidence $c$ (0.95: the 2.5th and 97.5th percentiles). ``mid`` is the median of the resampled
means, as in the reference, not the plain mean. The resamples are drawn with NumPy's legacy
``RandomState(seed)``, so ``np.random.seed(seed)`` before the reference's ``aggregate()`` draws the
same ones (the reference uses the global generator).
"""
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ..checks import UsageError, check_int, check_real


class AggregateScore(NamedTuple):
    """The low and high ends of the interval and its middle, each a score of the same kind."""
    low: tuple[float, ...]
    mid: tuple[float, ...]
    high: tuple[float, ...]


def bootstrap_aggregate(scores: Sequence[Mapping[str, Sequence[float]]], confidence_interval: float = 0.95,
                        n_samples: int = 1000, seed: int = 0) -> dict[str, AggregateScore]:
    """``scores``: a list of per-example dicts, type -> a tuple of numbers (such as the
    (precision, recall, fmeasure) of :func:`npgpt.evaluation.rouge`). Returns a dict type ->
    :class:`AggregateScore` whose ``low``, ``mid`` and ``high`` are tuples of the same kind."""
    check_real("confidence_interval", confidence_interval, 0.0, 1.0)
    check_int("n_samples", n_samples)
    check_int("seed", seed, low=0)
    if isinstance(scores, dict) or not isinstance(scores, (list, tuple)) or not scores:
        raise UsageError(f"scores must be a non-empty list of per-example dicts (type -> score), got {scores!r}"[:200])
    rng = np.random.RandomState(seed)      # one stream through every type, as the reference's
    result: dict[str, AggregateScore] = {}
    for kind in scores[0]:
        rows = [example.get(kind) if isinstance(example, dict) else None for example in scores]
        if any(row is None for row in rows):
            raise UsageError(f"every example must have a score for {kind!r}")
        matrix = np.vstack([np.asarray(row, dtype=np.float64) for row in rows])    # (S, measures)
        means = np.zeros((n_samples, matrix.shape[1]))
        for b in range(n_samples):
            means[b] = matrix[rng.choice(len(matrix), size=len(matrix))].mean(axis=0)
        delta = (1 - confidence_interval) / 2
        low, mid, high = np.percentile(means, 100 * np.array([delta, 0.5, 1 - delta]), axis=0)
        make: type = type(rows[0]) if hasattr(rows[0], "_fields") else tuple
        result[kind] = AggregateScore(*(make(*row) if make is not tuple else tuple(row) for row in (low, mid, high)))
    return result
