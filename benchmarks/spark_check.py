"""SparK sanity check at a fixed number of steps (the host is shared: no wall-clock budget).

Trains `spark_fmnist` (with any `key=value` overrides) for `--steps` steps of `--batch`
images, one epoch over the first steps × batch Fashion-MNIST training images so the
recipe's warmup + cosine completes, then compares 20-NN top-1 (cosine, T = 0.07) of the
trained backbone with the same backbone at random init (the method built with the run's
seed, not trained) on the same fixed random subsets (`--limit` images per split).

Run:   python benchmarks/spark_check.py --steps 60 --batch 64 --limit 2000
Writes benchmarks/results/spark_check.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, uptime, write_json  # noqa: E402

from visrep.config import apply_overrides, replace  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.evals.run import evaluate  # noqa: E402
from visrep.logger import read_log  # noqa: E402
from visrep.methods import build_method  # noqa: E402
from visrep.runs import load_run  # noqa: E402
from visrep.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--limit", type=int, default=2000, help="eval images per split")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/spark_check.json")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of spark_fmnist")
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="spark_check_"))
    cfg = apply_overrides(get_recipe("spark_fmnist"), args.overrides)
    cfg = replace(cfg, **{
        "data.limit": args.steps * args.batch, "optim.batch_size": args.batch,
        "optim.epochs": 1, "eval.final": False, "eval.every_epochs": 0,
        "run.out_dir": str(run_dir), "run.progress": False, "run.threads": args.threads,
    })  # fmt: skip
    result = {"command": command_line(), "env": environment(), "load": uptime()}
    with CpuMeter() as meter:
        train(cfg)
    rows = [r for r in read_log(run_dir) if "train/loss" in r]
    result["train"] = meter.as_dict() | {
        "steps": rows[-1]["step"],
        "first_loss": rows[0]["train/loss"],
        "last_loss": rows[-1]["train/loss"],
    }
    _, method = load_run(run_dir)
    torch.manual_seed(cfg.run.seed)
    random_bb = build_method(cfg).backbone
    for name, bb in (("spark", method.backbone), ("random_init", random_bb)):
        with CpuMeter() as meter:
            m = evaluate(bb.eval(), cfg.data, cfg.eval, protocols=("knn",), limit=args.limit)
        result[name] = {k: m[k] for k in ("knn_top1", "knn_k", "knn_n_train", "knn_n_test")}
        result[name]["eval"] = meter.as_dict()
        print(name, result[name], flush=True)
    result["load_after"] = uptime()
    write_json(result, args.out)


if __name__ == "__main__":
    main()
