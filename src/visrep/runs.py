"""Open a run or an exported backbone and build its model: the one place that reads a run
folder from disk for the layers above (`train`, `finetune`, `export`, `pseudo_bow`, `cli`).

A method's constructor does no I/O: `build_model` resolves what a config names on disk
(`method.source` of a fine-tuning run) and hands the method its backbone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from visrep.backbones import build_backbone
from visrep.backbones.inflate import inflate_into
from visrep.backbones.pretrained import Pretrained, create_timm, from_backbone
from visrep.backbones.video_export import VIDEO_FORMATS
from visrep.backbones.video_vit import VideoViT
from visrep.checkpoint import (
    CHECKPOINT,
    CONFIG,
    DIFFERENT_RUNS,
    load_checkpoint,
    load_model_weights,
    load_run_config_dict,
)
from visrep.config import ConfigError, DataConfig, TrainConfig, apply_overrides, from_dict
from visrep.data.preprocess import mean_std
from visrep.data.resolve import resolve_data
from visrep.method_configs import RCGConfig
from visrep.methods import METHODS, method_name
from visrep.methods.rcg import EncoderInput, projection_encoder

# what `visrep export` writes: timm's layout (config.json + model.safetensors); exports of
# visrep 0.1 wrote backbone.json + backbone.safetensors, still read
EXPORT_CONFIG, EXPORT_WEIGHTS = "config.json", "model.safetensors"
OLD_EXPORT_META, OLD_EXPORT_WEIGHTS = "backbone.json", "backbone.safetensors"


def is_export(path: str | Path) -> bool:
    """A folder written by `visrep export` (not a training run: runs hold a checkpoint)."""
    path = Path(path)
    if (path / OLD_EXPORT_META).is_file():
        return True
    cfg = path / EXPORT_CONFIG
    return cfg.is_file() and "architecture" in json.loads(cfg.read_text())


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run saved (`config.json`), typed by its method."""
    data = load_run_config_dict(run_dir)
    name = data.get("method_name")
    if data.get("format") in VIDEO_FORMATS:
        raise ConfigError(f"{run_dir} is an exported video backbone, not a run: load it with "
                          "visrep.backbones.video_export.load_video_backbone, or pass the run "
                          "it came from")  # fmt: skip
    if name not in METHODS:
        raise ConfigError(
            f"{run_dir}/config.json names method {name!r}, not one of {sorted(METHODS)}"
        )
    try:
        return from_dict(TrainConfig[METHODS[name].config], data)
    except (TypeError, AttributeError) as e:  # a damaged or hand-edited file: a field's shape
        raise ConfigError(f"{run_dir}/config.json does not describe a {name} run ({e}): put "
                          "back the config.json saved with this run's checkpoint.pt") from e  # fmt: skip


def build_model(cfg: TrainConfig) -> nn.Module:
    """The method model `cfg` describes, at its initialisation (the current torch seed).

    A fine-tuning run (`method.source`) starts from that run's or export's backbone."""
    cfg = resolve_data(cfg)  # a recipe's automatic channels (no-op for a saved run)
    entry = METHODS[method_name(cfg.method)]
    source = getattr(cfg.method, "source", "")
    if source:
        backbone = load_pretrained(source, cfg.method.init, seed=torch.initial_seed())
    else:
        backbone = build_backbone(cfg.backbone, cfg.data)
    if isinstance(cfg.method, RCGConfig):  # RCG: the frozen encoder run it names
        return entry.model(cfg.method, backbone, **rcg_encoder(cfg))
    return entry.model(cfg.method, backbone)


def rcg_encoder(cfg: TrainConfig) -> dict[str, Any]:
    """RCG's frozen encoder (`method.encoder`: backbone + projection head), the map from the
    generator's pixels to its input, and the representation's size."""
    path = cfg.method.encoder
    if not path or not (Path(path) / CHECKPOINT).is_file():
        raise ConfigError(f"method.encoder={path!r}: RCG needs the folder of a trained MoCo v3 "
                          "or SimCLR run (e.g. `visrep train mocov3_fmnist`), holding "
                          f"{CHECKPOINT}")  # fmt: skip
    seed = torch.initial_seed()
    enc_cfg, method = load_run(path)
    torch.manual_seed(seed)  # loading drew nothing the RCG model's init should depend on
    encoder = projection_encoder(method)
    mean, std = mean_std(cfg.data)
    enc_mean, enc_std = mean_std(enc_cfg.data)
    to_enc = EncoderInput(mean, std, enc_cfg.data.img_size, enc_cfg.data.channels, enc_mean,
                          enc_std)  # fmt: skip
    probe = torch.zeros(2, cfg.data.channels, cfg.data.img_size, cfg.data.img_size)
    with torch.no_grad():
        dim = int(encoder(to_enc(probe)).shape[-1])
    return {"encoder": encoder, "encoder_input": to_enc, "rep_dim": dim}


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, nn.Module]:
    """The run's config and its method model with the checkpoint's weights, in eval mode.
    A config.json and checkpoint.pt of different runs are one clear error (what differs)."""
    cfg = load_run_config(run_dir)
    state = load_checkpoint(run_dir, map_location="cpu")
    model = build_model(cfg)
    run = Path(run_dir)
    load_model_weights(model, state, method_name(cfg.method), what=str(run / CHECKPOINT),
                       target=f"{run / CONFIG} describes", fix=DIFFERENT_RUNS)  # fmt: skip
    return cfg, model.to(device).eval()


