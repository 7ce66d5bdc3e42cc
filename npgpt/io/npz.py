"""One checked reader for the ``.npz`` files npgpt reads: nothing in the file is trusted before it is
checked, and nothing is allocated before the file has shown that it holds it.

An ``.npz`` is a zip archive of ``.npy`` arrays. A damaged or hostile one can claim anything: a
header shape of ``(10**12,)``, 2 GB inflated from 2 MB (a zip bomb), a pickled object, a metadata
string of 300 million characters, a config with a million layers. :class:`NpzFile` checks, in order:

1. the path: a regular file (not a folder, a FIFO or a device such as ``/dev/zero``), opened
   without blocking;
2. the container, from its directory alone: a zip whose end record declares at most
   ``max_entries`` entries, each named once, stored or deflated, not encrypted, its compressed
   bytes inside the file, and declaring no more bytes than those can hold: a stored entry exactly
   its compressed size, a deflated one at most ``max_inflation`` times it;
3. the metadata entry (:meth:`NpzFile.read_json`): its declared size against a cap, then its header,
   then the JSON;
4. the arrays (:meth:`NpzFile.read`): only the entries the caller expects (unknown and missing ones
   are refused, named); each one's ``.npy`` header against the caller's :class:`Entry` (dtype kind,
   no Python objects, shape or length) and against the size the zip declares for it; only then is
   anything read. CRCs are checked as the data is read.

A caller checks its config against the file before it derives a schema from it
(:meth:`NpzFile.check_fits`: a file cannot hold more entries than it has, nor more bytes than its
entries can hold). Every refusal is a :class:`~npgpt.checks.UsageError` of one line that names the
file and the entry, capped in length. Inside ``with NpzFile(...) as npz:`` a ``UsageError`` the
caller raises about the content (a bad config, say) comes out naming the file the same way.
"""
import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import IO, Any, NamedTuple

import numpy as np

from ..checks import MissingFile, NotRegularFile, UsageError, file_kind, open_regular_file

# What zipfile and zlib raise on a damaged container (a compression method or version it does not
# know comes out as NotImplementedError, "encrypted" as RuntimeError).
CONTAINER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
                    struct.error)
# npgpt writes at most a few thousand entries (GPT-2 XL with AdamW's buffers: about 1,800); the zip
# format without its 64-bit extension holds 65,535. More is refused before zipfile lists them.
MAX_ENTRIES = 65_535
# Trained float weights deflate by less than 1.2:1 and npgpt stores entries uncompressed; DEFLATE
# reaches about 1032:1 only on repetitive bytes. An entry claiming more than 100 times its
# compressed size is refused before it is inflated.
MAX_INFLATION = 100
MAX_META_BYTES = 16 << 20          # a checkpoint's metadata is a few kB; 4 million characters in UTF-32
MAX_MESSAGE = 400                  # characters of a problem's description
LISTED = 5                         # names shown in a message about missing or unexpected entries
KINDS = {"U": "a string", "i": "an integer", "u": "an unsigned integer", "f": "a float", "b": "a boolean"}


class Entry(NamedTuple):
    """What one array entry must be. ``shape``: exactly this tuple, or None for any 1-D array of at
    most ``max_length`` values. ``dtype``: exactly this dtype (a ``np.dtype`` or a NumPy type such
    as ``np.float32``), or a string of kind letters, any dtype of those kinds (``"f"``, ``"iu"``,
    ``"U"``: the letters of :data:`KINDS`). Arrays holding Python objects are never accepted."""
    shape: tuple[int, ...] | None
    dtype: np.dtype | type | str
    max_length: int | None = None

    def wanted(self) -> str:
        """The dtype this entry wants, for a message."""
        if isinstance(self.dtype, str):
            return " or ".join(KINDS[k] for k in self.dtype)
        return str(np.dtype(self.dtype))

    def accepts(self, dtype: np.dtype) -> bool:
        """Whether an array of ``dtype`` may be this entry."""
        if dtype.hasobject:
            return False
        if isinstance(self.dtype, str):
            return dtype.kind in self.dtype
        return dtype == np.dtype(self.dtype)


class ContainerError(UsageError):
    """A file :class:`NpzFile` refused; the message names the file (and the entry)."""


