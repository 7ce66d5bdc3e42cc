r"""A decoder-only GPT (GPT-2 layout), composed from the ops and differentiated by hand.

$$x^{(0)} = W_{te}[\mathrm{idx}] + P_{0:T},\qquad x^{(l)} = \mathrm{Block}_l(x^{(l-1)}),\qquad
  \mathrm{logits} = \mathrm{LN}_f(x^{(L)})\, W_{out}^\top$$

where $P$ is the learned position table (or the document's sinusoidal one) and $W_{out} = W_{te}$
when the weights are tied. The loss is the mean next-token NLL (document 4.3).

Parameters live in ``model.params``, a dict keyed by Hugging Face GPT-2 names and laid out as GPT-2
stores them, so a real GPT-2 state dict (converted to NumPy) loads without renaming.
"""
import operator
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..checks import UsageError, check_ids, check_state_dict, check_targets
from ..io import gpt2_files
from ..ops import BLOCK_WEIGHTS, sinusoidal_table
from ..ops.low_rank_linear import Factors
from ..kernels import backend
from .base import ConfiguredModel
from .cache import KVCache
from .config import GPTConfig, require_model_memory

if TYPE_CHECKING:
    from ..text import BPETokenizer

INIT_STD = 0.02
INIT_CHUNK = 1 << 14        # numbers drawn at a time: the float64 draw never doubles a big table
# Bytes per entry that building the sinusoidal table holds at its peak: it is computed in float64
# (8), beside its angles (half the columns, 4), a sine or cosine temporary (4) or the cast copy (<= 8).
SINUSOIDAL_BUILD_BYTES = 20


class ForwardCache(NamedTuple):
    """What :meth:`GPT.forward` keeps for :meth:`GPT.backward`."""
    F: Any                  # the backend's ops the forward ran on: backward runs on the same
    wte: object
    pos: object
    drop: object
    blocks: list[Any]       # one block cache per layer (empty for a fused one-token step)
    ln_f: object
    head: object
    loss: object            # None when the forward had no targets
    logits_shape: tuple[int, ...]


