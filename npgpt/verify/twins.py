r"""The PyTorch twin of npgpt's GPT: the same architecture, parameter names and layouts.

Used as the reference in tests (outputs and gradients must match) and as the speed reference in
the benchmarks (``python -m npgpt bench``). Weights are GPT-2 "Conv1D" style, (in, out), applied as
``x @ W + b``, so an npgpt state dict loads without transposes. Requires torch, which stays
optional: nothing in npgpt imports this module except inside a function that is about to use it.

Attention runs as PyTorch's fused ``scaled_dot_product_attention`` by default. With
``explicit_attention=True`` it is written out, $\mathrm{softmax}(QK^\top/\sqrt{d} + M)\,V$: two
batched products over the full T x T score matrix (masked half included) and a masked softmax,
what npgpt computes and what :func:`npgpt.allocation.costs.count_flops` counts. Same results.

For generation the twin keeps a KV cache the way Hugging Face's GPT-2 does in eager mode: each
block's keys and values, concatenated with the new position's at every step
(:func:`generate_greedy`, the PyTorch side of ``python -m npgpt bench --preset gpt2``).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import UsageError


class Affine(nn.Module):
    """x @ W + b with W stored (in, out), like GPT-2's Conv1D."""

    def __init__(self, d_in, d_out, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y if self.bias is None else y + self.bias


class SelfAttention(nn.Module):
    def __init__(self, cfg, explicit_attention=False):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = Affine(cfg.n_embd, 3 * cfg.n_embd, cfg.bias)
        self.c_proj = Affine(cfg.n_embd, cfg.n_embd, cfg.bias)
        self.dropout = cfg.dropout
        self.explicit_attention = explicit_attention

    def forward(self, x, kv=None):
        """``kv``: None, or this block's cache, a list holding nothing yet or [keys, values] of the
        positions before ``x`` (B, nh, T_past, hs), extended in place with ``x``'s."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if kv is not None:
            if kv:
                k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
            kv[:] = [k, v]
        causal = k.shape[2] == T            # a whole sequence; else one new token that sees every position
        if not causal and T != 1:
            raise UsageError("after the prompt, the twin's cache takes one token at a time")
        p = self.dropout if self.training else 0.0
        attend = explicit_causal_attention if self.explicit_attention else F.scaled_dot_product_attention
        y = attend(q, k, v, dropout_p=p, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.c_proj(y), p, self.training)


def explicit_causal_attention(q, k, v, dropout_p=0.0, is_causal=True):
    """softmax(q k^T / sqrt(d) + M) v written out, for q, k, v (B, nh, T, d): what
    ``F.scaled_dot_product_attention(q, k, v, dropout_p, is_causal=True)`` computes in one call."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))       # (B, nh, T, T)
    if is_causal:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    att = F.dropout(F.softmax(scores, dim=-1), dropout_p, training=dropout_p > 0.0)
    return att @ v


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Affine(cfg.n_embd, 4 * cfg.n_embd, cfg.bias)
        self.c_proj = Affine(4 * cfg.n_embd, cfg.n_embd, cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x):
        h = F.gelu(self.c_fc(x), approximate="tanh")
        return F.dropout(self.c_proj(h), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg, explicit_attention=False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias)
        self.attn = SelfAttention(cfg, explicit_attention)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, kv=None):
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    """GPT with npgpt's names: ``transformer.wte``, ``transformer.h.{i}...``, ``lm_head``.

    ``explicit_attention=True`` writes attention out (module docstring) instead of calling
    ``scaled_dot_product_attention``; the parameters and results are the same."""

    def __init__(self, cfg, explicit_attention=False):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            h=nn.ModuleList(Block(cfg, explicit_attention) for _ in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias),
        ))
        if cfg.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        else:
            self.register_buffer("pos_table", sinusoidal(cfg.block_size, cfg.n_embd).float())
        if not cfg.tie_weights:
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self._init_like_gpt2()

    def _init_like_gpt2(self):
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or "ln_f" in name:
                nn.init.ones_(p)
            else:
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets=None, kv=None):
        """Logits and loss; ``kv`` (one list per block, see :class:`SelfAttention`) continues a
        sequence after its cached positions."""
        T = idx.shape[1]
        start = kv[0][0].shape[2] if kv is not None and kv[0] else 0
        x = self.transformer.wte(idx)
        if self.cfg.pos_encoding == "learned":
            x = x + self.transformer.wpe.weight[start:start + T]
        else:
            x = x + self.pos_table[start:start + T]
        x = F.dropout(x, self.cfg.dropout, self.training)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv is None else kv[i])
        x = self.transformer.ln_f(x)
        head = self.transformer.wte.weight if self.cfg.tie_weights else self.lm_head.weight
        logits = x @ head.T
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        return logits, loss


@torch.no_grad()
def generate_greedy(twin, prompt, max_new_tokens):
    """``prompt`` (a 1-D sequence of ids) followed by ``max_new_tokens`` greedy tokens, with the KV
    cache: one forward of the prompt, then one of each new token. Returns a 1-D int64 tensor."""
    kv = [[] for _ in twin.transformer.h]
    tokens = torch.as_tensor(prompt, dtype=torch.int64).view(1, -1)
    logits, _ = twin(tokens, kv=kv)
    new = []
    for i in range(max_new_tokens):
        new.append(logits[:, -1].argmax(-1, keepdim=True))
        if i + 1 < max_new_tokens:
            logits, _ = twin(new[-1], kv=kv)
    return torch.cat([tokens, *new], dim=1)[0]


def sinusoidal(n_positions, n_embd):
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv_freq = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float64) * (-math.log(10000.0) / n_embd))
    pe = torch.zeros(n_positions, n_embd, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq[: n_embd // 2])
    return pe   # float64; cast by the caller


def from_npgpt(model, explicit_attention=False):
    """A TorchGPT holding a copy of npgpt ``model``'s parameters, in the same dtype
    (``explicit_attention``: see :class:`TorchGPT`)."""
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    twin = TorchGPT(model.config, explicit_attention).to(dtype)
    state = {k: torch.from_numpy(v.copy()) for k, v in model.params.items()}
    if model.config.pos_encoding == "sinusoidal":   # computed in float64, then cast, like npgpt's
        state["pos_table"] = sinusoidal(model.config.block_size, model.config.n_embd).to(dtype)
    twin.load_state_dict(state, strict=True)
    return twin
