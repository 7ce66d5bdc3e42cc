"""BPE speed on Tiny Shakespeare: training time, speed-up over the naive trainer, encode throughput.

    python benchmarks/bench_bpe.py                   # everything (the naive trainer takes minutes)
    python benchmarks/bench_bpe.py --naive-runs 0    # skip the naive trainer
    python benchmarks/bench_bpe.py --json            # one JSON object
    python benchmarks/bench_bpe.py --encode-only --out benchmarks/results/bpe_encode.json

Reported: numba compile time of the first training in a fresh process with an empty numba cache
(cold) and with the cache filled (warm start); the median of several trainings to a 10,000-token
vocabulary (split into pre-tokenization and merging); the naive recount-every-merge trainer against
ours at vocabulary 1,000; encode MB/s of ours next to tiktoken's with the same ranks, timed in turn in
one process (medians), for one text and for a batch of texts on 1 and 2 threads, and of the readable
way (a custom pattern: regex, dict cache, Python merges) from an empty cache and a filled one; and
Hugging Face ``tokenizers``' byte-level BPE trainer when it is installed.
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


def alternating(functions, runs):
    """Median wall time of each function, called in turn ``runs`` times (so drifts in the machine's
    speed fall on all alike); after one untimed warm-up call each."""
    for fn in functions.values():
        fn()
    times = {name: [] for name in functions}
    for _ in range(runs):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def loaded_copy(tok, pattern):
    """``tok``'s vocabulary saved and loaded again, with ``pattern``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.tiktoken"
        tok.save_tiktoken(path)
        return BPETokenizer.load_tiktoken(path, pattern=pattern)


def batch_of(text, parts):
    """``text`` cut at line ends into ``parts`` texts of about equal size."""
    lines = text.splitlines(keepends=True)
    step = -(-len(lines) // parts)
    return ["".join(lines[k:k + step]) for k in range(0, len(lines), step)]


def bench_encode(tok, text, args):
    megabytes = len(text.encode("utf-8")) / 1e6
    fresh = loaded_copy(tok, tok.pattern)
    start = time.perf_counter()
    ids = fresh.encode_ordinary(text)
    first_s = time.perf_counter() - start
    twin = loaded_copy(tok, f"(?:{tok.pattern})")     # a custom pattern of the same meaning: the readable way

    def readable_empty_cache():
        twin._cache.clear()
        return twin.encode_ordinary(text)

    batch = batch_of(text, args.batch)
    contenders = {"ours": lambda: tok.encode_ordinary(text),
                  "ours_batch_1_thread": lambda: tok.encode_ordinary_batch(batch, num_threads=1),
                  "ours_batch_2_threads": lambda: tok.encode_ordinary_batch(batch, num_threads=2),
                  "readable_empty_cache": readable_empty_cache,
                  "readable_filled_cache": lambda: twin.encode_ordinary(text)}
    try:
        import tiktoken
        enc = tiktoken.Encoding(name="bench", pat_str=PATTERNS[args.pattern],
                                mergeable_ranks=tok.mergeable_ranks, special_tokens={})
        contenders |= {"tiktoken": lambda: enc.encode_ordinary(text),
                       "tiktoken_batch_1_thread": lambda: enc.encode_ordinary_batch(batch, num_threads=1),
                       "tiktoken_batch_2_threads": lambda: enc.encode_ordinary_batch(batch, num_threads=2)}
    except ImportError:
        enc = None
    seconds = alternating(contenders, args.runs)
    result = {"megabytes": megabytes, "tokens": len(ids), "batch_texts": len(batch),
              "first_encode_of_a_loaded_tokenizer_s": first_s,
              "mb_s": {name: megabytes / s for name, s in seconds.items()},
              "same_ids_readable": readable_empty_cache() == ids,
              "same_ids_batch": tok.encode_ordinary_batch(batch) == [tok.encode_ordinary(t) for t in batch]}
    if enc is not None:
        result["same_ids_as_tiktoken"] = enc.encode_ordinary(text) == ids
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
    parser.add_argument("--batch", type=int, default=64, help="texts in the encode_batch timing")
    parser.add_argument("--encode-only", action="store_true",
                        help="only the encoding timings (training to --vocab first, untimed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"no training text at {args.data} (use --data or set NPGPT_DATA_DIR)")
    text = args.data.read_text(encoding="utf-8")

    if args.encode_only:
        tok = BPETokenizer(args.pattern).train(text, args.vocab, progress=False)
        results = {"data": args.data.name, "pattern": args.pattern, "vocab_size": args.vocab,
                   "runs": args.runs, "machine": machine(), "encode": bench_encode(tok, text, args)}
    else:
        tok, training = bench_training(text, args.data, args)
        results = {"data": str(args.data), "pattern": args.pattern, "training": training,
                   "encode": bench_encode(tok, text, args), "hf_tokenizers": bench_hf(text, args),
                   "naive": bench_naive(text, args), "machine": machine()}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    e = results["encode"]
    print(f"data: {args.data} ({e['megabytes']:.2f} MB), pattern {args.pattern}, medians of {args.runs} runs")
    print_encode(e)
    if args.encode_only:
        return
    t, n, hf = results["training"], results["naive"], results["hf_tokenizers"]
    print(f"train to {t['vocab_size']}: {t['train_s_median']:.3f} s "
          f"(pre-tokenize {t['pretokenize_s_median']:.3f} s + merges {t['merge_s_median']:.3f} s; "
          f"{t['distinct_pretokens']} distinct pre-tokens)")
    print(f"first training in a fresh process: {t['first_train_cold_compile_s']:.2f} s with numba compiling, "
          f"{t['first_train_cached_s']:.2f} s from numba's cache")
    if hf:
        print(f"HF tokenizers BPE trainer to {hf['vocab_size']}: {hf['train_s_median']:.3f} s "
              f"(threads: {hf['threads']})")
    line = f"vocab {n['vocab_size']}: ours {n['ours_s_median']:.3f} s"
    if "naive_s" in n:
        line += f", naive {n['naive_s']:.1f} s ({n['naive_runs']} run): {n['speedup']:.0f}x faster"
    print(line)


def print_encode(e):
    mb_s = e["mb_s"]
    print(f"encode MB/s (same ids as tiktoken: {e.get('same_ids_as_tiktoken', 'tiktoken not installed')}):")
    for name, value in mb_s.items():
        print(f"  {name:28s} {value:7.2f}")
    print(f"  first encode of a freshly loaded tokenizer (its tables built, once): "
          f"{e['first_encode_of_a_loaded_tokenizer_s']:.2f} s")


def machine():
    from benchmarks.quantized_decode import machine as cpu  # the CPU's model, AVX2/AVX-512, caches
    return cpu()


if __name__ == "__main__":
    main()
