"""The price of each compression method, measured on one model (document sections 2 and 7).

Trains (or loads, with --ckpt) a baby GPT on Tiny Shakespeare, then compresses it every way npgpt
knows and measures each result the same way: validation loss on the same fixed batches, bytes of
storage, greedy generation speed with the KV cache, and the training FLOPs spent to get there
(the base run plus any fine-tuning or distillation).

A fine-tuned row has trained more than the float32 model it came from, so the float32 model gets the
same extra steps too ("float32 + fine-tune": the same batches, the same constant learning rate): a
compressed row is compared with the baseline of its own training, and the figure draws one Pareto
front per amount of training ("extra_steps" in each row), never across them.

    python benchmarks/compression.py                      # about 10 minutes on 2 cores
    python benchmarks/compression.py --fast               # a smoke run: tiny model, few steps
    python benchmarks/compression.py --add-baseline       # only the float32 + fine-tune row, into the JSON

Writes benchmarks/results/compression.json and figures/compression_tradeoff.png (validation loss
against bytes, one marker per method, a Pareto front per amount of training).
"""
import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt import GPT, Dataset, GPTConfig, TrainConfig, Trainer, generate, resolve_corpus  # noqa: E402
from npgpt.allocation.costs import count_flops  # noqa: E402
from npgpt.allocation.distill import distill  # noqa: E402
from npgpt.allocation.low_rank import factorize_gpt  # noqa: E402
from npgpt.allocation.prune import prune_heads, prune_magnitude  # noqa: E402
from npgpt.allocation.quantize import quantize_model  # noqa: E402
from npgpt.atomic import atomic_write_text  # noqa: E402
from npgpt.io.checkpoint import (  # noqa: E402
    model_from_checkpoint,
    read_checkpoint,
    tokenizer_from_checkpoint,
)

RESULTS = ROOT / "benchmarks" / "results" / "compression.json"
FIGURE = ROOT / "figures" / "compression_tradeoff.png"
MLP_WEIGHTS = ("mlp.c_fc.weight", "mlp.c_proj.weight")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="a trained baby checkpoint to start from (else one is trained here)")
    p.add_argument("--steps", type=int, default=2000, help="training steps of the base model")
    p.add_argument("--finetune", type=int, default=200, help="fine-tuning steps after pruning or low rank")
    p.add_argument("--distill-steps", type=int, default=1000, help="steps of the half-width student")
    p.add_argument("--eval-batches", type=int, default=400, help="validation batches for every loss")
    p.add_argument("--gen-tokens", type=int, default=200, help="tokens generated for the speed figure")
    p.add_argument("--fast", action="store_true", help="a smoke run: tiny model and few steps")
    p.add_argument("--replot", action="store_true", help="redraw the figure from the JSON, measuring nothing")
    p.add_argument("--add-baseline", action="store_true",
                   help="retrain the base model, check it is the JSON's float32 model, and add only the "
                        "float32 + fine-tune row (the rows of a JSON written before that row existed)")
    p.add_argument("--out", default=str(RESULTS), help="where the JSON goes")
    p.add_argument("--figure", default=str(FIGURE), help="where the figure goes")
    return p.parse_args()


class Bench:
    """Measures models the same way: fixed validation batches, bytes, tokens/s, FLOPs spent."""

    def __init__(self, data, tokenizer, train_config, eval_batches, gen_tokens):
        self.data, self.tokenizer, self.train_config = data, tokenizer, train_config
        self.eval_batches, self.gen_tokens = eval_batches, gen_tokens
        self.rows = []

    def val_loss(self, model):
        """The mean loss over the validation batches Trainer.evaluate scores (its generator, seeded the
        same), computed here because a Trainer refuses a model it cannot train (a QuantizedGPT)."""
        c = self.train_config
        rng = np.random.default_rng([c.seed, 1, True])
        with model.evaluating():
            losses = [model.forward(*self.data.get_batch("val", c.batch_size, model.config.block_size, rng))[1]
                      for _ in range(self.eval_batches)]
        return float(np.mean(losses))

    def tokens_per_s(self, model):
        prompt = self.tokenizer.encode("\n")
        generate(model, prompt, 8)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            generate(model, prompt, self.gen_tokens)
            times.append(time.perf_counter() - start)
        return self.gen_tokens / float(np.median(times))

    def record(self, method, model, flops, bytes_=None, extra_steps=0, **extra):
        """Measure ``model`` and keep its row; ``extra_steps`` are the training steps it had beyond the
        base run (fine-tuning, or the student's distillation), the key its Pareto front is drawn by."""
        row = {"method": method, "val_loss": self.val_loss(model),
               "bytes": int(bytes_ if bytes_ is not None else dense_bytes(model)),
               "tokens_per_s": self.tokens_per_s(model), "training_flops": float(flops),
               "parameters": int(model.num_params()), "extra_steps": int(extra_steps), **extra}
        self.rows.append(row)
        print(f"{method:<34} val {row['val_loss']:.4f}  {row['bytes'] / 1e6:7.3f} MB  "
              f"{row['tokens_per_s']:8,.0f} tok/s  {row['training_flops'] / 1e12:7.2f} TFLOP", flush=True)
        return row


