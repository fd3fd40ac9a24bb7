"""Own colour images, end to end: MAE and SimCLR on the Noto emoji folder (64 px RGB, 9
categories, `visrep data build-folder`), k-NN and linear probe on its own val/ split beside
raw pixels and the untrained encoder (same split, same protocol).

    .venv/bin/visrep data build-folder --out /tmp/emoji_folder \
        --emoji-root emoji-datasource-google-16.0.0.tgz
    .venv/bin/python benchmarks/own_colour.py --folder /tmp/emoji_folder --epochs 20

Writes benchmarks/results/own_colour_emoji.{json,md}: one row per recipe with its command,
images seen, train and eval wall time, a same-run matmul probe and host load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, md_table, uptime, write_json  # noqa: E402
from throughput import MatmulProbe  # noqa: E402

from visrep.config import apply_overrides  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.loop import train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_gflops() -> float:
    probe = MatmulProbe()
    probe.run()
    return probe.gflops[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True, help="output of visrep data build-folder")
    p.add_argument("--recipes", nargs="+", default=["mae_own", "simclr_resnet18_own"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--runs-dir", default="/tmp/visrep-own-colour")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    p.add_argument("--out", default=str(RESULTS / "own_colour_emoji"))
    args = p.parse_args()
    torch.set_num_threads(2)
    rows, out = [], {"command": command_line(), "environment": environment(), "runs": []}
    for recipe in args.recipes:
        probe_before = matmul_gflops()
        overrides = [f"data.dataset={args.folder}", f"optim.epochs={args.epochs}",
                     f"run.out_dir={args.runs_dir}/{recipe}", "run.threads=2",
                     "data.num_workers=0", "run.progress=False", *args.set]  # fmt: skip
        cfg = apply_overrides(get_recipe(recipe), overrides)
        t0 = time.perf_counter()
        with CpuMeter() as meter:
            metrics = train(cfg)
        wall = time.perf_counter() - t0
        log = [
            json.loads(r) for r in (Path(cfg.run.out_dir) / "log.jsonl").read_text().splitlines()
        ]
        steps = max(r["step"] for r in log if "train/loss" in r)
        run = {"recipe": recipe, "overrides": overrides, "metrics": metrics, "steps": steps,
               "images_seen": steps * cfg.optim.batch_size, "wall_s": round(wall, 1),
               "eval_s": metrics.get("eval_seconds"), "cpu": meter.as_dict(),
               "matmul_gflops_before": round(probe_before, 1),
               "matmul_gflops_after": round(matmul_gflops(), 1), "uptime": uptime()}  # fmt: skip
        out["runs"].append(run)
        m = metrics
        rows.append([recipe, run["images_seen"], f"{m['knn_top1']:.3f}", f"{m['raw_knn_top1']:.3f}",
                     f"{m['init_knn_top1']:.3f}", f"{m['linear_top1']:.3f}",
                     f"{m['raw_linear_top1']:.3f}", f"{m['init_linear_top1']:.3f}",
                     f"{wall / 60:.1f}", f"{run['matmul_gflops_before']:.0f} / {run['matmul_gflops_after']:.0f}",
                     f"{meter.cores:.2f}"])  # fmt: skip
        write_json(out, args.out + ".json")
    table = md_table(["recipe", "images seen", "k-NN", "k-NN raw", "k-NN init", "linear",
                      "linear raw", "linear init", "minutes", "matmul GFLOP/s before/after",
                      "cores used"], rows)  # fmt: skip
    md = (
        f"# Own colour images: Noto emoji, 9 categories, 64 px\n\n`{out['command']}`\n\n"
        f"{table}\n\nk-NN: k=20, τ=0.07, cosine; linear: BN + linear head, LARS, 200 epochs at blr 1.0 "
        "on cached features; val/ = 382 images (20% of each category), train/ = 1,524.\n"
    )
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
