"""Hand-made .npz files for the reader tests (tests/test_container.py, tests/test_fuzz_readers.py):
zip archives written byte by byte, so an entry can declare any size, method, flag or name, and
.npy headers that claim anything; a deflate bomb built in milliseconds; and a memory and time cap
under which a reader that inflated a bomb fails the test instead of the machine."""
import contextlib
import json
import resource
import signal
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STORED, DEFLATED = 0, 8


@dataclass
class Raw:
    """One zip entry as it will be written: ``data`` are the bytes in the file (a raw deflate stream
    when ``method`` is DEFLATED); ``size``, ``crc`` and ``compressed`` are what the directory declares
    (by default the truth for stored data)."""
    name: str
    data: bytes
    method: int = STORED
    size: int | None = None
    crc: int | None = None
    flags: int = 0
    compressed: int | None = None


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file."""
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=True)
    return buffer.getvalue()


def npy_header(header_text: str, version: int = 1) -> bytes:
    """A .npy header carrying ``header_text`` (a dict literal, true or not), padded as NumPy pads it."""
    text = header_text.encode("utf-8")
    size_format = "<H" if version == 1 else "<I"
    prefix = len(b"\x93NUMPY") + 2 + struct.calcsize(size_format)
    padding = (-(prefix + len(text) + 1)) % 64
    text += b" " * padding + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(size_format, len(text)) + text


def deflated(data: bytes) -> Raw:
    """``data`` deflated, with its true size and CRC (name set by the caller)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Raw("", c.compress(data) + c.flush(), DEFLATED, len(data), zlib.crc32(data))


def bomb(name: str, head: bytes, zeros: int) -> Raw:
    """An entry of ``head`` then ``zeros`` zero bytes (a multiple of 1 MiB), deflated about 1000:1
    without compressing them: after a full flush the deflater restarts, so every MiB of zeros comes
    out as the same bytes. Its CRC is left wrong: a reader that checks sizes first never gets there."""
    mib = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    stream = first + block * (zeros >> 20) + c.flush()
    return Raw(name, stream, DEFLATED, len(head) + zeros, 0)


def zip_bytes(entries: list[Raw], declared_count: int | None = None) -> bytes:
    """A zip archive of ``entries``, without zip64; ``declared_count`` lets the end record lie."""
    local, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        size = len(e.data) if e.size is None else e.size
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        compressed = len(e.data) if e.compressed is None else e.compressed
        offset = len(local)
        local += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, e.flags, e.method, 0, 0x21,
                             crc, compressed, size, len(name), 0) + name + e.data
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, e.flags, e.method, 0, 0x21,
                               crc, compressed, size, len(name), 0, 0, 0, 0, 0, offset) + name
    count = len(entries) if declared_count is None else declared_count
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), len(central),
                      len(local), 0)
    if count >= 0xFFFF:         # a zip64 end record and its locator carry the real count
        at = len(local) + len(central)
        record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), len(local))
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
        return bytes(local + central + record + locator + end)
    return bytes(local + central + end)


def npz_of(arrays: dict[str, np.ndarray]) -> list[Raw]:
    """Stored entries of ``arrays`` (``name.npy``), as np.savez would write them."""
    return [Raw(f"{name}.npy", npy_bytes(a)) for name, a in arrays.items()]


def write(path: Path, entries: list[Raw], **kwargs: int) -> Path:
    path.write_bytes(zip_bytes(entries, **kwargs))
    return path


def _virtual_memory() -> int:
    """This process's virtual memory in bytes (what RLIMIT_AS limits), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def capped(extra_bytes: int, seconds: float):
    """Run the block with at most ``extra_bytes`` more virtual memory than the process has now
    (RLIMIT_AS: an allocation beyond it raises MemoryError) and at most ``seconds`` of wall time
    (SIGALRM raises TimeoutError). Both limits are restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _virtual_memory() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def too_slow(signum, frame):
        raise TimeoutError(f"the block took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


def contents(path):
    """(meta dict, arrays) of a file, read plainly (the tests' own trusted copy)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def spoiled(source, target, meta=None, arrays=None, extra=()):
    """A copy of the .npz file ``source`` written byte by byte: ``meta(dict)`` and ``arrays(dict)``
    change it on the way, ``extra`` Raw entries replace or join the others."""
    m, a = contents(source)
    if meta:
        meta(m)
    if arrays:
        arrays(a)
    entries = {e.name: e for e in npz_of({"meta": np.array(json.dumps(m)), **a})}
    entries.update({e.name: e for e in extra})
    return write(target, list(entries.values()))
