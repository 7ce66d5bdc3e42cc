"""Argument checks shared by the models: a bad value raises a ValueError that names it."""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_dtype(dtype):
    """``dtype`` as a NumPy dtype, which must be float32 (training) or float64 (gradient checks)."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def load_strict(params, state, dtype, owner=None):
    """Copy ``state`` into ``params`` in place, cast to ``dtype``. Missing, unexpected or mis-shaped
    keys raise a ValueError naming them (prefixed by ``owner``, the class, when given); nothing is
    changed unless every key checks out."""
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    misshaped = [f"{k}: expected {params[k].shape}, got {np.shape(state[k])}"
                 for k in params if k in state and np.shape(state[k]) != params[k].shape]
    problems = [f"{label}: {', '.join(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("mis-shaped keys", misshaped)) if keys]
    if problems:
        prefix = f"{owner}." if owner else ""
        raise ValueError(f"{prefix}load_state_dict failed; " + "; ".join(problems))
    for name, p in params.items():
        p[...] = np.asarray(state[name], dtype=dtype)
