r"""Training byte-level BPE (document 3.1): :func:`train_bpe`, the numba trainer behind
:meth:`BPETokenizer.train <npgpt.text.bpe.BPETokenizer.train>`, and :class:`Merge`, one training step.

**Training** starts from the 256 single bytes (ranks 0..255 are the byte values) and repeats

$$(a, b) = \arg\max_{(a,b)} \sum_{w} f_w \cdot \#\{\text{adjacent } a\,b \text{ in } w\},\qquad
  \text{replace every adjacent } a\,b \text{ by the new token } ab$$

where $w$ runs over the distinct pre-tokens and $f_w$ is how often $w$ occurs. Ties between equally
frequent pairs go to the smallest pair of ids, compared as $(a, b)$ (so older tokens first; other
trainers break ties differently, so the same text can give them a slightly different vocabulary).
The new token's id (its *rank*) is the next free one: 256, 257, ...

The trainer is numba code over a linked list of the distinct pre-tokens' bytes: pair counts are kept
up to date on each merge by touching only the places where the merged pair occurs, and the best pair
comes off a max-heap whose stale entries are skipped ("lazy deletion"). A 10,000-token vocabulary
on Tiny Shakespeare trains in well under a second. ``npgpt/verify/bpe_naive.py`` is the classic
recount-everything trainer it is tested against.
"""
import heapq
from collections.abc import MutableMapping, MutableSequence, Sequence
from typing import Any, NamedTuple

import numpy as np
from numba import njit, typed, types

# The call form (noqa: UP014): in a class body, mypy refuses a field named ``count`` (it shadows tuple.count).
Merge = NamedTuple("Merge", [("left", int), ("right", int), ("token", int), ("count", int)])  # noqa: UP014
Merge.__doc__ = "One training step: tokens ``left`` and ``right`` (seen ``count`` times) became ``token``."


# ====================================================================== training
# The trainer's state. The corpus is every distinct pre-token once, its bytes laid end to end as
# nodes of a doubly linked list (``prev``/``nxt`` are -1 at a pre-token's ends); a node's ``weight``
# is how often its pre-token occurs. Each distinct adjacent pair has a row: its tokens, weighted
# count, and the head of a singly linked list (``occ_pos``/``occ_next``) of the nodes where it was
# seen -- entries go stale as merges change the text and are checked when used. ``heap`` holds
# (-count, a, b, row); an entry whose count is out of date is refiled when popped. ``log`` holds
# (a, b, new token, count) per merge; merge k makes token 256 + k.
# The tables are numba's typed.Dict and typed.List (a MutableMapping, MutableSequences); the heap is
# typed as the list the numba code treats it as (its heapq calls are numba's, on the typed list).
class _TrainState(NamedTuple):
    ids: np.ndarray
    prev: np.ndarray
    nxt: np.ndarray
    weight: np.ndarray
    pair_row: MutableMapping[int, int]
    pair_a: MutableSequence[int]
    pair_b: MutableSequence[int]
    pair_count: MutableSequence[int]
    pair_head: MutableSequence[int]
    pair_stamp: MutableSequence[int]
    occ_pos: MutableSequence[int]
    occ_next: MutableSequence[int]
    heap: list[tuple[int, int, int, int]]
    log: MutableSequence[tuple[int, int, int, int]]


