r"""The compiled encoder: text to ids in one numba loop, for the named patterns (document 3.1).

:meth:`npgpt.text.bpe.BPETokenizer.encode` is, in readable form: cut the text into pieces with the
pattern's regex, then for each piece (as UTF-8 bytes) emit its rank if the whole piece is a token,
else merge its bytes, lowest-ranked adjacent pair first (:func:`npgpt.text.bpe_merge.bpe_merge`).
This module does the same work without a Python step per piece, so it can keep up with tiktoken's
Rust: the pieces come from :mod:`npgpt.text.bpe_pretokenize`'s scanners, and two hash tables stand in
for the dict of ranks:

- :class:`TokenTable`, bytes -> rank, for the whole-piece lookup: open addressing on an FNV-1a hash
  of the bytes, every hit confirmed byte for byte;
- the pair table, (left rank, right rank) -> rank of their concatenation
  (:func:`npgpt.text.bpe_merge.build_pair_table`), for the merges.

It holds no cache: a piece costs a hash and, when it is not a token, a few pair lookups, which is
about what a cache lookup would cost. The loop releases the GIL, so threads encode a batch on every
core (:meth:`~npgpt.text.bpe.BPETokenizer.encode_batch`).
"""
from typing import NamedTuple

import numpy as np
from numba import njit

from .bpe_merge import PairTable, bpe_merge_fast, build_pair_table, pair_rank
from .bpe_pretokenize import SCANNERS, Index, character_classes, piece_end

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
SHORT_PIECE = 64        # bytes; longer pieces that are not tokens merge through a heap, O(n log n)


class TokenTable(NamedTuple):
    """Every token's bytes, found by hashing. ``slots`` has a power-of-two number of rows, each
    ``(hash, rank, start, length)`` of one token (length -1: empty); the token's bytes are
    ``blob[start:start + length]``. One row holds all a lookup reads before the byte check."""
    slots: np.ndarray
    blob: np.ndarray


class Encoder(NamedTuple):
    """What the compiled loop needs for one vocabulary and pattern."""
    tokens: TokenTable
    pairs: PairTable
    byte_ranks: np.ndarray       # the rank of each single byte
    classes: np.ndarray          # character classes (bpe_pretokenize.character_classes)
    scanner: int                 # bpe_pretokenize.NO_SPLIT, GPT2 or GPT4


