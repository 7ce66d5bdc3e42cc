r"""Compression by low rank (document section 7): a weight matrix replaced by two thin factors.

Write the singular value decomposition of $W$ (m, n) as $W = P\,\mathrm{diag}(s)\,Q^\top$, with
$s_1 \ge s_2 \ge \dots \ge s_r \ge 0$ and $r = \min(m, n)$. Keeping the first $k$ terms,

$$W_k = P_k\,\mathrm{diag}(s_{1..k})\,Q_k^\top = UV,\qquad U = P_k\sqrt{S_k}\ \ (m, k),\qquad
  V = \sqrt{S_k}\,Q_k^\top\ \ (k, n)$$

is the best rank-$k$ approximation of $W$ in both the Frobenius and the spectral norm
(Eckart–Young), and its errors are what was dropped:

$$\|W - W_k\|_F = \sqrt{\textstyle\sum_{i>k} s_i^2},\qquad \|W - W_k\|_2 = s_{k+1}$$

Why split $\sqrt{S_k}$ into both factors, rather than $U = P_k S_k$, $V = Q_k^\top$: the product is
the same, but the balanced split gives both factors the same singular values $\sqrt{s_i}$, so
neither dominates. Training the factors afterwards then behaves symmetrically
($\partial L/\partial U = x^\top \delta V^\top$ scales with $V$ and $\partial L/\partial V$ with $U$:
an unbalanced pair gets one factor's gradients too large and the other's too small), weight decay on
$\|U\|_F^2 + \|V\|_F^2$ is smallest, over all pairs with the same product, exactly at the
balanced split (where it equals $2\sum_{i\le k} s_i$).

``energy`` picks $k$ from the spectrum: the smallest $k$ with
$\sum_{i\le k} s_i^2 \ge \text{energy}\cdot\sum_i s_i^2$, i.e. the smallest rank whose relative
Frobenius error is at most $\sqrt{1 - \text{energy}}$.

The factors replace $mn$ parameters by $k(m + n)$, fewer only when $k < mn/(m + n)$.
:func:`factorize` does this to chosen weights of a model's parameter dict; the layer that uses a
pair is :func:`npgpt.ops.low_rank_linear_forward`.
"""
from dataclasses import dataclass, replace

import numpy as np

from ..checks import UsageError, check_int, check_real
from ..models import GPT

# The GPT blocks' linear weights, all (in, out): what factorising a GPT usually means.
GPT_LINEAR_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _check_choice(rank, energy):
    if (rank is None) == (energy is None):
        raise UsageError(f"give exactly one of rank and energy, got rank={rank!r} and energy={energy!r}")
    if rank is not None:
        return check_int("rank", rank), None
    return None, check_real("energy", energy, 0.0, 1.0, low_open=True)


def _check_matrix(w, name="w"):
    w = np.asarray(w)
    if w.ndim != 2:
        raise UsageError(f"{name} must be a 2-D matrix (in, out), got shape {w.shape}")
    if w.size == 0:
        raise UsageError(f"{name} has no entries (shape {w.shape})")
    if not np.isfinite(w).all():
        raise UsageError(f"{name} holds NaN or infinite values: it has no singular value decomposition")
    return w


def _check_rank_fits(rank, shape, name="w"):
    if rank is not None and rank > min(shape):
        raise UsageError(f"rank={rank} exceeds min(m, n) = {min(shape)} for {name} of shape {shape}")


def rank_for_energy(s, energy):
    """The smallest k whose first k singular values ``s`` (descending) keep at least ``energy`` of
    sum(s^2). A zero matrix keeps everything with k = 1."""
    energy = check_real("energy", energy, 0.0, 1.0, low_open=True)
    kept = np.cumsum(np.asarray(s, dtype=np.float64) ** 2)
    if kept[-1] == 0.0:
        return 1
    return min(int(np.searchsorted(kept / kept[-1], energy, side="left")) + 1, len(kept))


def low_rank(w, rank=None, energy=None):
    """(U, V) with U (m, k), V (k, n) and ``w`` ≈ U @ V, from the truncated SVD split as
    U = P_k sqrt(S_k), V = sqrt(S_k) Q_k^T. Give exactly one of ``rank`` (k, in [1, min(m, n)]) and
    ``energy`` (in (0, 1]: the smallest k keeping that fraction of sum(s^2)).

    The SVD runs in float64; the factors come back in ``w``'s float dtype."""
    rank, energy = _check_choice(rank, energy)
    w = _check_matrix(w)
    _check_rank_fits(rank, w.shape)
    P, s, Qt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    k = rank if rank is not None else rank_for_energy(s, energy)
    root = np.sqrt(s[:k])
    U = P[:, :k] * root              # P_k sqrt(S_k): column i scaled by sqrt(s_i)
    V = root[:, None] * Qt[:k]       # sqrt(S_k) Q_k^T: row i scaled by sqrt(s_i)
    dtype = w.dtype if np.issubdtype(w.dtype, np.floating) else np.float64
    return U.astype(dtype), V.astype(dtype)