class BlockStacks:
    """The blocks' arrays of each kind in one (n_layer, ...) stack: what the one-token decoding step
    (:func:`npgpt.ops.decode_step_forward`) reads, a dozen arrays instead of a dozen per block.
    :class:`GPT` and :class:`~npgpt.models.quantized.QuantizedGPT` (whose matrices are integers
    and scales, each its own kind) keep their block arrays this way.

    The model stores :meth:`layers` (views of the stacks) as its block parameters, so the stacks
    *are* its weights: an in-place update (an optimizer step, ``load_state_dict``) is what the next
    step reads, and generating needs no second copy of the weights.

    A block array the model replaces by another array (``model.params[name] = ...``) breaks that
    link. :meth:`read` compares the model's current arrays with the views by identity: while they
    are the views it gives the stacks themselves, else it stacks copies of the current arrays and
    keeps them, with the arrays they came from, until one of those is replaced again or
    :meth:`forget` is called. The model reads (checks) when it makes a cache, when asked for its
    stacks (``stacked_block_weights``) and at the first step after :meth:`forget`, which it calls
    when it loads a state and when it makes a cache. A one-token step reads the stacks as last
    checked (:meth:`last`): looking up every array at every token cost about 6% of a step of the
    baby preset (measured: 10 us of 155). So an in-place update shows at the next step, and a
    replaced array from the next ``new_cache()`` or ``stacked_block_weights()`` on.
    Kinds of :data:`npgpt.ops.BLOCK_WEIGHTS` the model does not have (the biases of ``bias=False``)
    read as zeros. The kinds named in ``by_output`` (a quantized model's integers) keep their
    (n_layer, rows, out) shape but are stored transposed in memory (:func:`stack_blocks`), their copies too.
    """

    def __init__(self, stacks: Mapping[str, np.ndarray], dtype: DTypeLike, by_output: Collection[str] = ()) -> None:
        self._stacks = dict(stacks)
        self._by_output = frozenset(by_output)
        self.n_layer = len(next(iter(self._stacks.values())))
        self._layers = {kind: list(stack) for kind, stack in self._stacks.items()}
        self._views = [view for per_block in self._layers.values() for view in per_block]
        self._zeros: dict[str, np.ndarray] = {}
        for kind in BLOCK_WEIGHTS:
            if kind not in self._stacks:                  # a bias the model does not have
                width = self._stacks[kind.replace(".bias", ".weight")].shape[-1]
                self._zeros[kind] = np.zeros((self.n_layer, width), dtype=dtype)
        self._copy: tuple[Sequence[np.ndarray], dict[str, np.ndarray]] | None = None
        self._last: dict[str, np.ndarray] | None = None

    @classmethod
    def of(cls, arrays: Mapping[str, list[np.ndarray]], dtype: DTypeLike, by_output: Collection[str] = ()
           ) -> "BlockStacks":
        """The stacks of ``arrays`` (kind -> one array per block), copied into them; the matrices of
        the kinds in ``by_output`` stored transposed (:func:`stack_blocks`)."""
        return cls({kind: stack_blocks(per_block, kind in by_output) for kind, per_block in arrays.items()}, dtype,
                   by_output)

    @property
    def kinds(self) -> list[str]:
        """The kinds stacked, in the order :meth:`read` wants the current arrays."""
        return list(self._stacks)

    def layers(self, kind: str) -> list[np.ndarray]:
        """Block i's array of ``kind``: a view of the stack, for the model to keep as its parameter."""
        return self._layers[kind]

    def read(self, current: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Kind -> (n_layer, ...) stack of the model's ``current`` block arrays (every kind of
        :attr:`kinds`, block by block): the stacks themselves while each array is still the view
        :meth:`layers` gave, else a copy of ``current`` (class docstring). Remembered for :meth:`last`."""
        if all(map(operator.is_, current, self._views)):
            self._last = {**self._stacks, **self._zeros}
        else:
            if self._copy is None or not all(map(operator.is_, current, self._copy[0])):
                L = self.n_layer
                copies = {kind: stack_blocks(current[k * L:(k + 1) * L], kind in self._by_output)
                          for k, kind in enumerate(self._stacks)}
                self._copy = (current, {**copies, **self._zeros})
            self._last = self._copy[1]
        return dict(self._last)

    def last(self) -> dict[str, np.ndarray] | None:
        """What the last :meth:`read` gave (not to be changed), or None when there has been none
        since :meth:`forget`."""
        return self._last

    def forget(self) -> None:
        """Drop the copy and the last read: the next read looks at the current arrays afresh."""
        self._copy = self._last = None


def stack_blocks(matrices: Sequence[np.ndarray], by_output: bool = False) -> np.ndarray:
    """``np.stack(matrices)``, (n_layer, rows, out); with ``by_output`` the same values stored with
    the last two axes swapped in memory (a view of a C-contiguous (n_layer, out, rows) array), the
    layout in which the quantized one-token kernel reads each output's weights as one contiguous
    row (:mod:`npgpt.kernels.quantized`). Either way block i's matrix is ``result[i]``."""
    if not by_output:
        return np.stack(matrices)
    first = np.asarray(matrices[0])
    stored = np.empty((len(matrices), first.shape[1], first.shape[0]), first.dtype)   # (n_layer, out, rows)
    for i, m in enumerate(matrices):
        stored[i] = np.asarray(m).T        # np.stack of the .T views would keep their Fortran order
    return stored.transpose(0, 2, 1)


