"""Command line: ``python -m npgpt train|sample|params`` (``--help`` on each explains every flag)."""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .config import PRESETS, GPTConfig
from .models import RECURRENT_PRESETS, RecurrentConfig
from .tools import bench
from .training.checkpoint import build_model, model_from_checkpoint, read_checkpoint
from .training.trainer import TrainConfig, Trainer, TrainingDiverged

STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "beam")
MODELS = ("gpt", "lstm", "gru", "rnn")
GPT_ONLY_FLAGS = {"n_head": "--n-head", "bias": "--bias", "pos_encoding": "--pos-encoding",
                  "tie_weights": "--tie-weights"}


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- train
def add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train a GPT (or an LSTM, GRU, RNN) on a text corpus, then sample from it",
        description="Train a character-level GPT, or a recurrent language model with --model, evaluate "
                    "it, save checkpoints, and print a sample. Defaults are nanoGPT's CPU recipe "
                    "(preset 'baby').",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="shakespeare",
                   help="corpus: 'shakespeare' (Tiny Shakespeare: $NPGPT_DATA_DIR, the user cache, else a "
                        "download; falls back to the built-in corpus offline), 'fallback' (built-in), "
                        "or the path of any UTF-8 text file")
    p.add_argument("--out-dir", default="runs/baby", help="where checkpoint, loss curve and sample go")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.npz")
    m = p.add_argument_group("model (override the preset)")
    m.add_argument("--model", choices=MODELS,
                   help="model family: gpt (decoder-only transformer), or a recurrent LM: lstm, gru, rnn "
                        "(tanh); unset means gpt, or on --resume whatever the checkpoint holds")
    m.add_argument("--preset", default="baby", choices=sorted(PRESETS),
                   help="model shape to start from (recurrent models: "
                        f"{', '.join(sorted(RECURRENT_PRESETS))})")
    m.add_argument("--n-layer", type=int, help="transformer blocks, or stacked recurrent layers")
    m.add_argument("--n-head", type=int, help="attention heads (must divide --n-embd; gpt only)")
    m.add_argument("--n-embd", type=int, help="model width (recurrent models: the embedding width)")
    m.add_argument("--n-hidden", type=int, help="state width of a recurrent model (lstm, gru, rnn only)")
    m.add_argument("--block-size", type=int, help="context length in tokens")
    m.add_argument("--dropout", type=float, help="dropout probability while training")
    m.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="biases in linear layers and LayerNorms (gpt only)")
    m.add_argument("--pos-encoding", choices=["learned", "sinusoidal"], help="position encoding (gpt only)")
    m.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="share the token embedding with the output layer (gpt only)")
    m.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameter dtype")
    o = p.add_argument_group("optimisation")
    d = TrainConfig()
    o.add_argument("--max-iters", type=int, default=d.max_iters, help="training steps")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    o.add_argument("--optimizer", choices=["adamw", "sgd"], default=d.optimizer, help="update rule")
    o.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    o.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    o.add_argument("--warmup-iters", type=int, default=d.warmup_iters, help="linear warmup steps")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay (2-D weights and embeddings only)")
    o.add_argument("--beta1", type=float, default=d.beta1, help="AdamW first-moment decay")
    o.add_argument("--beta2", type=float, default=d.beta2, help="AdamW second-moment decay")
    o.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    o.add_argument("--grad-clip", type=float, default=d.grad_clip, help="global gradient-norm clip (0: off)")
    o.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation, batches and dropout")
    e = p.add_argument_group("evaluation and output")
    e.add_argument("--eval-interval", type=int, default=d.eval_interval, help="steps between evaluations")
    e.add_argument("--eval-iters", type=int, default=d.eval_iters, help="batches per split per evaluation")
    e.add_argument("--final-eval-iters", type=int, default=400,
                   help="batches per split for the final summary line")
    e.add_argument("--sample-tokens", type=int, default=300, help="characters to generate at the end (0: none)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train)


def model_config_from_args(args, vocab_size):
    """A GPTConfig, or a RecurrentConfig for ``--model lstm|gru|rnn``; flags that do not belong to the
    chosen family are a CLIError."""
    kind = args.model or "gpt"
    if kind == "gpt":
        if args.n_hidden is not None:
            raise CLIError("--n-hidden sets a recurrent model's state width; a GPT's width is --n-embd "
                           "(or pass --model lstm, gru or rnn)")
        overrides = {name: getattr(args, name) for name in
                     ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "pos_encoding",
                      "tie_weights") if getattr(args, name) is not None}
        return GPTConfig.preset(args.preset, vocab_size=vocab_size, **overrides)
    given = [flag for name, flag in GPT_ONLY_FLAGS.items() if getattr(args, name) is not None]
    if given:
        raise CLIError(f"{', '.join(given)} {'is a GPT option' if len(given) == 1 else 'are GPT options'}; "
                       f"a recurrent model (--model {kind}) takes --n-layer, --n-embd, --n-hidden, "
                       f"--block-size and --dropout")
    if args.preset not in RECURRENT_PRESETS:
        raise CLIError(f"--preset {args.preset} is a GPT shape; recurrent models have "
                       f"{', '.join(sorted(RECURRENT_PRESETS))}")
    overrides = {name: getattr(args, name) for name in ("n_layer", "n_embd", "n_hidden", "block_size", "dropout")
                 if getattr(args, name) is not None}
    return RecurrentConfig.preset(args.preset, vocab_size=vocab_size, cell=kind, **overrides)


def checkpoint_model_kind(meta):
    """"gpt", or the recurrent cell ("lstm", "gru", "rnn") of a checkpoint's model."""
    return meta["model_config"].get("cell", "gpt")


