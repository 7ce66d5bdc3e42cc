r"""What a language model carries from one decoding step to the next (document section 3, step 3).

``cache = model.new_cache(batch_size)`` makes it and ``model.forward(idx, cache=cache)`` reads it,
continues the sequence from position ``cache.length`` and leaves it extended. Decoding
(:mod:`npgpt.decoding`) only uses what both kinds share: ``length``, ``reset()`` and ``reorder(rows)``.

- :class:`KVCache` (the GPT): attention at a new position needs the keys and values of every
  earlier position; those do not change when tokens are appended, so they are kept, and each step
  feeds only the new token (one row through the network instead of the whole context).
- :class:`RecurrentState` (RNN, LSTM, GRU): what a recurrent model carries is its state $h_t$
  (and $c_t$ for an LSTM).
"""
import numpy as np

from ..checks import UsageError, check_int


class KVCache:
    """Cached keys and values of every layer, in buffers that grow by doubling:
    ``keys`` and ``values`` are (n_layer, B, n_head, capacity, head_size), of which the first
    ``length`` positions are filled. ``layers[i]`` is layer i's (k, v), each (B, n_head, length,
    head_size), or None while the cache is empty.

    ``model.forward(idx, cache=cache)`` reads ``length`` as the position of ``idx``'s first token,
    stores the new positions' keys and values with :meth:`store` and then advances ``length``.
    Writing into a buffer, rather than concatenating a longer array at every token, keeps a
    generation step's cost independent of how much is cached.

    ``blocks`` is None, or the model's block weights stacked by kind (``GPT.stacked_block_weights``),
    taken when :meth:`npgpt.GPT.new_cache` made the cache: one-token steps read them. They are the
    model's own stacks where it keeps them (in-place updates show) and a copy otherwise, so make a
    new cache after training further or replacing weights.
    ``head_counts`` (per layer, or None) lets a pruned layer use the first heads of the buffer.
    """

    def __init__(self, n_layer, blocks=None, owner=None, head_counts=None):
        self.n_layer = check_int("n_layer", n_layer)
        self.keys = self.values = None
        self.length = 0
        self.blocks, self.owner = blocks, owner
        self.head_counts = head_counts       # heads per layer, when pruning left some layers fewer

    @property
    def layers(self):
        if self.length == 0:
            return [None] * self.n_layer
        return [self.layer(i) for i in range(self.n_layer)]

    def layer(self, i):
        """Layer i's cached (k, v), views (B, n_head, length, head_size); None when empty."""
        if self.length == 0:
            return None
        nh = self._heads(i)
        return self.keys[i, :, :nh, :self.length], self.values[i, :, :nh, :self.length]

    def _heads(self, i):
        return self.keys.shape[2] if self.head_counts is None else self.head_counts[i]

    def store(self, i, k, v):
        """Store layer i's keys and values (B, n_head, n, head_size) of positions 0..n-1, of which
        those from ``length`` on are new (the cached ones are already in the buffer). The room was
        made by :meth:`reserve` (``model.forward`` calls it once for all layers)."""
        nh = k.shape[1]
        self.keys[i, :, :nh, self.length:k.shape[2]] = k[:, :, self.length:]
        self.values[i, :, :nh, self.length:v.shape[2]] = v[:, :, self.length:]

    def reserve(self, n_positions, batch, n_head, head_size, dtype):
        """Make room for ``n_positions`` positions of keys (batch, n_head, *, head_size), keeping
        what is cached. A cache that holds keys of another shape or dtype must be reset first."""
        fits = (self.keys is not None and self.keys.dtype == dtype
                and self.keys.shape[1:3] + self.keys.shape[4:] == (batch, n_head, head_size))
        if self.length and not fits:
            held = self.keys.shape
            raise UsageError(f"the cache holds keys of batch {held[1]}, {held[2]} heads of size {held[4]} "
                             f"({self.keys.dtype}); the new ones are batch {batch}, {n_head} heads of "
                             f"size {head_size} ({np.dtype(dtype)}): reset() it first")
        if fits and self.keys.shape[3] >= n_positions:
            return
        capacity = max(n_positions, 2 * (self.keys.shape[3] if fits else 0), 16)
        shape = (self.n_layer, batch, n_head, capacity, head_size)
        keys, values = np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
        if self.length:
            keys[..., :self.length, :] = self.keys[..., :self.length, :]
            values[..., :self.length, :] = self.values[..., :self.length, :]
        self.keys, self.values = keys, values

    def reset(self):
        """Forget every cached position; the next forward starts at position 0."""
        self.length = 0

    def reorder(self, rows):
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        if self.keys is not None:
            self.keys, self.values = self.keys[:, rows], self.values[:, rows]


class RecurrentState:
    """The state a recurrent language model carries from one forward call to the next (what the KV
    cache is to the GPT): ``model.forward(idx, cache=s)`` starts from ``s.state`` at position
    ``s.length``, then stores the final state and advances ``length`` by the number of tokens read.

    ``state`` is None (zeros) or the layer's h_n: an array (num_layers, B, H), or a pair for an LSTM.
    """

    def __init__(self):
        self.state = None
        self.length = 0

    def reset(self):
        """Forget everything read; the next forward starts from zeros at position 0."""
        self.state, self.length = None, 0

    def reorder(self, rows):
        """Keep batch rows ``rows`` (with repeats): beam search's "beam j continues beam rows[j]"."""
        if isinstance(self.state, tuple):
            self.state = tuple(s[:, rows] for s in self.state)
        elif self.state is not None:
            self.state = self.state[:, rows]
