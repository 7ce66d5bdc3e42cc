r"""Pruning (document sections 2 and 7): remove the weights that matter least.

**Unstructured magnitude pruning** zeroes the fraction $s$ (the sparsity) of weights with the
smallest $|w|$, either over all pruned matrices at once ("global": one threshold) or in each
matrix separately ("layer"). The kept entries form a mask $M \in \{0, 1\}$ per matrix:

$$W \leftarrow M \odot W,\qquad M_{ij} = [\,|W_{ij}| > \theta\,]$$

The matrices keep their shape (zeros still cost memory and time in dense NumPy); what the mask buys
is the chance to fine-tune the rest. During fine-tuning the mask is applied to the gradient,
$g \leftarrow M \odot g$: AdamW's moments of a pruned entry then stay 0, so its update is 0 and its
weight decay multiplies 0, and a pruned weight stays exactly zero through every step and a resume.

**Structured pruning** removes whole units, so the matrices really shrink:

- an attention head $h$ of a block is scored by the norm of its rows of the output projection,
  $\|W_{proj}[h\,d:(h+1)\,d,\ :]\|_F$: everything the head writes into the residual stream passes
  through those rows, so a head with small ones contributes little;
- an MLP neuron $j$ is scored by $\|W_{fc}[:, j]\|\,\|W_{proj}[j, :]\|$, the size of the path
  through it.

The lowest-scored heads (neurons) of each block are removed: their columns of the fused QKV
projection (and its bias) and their rows of the output projection go, and the model's config
records the new per-block counts (``GPTConfig.head_counts``, ``mlp_widths``).
"""
from dataclasses import replace

import numpy as np

from ..checks import UsageError, check_real
from ..models import GPT

SCOPES = ("global", "layer")
PRUNABLE = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def prunable_weights(model):
    """Names of the matrices magnitude pruning acts on: the blocks' four projections (embeddings,
    LayerNorms and biases are left alone)."""
    return [name for name in model.params if name.startswith("transformer.h.") and name.endswith(PRUNABLE)]


def _check_sparsity(sparsity, what="sparsity"):
    return check_real(what, sparsity, 0.0, 1.0, high_open=True)


def prune_magnitude(model, sparsity, scope="global", names=None):
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of ``names`` (default:
    :func:`prunable_weights`) in place, with one threshold for all ("global") or one per matrix
    ("layer"). Returns the masks, name -> bool array (True = kept). Ties are broken by position,
    so exactly round(sparsity * n) entries are removed."""
    sparsity = _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise UsageError(f"scope must be one of {SCOPES}, got {scope!r}")
    names = prunable_weights(model) if names is None else list(names)
    unknown = [n for n in names if n not in model.params]
    if unknown:
        raise UsageError(f"no parameters named {unknown}")
    groups = [names] if scope == "global" else [[n] for n in names]
    masks = {}
    for group in groups:
        magnitudes = np.concatenate([np.abs(model.params[n]).ravel() for n in group])
        drop = np.argsort(magnitudes, kind="stable")[:round(sparsity * magnitudes.size)]
        keep = np.ones(magnitudes.size, dtype=bool)
        keep[drop] = False
        start = 0
        for n in group:
            size = model.params[n].size
            masks[n] = keep[start:start + size].reshape(model.params[n].shape)
            start += size
    apply_masks(model.params, masks)
    return masks


def apply_masks(arrays, masks):
    """``arrays[name] *= masks[name]`` in place, for each masked name (weights or their gradients)."""
    for name, mask in masks.items():
        arrays[name] *= mask


def sparsity_of(model, names=None):
    """The fraction of exact zeros among ``names`` (default :func:`prunable_weights`)."""
    names = prunable_weights(model) if names is None else names
    total = sum(model.params[n].size for n in names)
    return sum(int(np.count_nonzero(model.params[n] == 0)) for n in names) / total


# ----------------------------------------------------------------------------- structured
def head_scores(model):
    """Per block, the score of each head: the Frobenius norm of its rows of ``attn.c_proj``."""
    c, hs = model.config, model.config.head_size
    scores = []
    for i, block in enumerate(model.block_params()):
        w = _dense(block["attn.c_proj.weight"])                         # (D, C)
        scores.append(np.linalg.norm(w.reshape(c.heads(i), hs, -1), axis=(1, 2)))
    return scores


def neuron_scores(model):
    """Per block, the score of each MLP neuron j: ||W_fc[:, j]|| * ||W_proj[j, :]||."""
    return [np.linalg.norm(_dense(b["mlp.c_fc.weight"]), axis=0) * np.linalg.norm(_dense(b["mlp.c_proj.weight"]), axis=1)
            for b in model.block_params()]


def _dense(w):
    return w.U @ w.V if hasattr(w, "U") else w


def _kept(scores, fraction):
    """Indices (ascending) of the units to keep: all but the round(fraction * n) lowest-scored,
    at least one."""
    n_drop = min(round(fraction * scores.size), scores.size - 1)
    return np.sort(np.argsort(scores, kind="stable")[n_drop:])


def prune_heads(model, fraction):
    """A new, smaller GPT without the ``fraction`` lowest-scored heads of each block
    (:func:`head_scores`); returns (model, kept head indices per block)."""
    fraction = _check_sparsity(fraction, "fraction")
    _check_gpt(model)
    c, hs = model.config, model.config.head_size
    kept = [_kept(s, fraction) for s in head_scores(model)]
    params = dict(model.params)
    for i, heads in enumerate(kept):
        h = f"transformer.h.{i}.attn."
        D = c.heads(i) * hs
        columns = np.concatenate([part * D + head * hs + np.arange(hs) for part in range(3) for head in heads])
        rows = np.concatenate([head * hs + np.arange(hs) for head in heads])
        _keep_units(params, h + "c_attn", h + "c_proj", columns, rows)
    config = _replace(c, head_counts=tuple(len(k) for k in kept))
    return _rebuilt(model, config, params), kept


def prune_neurons(model, fraction):
    """A new, smaller GPT without the ``fraction`` lowest-scored MLP neurons of each block
    (:func:`neuron_scores`); returns (model, kept neuron indices per block)."""
    fraction = _check_sparsity(fraction, "fraction")
    _check_gpt(model)
    c = model.config
    kept = [_kept(s, fraction) for s in neuron_scores(model)]
    params = dict(model.params)
    for i, neurons in enumerate(kept):
        m = f"transformer.h.{i}.mlp."
        _keep_units(params, m + "c_fc", m + "c_proj", neurons, neurons)
    config = _replace(c, mlp_widths=tuple(len(k) for k in kept))
    return _rebuilt(model, config, params), kept


def _keep_units(params, expand, project, columns, rows):
    """Keep the units' columns of ``expand`` (and of its bias) and their rows of ``project``."""
    params[expand + ".weight"] = params[expand + ".weight"][:, columns]
    if expand + ".bias" in params:
        params[expand + ".bias"] = params[expand + ".bias"][columns]
    params[project + ".weight"] = params[project + ".weight"][rows]


def _replace(config, **fields):
    if config.factorized:
        raise UsageError("structured pruning needs dense weights; prune before factorising the model")
    return replace(config, **fields)


def _check_gpt(model):
    if not isinstance(model, GPT):
        raise UsageError(f"structured pruning works on a GPT, got {type(model).__name__}")


def _rebuilt(model, config, params):
    smaller = GPT(config, dtype=model.dtype)
    smaller.load_state_dict({name: np.ascontiguousarray(p) for name, p in params.items()})
    return smaller
