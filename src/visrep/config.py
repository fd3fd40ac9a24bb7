"""Typed, frozen run configuration and strict `key=value` overrides.

A run is described by `TrainConfig[M]`, where `M` is the method's own config
dataclass (e.g. `MAEConfig`, in `visrep.method_configs`). Recipes in `configs/`
are functions that return a `TrainConfig`; the CLI applies overrides with tyro,
after checking every key so that a typo names the valid keys instead of
silently doing nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import json
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from visrep.io import atomic_write_text

M = TypeVar("M")

# where `data.root` and `eval.root` look for Fashion-MNIST's idx files by default: the Debian
# package's folder, or $VISREP_FMNIST_ROOT when set (`make test FMNIST=DIR` sets it)
FMNIST_ROOT = os.environ.get("VISREP_FMNIST_ROOT") or "/usr/share/datasets/fashion-mnist"


def check_ranges(cfg: Any, prefix: str, bounds: dict[str, tuple[float, float | None]]) -> None:
    """Raise a ConfigError naming the key when a numeric setting is outside [low, high)."""
    for name, (low, high) in bounds.items():
        v = getattr(cfg, name)
        if v < low or (high is not None and v >= high):
            valid = f">= {low}" if high is None else f"in [{low}, {high})"
            raise ConfigError(f"{prefix}.{name} must be {valid}, got {v}")


@dataclass(frozen=True)
class BackboneConfig:
    """Which encoder to pre-train (a key of `visrep.backbones.BACKBONES`)."""

    name: str = "vit_base"
    patch_size: int = 16
    depth: int = 0  # 0 keeps the architecture's depth (ViT only)
    num_heads: int = 0  # 0 keeps the architecture's heads (ViT only; MoCo v3's ViT-S uses 12)
    # ViT features for eval/export: "token" (cls) or "avg" (mean patch token); CNNs always avg.
    # For CNNs patch_size is the stem's downsampling (ResNet: 4, or 1 for 28-32 px images).
    pool: str = "token"
    drop_path_rate: float = 0.0
    # ViT position embedding: "sincos" (a fixed 2-D sin-cos table: MAE, MoCo v3, FLIP) or
    # "learn" (timm's trunc-normal(0.02) table, trained: CLIP/SLIP's timm ViT, SimCLR in SLIP)
    pos_embed: str = "sincos"
    # video ViTs (data.frames > 0): frames per token of the Conv3d patch embedding (MAE-ST: 2);
    # with pos_embed="learn" the table is MAE-ST's separable spatial + temporal one
    t_patch_size: int = 2
    # MViTv2 (mvitv2_*): query pooling at the last stage start, as fine-tuning has it (MViTv2-S
    # ends at 7 × 7 tokens per frame at 224 px); False = video MaskFeat's pre-training variant
    # (14 × 14, stride 16 px), which `visrep eval finetune` turns back into the pooled network
    mvit_last_pool: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Pre-training images: Fashion-MNIST or a folder of the user's own images."""

    dataset: str = "fashion_mnist"  # "fashion_mnist" or a path to a folder of images
    root: str = FMNIST_ROOT  # Fashion-MNIST idx files
    img_size: int = 224
    # 1 = grayscale (Fashion-MNIST is used as 1 channel), 3 = RGB, 0 = from the data (a
    # folder is colour unless every sampled image is grayscale; visrep.data.resolve)
    channels: int = 3
    mean: tuple[float, ...] = ()  # empty: the dataset's default (ImageNet's for folders)
    std: tuple[float, ...] = ()
    crop_scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop scale (MAE: 0.2-1)
    hflip: bool = True
    # multi-view preset of visrep.data.views.VIEW_PRESETS ("" = one crop, MAE style)
    views: str = ""
    # loader processes for folders and pairs (threads + workers <= cores); -1 = half the
    # cores (at most 8) for folders and pairs, 0 for in-memory data
    num_workers: int = 0
    # Image-text methods (CLIP/SLIP/FLIP): when data.dataset is Fashion-MNIST, caption each
    # train image with its class name in this template set of visrep.data.templates
    # ("fmnist_train"; "" = images only). Pair files (WebDataset shards, CSV/JSONL) carry
    # their own captions and ignore it.
    captions: str = ""
    # Caption form for image-text methods: "sentence" (as given) or "bow" (bag of words,
    # random order; visrep.data.bow). bow_balance = word-balancing threshold t (0 = off).
    caption_style: str = "sentence"
    bow_balance: float = 0.0
    # train on N images only (0 = all): Fashion-MNIST's first N, a folder's seeded
    # stratified subset of N
    limit: int = 0
    # image-text pools (WebDataset shards, CSV/JSONL): train only on the records of a curated
    # subset, the `subset.tsv` of `visrep curate balance` or its folder (visrep.data.subset)
    subset: str = ""
    # Video (0 = images): clips of T frames (visrep.data.video). data.dataset is then a
    # folder of videos (class sub-folders optional), a CSV/JSONL/text list of videos, or
    # "fashion_mnist" = Moving Fashion-MNIST generated on the fly (visrep.data.moving_fmnist)
    frames: int = 0
    frame_stride: int = 1  # sampling rate tau: a clip spans tau*T source frames at 30 fps
    short_side: int = 0  # resize each decoded video's short side to this first (0 = as is)
    # video decoder: "pyav" (default; bundles FFmpeg) or "torchcodec" (pip install torchcodec;
    # needs FFmpeg's shared libraries on the system, e.g. apt-get install ffmpeg)
    video_backend: str = "pyav"
    # ρ-spatiotemporal positives (rho_* methods): 0 = one clip per video ("images"); 1 = two
    # augmentations of one clip; ρ >= 2 = ρ clips at independent times (batch "views";
    # visrep.data.video.train_clips)
    clips: int = 0
    # the ρ study's SSL colour augmentation of each clip (visrep.data.video.ssl_colour:
    # jitter 0.6/0.6/0.6/0.15 p 0.8, grayscale p 0.2, blur p 0.5); with data.clips only
    ssl_color: bool = False
    # repeated augmentation (MAE-ST `util/kinetics.py`, `--repeat_aug`; 4 in its pre-training):
    # each decoded video gives this many clips, each with its own temporal position and
    # augmentation, so a step trains on batch_size x repeat_aug clips of batch_size videos.
    # The lr scales with the videos only (batch_size), as the official code's.
    repeat_aug: int = 1
    # SlowFast's fine-tuning colour augmentation of each clip (the ρ study's UCF101 recipe:
    # jitter 0.4/0.4/0.4, hue 0.1 always, grayscale p 0.2; visrep.data.video.CLIP_COLOUR);
    # not with data.clips (the ρ methods' views take data.ssl_color)
    color_jitter: bool = False
    # (min, max): SlowFast's short-side scale jitter to round(U[min, max]) and a random
    # img_size crop instead of the random resized crop (data.crop_scale is then unused; the
    # ρ study's fine-tuning and linear protocol: (256, 320) with 224 crops); () = off
    short_side_jitter: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_ranges(self, "data", {"img_size": (1, None), "num_workers": (-1, None),
                                    "limit": (0, None), "bow_balance": (0, None),
                                    "frames": (0, None), "frame_stride": (1, None),
                                    "short_side": (0, None), "clips": (0, None),
                                    "repeat_aug": (1, None)})  # fmt: skip
        if self.channels not in (0, 1, 3):
            raise ConfigError(
                f"data.channels must be 0 (from the data), 1 or 3, got {self.channels}"
            )
        if self.repeat_aug > 1 and (not self.frames or self.clips):
            raise ConfigError(f"data.repeat_aug={self.repeat_aug} repeats video clips: it needs "
                              "data.frames > 0 and data.clips = 0 (the ρ methods draw their "
                              "own positives per video); set data.repeat_aug=1")  # fmt: skip
        if (self.color_jitter or self.short_side_jitter) and not self.frames:
            raise ConfigError("data.color_jitter and data.short_side_jitter are clip "
                              "augmentations: they need data.frames > 0")  # fmt: skip
        if self.color_jitter and self.clips:
            raise ConfigError("data.color_jitter is the fine-tuning colour augmentation; the ρ "
                              "methods' views take data.ssl_color=true instead")  # fmt: skip
        j = self.short_side_jitter
        if j and (len(j) != 2 or not self.img_size <= j[0] <= j[1]):
            raise ConfigError(f"data.short_side_jitter must be (min, max) with data.img_size "
                              f"({self.img_size}) <= min <= max, got {j}")  # fmt: skip
        if self.video_backend not in ("pyav", "torchcodec"):
            raise ConfigError(f"data.video_backend must be 'pyav' or 'torchcodec', got "
                              f"{self.video_backend!r}")  # fmt: skip


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer with linear lr scaling and warmup + cosine (Goyal et al. 2017's lr = blr ×
    batch / 256; MAE `util/lr_sched.py`): AdamW by default; SGD (SimSiam) and LARS (MoCo v3
    ResNet, moco-v3 `moco/optimizer.py`) for the joint-embedding recipes."""

    optimizer: str = "adamw"  # adamw | sgd | lars | lamb (SparK `pretrain/utils/lamb.py`)

    epochs: int = 800
    batch_size: int = 64  # per process
    accum_steps: int = 1
    blr: float = 1.5e-4  # lr = blr * effective batch / 256
    lr: float = 0.0  # absolute lr; overrides blr when > 0
    min_lr: float = 0.0
    # > 0: the cosine's floor is this fraction of the lr instead of min_lr (SparK: 0.001),
    # so it follows the batch size as the peak does
    min_lr_ratio: float = 0.0
    warmup_epochs: float = 40.0
    warmup_start: float = 0.0  # lr at the start of warmup, as a fraction of the lr (SparK: 0.005)
    weight_decay: float = 0.05
    # > 0: weight decay follows a cosine from weight_decay to this over the run, set per
    # iteration (SparK's rising 0.04 -> 0.2, `lr_wd_annealing`); 0 = constant weight_decay
    weight_decay_end: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)  # adamw
    momentum: float = 0.9  # sgd, lars
    # sgd only: Nesterov momentum (torch.optim.SGD nesterov=True; SlowFast SOLVER.NESTEROV,
    # on by default there: the ρ study's UCF101 fine-tuning)
    nesterov: bool = False
    # False: no weight decay on 1-D parameters and biases (MAE). True: decay everything, as
    # MoCo v3's AdamW and SimSiam's SGD do (LARS always skips 1-D parameters, as in moco-v3
    # `moco/optimizer.py`).
    decay_all: bool = False
    lr_per_epoch: bool = False  # schedule set once per epoch (SimSiam), not per iteration
    clip_grad: float = 0.0  # max grad norm; 0 = off (MAE pre-training does not clip)
    # (lamb also gets it as LAMB's own max_grad_norm: the same global-norm clip, as SparK's LAMB)

    def __post_init__(self) -> None:
        if self.min_lr and self.min_lr_ratio:
            raise ConfigError(
                f"optim.min_lr={self.min_lr} and optim.min_lr_ratio={self.min_lr_ratio} both "
                "set the cosine's floor: set one of them to 0"
            )
        if not 0.0 <= self.warmup_start <= 1.0:
            raise ConfigError(f"optim.warmup_start must be in [0, 1], got {self.warmup_start}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError(f"optim.nesterov=true is Nesterov momentum for optim.optimizer=sgd "
                              f"with optim.momentum > 0, got optimizer {self.optimizer!r}, "
                              f"momentum {self.momentum}")  # fmt: skip
        check_ranges(self, "optim", {"epochs": (1, None), "batch_size": (1, None),
                                     "accum_steps": (1, None), "blr": (0, None), "lr": (0, None),
                                     "min_lr": (0, None), "warmup_epochs": (0, None),
                                     "weight_decay": (0, None), "clip_grad": (0, None)})  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    """k-NN / linear evaluation on a labelled dataset (may differ from the training data)."""

    # "fashion_mnist", a folder with train/ and val/ (or class folders with eval.holdout > 0),
    # "" (none), or "auto": the training data's own labels (visrep.data.resolve)
    dataset: str = "fashion_mnist"
    root: str = FMNIST_ROOT
    # periodic k-NN during training (0 = only at the end); on a video run the clip-level
    # video k-NN (the ρ study's online monitor), which needs a labelled eval.dataset
    every_epochs: int = 0
    periodic_limit: int = 10000  # train/test images (videos) used by the periodic k-NN
    final: bool = True  # full k-NN + linear probe after training
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_epochs: int = 90
    linear_batch_size: int = 1024
    linear_blr: float = 0.1
    # feature extraction; 256 keeps the CPU's activation peak ~300 MB below 512's at the
    # same speed (benchmarks/eval_scale.py); raise it on a GPU
    batch_size: int = 256
    limit_train: int = 0  # a seeded stratified subset of N (0 = all)
    limit_test: int = 0
    # eval.dataset = the training folder (class folders, no split): this fraction of each
    # class is the test split and is left out of training (seeded, the same for every run)
    holdout: float = 0.0
    # final evaluation: the same protocols on raw pixels and on the untrained encoder (same
    # split, same settings), so the report says whether pre-training helped
    baselines: bool = True
    # extracted features (float16) stay in RAM up to this many MiB per encoder and split;
    # beyond, they are memory-mapped from a temporary file (visrep.evals.features)
    feature_memory_mb: int = 1024
    # wall-clock budget of an evaluation (minutes; 0 = none): from the measured encoding
    # rate, the train split (memory bank / probe set) and, if need be, the test split become
    # seeded stratified subsets that fit the budget (knn_n_train / knn_n_test say how many)
    budget_minutes: float = 0.0
    # video runs, multi-view testing (k-NN, linear probe, a fine-tuned classifier's score):
    # temporal clips per video x spatial crops (1 = centre; 3 = left/centre/right or
    # top/centre/bottom along the long side after scaling the short side to data.img_size,
    # SlowFast / mae_st's test protocol; square frames give three equal crops). The papers
    # test 10 x 3; 2 x 1 halves a CPU's encoding time against 4 x 1 at 64 px
    temporal_views: int = 2
    spatial_crops: int = 1

    def __post_init__(self) -> None:
        if self.spatial_crops not in (1, 3):
            raise ConfigError(f"eval.spatial_crops must be 1 (centre) or 3 (the papers' "
                              f"left/centre/right test crops), got {self.spatial_crops}")  # fmt: skip
        check_ranges(self, "eval", {"every_epochs": (0, None), "periodic_limit": (0, None),
                                    "knn_k": (1, None), "knn_temperature": (0, None),
                                    "linear_epochs": (1, None), "linear_batch_size": (1, None),
                                    "batch_size": (1, None), "limit_train": (0, None),
                                    "limit_test": (0, None), "holdout": (0, 1),
                                    "feature_memory_mb": (0, None),
                                    "budget_minutes": (0, None),
                                    "temporal_views": (1, None)})  # fmt: skip

    # Image-text runs: held-out pairs (WebDataset shards or CSV/JSONL) for image<->text
    # retrieval R@1/5/10 in the periodic and final evaluations ("" = none)
    retrieval_pairs: str = ""


@dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes."""

    out_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    # torch.compile of the method (+7-23% on MAE after a ~45 s warm-up); if compiling fails
    # the run logs why and continues eagerly (visrep.device.CompiledOrEager)
    compile: bool = False
    # channels-last memory format for the model's 4-D (convolution) weights, so convolutions
    # run in NHWC (tensor-core GPUs; on a CPU measure before enabling)
    channels_last: bool = False
    threads: int = 0  # torch threads on CPU (0 = all cores minus loader workers)
    log_every: int = 20  # steps between log lines
    ckpt_every_minutes: float = 10.0  # also at every epoch end and on SIGTERM/SIGINT
    max_steps: int = 0  # stop after this many steps (schedule unchanged); 0 = run to the end
    # Start from the model weights of another run of the same method (a run folder or its
    # checkpoint.pt), with a fresh optimizer and schedule: FLIP's unmasked tuning (Li et al.
    # 2023; facebookresearch/flip README)
    # continues a masked run with method.mask_ratio=0. Ignored by --resume (the run's own
    # checkpoint wins). A video ViT run may name an image ViT run or timm export instead: its
    # encoder is loaded with the patch embedding inflated over time (visrep.backbones.inflate)
    init_from: str = ""
    # Wall-clock budget of the training (minutes; 0 = none): the schedule runs on the larger
    # of steps/total and elapsed/budget, so training ends at optim.epochs or when the budget
    # is spent, whichever comes first, with its lr schedule complete. Not exactly resumable
    # (time is not replayable; the clock restarts on --resume).
    budget_minutes: float = 0.0
    progress: bool = True

    def __post_init__(self) -> None:
        check_ranges(self, "run", {"log_every": (1, None), "ckpt_every_minutes": (0, None),
                                   "max_steps": (0, None), "threads": (0, None),
                                   "budget_minutes": (0, None)})  # fmt: skip


