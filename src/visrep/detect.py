"""`visrep eval detect`: Mask R-CNN transfer of a pre-trained backbone to a COCO-format set,
as a run of the `detect` method in the one training loop (ViTDet, Li et al., ECCV 2022,
detectron2 `projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py`; Mask R-CNN, He et
al., ICCV 2017, torchvision `MaskRCNN`).

`visrep eval detect --ckpt RUN_OR_EXPORT --data COCO_DIR [--steps N] [key=value ...]` builds
a `TrainConfig[DetectConfig]` (`detect_config`: the source's input conventions, the set's
categories and image size, ViTDet's optimizer), trains it with `visrep.loop.train` into
`run.out_dir` (default `RUN/detect`: checkpoints, logs, exact `--resume`, progress bar,
`report.md` with `detections.png`) and writes COCO box and mask AP (`visrep.evals.detection`)
to `RUN/eval_detect.json`.

Optimizer (ViTDet): AdamW, betas (0.9, 0.999), weight decay 0.1 (none on norms, biases and
`pos_embed`), layer-wise lr decay 0.7, lr 1e-4 at batch 64 scaled linearly to the batch here
(`optim.blr` = 1e-4 × 256 / 64). Differences, said where they matter: the loop's warmup +
cosine replaces ViTDet's step decay (×0.1 at 89% and 96% of the run); training images are
flipped, and ViTDet's large-scale jitter (`visrep.data.coco.lsj_sample`) follows the flip
only with `method.lsj=true` (off by default: the committed detection figures were trained
without it); a short CPU run is far from the 184k-iteration schedule.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from visrep.config import (
    BackboneConfig,
    ConfigError,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    replace,
)
from visrep.data.coco import CocoSet
from visrep.data.preprocess import mean_std
from visrep.io import atomic_write_text
from visrep.loop import train
from visrep.method_configs import DetectConfig
from visrep.runs import export_meta, is_export, load_run_config, resume_config

METRICS_FILE = "eval_detect.json"
RUN_SUBDIR = "detect"
DETECT_OPTIM = OptimConfig(
    epochs=12, batch_size=8, blr=1e-4 * 256 / 64, min_lr=0.0, warmup_epochs=0.25,
    weight_decay=0.1, betas=(0.9, 0.999), clip_grad=0.0,
)  # fmt: skip


def detect_config(source: str | Path, data: str | Path) -> TrainConfig[DetectConfig]:
    """The detection run for `source` (a run or an exported backbone) on the COCO folder
    `data`, before overrides: the source's image channels and normalization, the set's
    categories and image side, `run.out_dir` = `source/detect`."""
    path = Path(source)
    if is_export(path):
        data_cfg, backbone = export_meta(path)[1], BackboneConfig()
    else:
        run = load_run_config(path)
        data_cfg, backbone = run.data, run.backbone
    channels = data_cfg.channels or 3
    train_set = CocoSet(data, "train", channels=channels)
    if not len(train_set) or not train_set.num_classes:
        raise ValueError(f"{train_set.path} lists no image or no category")
    first = train_set.images[0]
    mean, std = mean_std(dataclasses.replace(data_cfg, channels=channels))
    method = DetectConfig(source=str(source), data=str(data), num_classes=train_set.num_classes,
                          img_size=max(first["width"], first["height"]), channels=channels,
                          mean=tuple(mean), std=tuple(std))  # fmt: skip
    return TrainConfig(
        method=method, recipe="detect", backbone=backbone,
        data=dataclasses.replace(data_cfg, channels=channels, views="", limit=0, num_workers=0),
        optim=DETECT_OPTIM, eval=EvalConfig(dataset="", every_epochs=0, final=True, baselines=False),
        run=RunConfig(out_dir=str(path / RUN_SUBDIR)),
    )  # fmt: skip


def with_steps(cfg: TrainConfig[DetectConfig], steps: int) -> TrainConfig[DetectConfig]:
    """Train `steps` optimizer steps: whole epochs that cover them (the cosine ends there
    when `steps` is a multiple of an epoch) and `run.max_steps`; warmup the first 5%."""
    spe = len(CocoSet(cfg.method.data, "train", cfg.method.channels)) // cfg.optim.batch_size
    if steps < 1 or spe < 1:
        raise ConfigError(f"--steps must be >= 1 and the train split at least one batch of "
                          f"{cfg.optim.batch_size} images")  # fmt: skip
    epochs = math.ceil(steps / spe)
    return replace(cfg, **{"optim.epochs": epochs, "run.max_steps": steps,
                           "optim.warmup_epochs": 0.05 * steps / spe})  # fmt: skip


def run_detect_cli(ckpt: str, data: str, overrides: list[str], *, steps: int = 0,
                   out: str | None = None, device: str = "", resume: bool = False) -> dict:  # fmt: skip
    """`visrep eval detect`: config, overrides, train, write the metrics JSON atomically.
    With `resume`, continue the run in `run.out_dir` (default RUN/detect) with its saved
    config (`run.*` overrides only)."""
    extra = [f"run.device={device}"] if device else []
    if resume:
        if steps:
            raise ConfigError("--resume continues the saved schedule: pass run.max_steps=N, "
                              "not --steps")  # fmt: skip
        cfg = resume_config(ckpt, [*extra, *overrides], RUN_SUBDIR, "detection")
    else:
        cfg = apply_overrides(detect_config(ckpt, data), [*extra, *overrides])
        cfg = with_steps(cfg, steps) if steps else cfg
    metrics: dict[str, Any] = train(cfg, resume=resume)
    if metrics:
        metrics |= {"detect_run": cfg.run.out_dir, "config": dataclasses.asdict(cfg)}
        path = Path(out) if out else Path(ckpt) / METRICS_FILE
        atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return metrics
