r"""The merge step of byte-level BPE (document 3.1): how a piece of bytes becomes ranks, given the ranks.

This is the formula part of the tokenizer and imports nothing of npgpt's but its argument checks:
the tokenizer (:mod:`npgpt.text.bpe`) and its files (:mod:`npgpt.text.bpe_files`) both build on
it, so the dependency runs one way.

**Encoding** a piece follows tiktoken exactly: start from single bytes and repeatedly merge the
adjacent pair whose concatenation has the lowest rank (the leftmost on ties), until no adjacent pair
is a token. :func:`bpe_merge` is the readable O(n^2) reference; :func:`bpe_merge_fast` its numba twin
for long pieces, O(n log n), working on ids through :func:`build_pair_table`. :func:`recover_merges`
runs the same step backwards, as tiktoken recovers GPT-2's merges from its ranks.
"""
import heapq
from typing import NamedTuple

import numpy as np
from numba import njit

from ..checks import UsageError


def bpe_merge(ranks: dict[bytes, int], piece: bytes, max_rank: int | None = None) -> list[int]:
    """tiktoken's BPE of one piece (bytes) -> ranks: repeatedly merge the adjacent pair whose
    concatenation has the lowest rank (leftmost on ties) until none is a token. ``max_rank``: only
    use tokens ranked below it. This is the readable reference; it is O(len(piece)^2)."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best == -1:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return [ranks[p] for p in parts]


def recover_merges(ranks: dict[bytes, int]) -> dict[int, tuple[int, int]]:
    """Rank -> (left, right) for every multi-byte token, as tiktoken recovers GPT-2's merges: BPE the
    token's bytes using only lower ranks; the two parts left are its merge."""
    merges = {}
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        parts = bpe_merge(ranks, token, max_rank=rank)
        if len(parts) != 2:     # BPE stopped short: take any split into two lower-ranked tokens
            parts = _lower_split(ranks, token, rank)
        merges[rank] = (parts[0], parts[1])
    return merges


def _lower_split(ranks: dict[bytes, int], token: bytes, rank: int) -> list[int]:
    """The first way to cut ``token`` into two tokens ranked below ``rank``."""
    for k in range(1, len(token)):
        left, right = ranks.get(token[:k]), ranks.get(token[k:])
        if left is not None and right is not None and max(left, right) < rank:
            return [left, right]
    shown = repr(token) if len(token) <= 60 else f"{token[:60]!r}... ({len(token):,} bytes)"   # one line, however long
    raise UsageError(f"token {shown} (rank {rank}) is not two lower-ranked tokens joined")


class PairTable(NamedTuple):
    """(left rank, right rank) -> rank of their concatenation, by open addressing: ``keys`` (a power
    of two long) holds ``left << 32 | right`` or -1 for an empty slot, ``values`` the rank."""
    keys: np.ndarray
    values: np.ndarray


def build_pair_table(ranks: dict[bytes, int]) -> PairTable:
    """(left, right) -> rank of their concatenation, for every way to cut each token in two tokens.

    With it the fast encoder can merge ids without touching bytes, yet get tiktoken's answer: two
    adjacent tokens merge exactly when their joined bytes form a token.
    """
    # Only cuts into two lengths some token has can give two tokens. Trying every cut would cost
    # len(token)**2 bytes of slicing: hours for one 12 MB token in a hostile file, while the
    # distinct lengths are few (their sum is at most the file's size, so at most ~5,800 of them).
    length_set = {len(token) for token in ranks}
    lengths = sorted(length_set)
    keys, values = [], []
    for token, rank in ranks.items():
        n = len(token)
        for k in lengths:
            if k >= n:
                break
            if n - k not in length_set:
                continue
            left, right = ranks.get(token[:k]), ranks.get(token[k:])
            if left is not None and right is not None:
                keys.append((left << 32) | right)
                values.append(rank)
    size = 1 << max(4, (2 * len(keys) - 1).bit_length())     # at most half full: probes stay short
    return _open_table(np.array(keys, dtype=np.int64), np.array(values, dtype=np.int64), size)


@njit(cache=True)
def _open_table(keys: np.ndarray, values: np.ndarray, size: int) -> PairTable:
    table = PairTable(np.full(size, -1, np.int64), np.empty(size, np.int64))
    for i in range(len(keys)):
        slot = _slot(keys[i], size)
        while table.keys[slot] >= 0 and table.keys[slot] != keys[i]:
            slot = (slot + 1) & (size - 1)
        table.keys[slot] = keys[i]
        table.values[slot] = values[i]
    return table


@njit(cache=True, nogil=True, inline="always")
def _slot(key: int | np.int64, size: int) -> np.int64:
    """The slot of ``key`` in a table of ``size`` (a power of two): multiplying by 2^64/phi mixes
    the key into the product's high bits, the fold brings them down to the bits the mask keeps."""
    spread = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((spread ^ (spread >> np.uint64(32))) & np.uint64(size - 1))


@njit(cache=True, nogil=True, inline="always")
def pair_rank(pair_table: PairTable, a: int | np.int64, b: int | np.int64) -> int:
    """Rank of the token that tokens a and b make together, or -1."""
    key = (a << 32) | b
    size = len(pair_table.keys)
    slot = _slot(key, size)
    while pair_table.keys[slot] >= 0:
        if pair_table.keys[slot] == key:
            return pair_table.values[slot]
        slot = (slot + 1) & (size - 1)
    return -1


@njit(cache=True, nogil=True)
def bpe_merge_fast(ids: np.ndarray, pair_table: PairTable) -> np.ndarray:
    """The numba twin of :func:`bpe_merge` for long pieces, O(n log n): a heap of (rank, position)
    picks the lowest-ranked, leftmost pair; a linked list makes each merge O(1). ``ids``: the
    piece's bytes as ranks (int64); ``pair_table``: :func:`build_pair_table` of the ranks."""
    n = len(ids)
    ids = ids.copy()
    nxt = np.arange(1, n + 1)
    prv = np.arange(-1, n - 1)
    nxt[n - 1] = -1
    # (rank, position); the dummy entry tells numba the type
    heap: list[tuple[int | np.int64, int | np.int64]] = [(np.int64(0), np.int64(0))]
    heap.pop()
    for start in range(n - 1):
        first = pair_rank(pair_table, ids[start], ids[start + 1])
        if first >= 0:
            heap.append((first, np.int64(start)))
    heapq.heapify(heap)
    while len(heap) > 0:
        r, i = heapq.heappop(heap)
        j = nxt[i]
        if ids[i] < 0 or j < 0 or pair_rank(pair_table, ids[i], ids[j]) != r:
            continue                        # stale: this spot has changed since it was pushed
        ids[i] = r                          # merge j into i
        ids[j] = -1
        k = nxt[j]
        nxt[i] = k
        if k >= 0:
            prv[k] = i
            r2 = pair_rank(pair_table, r, ids[k])
            if r2 >= 0:
                heapq.heappush(heap, (r2, i))
        h = prv[i]
        if h >= 0:
            r2 = pair_rank(pair_table, ids[h], r)
            if r2 >= 0:
                heapq.heappush(heap, (r2, h))
    return ids[ids >= 0]
