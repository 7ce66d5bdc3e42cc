"""The safetensors file format, read and written here: the weights of Hugging Face checkpoints.

A file is three parts, and nothing in it is ever executed (unlike a pickled ``.bin``):

    8 bytes          N, the header's length (unsigned, little-endian)
    N bytes          a JSON object: name -> {"dtype": "F32", "shape": [768, 2304],
                                             "data_offsets": [begin, end]}
                     and an optional "__metadata__": {str: str}
    the rest         the tensors' bytes, little-endian, C order; [begin, end) counts from here

The format's rules, checked before any tensor is read: offsets inside the data, each tensor's bytes
exactly its shape times its dtype's size, and the tensors tiling the data with no gap or overlap.
Anything else is a ValueError naming the file and what is wrong.

Why a reader of its own rather than the ``safetensors`` package: the package's NumPy API cannot
read bfloat16 (NumPy has no such type), which real checkpoints use, so the header had to be parsed
here anyway; one reader then serves every dtype and names the file in every error. The tests
check it against the package both ways.

bfloat16 is the top half of a float32 (sign, 8 exponent bits, 7 mantissa bits): its 16 bits
shifted left by 16 are the float32 of the same value, exactly.
"""
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..atomic import atomic_writer
from ..checks import MissingFile, UsageError
from .npz import MAX_MESSAGE, not_a_file, one_line

# The format's dtype codes -> NumPy (little-endian). BF16 is read as uint16 and widened to float32.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "U16": "<u2", "U32": "<u4", "U64": "<u8"}
CODES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
         np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
         np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(bool): "BOOL"}
# The safetensors package allows 100 MB, which Python's JSON parser turns into a few GB of objects.
# A header lists a tensor in about 100 bytes; GPT-2 XL's 582 tensors take 60 kB. 16 MiB is room for
# 160,000 tensors, and parses into at most a few hundred MB.
MAX_HEADER_BYTES = 16 << 20


class TensorEntry(NamedTuple):
    """Where one tensor sits: its dtype code, shape and [begin, end) in the data part."""
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class Header(NamedTuple):
    """A checked header: the tensors by name, the ``__metadata__``, where the data starts and how many
    bytes it has (the tensors tile it exactly)."""
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int
    data_bytes: int


