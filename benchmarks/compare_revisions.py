"""Is a change slower? `npgpt bench` of two git revisions, alternating processes, medians.

    python benchmarks/compare_revisions.py --before b1d8a01 --after HEAD --rounds 4

Each revision is checked out into its own temporary worktree (its numba cache compiled there
first, by an untimed run), then the two run `python -m npgpt bench --preset PRESET --no-torch
--no-compile --json` in turn, ``--rounds`` times each, so a machine that gets busier or quieter
slows both alike. The order alternates (before, after; after, before; ...): a revision that always
ran second would always start on a machine still busy with the first one's exit. The figures are
medians over the rounds of each run's median step time, and the median over rounds of the paired
ratio after/before (each round's two runs side by side); the result is written to ``--out`` (a
JSON file) and printed as a table. Run it on a quiet machine. ``--after`` equal to ``--before``
measures the protocol itself: its ratios show how far from 1 two identical trees read.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)
    return where


def bench(tree: Path, preset: str, threads: int, gen_tokens: int) -> dict:
    """One `npgpt bench` run of the revision checked out in ``tree`` (its own npgpt, not this one)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-m", "npgpt", "bench", "--preset", preset, "--no-torch", "--no-compile", "--json",
                           "--threads", str(threads), "--gen-tokens", str(gen_tokens)], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def figures(result: dict, preset: str) -> dict[str, float]:
    """The numbers compared: each backend's ms per training step, and cached generation tokens/s."""
    training = result["presets"][preset]["training"]
    out = {f"{name} ms/step": run["ms_per_step"] for name, run in training.items()}
    generation = result.get(f"generation_{preset}")
    if generation:
        out["generation tokens/s (cache)"] = generation["tokens_per_s_with_cache"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision measured first in each round")
    parser.add_argument("--after", default="HEAD", help="git revision measured second in each round")
    parser.add_argument("--preset", default="baby")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=200,
                        help="new tokens of the generation timing (bench's default, 200, times about 50 ms: "
                             "too short to resolve a 10%% change on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the runs and medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {label: checkout(rev, Path(tmp) / label) for label, rev in (("before", args.before),
                                                                           ("after", args.after))}
        try:
            for tree in trees.values():                       # numba compiles into each tree's cache
                bench(tree, args.preset, args.threads, args.gen_tokens)
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
            for round_ in range(args.rounds):
                order = list(trees.items()) if round_ % 2 == 0 else list(trees.items())[::-1]
                for label, tree in order:
                    runs[label].append(figures(bench(tree, args.preset, args.threads, args.gen_tokens), args.preset))
                    print(f"round {round_ + 1} {label}: {runs[label][-1]}", file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    medians = {label: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for label, rs in runs.items()}
    paired = {key: statistics.median(a[key] / b[key] for b, a in zip(runs["before"], runs["after"]))
              for key in runs["before"][0]}
    print(f"{'':34s} {'before':>10s} {'after':>10s} {'after/before':>13s} {'paired ratio':>13s}")
    for key in medians["before"]:
        b, a = medians["before"][key], medians["after"].get(key, float("nan"))
        print(f"{key:34s} {b:10.2f} {a:10.2f} {a / b:13.3f} {paired[key]:13.3f}")
    if args.out:
        args.out.write_text(json.dumps({"before": args.before, "after": args.after, "preset": args.preset,
                                        "threads": args.threads, "runs": runs, "medians": medians, "paired_ratios": paired}, indent=1) + "\n")


if __name__ == "__main__":
    main()