def build_encoder(ranks: dict[bytes, int], pattern_name: str | None) -> Encoder:
    """The tables for ``ranks`` (token bytes -> rank) and a named pattern (a key of ``SCANNERS``)."""
    tokens = list(ranks)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    blob = np.frombuffer(b"".join(tokens), np.uint8)
    token_ranks = np.array([ranks[t] for t in tokens], dtype=np.int64)
    slots = _fill_slots(blob, starts, lengths, token_ranks, _table_size(len(tokens)))
    byte_ranks = np.array([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
    return Encoder(TokenTable(slots, blob), build_pair_table(ranks), byte_ranks, character_classes(),
                   SCANNERS[pattern_name])


def encode(encoder: Encoder, text: str) -> list[int]:
    """The ids of ordinary text (no special tokens): what ``BPETokenizer.encode_ordinary`` returns."""
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    return _encode(data, encoder.tokens, encoder.pairs, encoder.byte_ranks, encoder.classes,
                   encoder.scanner).tolist()


def _table_size(entries: int) -> int:
    """A power of two at least twice ``entries``: probes stay short at half load."""
    return 1 << max(4, (2 * entries - 1).bit_length())


# ---------------------------------------------------------------------- the token table
@njit(cache=True, nogil=True, inline="always")
def _hash(data: np.ndarray, start: Index, stop: Index) -> np.int64:
    """FNV-1a of ``data[start:stop]`` (its 64 bits read as a signed integer, to sit in an int64 table)."""
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(data[i])) * _FNV_PRIME
    return np.int64(h)


_HASH, _RANK, _START, _LENGTH = range(4)     # the columns of TokenTable.slots


@njit(cache=True)
def _fill_slots(blob: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ranks: np.ndarray,
                size: int) -> np.ndarray:
    slots = np.zeros((size, 4), np.int64)
    slots[:, _LENGTH] = -1
    for k in range(len(starts)):
        h = _hash(blob, starts[k], starts[k] + lengths[k])
        slot = h & (size - 1)
        while slots[slot, _LENGTH] >= 0:
            slot = (slot + 1) & (size - 1)
        slots[slot, _HASH], slots[slot, _RANK] = h, ranks[k]
        slots[slot, _START], slots[slot, _LENGTH] = starts[k], lengths[k]
    return slots


@njit(cache=True, nogil=True, inline="always")
def token_rank(tokens: TokenTable, data: np.ndarray, start: Index, stop: Index) -> int:
    """The rank of the token whose bytes are ``data[start:stop]``, or -1."""
    slots, n = tokens.slots, stop - start
    h = _hash(data, start, stop)
    slot = h & (len(slots) - 1)
    while slots[slot, _LENGTH] >= 0:
        if slots[slot, _HASH] == h and slots[slot, _LENGTH] == n and _same(tokens.blob, slots[slot, _START],
                                                                          data, start, n):
            return slots[slot, _RANK]
        slot = (slot + 1) & (len(slots) - 1)
    return -1


@njit(cache=True, nogil=True, inline="always")
def _same(a: np.ndarray, a_start: Index, b: np.ndarray, b_start: Index, n: Index) -> bool:
    """``a[a_start:a_start + n] == b[b_start:b_start + n]``, byte for byte."""
    for i in range(n):  # noqa: SIM110 (numba compiles no generator for all())
        if a[a_start + i] != b[b_start + i]:
            return False
    return True


# ---------------------------------------------------------------------- one piece, then the text
@njit(cache=True, nogil=True)
def _merge_short(parts: np.ndarray, pair_ranks: np.ndarray, n: Index, pairs: PairTable) -> Index:
    """tiktoken's merge loop on ``parts[:n]`` (ranks, merged in place), O(n^2) for short pieces:
    ``pair_ranks[k]`` is the rank of parts k and k+1 together, or -1. Returns how many parts remain."""
    for k in range(n - 1):
        pair_ranks[k] = pair_rank(pairs, parts[k], parts[k + 1])
    while n > 1:
        best, best_rank = -1, np.int64(0)
        for k in range(n - 1):
            if pair_ranks[k] >= 0 and (best < 0 or pair_ranks[k] < best_rank):
                best, best_rank = k, pair_ranks[k]        # the lowest rank, the leftmost on ties
        if best < 0:
            break
        parts[best] = best_rank
        for k in range(best + 1, n - 1):                 # close the gap the right part leaves
            parts[k] = parts[k + 1]
            pair_ranks[k] = pair_ranks[k + 1] if k + 1 < n - 1 else -1
        n -= 1
        if best > 0:
            pair_ranks[best - 1] = pair_rank(pairs, parts[best - 1], parts[best])
        if best < n - 1:
            pair_ranks[best] = pair_rank(pairs, parts[best], parts[best + 1])
    return n


@njit(cache=True, nogil=True)
def _encode_piece(data: np.ndarray, start: Index, stop: Index, tokens: TokenTable, pairs: PairTable,
                  byte_ranks: np.ndarray, out: np.ndarray, count: Index, pair_ranks: np.ndarray) -> Index:
    """Write the ids of the piece ``data[start:stop]`` to ``out[count:]``; returns the new count."""
    whole = token_rank(tokens, data, start, stop)
    if whole >= 0:                               # the whole piece is a token: one id, as tiktoken
        out[count] = whole
        return count + 1
    n = stop - start
    for k in range(n):
        out[count + k] = byte_ranks[data[start + k]]
    if n <= SHORT_PIECE:
        return count + _merge_short(out[count:count + n], pair_ranks, n, pairs)
    merged = bpe_merge_fast(out[count:count + n], pairs)
    for k in range(len(merged)):                 # a loop, as in _grown
        out[count + k] = merged[k]
    return count + len(merged)


@njit(cache=True, nogil=True)
def _grown(out: np.ndarray, count: Index, size: Index) -> np.ndarray:
    """A longer ``out`` holding its first ``count`` ids (copied in a loop: a slice assignment would
    compile numba's shape check, seconds of the first call)."""
    grown = np.empty(size, np.int64)
    for k in range(count):
        grown[k] = out[k]
    return grown


@njit(cache=True, nogil=True)
def _encode(data: np.ndarray, tokens: TokenTable, pairs: PairTable, byte_ranks: np.ndarray,
            classes: np.ndarray, scanner: int) -> np.ndarray:
    """Every piece's ids, in order."""
    out = np.empty(max(16, len(data) // 3), np.int64)
    pair_ranks = np.empty(SHORT_PIECE, np.int64)
    count: Index = np.int64(0)        # not a literal 0: numba would compile each callee for it too
    start: Index = np.int64(0)
    while start < len(data):
        stop = piece_end(data, start, classes, scanner)
        if count + (stop - start) > len(out):    # a piece gives at most one id per byte
            out = _grown(out, count, max(2 * len(out), count + (stop - start)))
        count = _encode_piece(data, start, stop, tokens, pairs, byte_ranks, out, count, pair_ranks)
        start = stop
    return out[:count]