def read_header(path: str | os.PathLike[str]) -> Header:
    """The :class:`Header` of the safetensors file ``path``, every rule of the format checked."""
    path = Path(path)
    kind = not_a_file(path)
    if kind == "missing":
        raise MissingFile(f"{path}: no such file")
    if kind is not None:
        raise UsageError(f"{path}: {kind}, not a safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        first = f.read(8)
        if len(first) < 8:
            raise UsageError(f"{path}: truncated: {size} bytes, not even the 8-byte header length")
        (n,) = struct.unpack("<Q", first)
        if n > MAX_HEADER_BYTES:
            raise UsageError(f"{path}: the header claims {n:,} bytes, more than the {MAX_HEADER_BYTES:,} "
                             f"a safetensors header may have (not a safetensors file?)")
        if 8 + n > size:
            raise UsageError(f"{path}: truncated: the header claims {n:,} bytes, the file has {size - 8:,} "
                             f"after the header length")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise UsageError(f"{path}: the header nests its JSON too deeply to read") from None
    except ValueError as e:         # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise UsageError(f"{path}: the header is not UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise UsageError(f"{path}: the header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UsageError(f"{path}: __metadata__ must map names to strings, got {metadata!r:.200}")
    try:
        tensors = {name: _entry(path, name, spec) for name, spec in header.items()}
        _check_tiling(path, tensors, size - 8 - n)
    except UsageError as e:             # names, shapes and offsets quoted from the file: keep it one line
        raise UsageError(one_line(str(e), len(str(path)) + MAX_MESSAGE)) from None
    return Header(tensors, metadata, 8 + n, size - 8 - n)


def _entry(path: Path, name: str, spec: object) -> TensorEntry:
    """One header entry, checked: a known dtype, a shape of counts, offsets holding exactly its bytes."""
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise UsageError(f"{path}: tensor {name!r}: expected {{dtype, shape, data_offsets}}, got {spec!r:.200}")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise UsageError(f"{path}: tensor {name!r} has dtype {dtype!r}; known: {sorted(DTYPES)}")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise UsageError(f"{path}: tensor {name!r} has shape {shape!r}, expected a list of counts >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise UsageError(f"{path}: tensor {name!r} has data_offsets {offsets!r}, expected [begin, end] "
                         f"with 0 <= begin <= end")
    need = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    if offsets[1] - offsets[0] != need:
        raise UsageError(f"{path}: tensor {name!r} ({dtype}, shape {tuple(shape)}) needs {need:,} bytes, "
                         f"but its data_offsets {offsets} hold {offsets[1] - offsets[0]:,}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tiling(path: Path, tensors: dict[str, TensorEntry], data_bytes: int) -> None:
    """The tensors cover the data part end to end: no offset past the end, no gap, no overlap."""
    at = 0
    for name, t in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if t.end > data_bytes:
            raise UsageError(f"{path}: tensor {name!r} claims bytes up to {t.end:,} of the data, past the "
                             f"end of the file ({data_bytes:,} bytes of data): the file is truncated or "
                             f"its header is wrong")
        if t.begin != at:
            what = "overlaps the tensor before it" if t.begin < at else f"leaves a gap of {t.begin - at:,} bytes"
            raise UsageError(f"{path}: tensor {name!r} starts at byte {t.begin:,} and {what}")
        at = t.end
    if at != data_bytes:
        raise UsageError(f"{path}: {data_bytes - at:,} bytes after the last tensor belong to none")


class SafetensorsFile:
    """An open safetensors file, its header checked: ``names``, ``entry(name)``, ``read(name)``.

        with SafetensorsFile(path) as st:
            wte = st.read("transformer.wte.weight")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.header = read_header(self.path)
        self._file = open(self.path, "rb")  # noqa: SIM115 (closed by close() or the with block)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def names(self) -> list[str]:
        return list(self.header.tensors)

    def entry(self, name: str) -> TensorEntry:
        """The :class:`TensorEntry` of tensor ``name``."""
        return self.header.tensors[name]

    def read(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a NumPy array of its own dtype, except bfloat16, which comes as
        float32 (exactly). Read from the disk now, one tensor's bytes at a time."""
        t = self.header.tensors[name]
        self._file.seek(self.header.data_start + t.begin)
        data = bytearray(t.end - t.begin)              # a buffer of our own: the array is writable
        if self._file.readinto(data) != len(data):
            raise UsageError(f"{self.path}: truncated while reading tensor {name!r} (did the file change?)")
        array = np.frombuffer(data, dtype=DTYPES[t.dtype]).reshape(t.shape)
        if t.dtype == "BF16":
            return bfloat16_to_float32(array)
        return array.astype(array.dtype.newbyteorder("="), copy=False)      # native byte order


def bfloat16_to_float32(bits: ArrayLike) -> NDArray[np.float32]:
    """bfloat16 values given as their uint16 bit patterns -> float32, exactly (module docstring)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16(x: ArrayLike) -> NDArray[np.uint16]:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest, ties to even (as PyTorch)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, 0x7FC0, rounded).astype(np.uint16)


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, ArrayLike],
                      metadata: Mapping[str, str] | None = None) -> str:
    """Write ``tensors`` (name -> NumPy array) to ``path`` in the safetensors format, atomically.
    ``metadata`` (str -> str) goes in ``__metadata__``. The header is padded with spaces to a
    multiple of 8 bytes, as the ``safetensors`` package writes it, so every tensor stays aligned."""
    header: dict[str, object] = {}
    offset, arrays = 0, []
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, array in tensors.items():
        a = np.array(array, order="C", copy=None)      # (ascontiguousarray would make a scalar 1-D)
        code = CODES.get(a.dtype if a.dtype.isnative else a.dtype.newbyteorder())
        if code is None:
            raise UsageError(f"{path}: tensor {name!r} has dtype {a.dtype}, which safetensors cannot hold here")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_writer(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.reshape(-1).view(np.uint8).data if a.size else b"")
    return os.fspath(path)