class NpzFile:
    """An ``.npz`` opened for checked reading (module docstring); use it in a ``with`` block.

    ``what`` names the kind of file in messages (``"checkpoint"``, ``"quantized model"``);
    ``invalid`` is what a content problem says of it (default ``"is not a valid <what>"``).
    """

    def __init__(self, path: str | os.PathLike, what: str = "file", *, invalid: str | None = None,
                 max_entries: int = MAX_ENTRIES, max_inflation: float = MAX_INFLATION) -> None:
        self.path, self.what = os.fspath(path), what
        self.invalid = invalid or f"is not a valid {what}"
        self.max_inflation = max_inflation
        self._file = _open_regular_file(self.path, what)
        self.size = os.fstat(self._file.fileno()).st_size
        try:
            self._zip = self._open_zip(max_entries)
        except BaseException:
            self._file.close()
            raise
        try:
            self._infos = self._entries()
        except BaseException:
            self.close()
            raise
        self._taken: set[str] = set()

    # ------------------------------------------------------------------ a context manager
    def __enter__(self) -> "NpzFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
        if type(error) is UsageError:       # the caller's own refusal of the content: name the file
            raise self.error(str(error)) from None

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    # ------------------------------------------------------------------ messages
    def error(self, problem: str) -> ContainerError:
        """The one-line refusal of this file for ``problem`` (a content problem)."""
        return ContainerError(f"{self.what} {self.path!r} {self.invalid}: {one_line(problem)}")

    def broken(self, problem: str) -> ContainerError:
        """The one-line refusal of this file as damaged."""
        return ContainerError(f"{self.what} {self.path!r} is truncated or corrupted ({one_line(problem)})")

    # ------------------------------------------------------------------ what the file holds
    @property
    def names(self) -> list[str]:
        """The names of the file's entries, without ``.npy``, in the file's order."""
        return list(self._infos)

    def capacity(self) -> int:
        """The most bytes of arrays the entries can hold (what each declares, already checked
        against what its compressed bytes can hold)."""
        return sum(info.file_size for info in self._infos.values())

    def check_fits(self, why: str, n_entries: int = 0, n_bytes: int = 0) -> None:
        """Refuse a config (``why`` says which values) that implies more entries, or more bytes of
        arrays, than this file holds: call it before deriving a schema or building a model from it."""
        if n_entries > len(self._infos):
            raise self.error(f"{why} implies at least {n_entries:,} entries, but the file holds "
                             f"{len(self._infos):,}")
        if n_bytes > self.capacity():
            raise self.error(f"{why} implies {_size(n_bytes)} of arrays, but the file's entries hold at most "
                             f"{_size(self.capacity())} (a file cannot hold more than its bytes, inflated "
                             f"at most {self.max_inflation:g} times)")

    # ------------------------------------------------------------------ reading
    def read_json(self, name: str = "meta", max_bytes: int = MAX_META_BYTES) -> Any:
        """The JSON value stored as a 0-d string array in entry ``name``, its size checked first."""
        info = self._infos.get(name)
        if info is None:
            raise self.error(f"it has no {_short(name)!r} entry")
        if info.file_size > max_bytes:
            raise self.error(f"entry {_short(name)} declares {_size(info.file_size)}, more than the "
                             f"{_size(max_bytes)} allowed for it")
        text = str(self._read({name: Entry((), "U")})[name])
        try:
            return json.loads(text)
        except RecursionError:
            raise self.error(f"entry {_short(name)} nests its JSON too deeply to read") from None
        except ValueError as e:             # JSONDecodeError, or an integer of more than 4300 digits
            raise self.error(f"its metadata is not JSON ({e})") from None

    def read(self, expected: Mapping[str, Entry], optional: Mapping[str, Entry] | None = None
             ) -> dict[str, np.ndarray]:
        """Every ``expected`` entry and those of ``optional`` that the file holds, name -> array.
        Any other entry (besides those read already) and any missing one are refused, then every
        header is checked, and only then is data read."""
        return self._read(self._wanted(expected, optional or {}))

    def check_entries(self, expected: Mapping[str, Entry], optional: Mapping[str, Entry] | None = None) -> None:
        """What :meth:`read` checks, without reading any data: the entries are exactly ``expected``
        (and those of ``optional`` present), each header names its Entry's shape and dtype, and
        each declares exactly the bytes that shape and dtype take. After it, the file's arrays are
        byte for byte what ``expected`` describes: call it before building anything for them."""
        for name, entry in self._wanted(expected, optional or {}).items():
            self._check_header(name, entry)

    def _wanted(self, expected: Mapping[str, Entry], optional: Mapping[str, Entry]) -> dict[str, Entry]:
        """The entries to read: ``expected`` and the ``optional`` ones present. Any other entry
        (besides those read already) and any missing one are refused."""
        present = set(self._infos) - self._taken
        missing = sorted(set(expected) - present)
        unexpected = sorted(present - set(expected) - set(optional))
        problems = ([_listing("missing", missing)] if missing else []) + \
                   ([_listing("unexpected", unexpected)] if unexpected else [])
        if problems:
            raise self.error("; ".join(problems))
        return {**expected, **{k: optional[k] for k in optional if k in present}}

    def _read(self, wanted: Mapping[str, Entry]) -> dict[str, np.ndarray]:
        for name, entry in wanted.items():
            self._check_header(name, entry)
        arrays = {name: self._load(name) for name in wanted}
        self._taken.update(wanted)
        return arrays

    def _check_header(self, name: str, entry: Entry) -> None:
        """One entry's ``.npy`` header against ``entry`` and against the size the zip declares."""
        info = self._infos[name]
        try:
            with self._zip.open(info) as f:
                shape, dtype = read_npy_header(f)
                header_bytes = f.tell()
        except CONTAINER_ERRORS as e:
            raise self.broken(f"entry {_short(name)}: {type(e).__name__}: {e}") from None
        except UsageError as e:
            raise self.error(f"entry {_short(name)}: {e}") from None
        if not entry.accepts(dtype):
            raise self.error(f"entry {_short(name)} holds dtype {_short(str(dtype))}, expected {entry.wanted()} array")
        self._check_shape(name, shape, entry)
        needs = header_bytes + math.prod(shape) * dtype.itemsize
        if needs != info.file_size:
            raise self.broken(f"entry {_short(name)}: its header says {_size(needs)} (shape {shape}, {dtype}) but "
                              f"the zip declares {_size(info.file_size)}")

    def _check_shape(self, name: str, shape: tuple[int, ...], entry: Entry) -> None:
        shown = _short(str(tuple(shape)))
        if any(n < 0 for n in shape):
            raise self.error(f"entry {_short(name)} has shape {shown}, with a negative length")
        if entry.shape is not None:
            if tuple(shape) != tuple(entry.shape):
                raise self.error(f"entry {_short(name)} has shape {shown}, expected {tuple(entry.shape)}")
        elif len(shape) != 1:
            raise self.error(f"entry {_short(name)} has shape {shown}, expected a 1-D array")
        elif entry.max_length is not None and shape[0] > entry.max_length:
            raise self.error(f"entry {_short(name)} holds {shape[0]:,} values, more than the {entry.max_length:,} "
                             f"its metadata allows")

    def _load(self, name: str) -> np.ndarray:
        try:
            with self._zip.open(self._infos[name]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (*CONTAINER_ERRORS, ValueError) as e:    # a CRC mismatch, data shorter than declared
            raise self.broken(f"entry {_short(name)}: {type(e).__name__}: {e}") from None

    # ------------------------------------------------------------------ opening
    def _open_zip(self, max_entries: int) -> zipfile.ZipFile:
        """The zip, after its end record has said how many entries zipfile will list."""
        f = self._file
        if self.size == 0:
            raise self.broken("the file is empty")
        if f.read(2) != b"PK":
            raise self.broken("not an .npz, which is a zip archive: it does not start with 'PK'")
        try:
            count = _declared_entries(f, self.size)
        except CONTAINER_ERRORS as e:
            raise self.broken(f"{type(e).__name__}: {e}") from None
        if count > max_entries:
            raise self.error(f"its zip directory declares {count:,} entries, more than the {max_entries:,} allowed")
        try:
            f.seek(0)
            return zipfile.ZipFile(f)
        except (*CONTAINER_ERRORS, ValueError) as e:    # ValueError: zipfile's parse of damaged fields, names
            raise self.broken(f"{type(e).__name__}: {e}") from None

    def _entries(self) -> dict[str, zipfile.ZipInfo]:
        """Name without ``.npy`` -> the zip's record of it, every record checked (module docstring)."""
        infos: dict[str, zipfile.ZipInfo] = {}
        stored_bytes = 0
        for info in self._zip.infolist():
            name = info.filename.removesuffix(".npy")
            if name in infos:
                raise self.error(f"entry {_short(name)} appears twice")
            self._check_record(name, info)
            stored_bytes += info.compress_size
            infos[name] = info
        if stored_bytes > self.size:
            raise self.broken(f"its entries claim {_size(stored_bytes)} of compressed data, more than the "
                              f"file's {_size(self.size)}")
        return infos

    def _check_record(self, name: str, info: zipfile.ZipInfo) -> None:
        """One directory record: method, encryption, its data inside the file, its declared size."""
        if info.flag_bits & 0x1:
            raise self.error(f"entry {_short(name)} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.error(f"entry {_short(name)} is compressed with zip method {info.compress_type}; "
                             f"npgpt reads stored or deflated entries")
        if info.header_offset + 30 + info.compress_size > self.size:
            raise self.broken(f"entry {_short(name)} runs past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise self.broken(f"entry {_short(name)} is stored as {_size(info.compress_size)} but declares "
                              f"{_size(info.file_size)}")
        if info.file_size > max(info.compress_size, 1) * self.max_inflation:
            raise self.error(f"entry {_short(name)} declares {_size(info.file_size)} inflated from "
                             f"{_size(info.compress_size)}, more than {self.max_inflation:g} times: a zip bomb?")


def entries_like(arrays: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Entry]:
    """The schema of arrays one already has (a freshly built model's ``params``, say): each entry
    ``prefix + name`` exactly their shape and dtype."""
    return {prefix + name: Entry(tuple(a.shape), a.dtype) for name, a in arrays.items()}


# ----------------------------------------------------------------------------- npy headers
def read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an .npy header. NumPy parses the header's text with a Python literal
    parser, which answers damaged bytes with SyntaxError, TokenError and the like: all of them
    mean the same thing here. Headers longer than NumPy's 10,000-byte limit are refused unread."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise UsageError(f"unsupported .npy version {version}")
        shape, _, dtype = read[version](f)
    except CONTAINER_ERRORS:
        raise
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"an array header is damaged ({type(e).__name__}: {e})") from None
    return shape, dtype