@dataclass(frozen=True)
class TrainConfig(Generic[M]):
    """A whole run. `method` is the method's own config dataclass."""

    method: M
    recipe: str = ""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


def replace(cfg: Any, **changes: Any) -> Any:
    """`dataclasses.replace` with dotted keys: replace(cfg, **{"optim.epochs": 2})."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(cfg, head), **sub)
    return dataclasses.replace(cfg, **flat)


def config_type(cfg: TrainConfig) -> type:
    """The concrete generic type of a run config, e.g. `TrainConfig[MAEConfig]` (any other
    config dataclass is its own type)."""
    if not isinstance(cfg, TrainConfig):
        return type(cfg)
    return TrainConfig[type(cfg.method)]  # type: ignore[index]


def _resolved_hints(cls: type) -> dict[str, Any]:
    origin = typing.get_origin(cls) or cls
    hints = typing.get_type_hints(origin)
    if origin is TrainConfig and cls is not origin:
        hints["method"] = typing.get_args(cls)[0]
    return hints


def leaf_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flat dotted key -> annotated type for a config *instance* (generic-aware)."""
    out: dict[str, Any] = {}
    hints = _resolved_hints(config_type(cfg) if isinstance(cfg, TrainConfig) else type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(leaf_keys(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hints[f.name]
    return out


def field_comments(cls: type) -> dict[str, str]:
    """The comment that documents each field of a config dataclass: the `# ...` at the end of
    its line, else the comment lines just above it (the source is the documentation)."""
    import inspect
    import re

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out, above = {}, []
    for line in lines[1:]:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        m = re.match(r"(\w+)\s*:[^=#]*(?:=[^#]*)?(?:#\s*(.*))?$", text)
        if m and not text.startswith(("def ", "return")):
            out[m.group(1)] = (m.group(2) or " ".join(above)).replace("  # fmt: skip", "").strip()
        above = []
    return out


def describe_keys(cfg: Any, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, value, meaning) of every leaf of a config: `visrep show`."""
    rows = []
    hints = _resolved_hints(config_type(cfg) if isinstance(cfg, TrainConfig) else type(cfg))
    notes = field_comments(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe_keys(value, f"{prefix}{f.name}.")
        else:
            rows.append(
                (f"{prefix}{f.name}", _type_name(hints[f.name]), value, notes.get(f.name, ""))
            )
    return rows


class ConfigError(ValueError):
    """A user-facing configuration mistake."""


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` (or `--key value` / `--key=value`) overrides, typed by tyro.

    Unknown keys raise `ConfigError` listing close matches and every valid key.
    """
    import tyro

    args = _normalize_override_args(overrides)
    keys = leaf_keys(cfg)
    unknown = [a[2:] for a in args[::2] if a[2:] not in keys]
    if unknown:
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            lines.append(f"unknown config key {key!r}{hint}")
        listing = "\n  ".join(f"{k}: {_type_name(t)}" for k, t in keys.items())
        raise ConfigError("\n".join(lines) + f"\nvalid keys:\n  {listing}")
    if not args:
        return cfg
    console = io.StringIO()
    try:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            return tyro.cli(
                config_type(cfg),
                default=cfg,
                args=_tyro_args(args, keys),
                config=(tyro.conf.FlagConversionOff,),
            )
    except SystemExit as e:
        # a value our configs refuse (check_ranges, __post_init__): tyro wraps its message
        message = getattr(e.__context__, "message", None)
        if message:
            raise ConfigError(str(message)) from None
        sys.stderr.write(console.getvalue())  # tyro's detailed type error
        raise ConfigError(f"could not parse overrides {overrides}; see the message above") from e


def _normalize_override_args(overrides: list[str]) -> list[str]:
    """['a.b=1', '--c', '2', '--d=3'] -> ['--a.b', '1', '--c', '2', '--d', '3']."""
    out: list[str] = []
    it = iter(overrides)
    for tok in it:
        if tok.startswith("--"):
            key, eq, value = tok[2:].partition("=")
            if not eq:
                try:
                    value = next(it)
                except StopIteration:
                    raise ConfigError(f"override {tok} has no value") from None
        else:
            key, eq, value = tok.partition("=")
            if not eq:
                raise ConfigError(
                    f"override {tok!r} must look like key=value (e.g. optim.epochs=5)"
                )
        out += [f"--{key.replace('-', '_')}", value]
    return out


_BOOLS = {"true": "True", "1": "True", "yes": "True", "false": "False", "0": "False", "no": "False"}


def _tyro_args(args: list[str], keys: dict[str, Any]) -> list[str]:
    """Split tuple values ('0.2,1.0' or '(0.2, 1.0)') into the separate tokens tyro expects;
    accept booleans in any case and as 1/0/yes/no (tyro only takes True/False)."""
    out: list[str] = []
    for flag, value in zip(args[::2], args[1::2]):
        tp = keys[flag[2:]]
        if tp is bool and value.lower() in _BOOLS:
            out += [flag, _BOOLS[value.lower()]]
        elif typing.get_origin(tp) is tuple:
            parts = _json_list(value)  # ["a photo of {}", "{}"]: items may hold spaces
            if parts is None:
                parts = [v for v in value.strip("()[] ").replace(",", " ").split() if v]
            out += [flag, *parts] if parts else [flag]
        else:
            if tp in (int, float):  # tyro's own message would not name the key
                try:
                    tp(value)
                except ValueError:
                    raise ConfigError(f"{flag[2:]} must be {'an int' if tp is int else 'a float'}"
                                      f", got {value!r}") from None  # fmt: skip
            out += [flag, value]
    return out


def _json_list(value: str) -> list[str] | None:
    """The items of a JSON list as strings (how a config file passes a tuple), else None."""
    if not value.lstrip().startswith("["):
        return None
    try:
        items = json.loads(value)
    except json.JSONDecodeError:
        return None
    return [str(v) for v in items] if isinstance(items, list) else None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def to_dict(cfg: TrainConfig, method_name: str) -> dict[str, Any]:
    """JSON-ready dict of a run config, with the method's registry name."""
    return {"method_name": method_name, **dataclasses.asdict(cfg)}


def from_dict(cls: Any, data: dict[str, Any]) -> Any:
    """Rebuild a (generic) config dataclass from `to_dict`'s output; unknown keys are errors."""
    hints = _resolved_hints(cls)
    origin = typing.get_origin(cls) or cls
    names = {f.name for f in dataclasses.fields(origin)}
    extra = set(data) - names - {"method_name"}
    if extra:
        raise ConfigError(f"unknown keys {sorted(extra)} for {origin.__name__}")
    kwargs = {}
    for name, value in data.items():
        if name == "method_name":
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value)
        elif typing.get_origin(tp) is tuple or (
            isinstance(tp, types.GenericAlias) and tp.__origin__ is tuple
        ):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return origin(**kwargs) if origin is not TrainConfig else TrainConfig(**kwargs)


def save_json(obj: Any, path: Any) -> None:

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --- config files: `visrep train --config FILE` / `visrep show RECIPE --format yaml` ---------

# keys a file may hold besides config keys: the recipe to start from, and the method's
# registry name that a run's config.json records (the recipe decides the method)
FILE_ONLY_KEYS = ("recipe", "method_name")


def read_config_file(path: str | Path) -> tuple[str, list[str]]:
    """(recipe, overrides) of a YAML or JSON file: `recipe` ("" when absent) and every other
    key as the `key=value` overrides the command line takes, so that `apply_overrides` checks
    them (unknown keys, types, ranges) exactly as typed ones. Nested mappings
    (`optim: {epochs: 5}`) and dotted keys (`optim.epochs: 5`) are both accepted; a run's
    `config.json` and `visrep show RECIPE --format yaml|json` are valid files."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"could not read the config file {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text) if str(path).lower().endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"could not parse {path}: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys (e.g. optim: {{epochs: "
                          f"5}}), not a {type(data).__name__}")  # fmt: skip
    recipe = data.pop("recipe", "") or ""
    if not isinstance(recipe, str):
        raise ConfigError(f"recipe in {path} must be a recipe name, got {recipe!r}")
    data.pop("method_name", None)
    return recipe, _flat_overrides(data, "", path)


def _flat_overrides(data: dict, prefix: str, path: str | Path) -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        key = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flat_overrides(value, f"{key}.", path)
        elif value is None:
            raise ConfigError(f"{key} has no value in {path}")
        elif isinstance(value, list | tuple):
            out.append(f"{key}={json.dumps(list(value))}")
        else:  # str(True) = "True", repr-exact floats; tyro parses them as typed keys
            out.append(f"{key}={value}")
    return out


def config_file_text(cfg: Any, fmt: str = "yaml") -> str:
    """`cfg` as a file that `read_config_file` reads back to the same config: nested JSON, or
    YAML with each key's meaning as a comment (`describe_keys`)."""
    rows = sorted(describe_keys(cfg), key=lambda row: "." in row[0])  # `recipe` first
    if fmt == "json":
        nested: dict[str, Any] = {}
        for key, _, value, _ in rows:
            *heads, last = key.split(".")
            node = nested
            for h in heads:
                node = node.setdefault(h, {})
            node[last] = list(value) if isinstance(value, tuple) else value
        return json.dumps(nested, indent=2) + "\n"
    lines: list[str] = []
    done: list[str] = []  # the sections open above
    for key, _, value, note in rows:
        *heads, last = key.split(".")
        for depth, h in enumerate(heads):
            if done[: depth + 1] != heads[: depth + 1]:
                lines.append(f"{'  ' * depth}{h}:")
        done = heads
        line = f"{'  ' * len(heads)}{last}: {_yaml_value(value)}"
        lines.append(f"{line:44s}  # {note}" if note else line)
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    """A YAML flow scalar or list that PyYAML reads back as the same Python value."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 reads 1e-05 as a string: write 1.0e-05
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return json.dumps(value, ensure_ascii=False)  # true/false, ints, double-quoted strings
