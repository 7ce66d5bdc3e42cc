"""Argument checks shared by every floor: a bad value raises a :class:`UsageError` that names it, its
value and what was expected. NumPy integer scalars count as integers; ``True``/``False`` do not.

:class:`UsageError` is what npgpt raises when it refuses an input (a bad argument, a bad or missing
file): the command line prints its message as one line and exits 2. Anything else raised inside
npgpt is a bug, and shows its traceback. It is a ``ValueError``, so ``except ValueError`` still
catches it."""
import argparse
import math
import numbers
import os
import stat
from collections.abc import Callable, Mapping
from typing import IO, Any, TypeGuard

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

FLOAT_DTYPES = (np.float32, np.float64)


class UsageError(ValueError):
    """An input npgpt refuses: a bad argument or a bad file. The message names it, its value and
    what was expected, in one line."""


class MissingFile(UsageError, FileNotFoundError):
    """A file or folder npgpt was asked to read does not exist."""


# What a path can be besides a regular file, for the one line that refuses it.
FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a path of ``st_mode`` ``mode`` is, when it is not a regular file ("a FIFO", ...)."""
    return next((name for test, name in FILE_KINDS if test(mode)), "not a regular file")


class NotRegularFile(Exception):
    """:func:`open_regular_file` found a FIFO, a device or a socket; ``kind`` says which. Each reader
    words its own refusal from it."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def open_regular_file(path: str | os.PathLike[str]) -> IO[bytes]:
    """``path`` opened for reading in binary, checked on the open descriptor to be a regular file
    before anything is read. Opened without blocking, so a FIFO is refused instead of waiting for a
    writer (and ``/dev/zero``, which never ends, is never read). Raises what ``os.open`` raises
    (FileNotFoundError, IsADirectoryError, another OSError) and :class:`NotRegularFile`."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(file_kind(mode))
    return os.fdopen(fd, "rb")


def check_int(name: str, value: object, low: int = 1) -> int:
    """``value`` as a Python int, which must be an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise UsageError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_real(name: str, value: object, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float, which must be a finite real number in the interval given (closed ends
    unless ``low_open``/``high_open``)."""
    if (_is_real(value) and math.isfinite(value) and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)):
        return float(value)
    if math.isinf(low) and math.isinf(high):
        expected = "a finite number"
    elif math.isinf(high):
        expected = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif math.isinf(low):
        expected = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        expected = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise UsageError(f"{name} must be {expected}, got {value!r}")


def _is_real(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a real number other than a bool (an int, a float, a NumPy scalar, a
    Fraction...). The guard says float because typeshed's ``numbers.Real`` cannot be compared with
    a float, while PEP 484 lets a float stand for any real number."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_dtype(dtype: DTypeLike) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 (training) or float64 (gradient checks)."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise UsageError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_ids(ids: ArrayLike, name: str, vocab_size: int, ndim: int = 2,
              vocab_name: str = "vocab_size") -> NDArray[np.integer]:
    """``ids`` as an integer array of ``ndim`` axes, none of them empty, every id in [0, vocab_size)
    (``vocab_name`` is what the error message calls the vocabulary's size)."""
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise UsageError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != ndim:
        layout = "(batch, time)" if ndim == 2 else f"{ndim}-D"
        raise UsageError(f"{name} must be {ndim}-D {layout}, got shape {ids.shape}")
    if 0 in ids.shape:
        empty = "has no time steps" if ids.shape[-1] == 0 else "holds no sequence"
        raise UsageError(f"{name} {empty} (shape {ids.shape})")
    low, high = ids.min(), ids.max()
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise UsageError(f"{name} contains token id {bad}, outside [0, {vocab_name}={vocab_size})")
    return ids


def check_targets(targets: ArrayLike, shape: tuple[int, ...], vocab_size: int,
                  ignore_index: int | None = None) -> NDArray[np.integer]:
    """Integer targets of ``shape``, each in [0, vocab_size) or equal to ``ignore_index``."""
    targets = np.asarray(targets)
    if targets.shape != shape:
        raise UsageError(f"targets shape {targets.shape} does not match idx shape {shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise UsageError(f"targets must hold integer token ids, got dtype {targets.dtype}")
    scored = targets if ignore_index is None else targets[targets != ignore_index]
    if scored.size and (scored.min() < 0 or scored.max() >= vocab_size):
        bad = scored.min() if scored.min() < 0 else scored.max()
        raise UsageError(f"targets contain token id {bad}, outside [0, vocab_size={vocab_size})"
                         + ("" if ignore_index is None else f" and not ignore_index={ignore_index}"))
    return targets


def check_state_dict(state: object, owner: str | None = None) -> dict[str, Any]:
    """A copy of ``state``, which must be a dict (name -> array)."""
    if not isinstance(state, dict):
        prefix = f"{owner}." if owner else ""
        raise UsageError(f"{prefix}load_state_dict expects a dict of name -> array, got {type(state).__name__}")
    return dict(state)


def load_strict(params: Mapping[str, np.ndarray], state: object, dtype: DTypeLike,
                owner: str | None = None) -> None:
    """Copy ``state`` into ``params`` in place, cast to ``dtype``. Missing, unexpected or mis-shaped
    keys, values that are not numbers, and NaN or infinite values raise a ValueError naming them
    (prefixed by ``owner``, the class, when given); nothing is changed unless every key checks out."""
    state = check_state_dict(state, owner)
    prefix = f"{owner}." if owner else ""
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    misshaped = [f"{k}: expected {params[k].shape}, got {np.shape(state[k])}"
                 for k in params if k in state and np.shape(state[k]) != params[k].shape]
    problems = [f"{label}: {', '.join(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("mis-shaped keys", misshaped)) if keys]
    if problems:
        raise UsageError(f"{prefix}load_state_dict failed; " + "; ".join(problems))
    values = {}
    for name in params:                          # every value checked before any is copied
        try:
            values[name] = np.asarray(state[name], dtype=dtype)
        except (TypeError, ValueError) as e:
            raise UsageError(f"{prefix}load_state_dict failed; {name} is not numeric ({e})") from None
    not_finite = [name for name, v in values.items() if not np.isfinite(v).all()]
    if not_finite:
        raise UsageError(f"{prefix}load_state_dict failed; NaN or infinite values in {', '.join(not_finite)}")
    for name, p in params.items():
        p[...] = values[name]


# ----------------------------------------------------------------------------- command-line flags
def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``. A bad value is a usage error naming the flag
    (argparse prints ``argument --flag: ...`` and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    return parse


def in_range(low: float = -math.inf, high: float = math.inf, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in the interval given (see :func:`check_real`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return check_real("the value", value, low, high, low_open, high_open)
        except ValueError as e:
            expected = str(e).removeprefix("the value must be ").split(", got")[0]
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse
