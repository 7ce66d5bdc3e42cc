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
from pathlib import Path

import numpy as np

from ..checks import check_real
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
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    names = prunable_weights(model) if names is None else list(names)
    unknown = [n for n in names if n not in model.params]
    if unknown:
        raise ValueError(f"no parameters named {unknown}")
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
        raise ValueError("structured pruning needs dense weights; prune before factorising the model")
    return replace(config, **fields)


def _check_gpt(model):
    if not isinstance(model, GPT):
        raise ValueError(f"structured pruning works on a GPT, got {type(model).__name__}")


def _rebuilt(model, config, params):
    smaller = GPT(config, dtype=model.dtype)
    smaller.load_state_dict({name: np.ascontiguousarray(p) for name, p in params.items()})
    return smaller


# ----------------------------------------------------------------------------- command line
def add_parser(sub):
    """``python -m npgpt prune``: prune a checkpoint's model, optionally fine-tune it, save it."""
    import argparse

    from ..checks import at_least, in_range
    p = sub.add_parser(
        "prune", help="prune a trained GPT (magnitude, heads, neurons), optionally fine-tune it",
        description="Prune the model of a checkpoint written by 'npgpt train': zero the smallest weights "
                    "(--sparsity), remove whole attention heads (--heads) or MLP neurons (--neurons), "
                    "report the validation loss before and after, optionally fine-tune the rest "
                    "(--then-finetune N steps, pruned weights kept at zero), and save the result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint to prune (OUT_DIR/ckpt.npz of 'npgpt train')")
    p.add_argument("--data", default="shakespeare", help="the corpus the model was trained on (for the "
                   "validation loss and fine-tuning)")
    p.add_argument("--out-dir", required=True, help="where the pruned checkpoint goes")
    p.add_argument("--force", action="store_true",
                   help="replace a checkpoint already in --out-dir (without it, prune refuses to write over one)")
    p.add_argument("--sparsity", type=in_range(0.0, 1.0, high_open=True), default=0.0,
                   help="fraction of the blocks' projection weights set to zero, smallest |w| first")
    p.add_argument("--scope", choices=SCOPES, default="global", help="one threshold for all matrices, or one each")
    p.add_argument("--heads", type=in_range(0.0, 1.0, high_open=True), default=0.0,
                   help="fraction of each block's attention heads removed (lowest output-projection norm)")
    p.add_argument("--neurons", type=in_range(0.0, 1.0, high_open=True), default=0.0,
                   help="fraction of each block's MLP neurons removed (lowest |W_fc[:, j]| |W_proj[j]|)")
    p.add_argument("--then-finetune", type=at_least(0), default=0, metavar="N", help="fine-tuning steps after pruning")
    p.add_argument("--lr", type=in_range(0.0, low_open=True), default=3e-4, help="fine-tuning learning rate (constant)")
    p.add_argument("--eval-iters", type=at_least(1), default=50, help="validation batches for the losses reported")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while fine-tuning")
    p.set_defaults(run=run)


def run(args):
    from ..io.checkpoint import (
        check_same_corpus,
        model_from_checkpoint,
        read_checkpoint,
        tokenizer_from_checkpoint,
    )
    from ..text import load_corpus
    from ..training import Dataset, TrainConfig, Trainer
    out = Path(args.out_dir) / "ckpt.npz"
    if out.exists() and out.resolve() == Path(args.ckpt).resolve():
        raise ValueError(f"--out-dir {args.out_dir} holds the checkpoint being pruned ({args.ckpt}); "
                         f"write the pruned model to another --out-dir")
    if out.exists() and not args.force:
        raise ValueError(f"--out-dir {args.out_dir} already holds a checkpoint ({out}); replace it with --force, "
                         f"or choose another --out-dir")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"--out-dir {args.out_dir} is a file, expected a folder")
    meta, arrays = read_checkpoint(args.ckpt)
    model = model_from_checkpoint(args.ckpt, meta, arrays)
    if not isinstance(model, GPT):
        raise ValueError(f"{args.ckpt} holds a {type(model).__name__}; pruning works on a GPT")
    tokenizer = tokenizer_from_checkpoint(args.ckpt, meta)
    corpus = load_corpus(args.data)
    if corpus.fell_back:
        print(f"NOTE: Tiny Shakespeare is unavailable; evaluating and fine-tuning on the built-in fallback corpus "
              f"({corpus.fallback_reason})")
    check_same_corpus(args.ckpt, meta, corpus)
    data = Dataset(corpus.text, tokenizer, source=corpus.source)
    saved = meta["train_config"]
    config = TrainConfig(max_iters=max(args.then_finetune, 1), batch_size=saved["batch_size"], lr=args.lr,
                         min_lr=args.lr, warmup_iters=0, eval_interval=max(args.then_finetune, 1),
                         eval_iters=args.eval_iters, seed=saved["seed"])

    def val_loss(m, masks=None):
        return Trainer(m, data, config, tokenizer, masks).evaluate()["val"]

    report = [("trained", model.num_params(), val_loss(model))]
    if args.heads:
        model, _ = prune_heads(model, args.heads)
    if args.neurons:
        model, _ = prune_neurons(model, args.neurons)
    masks = prune_magnitude(model, args.sparsity, args.scope) if args.sparsity else {}
    nonzero = model.num_params() - sum(int((~m).sum()) for m in masks.values())
    report.append(("pruned", nonzero, val_loss(model, masks)))
    trainer = Trainer(model, data, config, tokenizer, masks)
    if args.then_finetune:
        trainer.train(checkpoint_path=out, progress=not args.no_progress)
        report.append((f"fine-tuned {args.then_finetune} steps", nonzero, trainer.evaluate()["val"]))
    else:
        trainer.save_checkpoint(out)
    for label, n, loss in report:
        print(f"{label:<24} {n:>12,} non-zero parameters   val loss {loss:.4f}")
    print(f"checkpoint: {out}")
    return 0
