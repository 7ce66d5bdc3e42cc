"""The planner on three budgets (issue 13): writes benchmarks/results/plans.json, the answers that
notebook 08 prints. The FLOP rate is measured on this machine, so the wall times are this machine's.

    python benchmarks/plans.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

from npgpt.allocation.planner import plan
from npgpt.atomic import atomic_write_text

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "plans.json"
BUDGETS = [{"flops": 1e13, "memory": "64MB"}, {"flops": 1e15, "memory": "2GB"},
           {"flops": 3e15, "memory": "8GB", "hours": 2, "ranks": 4}]


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    plans = [{"budget": budget, "plan": plan(**budget).to_dict()} for budget in BUDGETS]
    result = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_before": os.getloadavg()[0], "plans": plans}
    atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    for p in plans:
        d = p["plan"]
        print(f"{p['budget']}: {d['model']['n_layer']} x {d['model']['n_embd']} ({d['model']['params']:,} params), "
              f"{d['tokens']:,} tokens, loss {d['predicted']['loss']:.3f}, binding {d['binding']}")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