def getter(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``getter(keys)(mapping)``: the values of ``keys`` as a tuple, in one C-level call
    (``operator.itemgetter``, which takes at least one key and returns a bare value for one)."""
    if len(keys) > 1:
        return operator.itemgetter(*keys)
    return lambda mapping: tuple(mapping[key] for key in keys)


def check_context(idx: ArrayLike, config: GPTConfig, start: int = 0, name: str = "idx") -> np.ndarray:
    """Token ids (B, T) of a GPT with ``config`` that fit in its window after ``start`` cached positions."""
    idx = check_ids(idx, name, config.vocab_size)
    if start + idx.shape[1] > config.block_size:
        raise UsageError(f"sequence length {start + idx.shape[1]} exceeds block_size={config.block_size}")
    return idx


class GPT(ConfiguredModel):
    """GPT language model: ``logits, loss = model.forward(idx, targets)``, ``grads = model.backward()``.

    ``seed`` makes the initialisation (and dropout) reproducible; ``dtype`` is float32 for training
    and float64 for gradient checks; ``init=False`` leaves every parameter zero, for a loader to fill
    (:meth:`from_pretrained`). The protocol every model shares is in :class:`~npgpt.models.base.Model`.

    The blocks' weights of one kind ("attn.c_attn.weight", ...) live in one (n_layer, ...) array, and
    each block's parameter is a view of it: the one-token decoding step reads those stacks as they
    are, so generating needs no second copy of the weights (:class:`BlockStacks`, which also says
    what happens when a parameter array is replaced).
    """

    config: GPTConfig

    def __init__(self, config: GPTConfig, seed: int = 0, dtype: DTypeLike = np.float32, init: bool = True) -> None:
        if not isinstance(config, GPTConfig):
            raise UsageError(f"config must be a GPTConfig, got {type(config).__name__}")
        if not isinstance(init, bool):
            raise UsageError(f"init must be True or False, got {init!r}")
        super().__init__(dtype)
        self._require_memory(config)
        self.config = config
        self.dropout_rng = np.random.default_rng([seed, 1])
        self.params = self._zero_params()
        if init:
            self._init_params(np.random.default_rng(seed))
        if config.pos_encoding == "sinusoidal":
            self.pos_table = sinusoidal_table(config.block_size, config.n_embd, self.dtype)
        self._caches: ForwardCache | None = None
        self._grouped_for: list[int] | None = None
        self._grouped: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- parameters
    def _require_memory(self, config: GPTConfig) -> None:
        """Refuse, before allocating, a GPT whose parameters and position table do not fit in memory."""
        c = config
        table = SINUSOIDAL_BUILD_BYTES * c.block_size * c.n_embd if c.pos_encoding == "sinusoidal" else 0
        sizes = ", ".join(f"{name}={getattr(c, name)}" for name in ("n_layer", "n_embd", "vocab_size", "block_size"))
        require_model_memory(f"GPT({sizes})", self.count_params(c), self.dtype, table)

    @staticmethod
    def count_params(config: GPTConfig) -> int:
        """The number of parameters of a GPT with ``config`` (the sizes of :meth:`param_shapes`),
        counted without listing them: a config asking for a million blocks is counted at once."""
        c = config
        C, V = c.n_embd, c.vocab_size
        norm = C * (2 if c.bias else 1)

        def affine(name: str | None, d_in: int, d_out: int) -> int:
            k = None if name is None else c.rank(name)
            return (d_in * d_out if k is None else k * (d_in + d_out)) + (d_out if c.bias else 0)

        def block(i: int, ranked: bool = True) -> int:
            D, H = c.heads(i) * c.head_size, c.mlp_width(i)
            h = f"h.{i}."
            name = (lambda layer: h + layer) if ranked else (lambda layer: None)
            return (2 * norm + affine(name("attn.c_attn"), C, 3 * D) + affine(name("attn.c_proj"), D, C)
                    + affine(name("mlp.c_fc"), C, H) + affine(name("mlp.c_proj"), H, C))

        total = V * C + (c.block_size * C if c.pos_encoding == "learned" else 0) + norm
        total += 0 if c.tie_weights else V * C
        if c.head_counts is not None or c.mlp_widths is not None:
            return total + sum(block(i) for i in range(c.n_layer))   # n_layer counts given one by one
        factorized = {int(index) for index, _, _ in (name.partition(".")[2].partition(".")
                                                     for name, _ in c.factorized or ())
                      if index.isdigit() and int(index) < c.n_layer}
        plain = block(0, ranked=False)                              # a block no rank names
        return total + c.n_layer * plain + sum(block(i) - plain for i in factorized)

    @staticmethod
    def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter of a GPT with ``config``, in a fixed order (GPT-2's).
        Nothing is allocated."""
        c = config
        C, V = c.n_embd, c.vocab_size
        shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (V, C)}
        if c.pos_encoding == "learned":
            shapes["transformer.wpe.weight"] = (c.block_size, C)

        def affine(name: str, d_in: int, d_out: int) -> None:
            k = c.rank(name[len("transformer."):])
            if k is None:
                shapes[name + ".weight"] = (d_in, d_out)
            else:                                  # factorised: W = U V (npgpt.allocation.low_rank)
                shapes[name + ".weight_u"], shapes[name + ".weight_v"] = (d_in, k), (k, d_out)
            if c.bias:
                shapes[name + ".bias"] = (d_out,)

        def norm(name: str) -> None:
            shapes[name + ".weight"] = (C,)
            if c.bias:
                shapes[name + ".bias"] = (C,)

        for i in range(c.n_layer):
            h = f"transformer.h.{i}."
            D, H = c.heads(i) * c.head_size, c.mlp_width(i)      # C and 4C unless pruned
            norm(h + "ln_1")
            affine(h + "attn.c_attn", C, 3 * D)
            affine(h + "attn.c_proj", D, C)
            norm(h + "ln_2")
            affine(h + "mlp.c_fc", C, H)
            affine(h + "mlp.c_proj", H, C)
        norm("transformer.ln_f")
        if not c.tie_weights:
            shapes["lm_head.weight"] = (V, C)
        return shapes

    def _zero_params(self) -> dict[str, np.ndarray]:
        """Every parameter, zero, in GPT-2's order. When the blocks share one shape, the parameters of
        a kind are views of one (n_layer, ...) stack (``self._block_stacks``; see the class
        docstring), else ``self._block_stacks`` is None. Zeros from ``np.zeros`` cost no memory
        until they are written."""
        c, shapes = self.config, self.param_shapes(self.config)
        self._block_stacks: BlockStacks | None = None
        if self._blocks_alike():
            self._block_stacks = BlockStacks({
                key: np.zeros((c.n_layer, *shapes[f"transformer.h.0.{key}"]), self.dtype)
                for key in BLOCK_WEIGHTS if f"transformer.h.0.{key}" in shapes}, self.dtype)
        stacked = [] if self._block_stacks is None else self._block_stacks.kinds
        self._block_arrays = getter([f"transformer.h.{i}.{key}" for key in stacked for i in range(c.n_layer)])
        params: dict[str, np.ndarray] = {}
        for name, shape in shapes.items():
            i, _, key = name[len("transformer.h."):].partition(".")
            if self._block_stacks is not None and name.startswith("transformer.h.") and key in stacked:
                params[name] = self._block_stacks.layers(key)[int(i)]
            else:
                params[name] = np.zeros(shape, self.dtype)
        return params

    def _blocks_alike(self) -> bool:
        """Whether every block has the same shapes and plain (not factorised) weights."""
        c = self.config
        return not c.factorized and len(set(c.head_counts or [0])) == 1 and len(set(c.mlp_widths or [0])) == 1

    def _init_params(self, rng: np.random.Generator) -> None:
        """GPT-2 initialisation, in place: N(0, 0.02) weights, residual projections scaled by
        1/sqrt(2 n_layer), zero biases, LayerNorm weights 1. Drawn in float64, so float32 and
        float64 models agree, in chunks (the same numbers as one draw) so that building a model
        needs little more memory than its parameters."""
        residual_std = INIT_STD / np.sqrt(2 * self.config.n_layer)
        for name, p in self.params.items():
            if name.endswith(".bias"):
                p[...] = 0.0
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p[...] = 1.0
            else:
                std = residual_std if ".c_proj.weight" in name else INIT_STD
                flat = p.reshape(-1)                              # a view: the parameters are contiguous
                for start in range(0, flat.size, INIT_CHUNK):
                    stop = min(start + INIT_CHUNK, flat.size)
                    flat[start:stop] = rng.normal(0.0, std, size=stop - start)

    # ----------------------------------------------------------------- Hugging Face GPT-2 folders
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], dtype: DTypeLike = np.float32,
                        verbose: bool = True) -> Self:
        """The GPT-2 checkpoint in the folder ``path`` (``config.json`` + ``model.safetensors``, as
        ``transformers`` saves it or as the hub holds it), in eval mode (``train()`` turns GPT-2's
        dropout on). float16 and bfloat16 weights are converted to ``dtype``, said on stderr unless
        ``verbose=False``. A missing file, a config npgpt cannot run or a weight that does not fit is
        a ValueError naming the file. Details: :mod:`npgpt.io.gpt2_files`."""
        return gpt2_files.from_pretrained(cls, path, dtype, verbose)

    def save_pretrained(self, path: str | os.PathLike[str], tokenizer: "BPETokenizer | None" = None) -> Path:
        """Write the folder ``transformers.GPT2LMHeadModel.from_pretrained(path)`` opens:
        ``config.json`` and ``model.safetensors`` (and ``vocab.json`` + ``merges.txt`` of a
        :class:`npgpt.BPETokenizer` given as ``tokenizer``). Returns the folder."""
        return gpt2_files.save_pretrained(self, path, tokenizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy ``state`` into the parameters. Strict: missing, unexpected or mis-shaped keys raise a
        ValueError naming them. A tied model accepts an ``lm_head.weight`` equal to the embedding,
        as Hugging Face GPT-2 checkpoints carry one."""
        state = check_state_dict(state, type(self).__name__)
        if self.config.tie_weights and "lm_head.weight" in state:
            head, wte = np.asarray(state.pop("lm_head.weight")), state.get("transformer.wte.weight")
            if wte is None or head.shape != np.shape(wte) or not np.array_equal(head, wte):
                raise UsageError("lm_head.weight differs from transformer.wte.weight, but this model "
                                 "ties them; build it with tie_weights=False to load an untied head")
        super().load_state_dict(state)
        if self._block_stacks is not None:
            self._block_stacks.forget()           # a copy of replaced arrays must take the new values

    def block_params(self) -> list[dict[str, Any]]:
        """Per block, its parameters keyed relative to the block ("ln_1.weight", ...), sharing the
        arrays; a factorised weight's pair ("weight_u", "weight_v") appears as one
        :class:`~npgpt.ops.linear.Factors` under "weight". Regrouped only when a parameter array
        is replaced (in-place updates keep them)."""
        identity = [id(p) for p in self.params.values()]
        if identity != self._grouped_for:
            blocks: list[dict[str, Any]] = [{} for _ in range(self.config.n_layer)]
            for name, p in self.params.items():
                if name.startswith("transformer.h."):
                    i, _, key = name[len("transformer.h."):].partition(".")
                    blocks[int(i)][key] = p
            for block in blocks:
                for key in [k for k in block if k.endswith(".weight_u")]:
                    stem = key[:-len("_u")]
                    block[stem] = Factors(block.pop(key), block.pop(stem + "_v"))
            self._grouped, self._grouped_for = blocks, identity
        return self._grouped

    def stacked_block_weights(self) -> dict[str, np.ndarray] | None:
        """The blocks' weights stacked by kind: name (:data:`npgpt.ops.BLOCK_WEIGHTS`) -> an
        (n_layer, ...) array (zeros for the biases of a ``bias=False`` model). What the one-token
        decoding step (:func:`npgpt.ops.decode_step_forward`) reads. The model's own stacks, not a
        copy, while every block parameter is still the view of its stack (in-place updates show);
        after a parameter array is replaced, a copy the model keeps until the next replacement,
        ``load_state_dict`` or ``new_cache``. The next one-token steps read what this returns
        (:class:`BlockStacks`). None when the blocks differ in shape (pruned unevenly) or hold
        factorised weights: one-token steps then run block by block."""
        if self._block_stacks is None:
            return None                         # factors, or blocks of different shapes: no stack
        return self._block_stacks.read(self._block_arrays(self.params))

    def _step_blocks(self) -> dict[str, np.ndarray] | None:
        """What a one-token step reads: the stacks as last checked (checked now if they have not
        been since the last ``forget``)."""
        if self._block_stacks is None:
            return None
        return self._block_stacks.last() or self.stacked_block_weights()

    def new_cache(self, batch_size: int = 1) -> KVCache:
        """An empty :class:`~npgpt.models.cache.KVCache` for ``forward(..., cache=)``, with room for
        ``batch_size`` sequences of ``block_size`` tokens. The block stacks its steps read are
        checked now: a parameter array replaced since shows from here on (:class:`BlockStacks`)."""
        c = self.config
        if self._block_stacks is not None:
            self._block_stacks.forget()
            self.stacked_block_weights()
        cache = KVCache(c.n_layer, head_counts=[c.heads(i) for i in range(c.n_layer)])
        cache.reserve(c.block_size, batch_size, c.n_head, c.head_size, self.dtype)
        return cache

    def _head_weight(self) -> np.ndarray:
        key = "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"
        return self.params[key]

    # ----------------------------------------------------------------- forward / backward
    def forward(self, idx: ArrayLike, targets: ArrayLike | None = None, ignore_index: int | None = None,
                cache: KVCache | None = None) -> tuple[np.ndarray, Any]:
        """Logits (B, T, V) for integer token ids ``idx`` (B, T), and the mean NLL of ``targets``
        (B, T) when given (else None). Targets equal to ``ignore_index`` are not scored.

        ``cache`` (from :meth:`new_cache`) makes the call continue a sequence: the new tokens sit
        after the cached ones and attend to them, and the cache is extended. One new token per row
        with no targets runs the one-token decoding step (:func:`npgpt.ops.decode_step_forward`).
        """
        c = self.config
        self._caches, self.grads = None, {}     # the last step's activations and gradients go now, not
        start = 0 if cache is None else cache.length       # after this forward: one step's memory at a time
        idx = self._check_ids(idx, "idx", start)
        if targets is not None:
            targets = check_targets(targets, idx.shape, c.vocab_size, ignore_index)
        rng = self.dropout_rng if (self.training and c.dropout > 0.0 and cache is None) else None
        F = backend.ops()          # the readable ops or their numba twins (npgpt.set_backend)

        x, wte_cache = F.embedding_forward(idx, self.params["transformer.wte.weight"])
        if c.pos_encoding == "learned":
            x, pos_cache = F.learned_positions_forward(x, self.params["transformer.wpe.weight"], start)
        else:
            x, pos_cache = F.sinusoidal_forward(x, self.pos_table, start)
        x, drop_cache = F.dropout_forward(x, c.dropout, rng)
        block_caches = []
        if cache is not None:          # room for the new positions, or a clear error for a bad batch
            cache.reserve(start + x.shape[1], x.shape[0], c.n_head, c.head_size, x.dtype)
        blocks = None
        if cache is not None and idx.shape[1] == 1 and targets is None:
            blocks = self._step_blocks()
        if blocks is not None and cache is not None:     # blocks come only with a cache
            x = F.decode_step_forward(x[:, 0], start, blocks, cache.keys, cache.values, c.heads(0),
                                      c.layer_norm_epsilon)[:, None]
        else:
            for i, block_params in enumerate(self.block_params()):
                past = None if cache is None else cache.layer(i)
                x, block_cache, kv = F.block_forward(x, block_params, c.heads(i), c.dropout, rng, past,
                                                     c.layer_norm_epsilon)
                block_caches.append(block_cache)
                if cache is not None:
                    cache.store(i, *kv)
        if cache is not None:
            cache.length = start + idx.shape[1]
        x, lnf_cache = F.layernorm_forward(x, self.params["transformer.ln_f.weight"],
                                           self.params.get("transformer.ln_f.bias"), c.layer_norm_epsilon)
        logits, head_cache = F.head_forward(x, self._head_weight())

        loss = loss_cache = None
        if targets is not None:
            B, T, V = logits.shape
            loss, loss_cache = F.cross_entropy_forward(logits.reshape(B * T, V),
                                                       targets.reshape(B * T), ignore_index)
        self._caches = ForwardCache(F, wte_cache, pos_cache, drop_cache, block_caches, lnf_cache,
                                    head_cache, loss_cache, logits.shape)
        return logits, loss

    def backward(self, dlogits: ArrayLike | None = None) -> dict[str, np.ndarray]:
        """Gradient of the last forward's loss, a dict with the keys and shapes of ``params``
        (also left in ``self.grads``). ``dlogits`` (B, T, V), when given, is the gradient of some
        other objective with respect to the last forward's logits (distillation's, for one), and
        the forward needs no targets."""
        if dlogits is None:
            cache = self._cache_with_loss()
            dlogits = cache.F.cross_entropy_backward(1.0, cache.loss).reshape(cache.logits_shape)
        else:
            cache = self._caches
            if cache is None or np.shape(dlogits) != cache.logits_shape:
                raise UsageError(f"dlogits must have the shape of the last forward's logits "
                                 f"{None if cache is None else cache.logits_shape}, got {np.shape(dlogits)}")
            dlogits = np.asarray(dlogits, dtype=self.dtype)
        F, c = cache.F, self.config                 # F: the backend the forward ran on
        grads: dict[str, np.ndarray] = {}
        dx, dhead_T, _ = F.linear_backward(dlogits, cache.head)
        head_key = "transformer.wte.weight" if c.tie_weights else "lm_head.weight"
        grads[head_key] = dhead_T.T
        dx, grads["transformer.ln_f.weight"], db = F.layernorm_backward(dx, cache.ln_f)
        if db is not None:
            grads["transformer.ln_f.bias"] = db
        for i in reversed(range(c.n_layer)):
            dx, block_grads = F.block_backward(dx, cache.blocks[i])
            for key, g in block_grads.items():
                if isinstance(g, Factors):             # a factorised weight: one gradient per factor
                    grads[f"transformer.h.{i}.{key}_u"], grads[f"transformer.h.{i}.{key}_v"] = g
                else:
                    grads[f"transformer.h.{i}.{key}"] = g
        dx = F.dropout_backward(dx, cache.drop)
        if c.pos_encoding == "learned":
            dx, grads["transformer.wpe.weight"] = F.learned_positions_backward(dx, cache.pos)
        dwte = F.embedding_backward(dx, cache.wte)
        if c.tie_weights:
            dwte += grads["transformer.wte.weight"]   # the output layer's share of the tied weight
        grads["transformer.wte.weight"] = dwte
        self.grads = {name: grads[name] for name in self.params}
        return self.grads

    def attention_weights(self, idx: ArrayLike) -> list[np.ndarray]:
        """The attention matrices of every block for ``idx`` (B, T), computed in eval mode: a list of
        n_layer arrays (B, n_head, T, T) whose rows sum to 1 (what a learner plots)."""
        with self.evaluating():
            self.forward(idx)
        caches = self._caches
        assert caches is not None              # the forward just kept them
        return [caches.F.block_attention_weights(block_cache) for block_cache in caches.blocks]

    # ----------------------------------------------------------------- input checks
    def _check_ids(self, idx: ArrayLike, name: str, start: int = 0) -> np.ndarray:
        return check_context(idx, self.config, start, name)