def dense_bytes(model):
    return sum(p.nbytes for p in model.params.values())


def step_flops(model, batch_size):
    return count_flops(model.config, batch_size).total


def finetune(model, bench, steps, masks=None):
    """Fine-tune a model for ``steps`` at the learning rate the base run ended with (its schedule's
    floor: a larger one undoes more than it mends); FLOPs spent. Every call draws the same batches
    (the trainer's sampler is seeded), so the float32 baseline's extra steps match the compressed
    models' exactly."""
    lr = bench.train_config.min_lr
    config = replace(bench.train_config, max_iters=steps, lr=lr, min_lr=lr, warmup_iters=0, eval_interval=steps)
    Trainer(model, bench.data, config, bench.tokenizer, masks).train(progress=False, log=lambda *_: None)
    return steps * step_flops(model, config.batch_size)


def base_model(args, data, tokenizer, train_config):
    if args.ckpt:
        meta, arrays = read_checkpoint(args.ckpt)
        return model_from_checkpoint(args.ckpt, meta, arrays), meta["step"]
    config = GPTConfig.preset("baby", vocab_size=data.vocab_size)
    if args.fast:
        config = replace(config, n_layer=2, n_embd=32, n_head=4)
    model = GPT(config, seed=0)
    Trainer(model, data, train_config, tokenizer).train(progress=True, log=lambda *_: None)
    return model, train_config.max_iters


