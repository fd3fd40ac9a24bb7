"""Every pre-training method at the same wall-clock budget on Fashion-MNIST, side by side,
next to random-init features of the same backbones and raw pixels; plus SimSiam's
central claim (without stop-gradient the representation collapses).

For each method recipe (its Fashion-MNIST recipe, unchanged except `run.budget_minutes`:
lr warm-up + cosine on elapsed time, training stops when the budget is spent) the run's
own final evaluation is used: 20-NN (cosine, T = 0.07) and the linear probe (BN without
affine + Linear, LARS, 90 epochs on cached features) on the full 60k/10k splits, with
the recipe's pooling. Random init = the recipe's method built with seed 0 and not
trained (step 0 of the same run).

The collapse check trains `simsiam_fmnist` with `method.stop_gradient=False` at the same
budget and plots the per-channel std of the L2-normalised projector output (SimSiam
Fig. 2, middle; 1/√d for well-spread outputs, 0 for a collapsed constant) and the k-NN.

Run:   python benchmarks/quality_methods.py --budget 1.0 --device cuda   (GPU: ~8 minutes)
       python benchmarks/quality_methods.py --budget 6 --device cpu      (this 2-core host)
Writes benchmarks/results/quality_methods.md, .json and quality_methods_collapse.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, write_json  # noqa: E402

from visrep.config import replace  # noqa: E402
from visrep.configs import resolved_recipe  # noqa: E402
from visrep.evals.run import evaluate  # noqa: E402
from visrep.logger import read_log  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.runs import build_model  # noqa: E402

RUNS = [  # (label, recipe, overrides)
    ("MAE", "mae_fmnist", {}),
    ("FCMAE", "fcmae_fmnist", {}),
    ("SimSiam", "simsiam_fmnist", {}),
    ("MoCo v3", "mocov3_fmnist", {}),
    ("SimCLR", "simclr_fmnist", {}),
    ("SimSiam without stop-gradient", "simsiam_fmnist", {"method.stop_gradient": False}),
]


def budget_run(recipe: str, overrides: dict, budget: float, out: Path, device: str) -> dict:
    cfg = replace(resolved_recipe(recipe), **{
        "run.out_dir": str(out), "run.budget_minutes": budget, "run.device": device,
        "run.progress": False, "eval.every_epochs": 0, "eval.limit_train": 0,
        "optim.epochs": 1000,  # an upper bound: the budget ends training
        **overrides,
    })  # fmt: skip
    t0 = time.perf_counter()
    metrics = train(cfg)
    rows = [r for r in read_log(out) if "train/loss" in r]
    return {
        "metrics": metrics,
        "wall_s": time.perf_counter() - t0,
        "steps": rows[-1]["step"] if rows else 0,
        "epochs_of_data": rows[-1]["train/epoch"] if rows else 0,
        "log": [{k: r.get(k) for k in ("step", "train/loss", "train/z_std")} for r in rows],
        "backbone": cfg.backbone.name,
    }


def random_init(recipe: str, device: str) -> dict:
    cfg = replace(resolved_recipe(recipe), **{"eval.limit_train": 0})
    torch.manual_seed(cfg.run.seed)
    bb = build_model(cfg).backbone.to(device).eval()
    return evaluate(bb, cfg.data, cfg.eval, device=device)


def raw_pixels(device: str) -> dict:
    cfg = replace(resolved_recipe("mae_fmnist"), **{"eval.limit_train": 0})
    return evaluate(nn.Flatten(), cfg.data, cfg.eval, device=device)


def plot_collapse(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label in ("SimSiam", "SimSiam without stop-gradient"):
        log = [r for r in results["runs"][label]["log"] if r["train/z_std"] is not None]
        ax.plot([r["step"] for r in log], [r["train/z_std"] for r in log], label=label)
    d = 2048  # simsiam_fmnist's projector width
    ax.axhline(1 / math.sqrt(d), ls="--", c="gray", lw=1, label="1/√d (no collapse)")
    ax.set_xlabel("step")
    ax.set_ylabel("std of L2-normalised output")
    ax.set_title("SimSiam Fig. 2 on Fashion-MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1.0, help="training minutes per method")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs-dir", default="/tmp/visrep-quality-runs")
    ap.add_argument("--only", nargs="*", help="labels of RUNS to train (default: all)")
    ap.add_argument("--out", default="benchmarks/results/quality_methods.md")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {"command": command_line(), "env": environment(), "budget": args.budget,
                     "device": args.device, "runs": {}, "random_init": {}}  # fmt: skip
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    for label, recipe, overrides in RUNS:
        if args.only and label not in args.only:
            continue
        run_dir = Path(args.runs_dir) / f"{recipe}_{len(results['runs'])}_{int(time.time())}"
        results["runs"][label] = {"recipe": recipe, "overrides": overrides,
                                  **budget_run(recipe, overrides, args.budget, run_dir,
                                               args.device)}  # fmt: skip
        m = results["runs"][label]["metrics"]
        print(f"{label}: k-NN {m['knn_top1']:.4f} linear {m['linear_top1']:.4f}", flush=True)
    for recipe in sorted({r["recipe"] for r in results["runs"].values()}):
        results["random_init"][recipe] = random_init(recipe, args.device)
    results["raw_pixels"] = raw_pixels(args.device)
    write_json(results, out.with_suffix(".json"))
    out.write_text(render(results))
    if {"SimSiam", "SimSiam without stop-gradient"} <= set(results["runs"]):
        plot_collapse(results, out.with_name(out.stem + "_collapse.png"))
    print(out.read_text())


def render(res: dict) -> str:
    rows = []
    for label, r in res["runs"].items():
        m = r["metrics"]
        z = [x["train/z_std"] for x in r["log"] if x.get("train/z_std") is not None]
        rows.append([label, r["recipe"], r["backbone"], r["steps"], f"{r['epochs_of_data']:.2f}",
                     f"{m['knn_top1']:.4f}", f"{m['linear_top1']:.4f}",
                     f"{z[-1]:.4f}" if z else "-"])  # fmt: skip
    for recipe, m in res["random_init"].items():
        name = resolved_recipe(recipe).backbone.name
        rows.append([f"random init ({name})", recipe, name, 0, "0", f"{m['knn_top1']:.4f}",
                     f"{m['linear_top1']:.4f}", "-"])  # fmt: skip
    p = res["raw_pixels"]
    rows.append(["raw pixels", "-", "-", "-", "-", f"{p['knn_top1']:.4f}",
                 f"{p['linear_top1']:.4f}", "-"])  # fmt: skip
    where = res.get("gpu", res["device"])
    table = md_table(["method", "recipe", "backbone", "steps", "epochs of data", "k-NN top-1",
                      "linear top-1", "final output std"], rows)  # fmt: skip
    return (
        f"# Quality at a {res['budget']:g}-minute training budget per method ({where})\n\n"
        f"Command: `{res['command']}`\n\nFashion-MNIST, full 60k/10k splits; 20-NN (cosine, "
        "T=0.07) and linear probe (BN + Linear, LARS, 90 epochs) on frozen features with each "
        "recipe's pooling. 'final output std': per-channel std of the L2-normalised projector "
        "output at the last logged step (1/√d ≈ 0.022 for d = 2048 when not collapsed).\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    main()
