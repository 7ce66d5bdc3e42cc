"""Cached generation from int8 (and int4) weights against npgpt's fused float32 decoding.

Tokens per second generating ``--new-tokens`` tokens greedily, with the KV cache, from a short
prompt, on a preset with random weights (the speed does not depend on their values):

- ``float32``: :class:`npgpt.GPT` and its fused one-token kernel (:mod:`npgpt.kernels.decode`);
- ``int8``: :func:`npgpt.allocation.quantize.quantize_model` (per-channel), its one-token step
  the numba kernel that reads the int8 weights (:mod:`npgpt.kernels.quantized`);
- ``int4-g64``: the same with int4 weights in groups of 64 rows, two to a byte.

A token reads every block weight once: on the small preset 42 MB of float32, more than the
last-level cache holds, against 11 MB of int8 and 6 MB of int4. Each contender runs in its own
process and the rounds alternate between them (:func:`npgpt.perf.harness.time_training`); the
figures are medians over every timed generation. Prints JSON and writes
``benchmarks/results/quantized_decode.json``.

    python benchmarks/quantized_decode.py [--preset small] [--new-tokens 200] [--rounds 7]
"""
import argparse
import json
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npgpt import GPT, GPTConfig, generate  # noqa: E402
from npgpt.allocation.quantize import QuantizedGPT  # noqa: E402
from npgpt.atomic import atomic_write_text  # noqa: E402
from npgpt.checks import at_least  # noqa: E402
from npgpt.perf.harness import time_training  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "quantized_decode.json"
PROMPT_TOKENS = 8
FORMATS = {"float32": None, "int8": (8, None), "int4-g64": (4, 64)}


class Generation:
    """One timed step: ``new_tokens`` tokens generated greedily with the cache."""

    def __init__(self, preset, fmt, new_tokens, threads):
        import numba
        from threadpoolctl import threadpool_limits
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self._limits = threadpool_limits(threads)
        self.name, self.new_tokens = fmt, new_tokens
        model = GPT(GPTConfig.preset(preset), seed=0)
        self.model = model if FORMATS[fmt] is None else QuantizedGPT.from_float(model, *FORMATS[fmt])
        self.prompt = np.random.default_rng(0).integers(0, model.config.vocab_size, PROMPT_TOKENS)

    def step(self):
        generate(self.model, self.prompt, self.new_tokens)


def weight_bytes(preset):
    """Bytes of the block matrices (what every token reads) and of the whole model, per format."""
    model = GPT(GPTConfig.preset(preset), seed=0)
    float_matrices = sum(p.nbytes for name, p in model.params.items()
                         if name.startswith("transformer.h.") and p.ndim == 2)
    rows = {"float32": {"block_matrices": float_matrices, "model": sum(p.nbytes for p in model.params.values())}}
    for fmt, spec in FORMATS.items():
        if spec is not None:
            q = QuantizedGPT.from_float(model, *spec)
            rows[fmt] = {"block_matrices": sum(a.nbytes + s.nbytes for a, s in q.quantized.values()),
                         "model": q.num_bytes()}
    return rows


def machine():
    """The CPU's model name, whether it has AVX-512, and its cache sizes (from ``lscpu``)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"lscpu": "unavailable"}
    fields = dict(re.findall(r"^([^:\n]+):\s*(.*)$", text, re.M))
    flags = fields.get("Flags", "").split()
    return {"model_name": fields.get("Model name"), "cpus": fields.get("CPU(s)"),
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags,
            "caches": {k: v for k, v in fields.items() if k.strip().endswith("cache")}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["baby", "small"])
    parser.add_argument("--new-tokens", type=at_least(1), default=200)
    parser.add_argument("--rounds", type=at_least(1), default=7, help="alternating timed rounds")
    parser.add_argument("--per-round", type=at_least(1), default=2, help="generations per contender per round")
    parser.add_argument("--threads", type=at_least(1), default=1, help="numba and BLAS threads per contender")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if PROMPT_TOKENS + args.new_tokens > GPTConfig.preset(args.preset).block_size:
        parser.error(f"--new-tokens {args.new_tokens} plus the {PROMPT_TOKENS}-token prompt exceed the "
                     f"preset's block_size: the window would restart (set fewer)")
    makers = [partial(Generation, args.preset, fmt, args.new_tokens, args.threads) for fmt in FORMATS]
    seconds = time_training(makers, warmup=1, rounds=args.rounds, steps_per_round=args.per_round)
    tokens_per_s = {fmt: args.new_tokens / s for fmt, s in seconds.items()}
    result = {
        "preset": args.preset, "prompt_tokens": PROMPT_TOKENS, "new_tokens": args.new_tokens,
        "rounds": args.rounds, "generations_per_round": args.per_round, "threads": args.threads,
        "tokens_per_s": tokens_per_s,
        "ratio_vs_float32": {fmt: tokens_per_s[fmt] / tokens_per_s["float32"] for fmt in FORMATS},
        "bytes": weight_bytes(args.preset),
        "machine": machine(),
        "command": command_line("benchmarks/quantized_decode.py", argv),
    }
    return report(result, None if args.no_write else RESULT)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran ``script`` with ``argv`` (this process's arguments when None)."""
    return " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def report(result: dict, path: Path | None) -> dict:
    """Print ``result`` as JSON and write it to ``path`` (whole or not at all) unless that is None."""
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        atomic_write_text(path, text + "\n")
    return result


if __name__ == "__main__":
    main()
