r"""Gradient checking against central finite differences, in float64.

For each checked entry $\theta_i$ of a parameter,

$$n_i = \frac{L(\theta + \varepsilon e_i) - L(\theta - \varepsilon e_i)}{2\varepsilon}$$

and the tensor's relative error is

$$\mathrm{rel} = \frac{\max_i |a_i - n_i|}{\max\big(\max_i|a_i|,\ \max_i|n_i|,\ 10^{-12}\big)}$$

normalised by the gradient's scale over the whole tensor, so entries whose true gradient is
(nearly) zero do not turn rounding noise into a large ratio. Central differences have truncation
error $O(\varepsilon^2)$ and rounding error about $10^{-16}|L|/\varepsilon$; $\varepsilon = 10^{-5}$
balances the two near $10^{-11}$ in float64. A correct backward pass then lands near $10^{-9}$, far
below the $10^{-6}$ threshold, while a wrong formula lands near $10^{-1}$.

Check at a generic point (:func:`jitter`): at GPT-2's initialisation some gradients are as small as
$10^{-6}$, where the finite difference's own noise is already a relative $10^{-5}$.
"""
from dataclasses import dataclass

import numpy as np

from ..checks import UsageError

DEFAULT_TOLERANCE = 1e-6


@dataclass
class GradcheckRow:
    name: str
    shape: tuple
    checked: int
    max_abs_error: float
    rel_error: float


class GradcheckReport:
    """The per-parameter result of :func:`gradcheck`; prints as a table."""

    def __init__(self, rows, tolerance=DEFAULT_TOLERANCE):
        self.rows = rows
        self.tolerance = tolerance

    @property
    def max_rel_error(self):
        return max((row.rel_error for row in self.rows), default=0.0)

    @property
    def ok(self):
        return self.max_rel_error <= self.tolerance

    def failures(self):
        return [row for row in self.rows if row.rel_error > self.tolerance]

    def __str__(self):
        width = max([len(r.name) for r in self.rows] + [9])
        lines = [f"{'parameter':<{width}}  {'shape':>14}  {'checked':>7}  {'max|a-n|':>10}  {'rel err':>9}"]
        for r in self.rows:
            flag = "" if r.rel_error <= self.tolerance else "  FAIL"
            lines.append(f"{r.name:<{width}}  {r.shape!s:>14}  {r.checked:>7}  "
                         f"{r.max_abs_error:>10.2e}  {r.rel_error:>9.2e}{flag}")
        lines.append(f"worst relative error {self.max_rel_error:.2e} "
                     f"({'ok' if self.ok else 'FAIL'} at tolerance {self.tolerance:g})")
        return "\n".join(lines)

    __repr__ = __str__


def _entries_to_check(analytic, max_entries, rng):
    """All entries of a small tensor; for a large one, the largest analytic gradients (where a
    wrong formula shows most) plus a random sample of the rest."""
    n = analytic.size
    if n <= max_entries:
        return np.arange(n)
    flat = np.abs(analytic).reshape(-1)
    largest = np.argpartition(flat, n - max_entries // 2)[n - max_entries // 2:]
    sample = rng.choice(n, size=max_entries - largest.size, replace=False)
    return np.unique(np.concatenate([largest, sample]))


def gradcheck(loss_fn, params, grads, eps=1e-5, max_entries=64, seed=0, tolerance=DEFAULT_TOLERANCE):
    """Compare analytic ``grads`` with central differences of ``loss_fn`` for every name in ``grads``.

    ``loss_fn()`` recomputes the scalar loss from ``params``, whose arrays are perturbed in place (and
    restored). A gradient may be any array-like (a list of lists). ``max_entries`` bounds the entries
    checked per tensor. Returns a GradcheckReport.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name, analytic in grads.items():
        theta = params[name]
        analytic = _as_gradient(name, analytic)
        if theta.dtype != np.float64:
            raise UsageError(f"gradcheck needs float64 parameters; {name!r} is {theta.dtype}")
        if analytic.shape != theta.shape:
            raise UsageError(f"gradient {name!r} has shape {analytic.shape}, parameter has {theta.shape}")
        flat_theta = theta.reshape(-1)   # a view: writing to it perturbs the parameter
        checked = _entries_to_check(analytic, max_entries, rng)
        numeric = np.empty(checked.size)
        for j, i in enumerate(checked):
            original = flat_theta[i]
            flat_theta[i] = original + eps
            loss_plus = loss_fn()
            flat_theta[i] = original - eps
            loss_minus = loss_fn()
            flat_theta[i] = original
            numeric[j] = (loss_plus - loss_minus) / (2 * eps)
        a = analytic.reshape(-1)[checked]
        max_abs = float(np.max(np.abs(a - numeric))) if checked.size else 0.0
        scale = max(float(np.max(np.abs(analytic))) if analytic.size else 0.0,
                    float(np.max(np.abs(numeric))) if checked.size else 0.0, 1e-12)
        rows.append(GradcheckRow(name, tuple(theta.shape), int(checked.size), max_abs, max_abs / scale))
    return GradcheckReport(rows, tolerance)


def _as_gradient(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array: a backward pass written by hand may return a list. Exact for
    float32 and float64 input, so the report is the same as for the array itself."""
    if value is None:
        raise UsageError(f"gradient {name!r} is None; expected an array of numbers")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UsageError(f"gradient {name!r} is not an array of numbers "
                         f"({type(value).__name__}: {err})") from None


def check_op(forward, backward, inputs, wrt, seed=0, **kwargs):
    """Gradient-check one forward/backward pair of :mod:`npgpt.ops`.

    ``inputs`` is a dict of keyword arguments for ``forward``; ``wrt`` names, in the order
    ``backward`` returns their gradients, the inputs to check. The scalar checked is
    $L = \\sum \\mathrm{out} \\odot G$ for a fixed random $G$, whose gradient wrt ``out`` is $G$.
    """
    rng = np.random.default_rng(seed)
    out, cache = forward(**inputs)
    G = rng.standard_normal(np.shape(out))
    analytic = backward(G, cache)
    # a tuple holds one gradient per name of ``wrt``, and so does a list when there are several
    # (with one name, a list is the gradient itself, written as nested lists)
    if not isinstance(analytic, tuple) and not (isinstance(analytic, list) and len(wrt) > 1):
        analytic = (analytic,)
    grads = {name: g for name, g in zip(wrt, analytic)}
    return gradcheck(lambda: float(np.sum(forward(**inputs)[0] * G)), inputs, grads, seed=seed, **kwargs)


def jitter(params, scale=0.2, seed=0):
    """Add N(0, scale^2) noise to every array in ``params`` in place: a generic point to check at."""
    rng = np.random.default_rng(seed)
    for p in params.values():
        p += rng.normal(0.0, scale, size=p.shape).astype(p.dtype)


def check_model(model, idx, targets, **kwargs):
    """Gradient-check every parameter of a float64 ``model`` on one batch (dropout must be off)."""
    model.forward(idx, targets)
    grads = model.backward()
    return gradcheck(lambda: model.forward(idx, targets)[1], model.params, grads, **kwargs)
