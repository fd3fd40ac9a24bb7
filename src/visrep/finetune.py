"""`visrep eval finetune`: end-to-end fine-tuning of a pre-trained backbone as a run of the
`supervised` method in the one training loop (MAE, He et al., 2022, §A.2 and
facebookresearch/mae `main_finetune.py`; ConvNeXt V2, Woo et al., 2023, and
facebookresearch/ConvNeXt-V2 `main_finetune.py`, `TRAINING.md`).

`visrep eval finetune --ckpt RUN_DIR [--preset NAME] [key=value ...]` builds a
`TrainConfig[SupervisedConfig]` (`finetune_config`: the source's input conventions and eval
dataset, the fine-tuning defaults or a paper preset, then the overrides), trains it with
`visrep.loop.train` into `run.out_dir` (default `RUN_DIR/finetune`: checkpoints, logs,
`metrics.json`, exact `--resume`, torchrun) and writes the metrics to
`RUN_DIR/eval_finetune.json`. The final evaluation of a supervised run is `classifier_eval`:
top-1/top-5 of the fine-tuned classifier (`visrep.evals.classifier`) on the eval test split (and of its model EMA
when `method.ema_decay` > 0, as the ConvNeXt V2 presets set).

A video run (`data.frames` > 0: MAE-ST, video MaskFeat, the ρ methods, on a `vit_*` video ViT
or a `slow_*` Slow-only ResNet) is fine-tuned by the same path: the supervised method puts a
head on its video backbone (`visrep.methods.supervised`), the loop trains it on labelled clips
of `eval.dataset`'s train split (Moving Fashion-MNIST or a folder of class sub-folders of
videos), and the final evaluation is clip-level multi-view top-1/top-5. `--labels direction`
(`method.labels=direction`) trains and scores on the motion directions instead of the classes
(Moving Fashion-MNIST's 8, or the `direction` column of a `visrep data build-video` folder);
a set without them, or `data.hflip=true` (a flip mirrors the motion), is refused. Its defaults
(`video_defaults`) follow mae_st `main_finetune.py` where a CPU allows: dropout 0.5 before the
head, layer decay 0.75, drop path 0.1, label smoothing 0.1, clip_grad 5.0 (FINETUNE.md), the
run's own clip sampling and crop (no flip where the run had none: Moving Fashion-MNIST's
direction rule), no RandAugment / RandomErasing of clips (mae_st's `--rand_aug` is off by
default, and its RandomErasing only runs with it; `method.auto_augment=rand-m7-mstd0.5-inc1
method.reprob=0.25` turns both on, one draw per clip applied to every frame:
`visrep.data.clip_augment`), a short schedule (`VIDEO_FINETUNE_OPTIM`). The preset
`mae_st_vit_large` is FINETUNE.md's ViT-L recipe with its RandAugment, RandomErasing and
repeated augmentation (2 clips of each video, `data.repeat_aug`; a fine-tuning run starts at
1 whatever its pre-training used); `ucf101_slow_r50` is the ρ study's UCF101 fine-tuning of
a Slow-only ResNet (SGD with Nesterov momentum, 10 × 3 test views; `PRESETS`);
`maskfeat_mvit_s_k400` is MaskFeat's Kinetics-400 fine-tuning of MViTv2-S (SlowFast
`configs/masked_ssl/k400_MVITv2_S_16x4_FT.yaml`: 100 epochs, 2 clips of each video, 10 × 1
test views). Each video preset fits one backbone family (video ViT, Slow ResNet, MViTv2):
another is refused, naming the presets that fit. A Slow ResNet's head starts at
normal(0, 0.01) as SlowFast's `ResNetBasicHead`.

Override keys are those of any run: `method.*` (init, layer_decay, mixup, cutmix,
smoothing, drop_path, pool, reprob, auto_augment, ...), `optim.*` (epochs, batch_size, blr,
warmup_epochs, ...), `data.*` (img_size, crop_scale, hflip, num_workers), `eval.*` (dataset,
limit_train, limit_test: the labelled train split is the training set) and `run.*`
(max_steps, seed, threads, precision, out_dir).
"""

from __future__ import annotations

