"""BPE speed on Tiny Shakespeare: training time, speed-up over the naive trainer, encode throughput.

    python benchmarks/bench_bpe.py                   # everything (the naive trainer takes minutes)
    python benchmarks/bench_bpe.py --naive-runs 0    # skip the naive trainer
    python benchmarks/bench_bpe.py --json            # one JSON object

Reported: numba compile time of the first training in a fresh process with an empty numba cache
(cold) and with the cache filled (warm start); the median of several trainings to a 10,000-token
vocabulary (split into pre-tokenization and merging); the naive recount-every-merge trainer against
ours at vocabulary 1,000; encode MB/s of ours (empty piece cache, and filled) next to tiktoken's with
the same ranks; and Hugging Face ``tokenizers``' byte-level BPE trainer when it is installed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt.text.bpe import PATTERNS, BPETokenizer  # noqa: E402
from npgpt.verify.bpe_naive import train_naive  # noqa: E402


def default_data():
    data_dir = os.environ.get("NPGPT_DATA_DIR")
    base = Path(data_dir) if data_dir else ROOT.parent / "shared" / "data"
    return base / "tinyshakespeare.txt"


def timed(fn, runs):
    """Median wall time of ``runs`` calls (and the last result)."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def first_training_in_fresh_process(data, vocab_size, pattern, cache_dir=None):
    """Seconds for the first ``train`` call in a new Python (compile or cache load included)."""
    code = ("import time, sys; from npgpt.text.bpe import BPETokenizer; text = open(sys.argv[1]).read(); "
            "t = time.perf_counter(); BPETokenizer(sys.argv[3]).train(text, int(sys.argv[2])); "
            "print(time.perf_counter() - t)")
    env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache_dir} if cache_dir else {}))
    out = subprocess.run([sys.executable, "-c", code, str(data), str(vocab_size), pattern],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def bench_training(text, data, args):
    with tempfile.TemporaryDirectory() as empty_cache:
        cold = first_training_in_fresh_process(data, args.vocab, args.pattern, empty_cache)
    first_training_in_fresh_process(data, args.vocab, args.pattern)      # fills numba's cache if stale
    warm_start = first_training_in_fresh_process(data, args.vocab, args.pattern)
    tok = BPETokenizer(args.pattern)
    tok.train(text, args.vocab)                              # warm up this process
    train_s, _ = timed(lambda: tok.train(text, args.vocab, progress=False), args.runs)
    pretok_s, counts = timed(lambda: tok._count_pieces(text), args.runs)
    return tok, {"vocab_size": args.vocab, "train_s_median": train_s, "pretokenize_s_median": pretok_s,
                 "merge_s_median": train_s - pretok_s, "distinct_pretokens": len(counts),
                 "first_train_cold_compile_s": cold, "first_train_cached_s": warm_start}


def bench_naive(text, args):
    ours_s, tok = timed(lambda: BPETokenizer(args.pattern).train(text, args.naive_vocab), args.runs)
    result = {"vocab_size": args.naive_vocab, "ours_s_median": ours_s, "naive_runs": args.naive_runs}
    if args.naive_runs:
        naive_s, (_, log) = timed(lambda: train_naive(text, args.naive_vocab, args.pattern), args.naive_runs)
        assert log == tok.training_log, "the naive and fast trainers disagree"
        result.update(naive_s=naive_s, speedup=naive_s / ours_s)
    return result


def bench_encode(tok, text, args):
    megabytes = len(text.encode("utf-8")) / 1e6

    def ours_cold():
        tok._cache.clear()
        return tok.encode_ordinary(text)

    cold_s, ids = timed(ours_cold, args.runs)
    warm_s, _ = timed(lambda: tok.encode_ordinary(text), args.runs)
    result = {"megabytes": megabytes, "tokens": len(ids), "ours_mb_s_empty_cache": megabytes / cold_s,
              "ours_mb_s_filled_cache": megabytes / warm_s}
    try:
        import tiktoken
    except ImportError:
        return result
    enc = tiktoken.Encoding(name="bench", pat_str=PATTERNS[args.pattern],
                            mergeable_ranks=tok.mergeable_ranks, special_tokens={})
    tik_s, tik_ids = timed(lambda: enc.encode_ordinary(text), args.runs)
    result.update(tiktoken_mb_s=megabytes / tik_s, same_ids_as_tiktoken=tik_ids == ids)
    return result


def bench_hf(text, args):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        return None

    def train():
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=args.vocab, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(text.splitlines(keepends=True), trainer)
        return hf

    train()
    seconds, hf = timed(train, args.runs)
    return {"vocab_size": args.vocab, "train_s_median": seconds, "vocab": hf.get_vocab_size(),
            "threads": os.environ.get("RAYON_NUM_THREADS", f"all ({os.cpu_count()} cores)")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(),
                        help="training text (default: $NPGPT_DATA_DIR/tinyshakespeare.txt or "
                             "../shared/data/tinyshakespeare.txt beside the repo)")
    parser.add_argument("--pattern", default="gpt2", choices=sorted(PATTERNS))
    parser.add_argument("--vocab", type=int, default=10_000, help="vocabulary for the training timing")
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (the median is reported)")
    parser.add_argument("--naive-vocab", type=int, default=1_000, help="vocabulary for the naive comparison")
    parser.add_argument("--naive-runs", type=int, default=1,
                        help="naive trainer runs (0 skips it; one run takes minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"no training text at {args.data} (use --data or set NPGPT_DATA_DIR)")
    text = args.data.read_text(encoding="utf-8")

    tok, training = bench_training(text, args.data, args)
    results = {"data": str(args.data), "pattern": args.pattern, "training": training,
               "encode": bench_encode(tok, text, args), "hf_tokenizers": bench_hf(text, args),
               "naive": bench_naive(text, args)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    t, e, n, hf = results["training"], results["encode"], results["naive"], results["hf_tokenizers"]
    print(f"data: {args.data} ({e['megabytes']:.2f} MB), pattern {args.pattern}, medians of {args.runs} runs")
    print(f"train to {t['vocab_size']}: {t['train_s_median']:.3f} s "
          f"(pre-tokenize {t['pretokenize_s_median']:.3f} s + merges {t['merge_s_median']:.3f} s; "
          f"{t['distinct_pretokens']} distinct pre-tokens)")
    print(f"first training in a fresh process: {t['first_train_cold_compile_s']:.2f} s with numba compiling, "
          f"{t['first_train_cached_s']:.2f} s from numba's cache")
    if hf:
        print(f"HF tokenizers BPE trainer to {hf['vocab_size']}: {hf['train_s_median']:.3f} s "
              f"(threads: {hf['threads']})")
    print(f"encode: ours {e['ours_mb_s_empty_cache']:.2f} MB/s (empty cache), "
          f"{e['ours_mb_s_filled_cache']:.2f} MB/s (filled); "
          f"tiktoken {e.get('tiktoken_mb_s', float('nan')):.2f} MB/s; "
          f"same ids: {e.get('same_ids_as_tiktoken', 'tiktoken not installed')}")
    line = f"vocab {n['vocab_size']}: ours {n['ours_s_median']:.3f} s"
    if "naive_s" in n:
        line += f", naive {n['naive_s']:.1f} s ({n['naive_runs']} run): {n['speedup']:.0f}x faster"
    print(line)


if __name__ == "__main__":
    main()