# ----------------------------------------------------------------------------- a model's weights
@dataclass
class LowRankRow:
    name: str
    shape: tuple
    rank: int
    params_before: int
    params_after: int
    rel_error: float             # ||W - UV||_F / ||W||_F


class LowRankReport:
    """What :func:`factorize` did: per weight its rank, parameters before and after and relative
    Frobenius error; totals over the whole parameter dict. Prints as a table."""

    def __init__(self, rows, total_before, total_after):
        self.rows, self.total_before, self.total_after = rows, total_before, total_after

    @property
    def ranks(self):
        return {row.name: row.rank for row in self.rows}

    @property
    def max_rel_error(self):
        return max((row.rel_error for row in self.rows), default=0.0)

    def __str__(self):
        width = max([len(r.name) for r in self.rows] + [6])
        lines = [f"{'weight':<{width}}  {'shape':>12}  {'rank':>5}  {'before':>10}  {'after':>10}  {'rel err':>8}"]
        for r in self.rows:
            lines.append(f"{r.name:<{width}}  {r.shape!s:>12}  {r.rank:>5}  {r.params_before:>10,}  "
                         f"{r.params_after:>10,}  {r.rel_error:>8.2e}")
        lines.append(f"all parameters: {self.total_before:,} -> {self.total_after:,} "
                     f"({self.total_after / self.total_before:.1%})")
        return "\n".join(lines)

    __repr__ = __str__


def gpt_linear_weights(params):
    """The names of the GPT blocks' linear weights in ``params`` (what :func:`factorize` is usually
    given): every ``transformer.h.<i>.`` + one of :data:`GPT_LINEAR_WEIGHTS`."""
    return [name for name in params
            if name.startswith("transformer.h.") and name.endswith(GPT_LINEAR_WEIGHTS)]


def factorize(params, names, rank=None, energy=None):
    """A new params dict in which each weight ``"X.weight"`` (in, out) named in ``names`` is replaced,
    at its place, by ``"X.weight_u"`` (in, k) and ``"X.weight_v"`` (k, out) from :func:`low_rank`;
    every other entry is copied. Returns (new_params, :class:`LowRankReport`).

    ``rank`` (one k for every weight) or ``energy`` (a k per weight, from its own spectrum), as in
    :func:`low_rank`. Nothing is computed until every name and the rank have been checked."""
    rank, energy = _check_choice(rank, energy)
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise UsageError("names is empty: name at least one weight to factorize")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"names lists {', '.join(repeated)} more than once")
    for name in names:
        if name not in params:
            raise UsageError(f"there is no parameter named {name!r} to factorize")
        if not name.endswith(".weight"):
            raise UsageError(f"{name!r} does not end in '.weight': factorize replaces 'X.weight' by "
                             f"'X.weight_u' and 'X.weight_v'")
        taken = [n for n in (name + "_u", name + "_v") if n in params]
        if taken:
            raise UsageError(f"params already holds {', '.join(taken)}: {name!r} is factorized already")
        w = _check_matrix(params[name], name)
        _check_rank_fits(rank, w.shape, name)

    chosen, new, rows = set(names), {}, []
    for name, p in params.items():
        if name not in chosen:
            new[name] = np.array(p, copy=True)
            continue
        w = np.asarray(p)
        U, V = low_rank(w, rank, energy)
        new[name + "_u"], new[name + "_v"] = U, V
        w64 = w.astype(np.float64)
        norm = np.linalg.norm(w64)
        error = np.linalg.norm(w64 - U.astype(np.float64) @ V.astype(np.float64))
        rows.append(LowRankRow(name, tuple(w.shape), U.shape[1], w.size, U.size + V.size,
                               float(error / norm) if norm > 0 else 0.0))
    rows.sort(key=lambda row: names.index(row.name))
    total_before = sum(np.size(p) for p in params.values())
    total_after = sum(np.size(p) for p in new.values())
    return new, LowRankReport(rows, total_before, total_after)


def factorize_gpt(model, names=None, rank=None, energy=None):
    """A new GPT whose weights ``names`` (default: every block's four linear weights,
    :func:`gpt_linear_weights`) are low-rank pairs, its config recording each rank (the factorised
    blocks then run :func:`npgpt.ops.low_rank_linear_forward`, so the model can be fine-tuned).
    Returns (model, :class:`LowRankReport`)."""
    if not isinstance(model, GPT):
        raise UsageError(f"factorize_gpt works on a GPT, got {type(model).__name__}")
    names = gpt_linear_weights(model.params) if names is None else names
    params, report = factorize(model.params, names, rank, energy)
    ranks = dict(model.config.factorized or ())
    ranks.update({row.name[len("transformer."):-len(".weight")]: row.rank for row in report.rows})
    factorized = GPT(replace(model.config, factorized=ranks), dtype=model.dtype)
    factorized.load_state_dict(params)
    return factorized, report