import dataclasses
import json
import os
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
from visrep.data.labelled import num_classes
from visrep.io import atomic_write_text
from visrep.logger import read_log
from visrep.loop import train
from visrep.methods.supervised import SupervisedConfig
from visrep.runs import export_meta, is_export, load_run_config, resume_config

METRICS_FILE = "eval_finetune.json"
RUN_SUBDIR = "finetune"


def _paper(changes: dict[str, Any]) -> dict[str, Any]:
    """The papers' common settings (MAE FINETUNE.md, ConvNeXt V2 TRAINING.md) at 224 px;
    `optim.batch_size` is per process: the papers' 1024 is 32 per GPU x 32 GPUs (or
    `optim.accum_steps`)."""
    common = {
        "optim.batch_size": 32, "data.img_size": 224, "optim.min_lr": 1e-6,
        "optim.weight_decay": 0.05, "method.mixup": 0.8, "method.cutmix": 1.0,
        "method.smoothing": 0.1, "data.crop_scale": (0.08, 1.0), "method.reprob": 0.25,
        "data.num_workers": 8,
    }  # fmt: skip
    return common | changes


def _convnext(changes: dict[str, Any]) -> dict[str, Any]:
    """ConvNeXt V2 TRAINING.md: every fine-tuning command adds `--model_ema True
    --model_ema_eval True` (decay 0.9999, `main_finetune.py`'s default)."""
    return _paper({"method.ema_decay": 0.9999} | changes)


# Named presets (`--preset NAME`), dotted overrides: MAE `FINETUNE.md` (ViT-B/L/H) and
# ConvNeXt V2 `TRAINING.md` (Atto/Tiny/Base fine-tuning after FCMAE).
PRESETS: dict[str, dict[str, Any]] = {
    "mae_vit_base": _paper({"optim.epochs": 100, "optim.blr": 5e-4, "method.layer_decay": 0.65,
                            "method.drop_path": 0.1, "optim.warmup_epochs": 5}),
    "mae_vit_large": _paper({"optim.epochs": 50, "optim.blr": 1e-3, "method.layer_decay": 0.75,
                             "method.drop_path": 0.2, "optim.warmup_epochs": 5}),
    "mae_vit_huge": _paper({"optim.epochs": 50, "optim.blr": 1e-3, "method.layer_decay": 0.75,
                            "method.drop_path": 0.3, "optim.warmup_epochs": 5}),
    "fcmae_convnextv2_base": _convnext({"optim.epochs": 100, "optim.blr": 6.25e-4,
                                        "optim.warmup_epochs": 20, "method.layer_decay": 0.6,
                                        "method.layer_decay_type": "group",
                                        "method.drop_path": 0.1}),
    "fcmae_convnextv2_tiny": _convnext({"optim.epochs": 300, "optim.blr": 8e-4,
                                        "optim.warmup_epochs": 40, "method.layer_decay": 0.9,
                                        "method.layer_decay_type": "single",
                                        "method.drop_path": 0.2}),
    "fcmae_convnextv2_atto": _convnext({"optim.epochs": 600, "optim.blr": 2e-4,
                                        "optim.warmup_epochs": 0, "method.layer_decay": 0.9,
                                        "method.layer_decay_type": "single",
                                        "optim.weight_decay": 0.3, "method.drop_path": 0.1,
                                        "method.mixup": 0.0, "method.cutmix": 0.0,
                                        "method.smoothing": 0.2}),
}  # fmt: skip