# ----------------------------------------------------------------------------- the file and its zip
def not_a_file(path: str | os.PathLike) -> str | None:
    """None when ``path`` is a regular file (or a link to one); else what it is, for a message:
    ``"missing"``, ``"a directory"``, ``"a FIFO"``, ``"a character device"``, ... Readers of other
    formats ask it before they open a path, so a FIFO or ``/dev/zero`` is named, not read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    return file_kind(mode)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: "a checkpoint", "an app checkpoint"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _open_regular_file(path: str, what: str) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file; else one line saying what it is. A FIFO
    is opened without blocking (and then refused), so no reader hangs on it."""
    try:
        return open_regular_file(path)
    except FileNotFoundError:
        raise MissingFile(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise ContainerError(f"{what} {path!r} is a directory, expected {_a(what)} file") from None
    except NotRegularFile as e:
        raise ContainerError(f"{what} {path!r} is {e.kind}, expected {_a(what)} file") from None
    except OSError as e:
        raise ContainerError(f"{what} {path!r} cannot be opened ({e.strerror or e})") from None


def _declared_entries(f: IO[bytes], size: int) -> int:
    """How many entries the zip's end record declares, read before zipfile reads their records. The
    record sits in the last 22 bytes, or before a comment of up to 65,535; a count of 0xFFFF means
    the 64-bit end record holds the real one."""
    tail_start = max(0, size - 22 - 0xFFFF)
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end of central directory record: the file is cut short")
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if count != 0xFFFF:
        return count
    locator = tail_start + at - 20
    if locator < 0:
        raise zipfile.BadZipFile("a 64-bit zip without its locator")
    f.seek(locator)
    signature, _, offset, _ = struct.unpack("<4sIQI", f.read(20))
    if signature != b"PK\x06\x07" or offset + 56 > size:
        raise zipfile.BadZipFile("a 64-bit zip whose end record is missing")
    f.seek(offset)
    record = f.read(56)
    if record[:4] != b"PK\x06\x06":
        raise zipfile.BadZipFile("a 64-bit zip whose end record is missing")
    return struct.unpack("<Q", record[32:40])[0]


# ----------------------------------------------------------------------------- messages
def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (control characters escaped) and at most ``limit`` characters: what a
    file says (its names, its values) can be anything, and a refusal quoting it stays one line."""
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(name: str, limit: int = 80) -> str:
    """A name from the file, cut to ``limit`` characters (a hostile name can be 64 kB long)."""
    return name if len(name) <= limit else name[:limit - 3] + "..."


def _listing(adjective: str, names: Iterable[str]) -> str:
    """'missing 3 entries: a, b, c', the first LISTED names only."""
    names = list(names)
    shown = ", ".join(_short(n, 60) for n in names[:LISTED])
    more = f" ... (and {len(names) - LISTED:,} more)" if len(names) > LISTED else ""
    return f"{adjective} {len(names):,} entr{'y' if len(names) == 1 else 'ies'}: {shown}{more}"


def _size(n: int) -> str:
    """Bytes for a reader: '812 bytes', '2.0 MB', '1.1 TB'."""
    if n < 1000:
        return f"{n} bytes"
    value, units = n / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and units[1:]:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}" if value < 1e6 else f"{n:.3g} bytes"
