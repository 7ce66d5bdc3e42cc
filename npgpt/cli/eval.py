"""``python -m npgpt eval``: loss, perplexity and bits per character of a checkpoint's model on a
split of a corpus, by the sliding window of :mod:`npgpt.evaluation.perplexity`."""
import logging

from ..checks import UsageError
from .flags import add, command

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Register ``eval`` on the subcommands of ``python -m npgpt``."""
    from ..checks import at_least
    p = command(
        subparsers, "eval", help="perplexity and bits per character of a checkpoint on held-out text (document section 8)",
        description="Score every token of a split of the corpus exactly once with the model of a checkpoint "
                    "written by 'npgpt train' (a GPT or a recurrent model): a window of --window tokens "
                    "slides by --stride, and each window scores only the tokens no earlier window scored, "
                    "so each token gets between window - stride + 1 and window tokens of context. Prints "
                    "the mean loss (nats per token), the perplexity exp(loss), and bits per character and "
                    "per byte. The formulas are in npgpt/evaluation/perplexity.py.")
    source = p.add_mutually_exclusive_group(required=True)
    add(source, "--ckpt", help="checkpoint written by 'npgpt train' (OUT_DIR/ckpt.npz)")
    add(source, "--pretrained", metavar="DIR",
                        help="a Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt); "
                             "its byte-level BPE reads any text")
    add(p, "--data", default="shakespeare",
        help="the corpus the model was trained on (or, with --pretrained, any text): 'shakespeare', "
             "'fallback', or a text file; its last 10%% is the val split, as in training")
    add(p, "--split", choices=["val", "train"], default="val", help="which part of the corpus to score")
    add(p, "--stride", type=at_least(1),
                   help="tokens the window moves each time: 1 gives every token a full window (slowest, "
                        "the most context), the window size gives disjoint windows (default: half the window)")
    add(p, "--window", type=at_least(1), help="tokens the model sees at once (default: its block size)")
    add(p, "--batch-size", type=at_least(1), default=16, help="windows per forward pass")
    add(p, "--max-tokens", type=at_least(2), help="score only the first N tokens of the split")
    add(p, "--no-progress", action="store_true", default=False, help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..evaluation.perplexity import evaluate_text, window_and_stride
    from ..io.checkpoint import (
        check_same_corpus,
        model_from_checkpoint,
        read_checkpoint,
        tokenizer_from_checkpoint,
    )
    from ..text import load_corpus
    from ..training import Dataset

    corpus = load_corpus(args.data)
    text, description = corpus.text, corpus.description
    if args.pretrained is not None:
        from ..io.pretrained import load_pretrained
        model, tokenizer = load_pretrained(args.pretrained)
        if tokenizer is None:
            raise UsageError(f"{args.pretrained} has no vocab.json and merges.txt: eval needs GPT-2's tokenizer "
                             f"to turn --data into tokens")
        unknown = []                      # byte-level BPE: every text has tokens
    else:
        meta, arrays = read_checkpoint(args.ckpt)
        check_same_corpus(args.ckpt, meta, corpus)
        model = model_from_checkpoint(args.ckpt, meta, arrays)
        tokenizer = tokenizer_from_checkpoint(args.ckpt, meta)
        unknown = sorted(set(text) - set(tokenizer.chars))
    window, stride = window_and_stride(model, args.window, args.stride, names=("--window", "--stride"))
    if unknown:
        shown = ", ".join(repr(ch) for ch in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UsageError(f"--data {args.data} is not the corpus {args.ckpt} was trained on: it has "
                         f"{len(unknown)} characters the checkpoint's tokenizer does not know ({shown})")
    ids = Dataset(text, tokenizer).split(args.split)
    if args.max_tokens is not None:
        ids = ids[:args.max_tokens]
    if len(ids) < 2:
        raise UsageError(f"the {args.split} split of --data {args.data} has {len(ids)} tokens; scoring needs 2")
    log.info(f"model: {type(model).__name__}, {model.num_params():,} parameters, {model.config}")
    log.info(f"corpus: {description}, {args.split} split: {len(ids):,} tokens; window {window}, stride {stride}")
    score = evaluate_text(model, ids, tokenizer, stride, window, args.batch_size,
                          progress=not (args.no_progress or args.quiet))
    print(f"{args.split}: loss={score.loss:.4f} perplexity={score.perplexity:.4f} "
          f"bits_per_char={score.bits_per_character:.4f} bits_per_byte={score.bits_per_byte:.4f} "
          f"tokens={score.tokens} corpus={corpus.source}")
    if corpus.fell_back:
        log.warning(f"NOTE: scored on the built-in fallback corpus, NOT Tiny Shakespeare ({corpus.fallback_reason})")
    return 0
