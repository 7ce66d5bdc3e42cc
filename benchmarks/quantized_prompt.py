"""A quantized GPT-2's prompt with the KV cache: one batched pass per block against one token at a time.

:meth:`npgpt.allocation.quantize.QuantizedGPT.forward` with a cache runs a prompt of T > 1 tokens
block by block, each block's weights dequantized once for all T positions (``batched``); before,
it ran T one-token steps, each reading every integer (``token-by-token``, kept as
``QuantizedGPT._token_by_token``). Both fill a fresh cache with a ``--prompt``-token prompt (256)
on GPT-2 small's shapes with random weights (the speed does not depend on their values), for:

- ``int8``: the block matrices int8, one scale per channel;
- ``int4-g64``: the block matrices int4 in groups of 64 rows;
- ``int4-g64-all``: the token table, and so the output layer, int4 too (the batched head
  dequantizes 4096 rows of the table at a time, the one-token head reads the integers).

Each contender runs in its own process on ``--threads`` numba and BLAS threads; the rounds
alternate between them (:func:`npgpt.perf.harness.time_tasks`) and the figures are medians. Each
also reports tracemalloc's peak over one prompt (the arrays it allocates: cache, activations,
logits, the float weights of a block) and its logits at the prompt's last position, so the two
paths of one format are compared. Prints JSON and writes ``benchmarks/results/quantized_prompt.json``.

    python benchmarks/quantized_prompt.py [--prompt 256] [--rounds 5] [--threads 2]
"""
import argparse
import subprocess
import sys
import tracemalloc
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quantized_decode import command_line, machine, report  # noqa: E402
from npgpt import GPT, GPTConfig  # noqa: E402
from npgpt.allocation.quantize import quantize_model  # noqa: E402
from npgpt.checks import at_least  # noqa: E402
from npgpt.perf.harness import time_tasks  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "quantized_prompt.json"
FORMATS = {"int8": (8, None, False), "int4-g64": (4, 64, False), "int4-g64-all": (4, 64, True)}
MODES = ("batched", "token-by-token")


class PromptFill:
    """One timed call: a fresh cache filled with the prompt, by ``mode``, from ``fmt``'s weights."""

    def __init__(self, fmt: str, mode: str, prompt_tokens: int, threads: int) -> None:
        import numba
        from threadpoolctl import threadpool_limits

        from npgpt.kernels import backend
        from npgpt.runtime.process import use_generating_threads
        use_generating_threads()                     # as a generating process (npgpt.perf.gpt2_inference)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        self._limits = threadpool_limits(threads)
        backend.set_backend("numba")
        self.name, self.mode = f"{fmt} {mode}", mode
        cfg = GPTConfig.preset("gpt2")
        self.model = quantize_model(GPT(cfg, seed=0).eval(), *FORMATS[fmt])     # the float model is let go
        self.prompt = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, prompt_tokens))

    def fill(self) -> np.ndarray:
        cache = self.model.new_cache()
        if self.mode == "batched":
            return self.model.forward(self.prompt, cache=cache)[0]
        return self.model._token_by_token(self.prompt, cache)

    def peak_bytes(self) -> int:
        """tracemalloc's peak over one fill: the arrays it allocates (the stored integers excluded)."""
        tracemalloc.start()
        try:
            self.fill()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def last_logits(self) -> list[float]:
        return self.fill()[0, -1].tolist()


def lscpu_flags() -> list[str]:
    """The CPU's flags as ``lscpu`` lists them (empty where it cannot run)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags:")), [])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=at_least(2), default=256, help="prompt tokens (at most 1024)")
    parser.add_argument("--rounds", type=at_least(1), default=5, help="alternating timed rounds")
    parser.add_argument("--per-round", type=at_least(1), default=1, help="prompts per contender per round")
    parser.add_argument("--threads", type=at_least(1), default=2, help="numba and BLAS threads per contender")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.prompt > GPTConfig.preset("gpt2").block_size:
        parser.error(f"--prompt {args.prompt} exceeds GPT-2's block_size of 1024")
    makers = [partial(PromptFill, fmt, mode, args.prompt, args.threads) for fmt in args.formats for mode in MODES]
    medians, answers = time_tasks(makers, [("fill",)] * len(makers), warmup=1, rounds=args.rounds,
                                  repeats=args.per_round, ask=("peak_bytes", "last_logits"))
    rows = {}
    for fmt in args.formats:
        batched, reference = (f"{fmt} {mode}" for mode in MODES)
        z, z_ref = np.array(answers[batched]["last_logits"]), np.array(answers[reference]["last_logits"])
        rows[fmt] = {"batched_s": medians[batched]["fill"], "token_by_token_s": medians[reference]["fill"],
                     "speedup": medians[reference]["fill"] / medians[batched]["fill"],
                     "batched_peak_bytes": answers[batched]["peak_bytes"],
                     "token_by_token_peak_bytes": answers[reference]["peak_bytes"],
                     "last_logits_max_rel_diff": float(np.abs(z - z_ref).max() / np.abs(z_ref).max())}
    result = {"model": "gpt2 (124M, random weights)", "prompt_tokens": args.prompt, "rounds": args.rounds,
              "prompts_per_round": args.per_round, "threads": args.threads, "formats": rows,
              "machine": {**machine(), "flags": lscpu_flags()},
              "command": command_line("benchmarks/quantized_prompt.py", argv)}
    return report(result, None if args.no_write else RESULT)


if __name__ == "__main__":
    main()
