r"""A decoder-only GPT (GPT-2 layout), composed from the ops and differentiated by hand.

$$x^{(0)} = W_{te}[\mathrm{idx}] + P_{0:T},\qquad x^{(l)} = \mathrm{Block}_l(x^{(l-1)}),\qquad
  \mathrm{logits} = \mathrm{LN}_f(x^{(L)})\, W_{out}^\top$$

where $P$ is the learned position table (or the document's sinusoidal one) and $W_{out} = W_{te}$
when the weights are tied. The loss is the mean next-token NLL (document 4.3).

Parameters live in ``model.params``, a dict keyed by Hugging Face GPT-2 names and laid out as GPT-2
stores them, so a real GPT-2 state dict (converted to NumPy) loads without renaming.
"""
import numpy as np

from . import backend
from .checks import check_dtype, load_strict
from .config import GPTConfig
from .memory import keep_freed_memory
from .ops import block_attention_weights, sinusoidal_table

INIT_STD = 0.02


class GPT:
    """GPT language model: ``logits, loss = model.forward(idx, targets)``, ``grads = model.backward()``.

    ``seed`` makes the initialisation (and dropout) reproducible; ``dtype`` is float32 for training
    and float64 for gradient checks.
    """

    def __init__(self, config, seed=0, dtype=np.float32):
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = check_dtype(dtype)
        self.training = True
        self.dropout_rng = np.random.default_rng([seed, 1])
        self.params = self._init_params(np.random.default_rng(seed))
        if config.pos_encoding == "sinusoidal":
            self.pos_table = sinusoidal_table(config.block_size, config.n_embd, dtype)
        self._caches = None
        self._grouped_for = None
        keep_freed_memory()        # every step reallocates the activations: reuse, don't re-fault

    # ----------------------------------------------------------------- parameters
    def _param_shapes(self):
        """Name -> shape of every parameter, in a fixed order (GPT-2's)."""
        c = self.config
        C, V = c.n_embd, c.vocab_size
        shapes = {"transformer.wte.weight": (V, C)}
        if c.pos_encoding == "learned":
            shapes["transformer.wpe.weight"] = (c.block_size, C)

        def affine(name, d_in, d_out):
            shapes[name + ".weight"] = (d_in, d_out)
            if c.bias:
                shapes[name + ".bias"] = (d_out,)

        def norm(name):
            shapes[name + ".weight"] = (C,)
            if c.bias:
                shapes[name + ".bias"] = (C,)

        for i in range(c.n_layer):
            h = f"transformer.h.{i}."
            norm(h + "ln_1")
            affine(h + "attn.c_attn", C, 3 * C)
            affine(h + "attn.c_proj", C, C)
            norm(h + "ln_2")
            affine(h + "mlp.c_fc", C, 4 * C)
            affine(h + "mlp.c_proj", 4 * C, C)
        norm("transformer.ln_f")
        if not c.tie_weights:
            shapes["lm_head.weight"] = (V, C)
        return shapes

    def _init_params(self, rng):
        """GPT-2 initialisation: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 n_layer),
        zero biases, LayerNorm weights 1. Drawn in float64, so float32 and float64 models agree."""
        residual_std = INIT_STD / np.sqrt(2 * self.config.n_layer)
        params = {}
        for name, shape in self._param_shapes().items():
            if name.endswith(".bias"):
                value = np.zeros(shape)
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                value = np.ones(shape)
            else:
                std = residual_std if name.endswith("c_proj.weight") else INIT_STD
                value = rng.normal(0.0, std, size=shape)
            params[name] = value.astype(self.dtype)
        return params

    def num_params(self):
        """Number of trainable scalars (the tied output layer counts once; a sinusoidal table is
        a constant and counts zero)."""
        return sum(p.size for p in self.params.values())

    def state_dict(self):
        """A copy of every parameter, keyed by its GPT-2 name."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state):
        """Copy ``state`` into the parameters. Strict: missing, unexpected or mis-shaped keys raise a
        ValueError naming them. A tied model accepts an ``lm_head.weight`` equal to the embedding,
        as Hugging Face GPT-2 checkpoints carry one."""
        state = dict(state)
        if self.config.tie_weights and "lm_head.weight" in state:
            head, wte = np.asarray(state.pop("lm_head.weight")), state.get("transformer.wte.weight")
            if wte is None or head.shape != np.shape(wte) or not np.array_equal(head, wte):
                raise ValueError("lm_head.weight differs from transformer.wte.weight, but this model "
                                 "ties them; build it with tie_weights=False to load an untied head")
        load_strict(self.params, state, self.dtype)

    def _block_params(self):
        """Per block, its parameters keyed relative to the block ("ln_1.weight", ...), sharing the
        arrays. Regrouped only when a parameter array is replaced (in-place updates keep them)."""
        identity = [id(p) for p in self.params.values()]
        if identity != self._grouped_for:
            blocks = [{} for _ in range(self.config.n_layer)]
            for name, p in self.params.items():
                if name.startswith("transformer.h."):
                    i, _, key = name[len("transformer.h."):].partition(".")
                    blocks[int(i)][key] = p
            self._grouped, self._grouped_for = blocks, identity
        return self._grouped

    def _head_weight(self):
        key = "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"
        return self.params[key]

    # ----------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode: dropout is on (when config.dropout > 0)."""
        self.training = mode
        return self

    def eval(self):
        """Evaluation mode: dropout is off."""
        return self.train(False)

    # ----------------------------------------------------------------- forward / backward
    def forward(self, idx, targets=None, ignore_index=None, kv_cache=None):
        """Logits (B, T, V) for integer token ids ``idx`` (B, T), and the mean NLL of ``targets``
        (B, T) when given (else None). Targets equal to ``ignore_index`` are not scored.

        ``kv_cache`` (a :class:`npgpt.generate.KVCache`) makes the call continue a sequence: the
        new tokens sit after the cached ones and attend to them, and the cache is extended.
        """
        c = self.config
        start = 0 if kv_cache is None else kv_cache.length
        idx = self._check_ids(idx, "idx", start)
        if targets is not None:
            targets = self._check_targets(targets, idx.shape, ignore_index)
        rng = self.dropout_rng if (self.training and c.dropout > 0.0 and kv_cache is None) else None
        F = backend.ops()          # the readable ops or their numba twins (npgpt.set_backend)

        x, wte_cache = F.embedding_forward(idx, self.params["transformer.wte.weight"])
        if c.pos_encoding == "learned":
            x, pos_cache = F.learned_positions_forward(x, self.params["transformer.wpe.weight"], start)
        else:
            x, pos_cache = F.sinusoidal_forward(x, self.pos_table, start)
        x, drop_cache = F.dropout_forward(x, c.dropout, rng)
        if kv_cache is not None:       # room for the new positions, or a clear error for a bad batch
            kv_cache.reserve(start + x.shape[1], x.shape[0], c.n_head, c.n_embd // c.n_head, x.dtype)
        block_caches = []
        if self._fused_decoding(kv_cache, idx, targets, F):
            x = self._decode_blocks(x, kv_cache)
        else:
            for i, block_params in enumerate(self._block_params()):
                past = None if kv_cache is None else kv_cache.layer(i)
                x, block_cache, kv = F.block_forward(x, block_params, c.n_head, c.dropout, rng, past)
                block_caches.append(block_cache)
                if kv_cache is not None:
                    kv_cache.store(i, *kv)
        if kv_cache is not None:
            kv_cache.length = start + idx.shape[1]
        x, lnf_cache = F.layernorm_forward(x, self.params["transformer.ln_f.weight"],
                                           self.params.get("transformer.ln_f.bias"))
        logits, head_cache = F.linear_forward(x, self._head_weight().T)

        loss = loss_cache = None
        if targets is not None:
            B, T, V = logits.shape
            loss, loss_cache = F.cross_entropy_forward(logits.reshape(B * T, V),
                                                       targets.reshape(B * T), ignore_index)
        self._caches = (F, wte_cache, pos_cache, drop_cache, block_caches, lnf_cache, head_cache,
                        loss_cache, logits.shape)
        return logits, loss

    def _fused_decoding(self, kv_cache, idx, targets, F):
        """True for a one-token, cached, loss-free step on the numba backend whose cache carries a
        decoder of this model (made by :func:`npgpt.generate.new_cache`)."""
        return (kv_cache is not None and kv_cache.decoder is not None and kv_cache.decoder.model is self
                and F.name == "numba" and idx.shape[1] == 1 and targets is None)

    def _decode_blocks(self, x, kv_cache):
        """Every block for one token per row, in one numba call (npgpt/kernels/decode.py): the
        same formulas as the loop over :func:`npgpt.ops.block_forward`, with no Python between
        them. Nothing is kept for a backward pass."""
        rows = np.ascontiguousarray(x[:, 0])
        kv_cache.decoder.blocks_forward(rows, kv_cache.length, kv_cache.keys, kv_cache.values)
        return rows[:, None]

    def backward(self):
        """Gradient of the last forward's loss, a dict with the keys and shapes of ``params``."""
        if self._caches is None or self._caches[7] is None:
            raise ValueError("backward() needs a preceding forward(idx, targets) with targets: "
                             "there is no loss to differentiate")
        (F, wte_cache, pos_cache, drop_cache, block_caches, lnf_cache, head_cache,
         loss_cache, logits_shape) = self._caches          # F: the backend the forward ran on
        c = self.config
        grads = {}
        dlogits = F.cross_entropy_backward(1.0, loss_cache).reshape(logits_shape)
        dx, dhead_T, _ = F.linear_backward(dlogits, head_cache)
        head_key = "transformer.wte.weight" if c.tie_weights else "lm_head.weight"
        grads[head_key] = dhead_T.T
        dx, grads["transformer.ln_f.weight"], db = F.layernorm_backward(dx, lnf_cache)
        if db is not None:
            grads["transformer.ln_f.bias"] = db
        for i in reversed(range(c.n_layer)):
            dx, block_grads = F.block_backward(dx, block_caches[i])
            grads.update({f"transformer.h.{i}.{k}": g for k, g in block_grads.items()})
        dx = F.dropout_backward(dx, drop_cache)
        if c.pos_encoding == "learned":
            dx, grads["transformer.wpe.weight"] = F.learned_positions_backward(dx, pos_cache)
        dwte = F.embedding_backward(dx, wte_cache)
        if c.tie_weights:
            dwte += grads["transformer.wte.weight"]   # the output layer's share of the tied weight
        grads["transformer.wte.weight"] = dwte
        return {name: grads[name] for name in self.params}

    def attention_weights(self, idx):
        """The attention matrices of every block for ``idx`` (B, T), computed in eval mode: a list of
        n_layer arrays (B, n_head, T, T) whose rows sum to 1 (what a learner plots)."""
        was_training = self.training
        self.eval()
        try:
            with backend.use_backend("numpy"):     # the readable op keeps the weights in its cache
                self.forward(idx)
        finally:
            self.train(was_training)
        return [block_attention_weights(cache) for cache in self._caches[4]]

    # ----------------------------------------------------------------- input checks
    def _check_ids(self, idx, name, start=0):
        c = self.config
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
        if idx.ndim != 2:
            raise ValueError(f"{name} must be 2-D (batch, time), got shape {idx.shape}")
        if idx.shape[1] == 0:
            raise ValueError(f"{name} has no time steps (shape {idx.shape})")
        if start + idx.shape[1] > c.block_size:
            raise ValueError(f"sequence length {start + idx.shape[1]} exceeds block_size={c.block_size}")
        if idx.size and (idx.min() < 0 or idx.max() >= c.vocab_size):
            bad = idx.min() if idx.min() < 0 else idx.max()
            raise ValueError(f"{name} contains token id {bad}, outside [0, vocab_size={c.vocab_size})")
        return idx

    def _check_targets(self, targets, shape, ignore_index):
        targets = np.asarray(targets)
        if targets.shape != shape:
            raise ValueError(f"targets shape {targets.shape} does not match idx shape {shape}")
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must hold integer token ids, got dtype {targets.dtype}")
        scored = targets if ignore_index is None else targets[targets != ignore_index]
        V = self.config.vocab_size
        if scored.size and (scored.min() < 0 or scored.max() >= V):
            bad = scored.min() if scored.min() < 0 else scored.max()
            raise ValueError(f"targets contain token id {bad}, outside [0, vocab_size={V})"
                             + ("" if ignore_index is None else f" and not ignore_index={ignore_index}"))
        return targets