def train_bpe(pieces: Sequence[bytes], counts: Sequence[int], n_tokens: int, progress: bool | None = None
              ) -> tuple[list[bytes], list[Merge]]:
    """Learn a vocabulary of ``n_tokens`` tokens from distinct pre-tokens ``pieces`` (bytes) occurring
    ``counts`` times. Returns (tokens in rank order as bytes, list of :class:`Merge`); fewer tokens
    if the pairs run out first."""
    st = _new_train_state(pieces, counts)
    _count_pairs(st)
    n_merges = n_tokens - 256
    bar = _progress_bar(progress, n_merges)
    while len(st.log) < n_merges:
        before = len(st.log)
        goal = n_merges if bar is None else min(n_merges, before + max(100, n_merges // 100))
        more = _train_until(st, goal)
        if bar is not None:
            bar.update(len(st.log) - before)
        if not more:
            break       # no pairs left
    if bar is not None:
        bar.close()
    tokens = [bytes([b]) for b in range(256)]
    log = [Merge(*m) for m in st.log]
    for m in log:
        tokens.append(tokens[m.left] + tokens[m.right])
    # Merges applied left to right everywhere never build the same bytes twice (if "a|bc" and
    # "ab|c" both occurred, one of the pairs (a,b), (b,c) would have been merged over the other).
    assert len(set(tokens)) == len(tokens), "BPE training made a token twice"
    return tokens, log


def _progress_bar(progress: bool | None, total: int) -> Any:
    """A tqdm bar of ``total`` merges, or None (``progress`` False, or nothing to merge)."""
    if progress is False or total <= 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="BPE merges", unit="merge", disable=None if progress is None else False)


def _new_train_state(pieces: Sequence[bytes], counts: Sequence[int]) -> _TrainState:
    """Lay the pieces end to end as linked lists (NumPy) and make the empty tables (numba containers)."""
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    ids = np.frombuffer(b"".join(pieces), dtype=np.uint8).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    prev = np.arange(-1, len(ids) - 1)
    prev[starts] = -1
    nxt = np.arange(1, len(ids) + 1)
    nxt[starts + lengths - 1] = -1
    weight = np.repeat(np.asarray(counts, dtype=np.int64), lengths)
    def ints() -> MutableSequence[int]:
        return typed.List.empty_list(types.int64)

    def quads() -> Any:
        return typed.List.empty_list(types.UniTuple(types.int64, 4))

    return _TrainState(ids, prev, nxt, weight, typed.Dict.empty(types.int64, types.int64),
                       ints(), ints(), ints(), ints(), ints(), ints(), ints(), quads(), quads())


@njit(cache=True)
def _count_pairs(st: _TrainState) -> None:
    """Fill the pair table from the corpus and heap up every pair."""
    for i in range(len(st.ids)):
        if st.nxt[i] >= 0:
            _add_pair(st, st.ids[i], st.ids[st.nxt[i]], i, st.weight[i])
    for p in range(len(st.pair_a)):
        st.heap.append((-st.pair_count[p], st.pair_a[p], st.pair_b[p], p))
    heapq.heapify(st.heap)


@njit(cache=True)
def _add_pair(st: _TrainState, a: int, b: int, node: int, w: int) -> int:
    """Count one more pair (a, b), starting at ``node``, of weight ``w``; returns its row."""
    key = (a << 32) | b
    if key in st.pair_row:
        p = st.pair_row[key]
    else:
        p = len(st.pair_a)
        st.pair_row[key] = p
        st.pair_a.append(a)
        st.pair_b.append(b)
        st.pair_count.append(0)
        st.pair_head.append(-1)
        st.pair_stamp.append(-1)
    st.pair_count[p] += w
    st.occ_pos.append(node)
    st.occ_next.append(st.pair_head[p])
    st.pair_head[p] = len(st.occ_pos) - 1
    return p


@njit(cache=True)
def _remove_pair(st: _TrainState, a: int, b: int, w: int) -> None:
    st.pair_count[st.pair_row[(a << 32) | b]] -= w


@njit(cache=True)
def _pop_best_pair(st: _TrainState) -> int:
    """Row of the most frequent pair (smallest (a, b) on ties), or -1 if no pair is left."""
    while len(st.heap) > 0:
        negcount, a, b, p = heapq.heappop(st.heap)
        count = st.pair_count[p]
        if count == -negcount:
            return p
        if count > 0:           # the count fell since this entry was filed: file it again
            heapq.heappush(st.heap, (-count, a, b, p))
    return -1


@njit(cache=True)
def _train_until(st: _TrainState, n_merges: int) -> bool:
    """Merge best pairs until ``n_merges`` merges are done; False if the pairs ran out first."""
    while len(st.log) < n_merges:
        p = _pop_best_pair(st)
        if p < 0:
            return False
        a, b, t = st.pair_a[p], st.pair_b[p], 256 + len(st.log)
        st.log.append((a, b, t, st.pair_count[p]))
        _merge_pair(st, p, a, b, t)
    return True


@njit(cache=True)
def _merge_pair(st: _TrainState, p: int, a: int, b: int, t: int) -> None:
    """Replace every adjacent (a, b) by t, updating only the counts of the pairs around each spot."""
    n = 0
    o = st.pair_head[p]
    while o >= 0:
        n += 1
        o = st.occ_next[o]
    nodes: np.ndarray = np.empty(n, dtype=np.int64)     # positions, as the state's arrays hold them
    o = st.pair_head[p]
    for k in range(n):
        nodes[k] = st.occ_pos[o]
        o = st.occ_next[o]
    nodes.sort()                # left to right, so "a a a" becomes "(aa) a" as a recount would have it
    st.pair_head[p] = -1
    touched: list[int] = []     # rows whose count went up: they need a fresh heap entry
    ids, prev, nxt = st.ids, st.prev, st.nxt
    for i in nodes:
        j = nxt[i]
        if ids[i] != a or j < 0 or ids[j] != b:
            continue            # stale: merged away since it was recorded
        w = st.weight[i]
        st.pair_count[p] -= w
        h, k = prev[i], nxt[j]
        if h >= 0:              # (x, a) becomes (x, t)
            _remove_pair(st, ids[h], a, w)
            touched.append(_add_pair(st, ids[h], t, h, w))
        if k >= 0:              # (b, y) becomes (t, y)
            _remove_pair(st, b, ids[k], w)
            touched.append(_add_pair(st, t, ids[k], i, w))
        ids[i] = t              # node j leaves the list
        ids[j] = -1
        nxt[i] = k
        if k >= 0:
            prev[k] = i
    for q in touched:
        if st.pair_stamp[q] != t and st.pair_count[q] > 0:
            st.pair_stamp[q] = t
            heapq.heappush(st.heap, (-st.pair_count[q], st.pair_a[q], st.pair_b[q], q))