def load_pretrained(
    path: str | Path, init: str = "pretrained", seed: int = 0
) -> Pretrained | nn.Module:
    """Read a run folder (`visrep train`) or an exported backbone folder (`visrep export`).

    `init="random"` keeps the architecture and input conventions but takes the backbone's own
    untrained weights (`build_backbone`'s init, e.g. the fixed sin-cos position table; timm's
    own init for an exported folder), seeded by `seed`: the from-scratch baseline. A method's
    re-initialisation at the start of its pre-training (MAE's xavier Linears, video MaskFeat's
    SlowFast init of the whole encoder under its default `encoder_init`) is not replayed.
    A video run (`data.frames` > 0) gives its backbone module itself (`VideoViT`,
    `SlowResNet`, `VideoMViT`: timm has none of them), with the run's weights or at that init.
    """
    if init not in ("pretrained", "random"):
        raise ValueError(f"method.init must be 'pretrained' or 'random', got {init!r}")
    path = Path(path)
    if is_export(path):
        meta, _ = export_meta(path)
        if init == "random":
            torch.manual_seed(seed)
            model = create_timm(meta["timm_name"], meta["timm_kwargs"], meta["timm_fixups"])
            state = model.state_dict()
        else:
            state = safetensors.torch.load_file(str(path / meta["weights"]))
        return Pretrained(
            meta["timm_name"], dict(meta["timm_kwargs"]), meta["timm_fixups"], state, str(path)
        )
    if init == "random":
        cfg = load_run_config(path)
        torch.manual_seed(seed)
        backbone = build_backbone(cfg.backbone, cfg.data)
    else:
        cfg, model = load_run(path)
        backbone = model.backbone
    return backbone.train() if cfg.data.frames else from_backbone(backbone, str(path))


def image_source(source: str | Path) -> bool:
    """`run.init_from` names an image run (`data.frames` = 0) or a timm export: a video ViT
    run then starts from it by inflation (`init_video_from_image`)."""
    path = Path(source)
    path = path.parent if path.is_file() else path
    return is_export(path) or not load_run_config(path).data.frames


def init_video_from_image(backbone: nn.Module, source: str | Path) -> None:
    """Load an image ViT run's or export's encoder into a video ViT, its patch embedding
    inflated over time (`visrep.backbones.inflate`); the method's other parts (a decoder)
    keep their initialisation. Draws nothing from the caller's torch generator."""
    if not isinstance(backbone, VideoViT):
        raise ValueError(f"run.init_from={source} is an image run: only a video ViT backbone "
                         f"(backbone.name=vit_*) can start from it, not {type(backbone).__name__}")  # fmt: skip
    path = Path(source)
    with torch.random.fork_rng(devices=[]):
        pre = load_pretrained(path.parent if path.is_file() else path)
    if not pre.timm_name.startswith("vit_"):
        raise ValueError(f"run.init_from={source} holds a {pre.timm_name}: a video ViT starts "
                         "from an image ViT run or export")  # fmt: skip
    inflate_into(backbone, pre.state, f"run.init_from={source}")


def export_meta(path: Path) -> tuple[dict[str, Any], DataConfig]:
    """What an exported folder records: {timm_name, timm_kwargs, timm_fixups, mean, std,
    input_size, weights} and the input conventions as a DataConfig."""
    path = Path(path)
    if (path / OLD_EXPORT_META).is_file():
        meta = json.loads((path / OLD_EXPORT_META).read_text()) | {"weights": OLD_EXPORT_WEIGHTS}
    else:
        cfg = json.loads((path / EXPORT_CONFIG).read_text())
        pre, extra = cfg["pretrained_cfg"], cfg.get("visrep", {})
        meta = {"timm_name": cfg["architecture"], "timm_kwargs": cfg.get("model_args", {}),
                "timm_fixups": extra.get("timm_fixups", {}), "mean": pre["mean"],
                "std": pre["std"], "input_size": pre["input_size"], "weights": EXPORT_WEIGHTS}  # fmt: skip
    c, size = meta["input_size"][0], meta["input_size"][-1]
    return meta, DataConfig(
        img_size=size, channels=c, mean=tuple(meta["mean"]), std=tuple(meta["std"])
    )


def resume_config(ckpt: str | Path, overrides: list[str], subdir: str, what: str) -> TrainConfig:
    """The saved config of the run a command continues (`visrep eval finetune / detect
    --resume`): its folder is the last `run.out_dir=` override, else `ckpt/subdir`; only
    `run.key=value` overrides (max_steps, threads, device, ...) may change it."""
    if any(not o.startswith("run.") or "=" not in o for o in overrides):
        raise ConfigError(f"--resume takes the {what} run's saved config; pass only "
                          f"run.key=value overrides (run.out_dir=DIR, default RUN_DIR/{subdir})")  # fmt: skip
    dirs = [o.split("=", 1)[1] for o in overrides if o.startswith("run.out_dir=")]
    run_dir = dirs[-1] if dirs else str(Path(ckpt) / subdir)
    return apply_overrides(load_run_config(run_dir), [*overrides, f"run.out_dir={run_dir}"])