# mae_st FINETUNE.md (ViT-L/16, Kinetics-400, 16 x 4 clips): 50 epochs, blr 2.4e-3, warmup 5,
# layer decay 0.75, drop path 0.2, dropout 0.3, smoothing 0.1, Mixup 0.8 / CutMix 1.0,
# clip_grad 5.0, fp32, random resized crop (0.08, 1), --rand_aug: RandAugment
# rand-m7-mstd0.5-inc1 and RandomErasing 0.25 (main_finetune.py's --reprob default, mode
# pixel, one box), --repeat_aug 2 (two clips of each decoded video a step, the lr scaled by
# the videos only).
PRESETS["mae_st_vit_large"] = {
    "optim.epochs": 50, "optim.blr": 2.4e-3, "optim.warmup_epochs": 5, "optim.batch_size": 2,
    "optim.weight_decay": 0.05, "optim.min_lr": 1e-6, "optim.clip_grad": 5.0,
    "method.layer_decay": 0.75, "method.drop_path": 0.2, "method.dropout": 0.3,
    "method.smoothing": 0.1, "method.mixup": 0.8, "method.cutmix": 1.0,
    "method.auto_augment": "rand-m7-mstd0.5-inc1", "method.reprob": 0.25,
    "data.crop_scale": (0.08, 1.0), "run.precision": "fp32", "data.num_workers": 8,
    "data.repeat_aug": 2,
}  # fmt: skip
# The ρ study's UCF101 fine-tuning of a Slow-only ResNet-50 (Feichtenhofer et al., CVPR
# 2021; SlowFast `configs/contrastive_ssl/finetune_ucf_Slow_R50_syn0.yaml`): SGD with
# Nesterov momentum 0.9 (SOLVER.NESTEROV's default), lr 0.005 for 64 clips (blr 0.02) on
# 8 GPUs x 8, no warmup, cosine to 0 over 200 epochs, wd 1e-4 with none on BN, dropout 0.5
# before a normal(0, 0.01) head, plain cross-entropy, fp32; colour jitter 0.4 / hue 0.1 on
# every clip with grayscale p 0.2 (data.color_jitter) and short-side jitter [256, 320] + a
# random data.img_size crop (data.short_side_jitter; 224 in the yaml); test 10 clips x 3
# crops, softmax averaged. Not ported: the test's 256 px short side (data.img_size here) and
# weight decay on the head's bias (no 1-D tensor is decayed here).
PRESETS["ucf101_slow_r50"] = {
    "optim.optimizer": "sgd", "optim.nesterov": True, "optim.momentum": 0.9,
    "optim.blr": 0.02, "optim.batch_size": 8, "optim.epochs": 200, "optim.warmup_epochs": 0,
    "optim.min_lr": 0.0, "optim.weight_decay": 1e-4, "optim.clip_grad": 0.0,
    "method.dropout": 0.5, "method.smoothing": 0.0, "method.mixup": 0.0,
    "method.cutmix": 0.0, "method.drop_path": 0.0, "method.layer_decay": 1.0,
    "eval.temporal_views": 10, "eval.spatial_crops": 3, "run.precision": "fp32",
    "data.num_workers": 8, "data.color_jitter": True, "data.short_side_jitter": (256, 320),
}  # fmt: skip
# MaskFeat's fine-tuning of MViTv2-S 16x4 on Kinetics-400 (Wei et al., "Masked Feature
# Prediction for Self-Supervised Visual Pre-Training", CVPR 2022, appendix: Kinetics
# fine-tuning settings, whose table could not be read where this was written; the values
# are the released config's: facebookresearch/SlowFast
# `configs/masked_ssl/k400_MVITv2_S_16x4_FT.yaml`, 82.2% top-1 in
# `projects/maskfeat/README.md`). The yaml, read as SlowFast's loader and solver do:
# TRAIN.BATCH_SIZE 16 videos per machine of NUM_GPUS 8 (2 a GPU), each giving
# AUG.NUM_SAMPLE 2 augmented clips (`datasets/loader.py` `multiple_samples_collate`), so a
# step trains on 32 clips of 16 videos; BASE_LR 6e-4 for those 16 videos (scaled by
# NUM_SHARDS only: BASE_LR_SCALE_NUM_SHARDS), i.e. blr 6e-4 x 256 / 16 = 9.6e-3 on visrep's
# videos-only rule (data.repeat_aug); AdamW, SOLVER.BETAS default (0.9, 0.999), wd 0.05, none
# on 1-D tensors (ZERO_WD_1D_PARAM) but the cls token and relative-position tables decayed
# (ZERO_DECAY_POS_CLS False: `VideoMViT.decay_pos_cls`); 100 epochs, warmup 20 from 1e-6
# then cosine to 1e-6 (WARMUP_START_LR, COSINE_END_LR: 1/600 of the peak at 16 videos a
# step, kept as fractions so they follow the batch as the peak does); layer decay 0.75; drop
# path 0.1; no dropout before the head (DROPOUT_RATE 0.0), head trunc_normal(0.02) x
# HEAD_INIT_SCALE 0.001 = std 2e-5; Mixup 0.8 / CutMix 1.0 (prob 1, switch 0.5) with label
# smoothing 0.1; RandAugment rand-m7-mstd0.5-inc1 (one draw for the clip's frames, bicubic)
# and RandomErasing 0.25, pixel mode, one box through every frame (`random_erasing.py`
# cube=True); random resized crop scale (0.08, 1), aspect (3/4, 4/3); clip_grad 5.0; fp32
# (MIXED_PRECISION False); test 10 temporal x 1 spatial views (the README's 10 x 1; the yaml
# sweeps TEST.NUM_TEMPORAL_CLIPS). The last stage's query pooling comes back when the
# MaskFeat run (backbone.mvit_last_pool=false) is fine-tuned (`VideoMViT.finetuning_trunk`,
# every fine-tuning of an MViTv2 run). Not ported: the two samples of a video share one
# decoded clip in SlowFast (TRAIN_CROP_NUM_TEMPORAL 1) and differ only in their spatial
# augmentation, where data.repeat_aug draws each its own temporal position (MAE-ST's rule);
# SlowFast's decoding sizes (DECODING_SHORT_SIZE 320, TRAIN_JITTER_SCALES [256, 320]) and its
# test short side 256 (the run's data.short_side and data.img_size are kept);
# USE_OFFSET_SAMPLING. AUG.COLOR_JITTER 0.4 is not read by SlowFast's Kinetics loader
# (`datasets/kinetics.py`), so there is no colour jitter here either; the flip is the run's
# (DATA.RANDOM_FLIP defaults to on in SlowFast, as a Kinetics run's data.hflip is).
PRESETS["maskfeat_mvit_s_k400"] = {
    "optim.optimizer": "adamw", "optim.epochs": 100, "optim.batch_size": 2,
    "optim.blr": 9.6e-3, "optim.warmup_epochs": 20, "optim.warmup_start": 1 / 600,
    "optim.min_lr": 0.0, "optim.min_lr_ratio": 1 / 600, "optim.betas": (0.9, 0.999),
    "optim.weight_decay": 0.05, "optim.clip_grad": 5.0,
    "method.layer_decay": 0.75, "method.drop_path": 0.1, "method.dropout": 0.0,
    "method.head_init_std": 2e-5, "method.smoothing": 0.1, "method.mixup": 0.8,
    "method.cutmix": 1.0, "method.mixup_prob": 1.0, "method.mixup_switch_prob": 0.5,
    "method.auto_augment": "rand-m7-mstd0.5-inc1", "method.reprob": 0.25,
    "method.remode": "pixel", "method.recount": 1, "data.crop_scale": (0.08, 1.0),
    "data.repeat_aug": 2, "eval.temporal_views": 10, "eval.spatial_crops": 1,
    "run.precision": "fp32", "data.num_workers": 8,
}  # fmt: skip
# Which video backbone each video preset is written for (`backbone.name` prefix): a video
# run takes only the presets of its own backbone family
VIDEO_PRESET_FAMILY = {"mae_st_vit_large": "vit", "ucf101_slow_r50": "slow",
                       "maskfeat_mvit_s_k400": "mvit"}  # fmt: skip
