"""The quality bar, side by side: npgpt and its PyTorch twin trained with the same recipe on the
same batches, then scored on the same 400 validation batches.

Recipe (nanoGPT's CPU configuration for character-level Tiny Shakespeare): 4 layers, 4 heads,
width 128, block 64, batch 12, 2000 steps, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1 on
2-D tensors, 100 warmup steps then cosine to 1e-4, gradient clip 1.0, dropout 0.

    python benchmarks/quality_bar.py                  # both, npgpt first
    python benchmarks/quality_bar.py --only npgpt     # no torch needed
    python benchmarks/quality_bar.py --json           # one JSON object
    python benchmarks/quality_bar.py --loss-figure runs/baby/ckpt.npz   # only redraw figures/baby_loss.png

The README's loss curve, ``figures/baby_loss.png``, is the history a checkpoint of the same recipe
keeps (``python -m npgpt train --preset baby --data shakespeare`` writes ``runs/baby/ckpt.npz``):
``--loss-figure`` redraws it from that file, titled with the model and the corpus, without training.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import npgpt
from npgpt.perf.harness import run_isolated
from npgpt.training.optim import lr_schedule

ROOT = Path(__file__).resolve().parents[1]
CORPUS_NAMES = {"tinyshakespeare": "Tiny Shakespeare", "fallback": "the built-in fallback corpus"}


def loss_figure_title(meta: dict, n_params: int) -> str:
    """'<model> (<n> parameters) on <corpus>, <steps> steps': what the loss curve is of."""
    config = meta["model_config"]
    preset = next((name for name in npgpt.GPTConfig.presets() if config == npgpt.GPTConfig.preset(
        name, vocab_size=config.vocab_size)), None)
    layers = f"{config.n_layer} layer{'s' if config.n_layer != 1 else ''}"
    model = f"GPT '{preset}' preset" if preset else f"GPT ({layers}, width {config.n_embd})"
    corpus = CORPUS_NAMES.get(meta.get("corpus"), meta.get("corpus", "an unrecorded corpus"))
    return f"Training loss: {model} ({n_params:,} parameters) on {corpus}, {meta['step']:,} steps"


def draw_loss_figure(checkpoint: str, figure: str) -> str:
    """Draw the loss curve kept in ``checkpoint`` (its ``history/*`` arrays) into ``figure``, titled
    with the model and the corpus the checkpoint records; returns the title."""
    from npgpt.io.checkpoint import model_from_checkpoint, read_checkpoint
    from npgpt.plots.training import plot_loss_curve

    meta, arrays = read_checkpoint(checkpoint)
    history = {k[len("history/"):]: v.tolist() for k, v in arrays.items() if k.startswith("history/")}
    title = loss_figure_title(meta, model_from_checkpoint(checkpoint, meta, arrays).num_params())
    plot_loss_curve(history, path=figure, title=title)
    return title


def load_data(path):
    text, description = npgpt.resolve_corpus(path)
    return npgpt.Dataset(text), description


def train_npgpt(data, cfg, tc, eval_batches):
    model = npgpt.GPT(cfg, seed=tc.seed)
    trainer = npgpt.Trainer(model, data, tc, data.tokenizer)
    start = time.perf_counter()
    trainer.train(progress=False, log=lambda *_: None)
    wall = time.perf_counter() - start
    scores = trainer.evaluate(eval_batches)
    return {"wall_s": wall, "train_loss": scores["train"], "val_loss": scores["val"]}


def train_torch(data, cfg, tc, eval_batches, threads):
    import torch

    from npgpt.verify.twins import TorchGPT

    torch.set_num_threads(threads)
    torch.manual_seed(tc.seed)
    model = TorchGPT(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=tc.lr, betas=(tc.beta1, tc.beta2))
    rng = np.random.default_rng([tc.seed, 0])        # the same batches npgpt's trainer draws
    start = time.perf_counter()
    for step in range(tc.max_iters):
        x, y = data.get_batch("train", tc.batch_size, cfg.block_size, rng)
        _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step, tc.lr, tc.min_lr, tc.warmup_iters, tc.max_iters)
        optimizer.step()
        if (step + 1) % tc.eval_interval == 0:     # the same periodic evaluation work as npgpt
            torch_eval(model, data, cfg, tc, tc.eval_iters)
    wall = time.perf_counter() - start
    scores = torch_eval(model, data, cfg, tc, eval_batches)
    return {"wall_s": wall, "train_loss": scores["train"], "val_loss": scores["val"]}


def torch_eval(model, data, cfg, tc, n_batches):
    import torch
    model.eval()
    scores = {}
    with torch.no_grad():
        for split in ("train", "val"):
            rng = np.random.default_rng([tc.seed, 1, split == "val"])
            scores[split] = float(np.mean([
                model(*(torch.from_numpy(a) for a in data.get_batch(split, tc.batch_size, cfg.block_size, rng)))[1].item()
                for _ in range(n_batches)]))
    model.train()
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shakespeare", help="corpus name or text file")
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--eval-batches", type=int, default=400, help="batches per split for the final score")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--only", choices=["npgpt", "torch"], help="run one side only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--loss-figure", metavar="CKPT", help="only redraw --figure from this checkpoint's "
                                                               "loss history (no training)")
    parser.add_argument("--figure", default=str(ROOT / "figures" / "baby_loss.png"))
    args = parser.parse_args(argv)
    if args.loss_figure:
        print(f"{draw_loss_figure(args.loss_figure, args.figure)}: {args.figure}")
        return

    data, description = load_data(args.data)
    cfg = npgpt.GPTConfig.preset("baby", vocab_size=data.vocab_size)
    tc = npgpt.TrainConfig(max_iters=args.max_iters)
    results = {"corpus": description, "max_iters": args.max_iters, "eval_batches": args.eval_batches,
               "backend": os.environ.get("NPGPT_BACKEND", "default")}
    # each side in a fresh process: one library's idle thread pools slow the other (npgpt/perf/harness.py)
    if args.only != "torch":
        results["npgpt"] = run_isolated(train_npgpt, data, cfg, tc, args.eval_batches)
    if args.only != "npgpt":
        results["torch"] = run_isolated(train_torch, data, cfg, tc, args.eval_batches, args.threads)
    if "npgpt" in results and "torch" in results:
        results["wall_ratio_npgpt_over_torch"] = results["npgpt"]["wall_s"] / results["torch"]["wall_s"]
    if args.json:
        print(json.dumps(results))
        return
    print(f"corpus: {description}")
    for name in ("npgpt", "torch"):
        if name in results:
            r = results[name]
            print(f"{name:>6}: step={args.max_iters} train_loss={r['train_loss']:.4f} "
                  f"val_loss={r['val_loss']:.4f} wall_s={r['wall_s']:.1f}")
    if "wall_ratio_npgpt_over_torch" in results:
        print(f"wall time npgpt / torch: {results['wall_ratio_npgpt_over_torch']:.2f}")


if __name__ == "__main__":
    main()
