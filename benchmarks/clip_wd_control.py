"""The weight-decay control of the SLIP-vs-CLIP table: `clip_fmnist` at its own weight decay
(0.5) and at SLIP's (0.1), same data, steps and seed, then zero-shot on the Fashion-MNIST test
split. Also checks the override reached the optimizer (each run's saved config and checkpoint)
and how far apart the two final weights are, since the first measurement gave identical
figures for both.

    OMP_NUM_THREADS=1 python benchmarks/clip_wd_control.py

Writes benchmarks/results/clip_wd_control.{json,md}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

from visrep.checkpoint import load_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = ["data.limit=3840", "optim.batch_size=32", "optim.blr=4e-3", "run.max_steps=120",
          "eval.final=False", "run.threads=1", "run.progress=False"]  # fmt: skip
VISREP = [sys.executable, "-m", "visrep.cli"]


def run(wd: float, out: Path) -> dict:
    t0 = time.perf_counter()
    subprocess.run([*VISREP, "train", "clip_fmnist", *COMMON, f"optim.weight_decay={wd}",
                    f"run.out_dir={out}"], check=True)  # fmt: skip
    wall = time.perf_counter() - t0
    zs = out / "zeroshot.json"
    subprocess.run([*VISREP, "eval", "zeroshot", "--ckpt", str(out), "eval.limit_test=2000",
                    "--out", str(zs)], check=True)  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    state = load_checkpoint(out, map_location="cpu")
    groups = state["optimizer"]["param_groups"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    loss = [r["train/loss"] for r in log if "train/loss" in r][-1]
    return {"weight_decay": wd, "config_weight_decay": cfg["optim"]["weight_decay"],
            "optimizer_group_weight_decays": sorted({g["weight_decay"] for g in groups}),
            "train_wall_s": round(wall, 1), "last_loss": loss,
            "zeroshot": json.loads(zs.read_text()), "model": state["model"]}  # fmt: skip


def main() -> None:
    root = Path("/tmp/visrep-clip-wd")
    subprocess.run(["rm", "-rf", str(root)], check=True)
    out = {"command": command_line(), "environment": environment(), "uptime_before": uptime()}
    runs = [run(wd, root / f"wd{wd}") for wd in (0.5, 0.1)]
    a, b = (r.pop("model") for r in runs)
    diff = {k: (a[k].float() - b[k].float()).norm().item() / max(a[k].float().norm().item(), 1e-12)
            for k in a if a[k].is_floating_point() and a[k].ndim > 1}  # fmt: skip
    out |= {"runs": runs, "relative_weight_difference_max": max(diff.values()),
            "relative_weight_difference_median": float(torch.tensor(list(diff.values())).median()),
            "uptime_after": uptime()}  # fmt: skip
    rows = [[f"`clip_fmnist optim.weight_decay={r['weight_decay']}`",
             f"{r['config_weight_decay']}", ", ".join(map(str, r["optimizer_group_weight_decays"])),
             f"{r['last_loss']:.3f}", f"{r['zeroshot']['zeroshot_top1']:.3f}",
             f"{r['zeroshot'].get('zeroshot_top5', float('nan')):.3f}", f"{r['train_wall_s']:.0f} s"]
            for r in runs]  # fmt: skip
    md = ("# CLIP weight-decay control (120 steps of batch 32, Fashion-MNIST captions)\n\n"
          f"`{out['command']}`\n\n" + md_table(
              ["run", "config.json wd", "optimizer groups' wd", "last loss", "zero-shot top-1",
               "top-5", "train wall"], rows) +
          f"\n\nRelative weight difference between the two final models (per weight matrix): "
          f"median {out['relative_weight_difference_median']:.4f}, max "
          f"{out['relative_weight_difference_max']:.4f}. Host: {out['uptime_before']}; after: "
          f"{out['uptime_after']}.\n")  # fmt: skip
    write_json(out, RESULTS / "clip_wd_control.json")
    (RESULTS / "clip_wd_control.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
