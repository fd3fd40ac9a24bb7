"""The reference table: every image method under one protocol, beside raw pixels and the
untrained encoder, on Fashion-MNIST and on a real colour folder (Noto emoji).

One protocol per dataset, the same for every row:
- **images seen**: `optim.epochs` passes over the same `data.limit` training images
  (Fashion-MNIST: 5 × the first 10,000; emoji: 20 × its 1,524 train/ images); each recipe
  keeps its own method settings, batch, optimizer and schedule shape (warmup + cosine over
  those epochs), so a method that uses two views still sees each image once per epoch;
- **evaluation**: the run's own final evaluation, 20-NN (cosine, τ = 0.07) and the linear
  probe on cached features, LARS 200 epochs at blr 1.0 as the `*_own` recipes
  (Fashion-MNIST: bank / probe set = a seeded stratified 10,000 of the training split, test
  = all 10,000 test images; emoji: train/ and val/), with raw-pixel and random-init rows
  computed on the same split by the same code (`eval.baselines`); no wall-clock budget;
- image-text rows (CLIP family) also report the final evaluation's zero-shot top-1 on the
  whole Fashion-MNIST test split (the 7 unseen ImageNet templates). CiT trains on its noisy
  pool instead (`cit_fmnist`'s data: `visrep data build-captions`, the 785 Tux Paint stamp
  pairs + the first 9,215 Fashion-MNIST train images captioned by class name, 10,000 pairs,
  built into `--cit-pool` when missing; needs `apt-get install tuxpaint-stamps-default`), so
  it sees as many pairs as the other rows, 8 % of them off-domain, and curates them.

Each row is one `visrep train` process (the command a user runs) whose result is written to
`benchmarks/results/reference/<dataset>/<recipe>.json` with its command, images seen, train
and eval wall time, a matmul probe before and after and the host load: rows already there are
skipped, so the table fills up across sessions (`--force` reruns); a row whose run was stopped
midway resumes from its last checkpoint (`visrep train --resume`; its wall time then counts
only the resumed part, and the row says at which step it resumed). `benchmarks/reference_md.py`
regenerates `benchmarks/results/reference.md` from those files.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference.py --dataset fashion_mnist
    .venv/bin/visrep data build-folder --out /tmp/emoji_folder \\
        --emoji-root emoji-datasource-google-16.0.0.tgz
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference.py --dataset emoji \\
        --folder /tmp/emoji_folder
    .venv/bin/python benchmarks/reference_md.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import environment, uptime, write_json  # noqa: E402
from throughput import MatmulProbe  # noqa: E402

from visrep.checkpoint import load_checkpoint  # noqa: E402
from visrep.data.caption_shards import TUXPAINT_ROOT  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "reference"

# recipe -> extra overrides on that dataset (beyond the protocol's)
IMAGE_RECIPES = ["mae_fmnist", "mae_longseq_fmnist", "maskfeat_fmnist", "fcmae_fmnist",
                 "spark_fmnist", "simsiam_fmnist", "mocov3_fmnist", "simclr_fmnist"]  # fmt: skip
TEXT_RECIPES = ["clip_fmnist", "slip_fmnist", "flip_fmnist", "clip_bow_fmnist", "lit_fmnist",
                "cit_fmnist"]  # fmt: skip
CIT_POOL_FMNIST = 9215  # + 785 Tux Paint pairs = 10,000, the other rows' data.limit
# ViT-Tiny/4 at 64 px would be 256 tokens: the colour rows use /8 (64 tokens), as `mae_own`
_VIT8 = ["backbone.patch_size=8"]
# likewise the convnets' stem: 64 px / 2 runs the stages at 32, 16, 8, 4 px and masks the same
# 4x4 grid of cells as the 32 px Fashion-MNIST row (stride 1: 4x the pixels in every stage)
_STEM2 = ["backbone.patch_size=2"]
# no wall-clock budget anywhere (the demo recipe has one): equal images seen, full evaluation;
# the probe of the `*_own` recipes: 200 epochs at blr 1.0 suit ~1,500-10,000 labelled images
# (LARS moves a weight by ~lr × 0.001 of its norm per step; 90 epochs at 0.1 underfit them)
_PROBE = ["run.budget_minutes=0", "eval.budget_minutes=0", "eval.linear_epochs=200",
          "eval.linear_blr=1.0"]  # fmt: skip
DATASETS = {
    "fashion_mnist": {
        "epochs": 5, "limit": 10000,
        "protocol": ["eval.dataset=fashion_mnist", "eval.limit_train=10000", "eval.limit_test=0",
                     *_PROBE],
        "recipes": {r: [] for r in IMAGE_RECIPES + TEXT_RECIPES},
    },
    "emoji": {
        "epochs": 20, "limit": 0,
        "protocol": ["data.img_size=64", "data.channels=0", "eval.dataset=auto", *_PROBE],
        "recipes": {"mae_own": [], "simclr_resnet18_own": [], "mae_fmnist": _VIT8,
                    "maskfeat_fmnist": _VIT8, "fcmae_fmnist": _STEM2, "spark_fmnist": _STEM2,
                    "simsiam_fmnist": [], "mocov3_fmnist": [], "simclr_fmnist": [],
                    # as on Fashion-MNIST: the images upsampled 2x at the base row's patch
                    # (128 px /8: 256 tokens in 2x2-patch mask units)
                    "mae_longseq_fmnist": ["data.img_size=128", *_VIT8]},
    },
}  # fmt: skip


def gflops() -> float:
    probe = MatmulProbe()
    probe.run()
    return round(probe.gflops[-1], 1)


def cit_pool(folder: str) -> str:
    """CiT's noisy pool (module docstring), built once; "" when it cannot be built here."""
    if not (Path(folder) / "build_report.json").exists():
        if not Path(TUXPAINT_ROOT).is_dir():
            return ""
        subprocess.run([sys.executable, "-m", "visrep.cli", "data", "build-captions", "--out",
                        folder, "--sources", "tuxpaint,fmnist", "--fmnist-limit",
                        str(CIT_POOL_FMNIST)], check=True)  # fmt: skip
    return folder