def run(args):
    text, description = resolve_corpus("shakespeare")
    print(f"corpus: {description}")
    data = Dataset(text)
    tokenizer = data.tokenizer
    if args.ckpt:
        tokenizer = tokenizer_from_checkpoint(args.ckpt, read_checkpoint(args.ckpt)[0])
        data = Dataset(text, tokenizer)
    train_config = TrainConfig(max_iters=args.steps, eval_interval=args.steps)
    teacher, steps = base_model(args, data, tokenizer, train_config)
    base_flops = steps * step_flops(teacher, train_config.batch_size)
    bench = Bench(data, tokenizer, train_config, args.eval_batches, args.gen_tokens)

    def copy(model):
        twin = GPT(model.config, dtype=model.dtype)
        twin.load_state_dict(model.state_dict())
        return twin

    bench.record("float32", teacher, base_flops)
    more = copy(teacher)                               # the baseline of every fine-tuned row
    spent = finetune(more, bench, args.finetune)
    bench.record("float32 + fine-tune", more, base_flops + spent, extra_steps=args.finetune)
    half = copy(teacher)
    for p in half.params.values():
        p[...] = p.astype(np.float16)                      # what float16 storage keeps
    bench.record("float16 storage", half, base_flops, dense_bytes(teacher) // 2)
    group_size = 64 if teacher.config.n_embd % 64 == 0 else teacher.config.n_embd     # the fast run's C is 32
    for bits, group in ((8, None), (4, group_size)):
        quantized = quantize_model(teacher, bits, group)
        bench.record(f"int{bits}" + (f" (g={group})" if group else ""), quantized, base_flops, quantized.num_bytes())
    for sparsity in (0.3, 0.5, 0.7):
        model = copy(teacher)
        masks = prune_magnitude(model, sparsity)
        nonzero = model.num_params() - sum(int((~m).sum()) for m in masks.values())
        bench.record(f"{sparsity:.0%} unstructured", model, base_flops, nonzero_params=nonzero)
        spent = finetune(model, bench, args.finetune, masks)
        bench.record(f"{sparsity:.0%} unstructured + fine-tune", model, base_flops + spent, extra_steps=args.finetune,
                     nonzero_params=nonzero)
    for fraction in (0.25, 0.5):
        model, _ = prune_heads(teacher, fraction)
        bench.record(f"{fraction:.0%} heads pruned", model, base_flops)
        spent = finetune(model, bench, args.finetune)
        bench.record(f"{fraction:.0%} heads pruned + fine-tune", model, base_flops + spent, extra_steps=args.finetune)
    C = teacher.config.n_embd
    names = [n for n in teacher.params if n.endswith(MLP_WEIGHTS)]
    model, report = factorize_gpt(teacher, names, rank=C // 4)
    bench.record(f"MLP rank {C // 4}", model, base_flops, rel_error=max(r.rel_error for r in report.rows))
    spent = finetune(model, bench, args.finetune)
    bench.record(f"MLP rank {C // 4} + fine-tune", model, base_flops + spent, extra_steps=args.finetune)
    student = GPT(replace(teacher.config, n_embd=C // 2), seed=1)
    distill_config = replace(train_config, max_iters=args.distill_steps, eval_interval=args.distill_steps)
    distill(teacher, student, data, distill_config, alpha=0.5, tau=2.0, progress=False, log=lambda *_: None)
    teacher_forward = count_flops(teacher.config, train_config.batch_size).forward
    spent = args.distill_steps * (step_flops(student, train_config.batch_size) + teacher_forward)
    bench.record("distilled half-width student", student, base_flops + spent, extra_steps=args.distill_steps)
    return {"corpus": description, "base_steps": steps, "config": teacher.config.to_dict(),
            "eval_batches": args.eval_batches, "finetune_steps": args.finetune,
            "distill_steps": args.distill_steps, "rows": bench.rows}


def extra_steps_of(row, result):
    """The training steps beyond the base run of a row written before rows carried "extra_steps"."""
    if row["method"].endswith("+ fine-tune"):
        return result["finetune_steps"]
    return result["distill_steps"] if row["method"].startswith("distilled") else 0


def add_baseline(args):
    """Add the float32 + fine-tune row to the JSON at ``args.out``, measured on a base model retrained
    here, after checking that it is the JSON's float32 model (its validation loss equal to 1e-5
    relative: training draws the same batches and initial weights for a seed, and only float32
    rounding differs, with the thread count the trainer picks; 1.9e-7 relative was seen, while rows
    differ by 1e-3 and more). Its tokens/s is not timed: the architecture is
    float32's, whose speed the JSON already holds, and a busy machine would time the load instead."""
    with open(args.out, encoding="utf-8") as f:
        result = json.load(f)
    if any(r["method"] == "float32 + fine-tune" for r in result["rows"]):
        raise SystemExit(f"{args.out} already has a float32 + fine-tune row")
    args.steps, args.finetune = result["base_steps"], result["finetune_steps"]
    text, _ = resolve_corpus("shakespeare")
    data = Dataset(text)
    train_config = TrainConfig(max_iters=args.steps, eval_interval=args.steps)
    teacher, steps = base_model(args, data, data.tokenizer, train_config)
    bench = Bench(data, data.tokenizer, train_config, result["eval_batches"], args.gen_tokens)
    committed = result["rows"][0]
    loss = bench.val_loss(teacher)
    if committed["method"] != "float32" or abs(loss - committed["val_loss"]) > 1e-5 * committed["val_loss"]:
        raise SystemExit(f"the retrained base model is not the committed one (val loss {loss!r}, the JSON's "
                         f"{committed['method']} row {committed['val_loss']!r}): run the whole benchmark")
    spent = finetune(teacher, bench, args.finetune)
    row = {"method": "float32 + fine-tune", "val_loss": bench.val_loss(teacher), "bytes": dense_bytes(teacher),
           "tokens_per_s": None, "training_flops": committed["training_flops"] + float(spent),
           "parameters": int(teacher.num_params()), "extra_steps": args.finetune,
           "tokens_per_s_note": "not timed: float32's architecture (see the float32 row); added by --add-baseline"}
    print(f"float32 (retrained) val {loss!r}, the JSON's {committed['val_loss']!r}; "
          f"float32 + fine-tune val {row['val_loss']:.6f}", flush=True)
    for r in result["rows"]:
        r.setdefault("extra_steps", extra_steps_of(r, result))
    result["rows"].insert(1, row)
    return result


def pareto_front(rows):
    """The rows no other row beats on both bytes and validation loss, by increasing bytes."""
    front, best = [], float("inf")
    for row in sorted(rows, key=lambda r: (r["bytes"], r["val_loss"])):
        if row["val_loss"] < best:
            front.append(row)
            best = row["val_loss"]
    return front


def pareto_fronts(rows):
    """{extra training steps: the Pareto front of the rows trained that much}, for every amount of
    training that two rows or more share: a row that trained longer is not compared with one that
    did not (a lone row, such as the distilled student, has no front to be on)."""
    groups = {}
    for row in rows:
        groups.setdefault(row["extra_steps"], []).append(row)
    return {steps: pareto_front(group) for steps, group in sorted(groups.items()) if len(group) > 1}


FAMILIES = (("float", "C0"), ("int", "C2"), ("unstructured", "C1"), ("heads", "C3"), ("rank", "C4"),
            ("distilled", "C6"))


def style(method):
    """(color, marker, filled) of a method: a color per family, a marker per member, hollow when
    fine-tuned."""
    color = next(c for key, c in FAMILIES if key in method)
    base = method.replace(" + fine-tune", "")
    marker = {"float32": "o", "float16 storage": "s", "int8": "D", "30% unstructured": "v", "50% unstructured": "^",
              "70% unstructured": "<", "25% heads pruned": "v", "50% heads pruned": "^"}.get(base, "o")
    if base.startswith("int4"):
        marker = "d"
    return color, marker, not method.endswith("+ fine-tune")


def plot(result, path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    from npgpt.plots.figures import save_figure
    fig = Figure(figsize=(10, 5.5))
    ax = fig.add_subplot()
    base, fronts = result["base_steps"], pareto_fronts(result["rows"])
    for row in result["rows"]:
        color, marker, filled = style(row["method"])
        alone = row["extra_steps"] not in fronts       # trained unlike any other row: compared with none
        label = row["method"] + (f" (+{row['extra_steps']} steps of its own: on no front)" if alone else "")
        ax.scatter(row["bytes"] / 1e6, row["val_loss"], marker=marker, s=60, zorder=3, label=label,
                   facecolors=color if filled else "none", edgecolors=color, linewidths=1.5)
    for (steps, front), line in zip(fronts.items(), ("k--", "k:", "k-.")):
        ax.plot([r["bytes"] / 1e6 for r in front], [r["val_loss"] for r in front], line, lw=1, zorder=2,
                label=f"Pareto front, {base} + {steps} steps" if steps else f"Pareto front, {base} steps")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if x in (0.6, 2, 3) else ""))
    ax.set_xlabel("storage (MB, log scale)")
    ax.set_ylabel(f"validation loss ({result['eval_batches']} fixed batches)")
    ax.set_title("What each compression method costs in quality (baby GPT, Tiny Shakespeare)\n"
                 f"filled: {base} training steps; hollow: {result['finetune_steps']} steps more (the float32 "
                 "baseline too); a front joins only equally trained points")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def main():
    args = parse_args()
    if args.replot:
        with open(args.out, encoding="utf-8") as f:
            plot(json.load(f), args.figure)
        return
    if args.add_baseline:
        result = add_baseline(args)
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
        plot(result, args.figure)
        print(f"wrote {os.path.relpath(args.out)} and {os.path.relpath(args.figure)}")
        return
    if args.fast:
        args.steps, args.finetune, args.distill_steps = min(args.steps, 30), min(args.finetune, 5), min(args.distill_steps, 10)
        args.eval_batches, args.gen_tokens = min(args.eval_batches, 5), min(args.gen_tokens, 20)
    result = run(args)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    plot(result, args.figure)
    print(f"wrote {os.path.relpath(args.out)} and {os.path.relpath(args.figure)}")


if __name__ == "__main__":
    main()