VIDEO_PRESETS = set(VIDEO_PRESET_FAMILY)
FAMILY_NAMES = {"vit": "video ViT", "slow": "Slow-only ResNet", "mvit": "MViTv2"}

# The fine-tuning defaults for the Fashion-MNIST demo models (a short schedule).
FINETUNE_OPTIM = OptimConfig(
    epochs=2, batch_size=128, blr=1e-3, min_lr=1e-6, warmup_epochs=0.2, weight_decay=0.05,
    betas=(0.9, 0.999),
)  # fmt: skip


# The video defaults on a CPU: 16 clips a step, 4 epochs of the labelled train split.
VIDEO_FINETUNE_OPTIM = dataclasses.replace(
    FINETUNE_OPTIM, epochs=4, batch_size=16, warmup_epochs=0.5, clip_grad=5.0
)


def video_defaults(backbone: BackboneConfig) -> dict[str, Any]:
    """The supervised method's video settings (module docstring): mae_st `main_finetune.py`'s
    dropout 0.5, layer decay 0.75, drop path 0.1; a Slow ResNet's head std 0.01 (SlowFast
    `ResNetBasicHead` init); no RandomErasing / RandAugment of clips (`--rand_aug` off)."""
    return {"dropout": 0.5, "layer_decay": 0.75, "drop_path": 0.1, "reprob": 0.0,
            "auto_augment": "",
            "head_init_std": 0.01 if backbone.name.startswith("slow_") else 2e-5}  # fmt: skip


