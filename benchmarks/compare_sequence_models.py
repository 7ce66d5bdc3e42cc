"""RNN, LSTM, GRU and GPT on character-level Tiny Shakespeare (document sections 2 and 3, step 2):
about the same parameter count (~0.8M), the same training batches, the same number of steps.

    python benchmarks/compare_sequence_models.py                    # 600 steps each, figures + results
    python benchmarks/compare_sequence_models.py --steps 50 --json  # a quick look, one JSON object
    python benchmarks/compare_sequence_models.py --models lstm gpt  # a subset
    python benchmarks/compare_sequence_models.py --replot           # figures and table from the saved JSON

Every model is trained by npgpt.Trainer with one recipe (AdamW, warmup then cosine, gradient clip
1.0, dropout 0, batch 12 x 64 characters); the batches come from the trainer's seeded generator, so
all models see the same ones. Reported per model: parameters, the mean val (and train) loss over a
fixed set of batches, training tokens per second (training steps only, evaluation excluded), and the
gradient-through-time curves of npgpt.training.comparison.input_gradient_norms at initialisation and after
training. Writes figures/sequence_models_loss.png, figures/vanishing_gradients.png and the results
JSON that notebook 03 reads. Run it on one core for comparable tokens/s:

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/compare_sequence_models.py
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import npgpt  # noqa: E402
from npgpt.io.checkpoint import build_model  # noqa: E402
from npgpt.plots.sequence_models import plot_sequence_model_losses, plot_vanishing_gradients  # noqa: E402
from npgpt.training import comparison as analysis  # noqa: E402
from npgpt.training.trainer import TrainConfig  # noqa: E402

MODELS = ("rnn", "lstm", "gru", "gpt")
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "compare_sequence_models.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="training steps per model (default 600)")
    p.add_argument("--data", default="shakespeare",
                   help="corpus for npgpt.resolve_corpus: 'shakespeare' (default; $NPGPT_DATA_DIR), "
                        "'fallback', or a text file")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to train")
    p.add_argument("--batch-size", type=int, default=12, help="sequences per step (default 12)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, for every model (default 2e-3)")
    p.add_argument("--eval-batches", type=int, default=100,
                   help="fixed val/train batches for the final losses (default 100)")
    p.add_argument("--eval-every", type=int, default=50, help="steps between val points on the curves")
    p.add_argument("--eval-iters", type=int, default=10, help="batches per val point on the curves")
    p.add_argument("--seed", type=int, default=1337, help="initialisation and batch seed")
    p.add_argument("--grad-sequences", type=int, default=8,
                   help="random sequences averaged in each gradient-through-time curve")
    p.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p.add_argument("--out", default=str(DEFAULT_RESULTS),
                   help="where to write the results JSON ('' for nowhere)")
    p.add_argument("--figures-dir", default=str(ROOT / "figures"), help="where the figures go ('' for none)")
    p.add_argument("--replot", action="store_true",
                   help="train nothing: redraw the figures and the table from the results JSON (--out)")
    return p.parse_args(argv)


def run(args, log):
    text, description = npgpt.resolve_corpus(args.data)
    data = npgpt.Dataset(text)
    log(f"corpus: {description}, {len(text):,} characters, vocabulary {data.vocab_size}")
    configs = {name: cfg for name, cfg in analysis.comparison_configs(data.vocab_size).items()
               if name in args.models}
    tc = TrainConfig(max_iters=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                     warmup_iters=min(100, args.steps // 10), weight_decay=0.1, grad_clip=1.0,
                     seed=args.seed)
    seq_len = min(64, data.vocab_size, *(c.block_size for c in configs.values()))
    results = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
               "corpus": description, "vocab_size": data.vocab_size, "steps": args.steps,
               "batch_size": args.batch_size, "block_size": 64, "train_config": vars(tc),
               "eval_batches": args.eval_batches, "backend": npgpt.get_backend(),
               "threads": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")},
               "machine": platform.machine(), "python": platform.python_version(),
               "numpy": np.__version__, "models": {},
               "gradient_norms": {"seq_len": seq_len, "n_sequences": args.grad_sequences,
                                  "init": {}, "trained": {}}}
    for name, cfg in configs.items():
        model = build_model(cfg, seed=args.seed)
        log(f"{name}: {model.num_params():,} parameters, {cfg}")
        grads = results["gradient_norms"]
        grads["init"][name] = analysis.input_gradient_norms(model, seq_len, args.grad_sequences).tolist()
        r = analysis.train_and_evaluate(model, data, tc, args.eval_batches, args.eval_every, args.eval_iters,
                                        log=log)
        grads["trained"][name] = analysis.input_gradient_norms(model, seq_len, args.grad_sequences).tolist()
        r["config"] = cfg.to_dict()
        results["models"][name] = r
        log(f"{name}: val {r['val_loss']:.4f}  train {r['train_loss']:.4f}  "
            f"{r['tokens_per_s']:,.0f} tokens/s  ({r['train_seconds']:.0f} s)")
    return results


def table(results):
    rows = [f"{'model':<6} {'params':>9} {'val loss':>9} {'train loss':>10} {'tokens/s':>9} {'train s':>8}"]
    for name, r in results["models"].items():
        rows.append(f"{name:<6} {r['params']:>9,} {r['val_loss']:>9.4f} {r['train_loss']:>10.4f} "
                    f"{r['tokens_per_s']:>9,.0f} {r['train_seconds']:>8.0f}")
    return "\n".join(rows)


def save_figures(results, figures_dir, log):
    figures_dir = Path(figures_dir)
    steps = results["steps"]
    loss_path = figures_dir / "sequence_models_loss.png"
    plot_sequence_model_losses(
        results["models"], path=loss_path,
        title=f"Tiny Shakespeare, ~0.8M parameters each, {steps} steps of 12 x 64 characters")
    g = results["gradient_norms"]
    grad_path = figures_dir / "vanishing_gradients.png"
    plot_vanishing_gradients(
        {"at initialisation": g["init"], f"after {steps} training steps": g["trained"]}, path=grad_path,
        title=f"Gradient of the last position's loss reaching the input k steps back "
              f"(T = {g['seq_len']}, {g['n_sequences']} random sequences)")
    log(f"figures: {loss_path}, {grad_path}")


def rounded(obj, digits=5):
    """``obj`` with every float rounded to ``digits`` significant digits (a smaller results file)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def main(argv=None):
    args = parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    if args.replot:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
    else:
        start = time.perf_counter()
        results = run(args, log)
        results["wall_seconds"] = time.perf_counter() - start
    if args.out and not args.replot:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rounded(results), separators=(",", ":")) + "\n", encoding="utf-8")
        log(f"results: {out}")
    if args.figures_dir:
        save_figures(results, args.figures_dir, log)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"\n{table(results)}\n\n{results['steps']} steps x {results['batch_size']} x "
              f"{results['block_size']} characters each, same batches; val/train loss: mean over "
              f"{results['eval_batches']} fixed batches; tokens/s: training steps only "
              f"(backend {results['backend']}); total {results['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
