r"""What a language model carries from one decoding step to the next (document section 3, step 3).

``cache = model.new_cache(batch_size)`` makes it and ``model.forward(idx, cache=cache)`` reads it,
continues the sequence from position ``cache.length`` and leaves it extended. Decoding
(:mod:`npgpt.decoding`) only uses what every kind shares, the :class:`DecodingCache` protocol:
``length``, ``reset()`` and ``reorder(rows)``.

- :class:`KVCache` (the GPT): attention at a new position needs the keys and values of every
  earlier position; those do not change when tokens are appended, so they are kept, and each step
  feeds only the new token (one row through the network instead of the whole context).
- :class:`RecurrentState` (RNN, LSTM, GRU): what a recurrent model carries is its state $h_t$
  (and $c_t$ for an LSTM).

A cache holds what the sequence produced, never the model's weights: the stacked block weights a
one-token step reads belong to the model (:class:`npgpt.models.gpt.BlockStacks`).
"""
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_int


@runtime_checkable
class DecodingCache(Protocol):
    """What decoding uses of any model's cache (``model.new_cache()``)."""

    length: int            # positions read so far: the next forward starts there

    def reset(self) -> None:
        """Forget every position; the next forward starts at position 0."""

    def reorder(self, rows: ArrayLike) -> None:
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""


class KVCache:
    """Cached keys and values of every layer, in buffers that grow by doubling:
    ``keys`` and ``values`` are (n_layer, B, n_head, capacity, head_size), of which the first
    ``length`` positions are filled. ``layers[i]`` is layer i's (k, v), each (B, n_head, length,
    head_size), or None while the cache is empty.

    ``model.forward(idx, cache=cache)`` reads ``length`` as the position of ``idx``'s first token,
    stores the new positions' keys and values with :meth:`store` and then advances ``length``.
    Writing into a buffer, rather than concatenating a longer array at every token, keeps a
    generation step's cost independent of how much is cached.

    ``head_counts`` (per layer, or None) lets a pruned layer use the first heads of the buffer.
    The cache holds keys and values only: the weights a step reads are the model's own
    (:class:`npgpt.models.gpt.BlockStacks`).
    """

    def __init__(self, n_layer: int, head_counts: list[int] | None = None) -> None:
        self.n_layer = check_int("n_layer", n_layer)
        self.keys: np.ndarray | None = None
        self.values: np.ndarray | None = None
        self.length = 0
        self.head_counts = head_counts       # heads per layer, when pruning left some layers fewer

    @property
    def layers(self) -> list[tuple[np.ndarray, np.ndarray] | None]:
        if self.length == 0:
            return [None] * self.n_layer
        return [self.layer(i) for i in range(self.n_layer)]

    def layer(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Layer i's cached (k, v), views (B, n_head, length, head_size); None when empty."""
        if self.length == 0:
            return None
        keys, values = self._buffers()
        nh = keys.shape[2] if self.head_counts is None else self.head_counts[i]
        return keys[i, :, :nh, :self.length], values[i, :, :nh, :self.length]

    def store(self, i: int, k: np.ndarray, v: np.ndarray) -> None:
        """Store layer i's keys and values (B, n_head, n, head_size) of positions 0..n-1, of which
        those from ``length`` on are new (the cached ones are already in the buffer). The room was
        made by :meth:`reserve` (``model.forward`` calls it once for all layers)."""
        keys, values = self._buffers()
        nh = k.shape[1]
        keys[i, :, :nh, self.length:k.shape[2]] = k[:, :, self.length:]
        values[i, :, :nh, self.length:v.shape[2]] = v[:, :, self.length:]

    def reserve(self, n_positions: int, batch: int, n_head: int, head_size: int,
                dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
        """Make room for ``n_positions`` positions of keys (batch, n_head, *, head_size), keeping
        what is cached; returns the buffers (keys, values). A cache that holds keys of another
        shape or dtype must be reset first."""
        old = None if self.keys is None else self._buffers()
        if old is not None and old[0].dtype == dtype and old[0].shape[1:3] + old[0].shape[4:] == (batch, n_head, head_size):
            if old[0].shape[3] >= n_positions:
                return old
            capacity = max(n_positions, 2 * old[0].shape[3], 16)
        elif self.length:
            held = self._buffers()[0]
            raise UsageError(f"the cache holds keys of batch {held.shape[1]}, {held.shape[2]} heads of size "
                             f"{held.shape[4]} ({held.dtype}); the new ones are batch {batch}, {n_head} heads of "
                             f"size {head_size} ({np.dtype(dtype)}): reset() it first")
        else:
            old, capacity = None, max(n_positions, 16)
        shape = (self.n_layer, batch, n_head, capacity, head_size)
        keys, values = np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
        if old is not None and self.length:
            keys[..., :self.length, :] = old[0][..., :self.length, :]
            values[..., :self.length, :] = old[1][..., :self.length, :]
        self.keys, self.values = keys, values
        return keys, values

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The key and value buffers, which :meth:`reserve` made (a bug if it has not)."""
        if self.keys is None or self.values is None:
            raise RuntimeError("the KV cache has no buffers: model.forward(..., cache=) reserves them first")
        return self.keys, self.values

    def reset(self) -> None:
        """Forget every cached position; the next forward starts at position 0."""
        self.length = 0

    def reorder(self, rows: ArrayLike) -> None:
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        if self.keys is not None and self.values is not None:
            rows = np.asarray(rows)
            self.keys, self.values = self.keys[:, rows], self.values[:, rows]


class RecurrentState:
    """The state a recurrent language model carries from one forward call to the next (what the KV
    cache is to the GPT): ``model.forward(idx, cache=s)`` starts from ``s.state`` at position
    ``s.length``, then stores the final state and advances ``length`` by the number of tokens read.

    ``state`` is None (zeros) or the layer's h_n: an array (num_layers, B, H), or a pair for an LSTM.
    """

    def __init__(self) -> None:
        self.state: np.ndarray | tuple[np.ndarray, ...] | None = None
        self.length = 0

    def reset(self) -> None:
        """Forget everything read; the next forward starts from zeros at position 0."""
        self.state, self.length = None, 0

    def reorder(self, rows: ArrayLike) -> None:
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        rows = np.asarray(rows)
        if isinstance(self.state, tuple):
            self.state = tuple(s[:, rows] for s in self.state)
        elif self.state is not None:
            self.state = self.state[:, rows]
