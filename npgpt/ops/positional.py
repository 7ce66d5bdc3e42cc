r"""Positional encodings (document section 4, code: the ``PositionalEncoding`` class).

Sinusoidal, exactly as the document's code builds its table (sin on even dimensions, cos on odd,
base 10000), with $p$ the position and $C$ the width:

$$PE_{p,\,2i} = \sin\!\left(p \cdot 10000^{-2i/C}\right), \qquad
  PE_{p,\,2i+1} = \cos\!\left(p \cdot 10000^{-2i/C}\right)$$

The table is a constant: its forward adds it, its backward passes the gradient straight through.

Learned (GPT-2): a trainable table $P$ (block_size, C) whose first $T$ rows are added; its gradient
is the upstream gradient summed over the batch, $\partial L/\partial P_t = \sum_b \partial L/\partial x_{b,t}$.
"""
import numpy as np
from numpy.typing import DTypeLike, NDArray

LearnedPositionsCache = tuple[tuple[int, ...], int, int]      # (the table's shape, start, T)


def sinusoidal_table(n_positions: int, n_embd: int, dtype: DTypeLike = np.float64) -> NDArray[np.floating]:
    """The (n_positions, n_embd) sinusoidal table.

    Odd ``n_embd`` works too (the last dimension is a sine); the document's code fails there
    because it assigns ceil(C/2) cosine columns into floor(C/2) slots.
    """
    position = np.arange(n_positions, dtype=np.float64)[:, None]           # (P, 1)
    inv_freq = np.exp(np.arange(0, n_embd, 2) * (-np.log(10000.0) / n_embd))  # (ceil(C/2),)
    angle = position * inv_freq                                            # (P, ceil(C/2))
    pe = np.zeros((n_positions, n_embd))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : n_embd // 2])
    return pe.astype(dtype)


def sinusoidal_forward(x: NDArray[np.floating], table: NDArray[np.floating], start: int = 0
                       ) -> tuple[NDArray[np.floating], None]:
    """Add rows ``start .. start+T`` of the constant ``table`` to ``x`` (B, T, C)."""
    T = x.shape[1]
    return x + table[start:start + T], None


def sinusoidal_backward(dout: NDArray[np.floating], cache: None) -> NDArray[np.floating]:
    """The table is constant, so the gradient of ``x`` is ``dout`` unchanged."""
    return dout


def learned_positions_forward(x: NDArray[np.floating], wpe: NDArray[np.floating], start: int = 0
                              ) -> tuple[NDArray[np.floating], LearnedPositionsCache]:
    """Add rows ``start .. start+T`` of the trainable table ``wpe`` (block_size, C) to ``x``."""
    T = x.shape[1]
    return x + wpe[start:start + T], (wpe.shape, start, T)


def learned_positions_backward(dout: NDArray[np.floating], cache: LearnedPositionsCache
                               ) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Return (dx, dwpe): ``dx`` is ``dout``; ``dwpe`` sums ``dout`` over the batch."""
    wpe_shape, start, T = cache
    dwpe = np.zeros(wpe_shape, dtype=dout.dtype)
    dwpe[start:start + T] = dout.sum(axis=0)
    return dout, dwpe