def run_row(dataset: str, recipe: str, args: argparse.Namespace) -> dict:
    spec = DATASETS[dataset]
    out_dir = Path(args.runs_dir) / dataset / recipe
    data = [f"data.dataset={args.folder}"] if dataset == "emoji" else []
    if recipe == "cit_fmnist":
        data = [f"data.dataset={cit_pool(args.cit_pool)}"]
    limit = [f"data.limit={spec['limit']}"] if spec["limit"] else []
    overrides = [*data, *limit, f"optim.epochs={spec['epochs']}", *spec["protocol"],
                 *spec["recipes"][recipe], f"run.threads={args.threads}", "run.progress=False",
                 "eval.every_epochs=0", f"run.out_dir={out_dir}", *args.set]  # fmt: skip
    command = ["visrep", "train", recipe, *overrides]
    row: dict = {"dataset": dataset, "recipe": recipe, "command": shlex.join(command),
                 "uptime_before": uptime(), "matmul_gflops_before": gflops()}  # fmt: skip
    if args.collect and (out_dir / "metrics.json").exists():
        # a run that finished after its driver was stopped: its own clocks give the wall time
        metrics = json.loads((out_dir / "metrics.json").read_text())
        row["wall_s"] = round(metrics["train_minutes"] * 60 + metrics["eval_seconds"], 1)
        row["collected"] = "from a finished run folder; host figures are those of collection"
    else:
        t0 = time.perf_counter()
        if (
            not args.force
            and (out_dir / "checkpoint.pt").exists()
            and (out_dir / "config.json").exists()
        ):
            # a row whose driver was stopped mid-run: `visrep train --resume` continues it
            # exactly (same config, same batches from its step on)
            row["resumed_at_step"] = int(load_checkpoint(out_dir)["step"])  # not the last log line
            cli = ["train", "--resume", str(out_dir)]
        else:
            subprocess.run(["rm", "-rf", str(out_dir)], check=True)
            cli = ["train", recipe, *overrides]
        subprocess.run([sys.executable, "-m", "visrep.cli", *cli], check=True)
        row["wall_s"] = round(time.perf_counter() - t0, 1)  # after the resume, if resumed
        metrics = json.loads((out_dir / "metrics.json").read_text())
    config = json.loads((out_dir / "config.json").read_text())
    log = [json.loads(x) for x in (out_dir / "log.jsonl").read_text().splitlines()]
    steps = max(r["step"] for r in log if "train/loss" in r)
    row |= {"steps": steps, "batch_size": config["optim"]["batch_size"],
            "images_seen": steps * config["optim"]["batch_size"], "metrics": metrics,
            "eval_s": metrics.get("eval_seconds"),
            "backbone": config["backbone"]["name"]}  # fmt: skip
    row |= {"matmul_gflops_after": gflops(), "uptime_after": uptime(),
            "threads": args.threads, "environment": environment()}  # fmt: skip
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--folder", default="/tmp/emoji_folder", help="emoji: build-folder output")
    p.add_argument("--recipes", nargs="*", help="a subset of the dataset's rows")
    p.add_argument("--cit-pool", default="/tmp/visrep-cit-pool", help="CiT's pool (built once)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs-dir", default="/tmp/visrep-reference")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides (all rows)")
    p.add_argument("--force", action="store_true", help="rerun rows that have a result")
    p.add_argument("--results", default=str(RESULTS), help="where the row JSON files go")
    p.add_argument(
        "--collect",
        action="store_true",
        help="a row whose run folder holds a finished run is read, not retrained",
    )
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    recipes = args.recipes or list(DATASETS[args.dataset]["recipes"])
    for recipe in recipes:
        path = Path(args.results) / args.dataset / f"{recipe}.json"
        if path.exists() and not args.force:
            print(f"{path} exists: skipped (--force reruns)")
            continue
        if recipe == "cit_fmnist" and not cit_pool(args.cit_pool):
            print(f"{recipe}: skipped, its pool needs the Tux Paint stamps "
                  f"(apt-get install tuxpaint-stamps-default; {TUXPAINT_ROOT})", flush=True)  # fmt: skip
            continue
        print(f"== {args.dataset} / {recipe}", flush=True)
        write_json(run_row(args.dataset, recipe, args), path)


if __name__ == "__main__":
    main()
