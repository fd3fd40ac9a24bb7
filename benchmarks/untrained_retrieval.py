"""Retrieval R@1/5/10 of a run's model at step 0 (its recipe's seed, no training): the
baseline next to `visrep eval retrieval --ckpt RUN --pairs PAIRS`.

Run:   python benchmarks/untrained_retrieval.py --ckpt RUN --pairs held_out.jsonl --out X.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from visrep.evals.retrieval import run_retrieval
from visrep.runs import build_model, load_run_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = load_run_config(args.ckpt)
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg).eval()
    metrics = run_retrieval(cfg, model, torch.device("cpu"), args.pairs)
    metrics = {"command": " ".join(sys.argv), "run": args.ckpt, "step": 0, **metrics}
    Path(args.out).write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