def train_config_from_args(args):
    names = ("max_iters", "batch_size", "optimizer", "lr", "min_lr", "warmup_iters", "weight_decay",
             "beta1", "beta2", "momentum", "grad_clip", "eval_interval", "eval_iters", "seed")
    return TrainConfig(**{name: getattr(args, name) for name in names})


def run_train(args):
    from .decoding import generate
    from .text import CharTokenizer, resolve_corpus
    from .training import Dataset

    out_dir = Path(args.out_dir)
    ckpt = out_dir / "ckpt.npz"
    text, description = resolve_corpus(args.data)
    print(f"corpus: {description}, {len(text):,} characters")
    if args.resume:
        meta, _ = read_checkpoint(ckpt)
        kind = checkpoint_model_kind(meta)
        if args.model is not None and args.model != kind:
            raise CLIError(f"--model {args.model} does not match {ckpt}, whose model is {kind}; "
                           f"pass --model {kind} or leave --model out to resume it")
        tokenizer = CharTokenizer.from_json(meta["tokenizer"])
        data = Dataset(text, tokenizer)
        trainer = Trainer.from_checkpoint(ckpt, data, tokenizer, max_iters=args.max_iters)
        print(f"resuming from {ckpt} at step {trainer.step}")
    else:
        data = Dataset(text)
        tokenizer = data.tokenizer
        config = model_config_from_args(args, data.vocab_size)
        model = build_model(config, seed=args.seed, dtype=np.dtype(args.dtype))
        trainer = Trainer(model, data, train_config_from_args(args), tokenizer)
    model = trainer.model
    print(f"model: {type(model).__name__}, {model.num_params():,} parameters, {model.config}")

    start = time.perf_counter()
    trainer.train(checkpoint_path=ckpt, progress=not args.no_progress)
    wall = time.perf_counter() - start
    if trainer.step < trainer.config.max_iters:      # interrupted
        return 130
    final = trainer.evaluate(args.final_eval_iters)
    save_loss_curve(trainer.history, out_dir / "loss.png")
    if args.sample_tokens > 0:
        prompt = tokenizer.encode("\n")[:1] if "\n" in tokenizer.stoi else np.zeros(1, np.int64)
        ids = generate(model, prompt, args.sample_tokens, strategy="temperature", temperature=0.8, seed=args.seed)
        print("sample:\n" + tokenizer.decode(ids) + "\n")
    print(f"final: step={trainer.step} train_loss={final['train']:.4f} val_loss={final['val']:.4f} "
          f"wall_s={wall:.1f}")
    print(f"checkpoint: {ckpt}   loss curve: {out_dir / 'loss.png'}")
    return 0


def save_loss_curve(history, path):
    from .tools.plotting import plot_loss_curve
    plot_loss_curve(history, path=path)


# ----------------------------------------------------------------------------- sample
def add_sample_parser(sub):
    p = sub.add_parser(
        "sample", help="generate text from a checkpoint",
        description="Continue a prompt with a trained model (document section 3, step 3: output decoding).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by 'npgpt train' (OUT_DIR/ckpt.npz)")
    p.add_argument("--prompt", default="\n", help="text to continue (characters must be in the vocabulary)")
    p.add_argument("--strategy", choices=STRATEGIES, default="top-k", help="decoding strategy")
    p.add_argument("--max-new-tokens", type=int, default=300, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (sampling strategies)")
    p.add_argument("--top-k", type=int, default=40, help="keep the k most likely tokens (top-k)")
    p.add_argument("--top-p", type=float, default=0.9, help="keep the smallest set with this probability (top-p)")
    p.add_argument("--beam-width", type=int, default=4, help="hypotheses kept (beam)")
    p.add_argument("--num-samples", type=int, default=1, help="independent samples to print")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context for every token")
    p.set_defaults(run=run_sample)


def run_sample(args):
    from .decoding import beam_search, generate
    from .text import CharTokenizer

    meta, arrays = read_checkpoint(args.ckpt)
    if not meta.get("tokenizer"):
        raise CLIError(f"{args.ckpt} holds no tokenizer; it cannot decode text")
    tokenizer = CharTokenizer.from_json(meta["tokenizer"])
    model = model_from_checkpoint(args.ckpt, meta, arrays)
    prompt = tokenizer.encode(args.prompt)
    for i in range(args.num_samples):
        if args.strategy == "beam":
            ids, _ = beam_search(model, prompt, args.max_new_tokens, beam_width=args.beam_width,
                                 use_cache=not args.no_cache)
        else:
            ids = generate(model, prompt, args.max_new_tokens, strategy=args.strategy,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed + i, use_cache=not args.no_cache)
        print(tokenizer.decode(ids))
        if i + 1 < args.num_samples:
            print("-" * 40)
    return 0


# ----------------------------------------------------------------------------- params
def add_params_parser(sub):
    p = sub.add_parser("params", help="parameter counts: the document's claim vs computed",
                       description="Compare the document's parameter claim (section 4.1) with counts "
                                   "computed from the architectures.")
    p.set_defaults(run=run_params)


def run_params(args):
    from .tools.counting import document_parameter_report
    for label, count in document_parameter_report():
        print(f"{label:<52} {count:>14,}")
    return 0


# ----------------------------------------------------------------------------- entry point
def build_parser():
    parser = argparse.ArgumentParser(
        prog="npgpt", description="npgpt: a GPT you can read. Train, sample, count, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    add_sample_parser(sub)
    add_params_parser(sub)
    bench.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except TrainingDiverged as e:
        print(f"npgpt: training stopped: {e}", file=sys.stderr)
        return 1
    except (CLIError, ValueError, FileNotFoundError) as e:
        print(f"npgpt {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
