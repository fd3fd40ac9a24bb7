"""MAE-ST started from an inflated image MAE vs from scratch (Moving Fashion-MNIST, CPU).

1. An image MAE (`mae_fmnist` with the video encoder's shape: ViT-Tiny/16, 6 blocks, 64 px,
   3 channels) trains 100 steps of 128 Fashion-MNIST images.
2. The video ViT of `benchmarks/video_methods.py` (2×16×16 tubelets, 6 blocks, 8 × 64 × 64
   clips, 64 tokens) is scored by the video k-NN before any video training, at its random
   initialisation and inflated from that image MAE (`run.init_from`: patch embedding copied
   over time / 2, blocks and norm copied, temporal table zero; `visrep.backbones.inflate`),
   and inflated with the temporal table left at the video model's own initialisation.
3. MAE-ST trains 60 steps of 32 videos from each start (`video_methods.py`'s mae_st
   settings), then the run's own video k-NN.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_inflation.py

Writes benchmarks/results/video_inflation.{json,md}; runs under runs/video_inflation/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402
from video_methods import COMMON  # noqa: E402

from visrep.config import replace  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.data.resolve import resolve_data  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.report import video_eval  # noqa: E402
from visrep.runs import build_model, init_video_from_image  # noqa: E402

OUT = HERE / "results" / "video_inflation"
RUNS = Path("runs/video_inflation")
QUIET = {"run.threads": 1, "run.progress": False, "run.budget_minutes": 0.0}
IMAGE = {"data.channels": 3, "data.img_size": 64, "backbone.patch_size": 16,
         "backbone.depth": 6, "data.limit": 12800, "optim.epochs": 1,
         "optim.warmup_epochs": 0.1, "eval.final": False, "eval.every_epochs": 0}  # fmt: skip


def host() -> dict:
    return {"uptime": uptime(), "matmul_gflops": round(matmul_gflops(), 1)}


def timed(fn, *args) -> tuple[dict, float, dict, str]:
    before, t0 = host(), time.perf_counter()
    out = fn(*args)
    return out, round((time.perf_counter() - t0) / 60, 2), before, uptime()


def main() -> None:
    results = {"command": command_line(), "environment": environment(), "rows": []}
    image_dir = RUNS / "image_mae"
    image_cfg = replace(get_recipe("mae_fmnist"), **IMAGE, **QUIET,
                        **{"run.out_dir": str(image_dir)})  # fmt: skip
    _, minutes, before, after = timed(train, image_cfg)
    results["image_mae"] = {"overrides": IMAGE, "minutes": minutes, "host_before": before,
                            "host_after": after}  # fmt: skip
    video_cfg = resolve_data(replace(get_recipe("mae_st_mfmnist"), **(COMMON | QUIET)))
    # the encoders before any video step; "inflated, method's temporal init" keeps the video
    # model's own trunc-normal(0.02) temporal table instead of inflation's zero one
    for start in ("random", "inflated", "inflated, method's temporal init"):
        torch.manual_seed(video_cfg.run.seed)
        backbone = build_model(video_cfg).backbone
        temporal = backbone.pos_embed_temporal.detach().clone()
        if start != "random":
            init_video_from_image(backbone, image_dir)
        if start == "inflated, method's temporal init":
            with torch.no_grad():
                backbone.pos_embed_temporal.copy_(temporal)
        m, minutes, before, after = timed(video_eval, video_cfg, backbone, "cpu")
        results["rows"].append({"name": f"{start}, before video training", "steps": 0,
                                "metrics": m, "minutes": minutes, "host_before": before,
                                "host_after": after})  # fmt: skip
        write_json(results, OUT.with_suffix(".json"))
    for start, extra in (("random", {}), ("inflated", {"run.init_from": str(image_dir)})):
        cfg = replace(video_cfg, **extra, **{"run.out_dir": str(RUNS / f"mae_st_{start}"),
                                             "eval.baselines": False})  # fmt: skip
        m, minutes, before, after = timed(train, cfg)
        results["rows"].append({"name": f"{start}, MAE-ST 60 steps", "steps": m["train_steps"],
                                "metrics": {k: v for k, v in m.items()
                                            if isinstance(v, int | float | str)},
                                "minutes": minutes, "host_before": before, "host_after": after})  # fmt: skip
        write_json(results, OUT.with_suffix(".json"))
    OUT.with_suffix(".md").write_text(render(results))


def render(results: dict) -> str:
    rows = [[r["name"], r["steps"], f"{r['metrics']['knn_top1']:.3f}",
             f"{r['metrics']['knn_direction_top1']:.3f}", r["minutes"],
             r["host_before"]["matmul_gflops"], r["host_before"]["uptime"].split("load")[-1]]
            for r in results["rows"]]  # fmt: skip
    head = ["video encoder", "video steps", "class k-NN", "direction k-NN", "minutes",
            "matmul GFLOP/s", "load before"]  # fmt: skip
    img = results["image_mae"]
    return (f"# MAE-ST from an inflated image MAE vs from scratch (Moving Fashion-MNIST)\n\n"
            f"Command: `{results['command']}`\n\nImage MAE: `mae_fmnist` with "
            f"{json.dumps(img['overrides'])} ({img['minutes']} min).\n\n{md_table(head, rows)}\n\n"
            "Video k-NN: 400 train / 240 test videos, 2 temporal views, feature_mean, k = 20, "
            "T = 0.07. Chance: class 0.100, direction 0.125; one standard error about 0.03. "
            "Host shared (2 cores, 1 thread here).\n")  # fmt: skip


if __name__ == "__main__":
    main()
