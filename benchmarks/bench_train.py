"""Training speed of npgpt (numpy and numba backends) beside PyTorch eager: the same benchmark as
``python -m npgpt bench`` (see npgpt/perf/bench.py), runnable as a script from anywhere.

    python benchmarks/bench_train.py --preset baby --json
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repo: npgpt and benchmarks/

from npgpt.cli import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_train.py")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)
    sys.exit(bench.main(parser.parse_args(["bench", *sys.argv[1:]])))