def video_family(backbone_name: str) -> str:
    """A video backbone's family: `slow_*` a Slow-only ResNet ("slow"), `mvitv2_*` an MViTv2
    ("mvit"), else a video ViT ("vit")."""
    if backbone_name.startswith("slow_"):
        return "slow"
    return "mvit" if backbone_name.startswith("mvit") else "vit"


def check_video_preset(preset: str, backbone_name: str, source: str | Path) -> None:
    """A video preset on a run of another backbone family is one clear error that lists the
    presets that fit the run."""
    family, want = video_family(backbone_name), VIDEO_PRESET_FAMILY[preset]
    if family != want:
        fits = sorted(p for p, f in VIDEO_PRESET_FAMILY.items() if f == family)
        raise ValueError(f"preset {preset!r} is for {FAMILY_NAMES[want]} runs; {source} has a "
                         f"{backbone_name} backbone (presets: {fits})")  # fmt: skip


def finetune_config(source: str | Path, preset: str = "") -> TrainConfig[SupervisedConfig]:
    """The fine-tuning run for `source` (a run or an exported backbone folder) before
    overrides: its input conventions (image size, channels, normalization; a video run's clip
    sampling) and eval dataset, the fine-tuning defaults or a named preset, `run.out_dir` =
    `source/finetune`."""
    if preset and preset not in PRESETS:
        raise ValueError(f"unknown fine-tuning preset {preset!r}; choose one of {sorted(PRESETS)}")
    path = Path(source)
    if is_export(path):
        data, ev, backbone = export_meta(path)[1], EvalConfig(), BackboneConfig()
    else:
        run = load_run_config(path)
        data, ev, backbone = run.data, run.eval, run.backbone
    video = bool(data.frames)
    if preset and (preset in VIDEO_PRESETS) != video:
        raise ValueError(f"preset {preset!r} is for {'image' if video else 'video'} runs; "
                         f"{source} is a {'video' if video else 'image'} run")  # fmt: skip
    if preset and video:
        check_video_preset(preset, backbone.name, source)
    if video:  # the run's clips (one per video: data.clips = 0, repeat_aug = 1), crop, flip
        data = dataclasses.replace(data, views="", limit=0, num_workers=0, clips=0,
                                   ssl_color=False, repeat_aug=1)  # fmt: skip
        method = SupervisedConfig(source=str(source), **video_defaults(backbone))
    else:
        data = dataclasses.replace(data, crop_scale=(0.35, 1.0), hflip=True, views="", limit=0,
                                   num_workers=0)  # fmt: skip
        method = SupervisedConfig(source=str(source))
    cfg = TrainConfig(
        method=method,
        recipe=f"finetune:{preset}" if preset else "finetune",
        backbone=backbone,
        data=data,
        optim=VIDEO_FINETUNE_OPTIM if video else FINETUNE_OPTIM,
        eval=dataclasses.replace(ev, every_epochs=0, final=True),
        run=RunConfig(out_dir=str(path / RUN_SUBDIR)),
    )
    return replace(cfg, **PRESETS[preset]) if preset else cfg


