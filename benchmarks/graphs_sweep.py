"""The relational-graph claim at small scale (You, Leskovec, He, Xie,
"Graph Structure of Neural Networks", ICML 2020): a relational 5-layer MLP (784 -> 128 dense
stem -> 3 relational layers, FLOPs-matched -> 10) on Fashion-MNIST over 48 WS-flex graphs at
n = 16 covering the (C, L) plane plus the complete graph, 3 training seeds each, through
`visrep graphs sweep`. Then: does the best (C, L) bin beat the complete graph by more than the
seed standard error, and how smooth is accuracy over (C, L)?

Run (a 2-core shared host: ~1 h with 2 workers at 4 epochs; resumable, rerun to continue):
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/graphs_sweep.py --epochs 4 --workers 2
Writes the sweep folder benchmarks/results/graphs_mlp_fmnist/ (results.jsonl: one line per
(graph, seed); sweep_config.json) and benchmarks/results/graphs_mlp_fmnist.{md,json,png}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from visrep.cli import main

RESULTS = Path(__file__).resolve().parent / "results"


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=int, default=48)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--name", default="graphs_mlp_fmnist")
    a = p.parse_args(argv)
    out = RESULTS / a.name
    rc = main([
        "graphs", "sweep", "--model", "mlp5", "--dataset", "fashion_mnist",
        "--graphs", str(a.graphs), "--seeds", str(a.seeds), "--epochs", str(a.epochs),
        "--workers", str(a.workers), "--threads", "1", "--limit-train", str(a.limit_train),
        "--out", str(out),
    ])  # fmt: skip
    for ext in ("md", "json", "png"):
        if (out / f"sweep.{ext}").exists():
            shutil.copyfile(out / f"sweep.{ext}", RESULTS / f"{a.name}.{ext}")
    return rc


if __name__ == "__main__":
    sys.exit(run())
