"""Fixed-step check of a pre-training recipe vs its random init (the host is shared: no
wall-clock budget).

Trains `--recipe` (with any `key=value` overrides) for `--steps` steps of `--batch`
images (default: the recipe's batch). The schedule is compressed, not cut: one epoch over
the first steps × batch Fashion-MNIST training images (`data.limit`, `optim.epochs=1`), so
the recipe's warmup (as a fraction of its epochs) and cosine complete within the steps.
The `*_fmnist` masked-modeling recipes are one-epoch recipes, so the warmup fraction is
theirs unchanged. Then the trained backbone and the same backbone at random init (the
method built with the run's seed, not trained) are evaluated on the same fixed random
subsets (`--limit` images per split): 20-NN top-1 (cosine, T = 0.07) and, unless
`--protocols knn`, the linear probe (recipe's probe settings, one feature pass for both).

Loss first → last: the mean training loss over the first and over the last `--log-every`
steps (the loop logs the mean since the previous log line).

Run:   OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fixed_step_check.py \
           --recipe spark_fmnist --steps 24 --threads 1
Writes benchmarks/results/fixed_step_<recipe>.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import (  # noqa: E402
    CpuMeter,
    command_line,
    environment,
    fixed_step_config,
    uptime,
    write_json,
)

from visrep.config import apply_overrides  # noqa: E402
from visrep.configs import resolved_recipe  # noqa: E402
from visrep.evals.run import evaluate  # noqa: E402
from visrep.logger import read_log  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.runs import (
    build_model,  # noqa: E402
    load_run,  # noqa: E402
)

KEEP = ("knn_top1", "knn_k", "knn_n_train", "knn_n_test", "linear_top1", "eval_seconds")


def main(argv: list[str] | None = None, *, default_recipe: str = "spark_fmnist") -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=default_recipe)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=0, help="images per step (0 = the recipe's)")
    ap.add_argument("--limit", type=int, default=2000, help="eval images per split")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10, help="steps per loss window")
    ap.add_argument("--protocols", default="knn,linear", help="knn and/or linear")
    ap.add_argument("--out", default="", help="default benchmarks/results/fixed_step_<recipe>.json")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    args = ap.parse_args(argv)
    out = args.out or f"benchmarks/results/fixed_step_{args.recipe}.json"
    protocols = tuple(p for p in args.protocols.split(",") if p)
    run_dir = Path(tempfile.mkdtemp(prefix=f"fixed_step_{args.recipe}_"))
    cfg = apply_overrides(resolved_recipe(args.recipe), args.overrides)
    batch = args.batch or cfg.optim.batch_size
    cfg = fixed_step_config(cfg, args.steps, batch, run_dir, threads=args.threads,
                            log_every=args.log_every)  # fmt: skip
    result = {
        "command": command_line(), "recipe": args.recipe, "overrides": args.overrides,
        "env": environment(), "load": uptime(),
        "schedule": {"steps": args.steps, "batch": batch, "images": args.steps * batch,
                     "optim.epochs": 1, "warmup_epochs": cfg.optim.warmup_epochs,
                     "lr": cfg.optim.lr, "blr": cfg.optim.blr},
    }  # fmt: skip
    with CpuMeter() as meter:
        train(cfg)
    rows = [r for r in read_log(run_dir) if "train/loss" in r]
    result["train"] = meter.as_dict() | {
        "steps": rows[-1]["step"],
        "s_per_step": round(meter.as_dict()["wall_s"] / rows[-1]["step"], 2),
        "loss_window_steps": args.log_every,
        "first_loss": rows[0]["train/loss"],
        "last_loss": rows[-1]["train/loss"],
        "losses": [(r["step"], r["train/loss"]) for r in rows],
    }
    print("train", {k: v for k, v in result["train"].items() if k != "losses"}, flush=True)
    _, method = load_run(run_dir)
    torch.manual_seed(cfg.run.seed)
    random_bb = build_model(cfg).backbone
    for name, bb in (("trained", method.backbone), ("random_init", random_bb)):
        with CpuMeter() as meter:
            m = evaluate(bb.eval(), cfg.data, cfg.eval, protocols=protocols, limit=args.limit)
        result[name] = {k: m[k] for k in KEEP if k in m}
        result[name]["eval"] = meter.as_dict()
        print(name, result[name], flush=True)
    result["load_after"] = uptime()
    write_json(result, out)


if __name__ == "__main__":
    main()