def resolve(cfg: TrainConfig[SupervisedConfig]) -> TrainConfig[SupervisedConfig]:
    """After the overrides: the classifier's image size is `data.img_size`, and the number of
    classes (when 0) that of the eval dataset's `method.labels` family (a video run's
    "direction": Moving Fashion-MNIST's 8 motion directions; refused with a horizontal flip,
    which mirrors the motion)."""
    video = bool(cfg.data.frames)
    if not cfg.eval.dataset or cfg.eval.dataset == "auto":
        raise ConfigError(
            "this run has no labels to fine-tune on (eval.dataset is empty): pass "
            + ("eval.dataset=fashion_mnist (Moving Fashion-MNIST) or a folder with train/ and "
               "val/ class sub-folders of videos" if video else
               "eval.dataset=fashion_mnist or a folder")
        )  # fmt: skip
    family = cfg.method.labels
    if family != "class" and not video:
        raise ConfigError(f"method.labels={family} is for video runs (Moving Fashion-MNIST's "
                          "motion labels); an image run fine-tunes on its classes")  # fmt: skip
    if video and cfg.method.photometric:
        raise ConfigError(f"method.photometric={cfg.method.photometric!r} is for in-memory images "
                          "(Fashion-MNIST), not video clips; clips take method.auto_augment "
                          "and method.reprob")  # fmt: skip
    if family == "direction" and cfg.data.hflip:
        raise ConfigError("method.labels=direction with data.hflip=true: a horizontal flip "
                          "mirrors the motion and so changes the label; set data.hflip=false")  # fmt: skip
    try:
        k = cfg.method.num_classes or num_classes(cfg.eval, video=video, family=family)
    except ValueError as e:  # unknown family, or a set without motion labels
        raise ConfigError(str(e)) from None
    if k < 2:
        raise ConfigError(f"eval.dataset={cfg.eval.dataset} has {k} class(es): fine-tuning "
                          "needs labelled data, one sub-folder per class")  # fmt: skip
    return replace(cfg, **{"method.img_size": cfg.data.img_size, "method.num_classes": k})


def finetune(cfg: TrainConfig[SupervisedConfig], *, resume: bool = False) -> dict[str, Any]:
    """Train the supervised run `cfg` (`visrep.loop.train`) and return its final metrics
    plus the schedule it ran (`finetune_steps`, `finetune_lr`, last train loss) and the whole
    config under `config`; {} on the non-main processes of a torchrun."""
    metrics = train(cfg, resume=resume)
    if not metrics:
        return metrics
    rows = [r for r in read_log(cfg.run.out_dir) if "train/loss" in r]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    eff_batch = cfg.optim.batch_size * cfg.optim.accum_steps * world
    return metrics | {
        "finetune_train_loss": rows[-1]["train/loss"] if rows else float("nan"),
        "finetune_steps": rows[-1]["step"] if rows else 0,
        "finetune_epochs_done": rows[-1]["train/epoch"] if rows else 0.0,
        "finetune_lr": cfg.optim.lr or cfg.optim.blr * eff_batch / 256,
        "finetune_effective_batch": eff_batch,
        "finetune_run": cfg.run.out_dir,
        "config": dataclasses.asdict(cfg),
    }


def run_finetune_cli(
    ckpt: str,
    overrides: list[str],
    *,
    preset: str = "",
    out: str | None = None,
    device: str = "",
    resume: bool = False,
) -> dict:
    """`visrep eval finetune`: config, overrides, train, write the metrics JSON atomically.
    With `resume`, continue the fine-tuning run in `run.out_dir` (default RUN_DIR/finetune)
    from its checkpoint with its saved config (`run.*` overrides only, e.g. run.max_steps)."""
    extra = [f"run.device={device}"] if device else []
    if resume:  # the saved config; only run.* (max_steps, threads, device, ...) may change
        if preset:
            raise ConfigError("--resume takes the fine-tuning run's saved config: drop --preset")
        cfg = resume_config(ckpt, [*extra, *overrides], RUN_SUBDIR, "fine-tuning")
    else:
        cfg = resolve(apply_overrides(finetune_config(ckpt, preset), [*extra, *overrides]))
    metrics = finetune(cfg, resume=resume)
    if metrics:
        if preset:
            metrics["finetune_preset"] = preset
        path = Path(out) if out else Path(ckpt) / METRICS_FILE
        atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return metrics
