"""Argument checks shared by the models: a bad value raises a ValueError that names it."""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_dtype(dtype):
    """``dtype`` as a NumPy dtype, which must be float32 (training) or float64 (gradient checks)."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype
