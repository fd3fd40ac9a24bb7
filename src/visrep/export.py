"""Export a pre-trained backbone in timm's own layout, and a CLIP model for open_clip.

`visrep export --ckpt RUN --out DIR` writes what timm and the Hugging Face hub read:

- `config.json`: `architecture` (the timm name), `model_args` (its constructor arguments),
  `pretrained_cfg` (mean, std, input size, bicubic interpolation, crop_pct, num_classes 0),
  and under `visrep` what timm has no field for (method, recipe, `timm_fixups`);
- `model.safetensors`: the timm model's state dict;
- `README.md`: a model card (method, recipe, data, metrics, how to load).

So `timm.create_model("local-dir:DIR", pretrained=True)` loads it with its features equal to
visrep's, and `timm.data.resolve_model_data_config(model)` gives the run's preprocessing.
A ResNet trained with visrep's small-image stem (`timm_fixups`) is the one architecture
timm cannot express: build it with `visrep.backbones.cnn.apply_fixups` (the card says so).
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from visrep.backbones.inflate import deflated_timm
from visrep.backbones.video_export import (
    VIDEO_CONFIG,
    VIDEO_WEIGHTS,
    backbone_block,
    load_video_backbone,
)
from visrep.backbones.video_vit import VideoViT
from visrep.capabilities import Detects, ImageText
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.preprocess import mean_std
from visrep.data.video import TARGET_FPS
from visrep.data.video_source import video_mean_std
from visrep.io import atomic_write, atomic_write_text
from visrep.runs import EXPORT_CONFIG, EXPORT_WEIGHTS, load_run


def prepare_out_dir(out: Path, force: bool) -> None:
    """Refuse to write into a non-empty folder unless `force` (then it is emptied first); a
    folder that cannot be made (a file of that name or above it) is one clear error."""
    if out.exists() and not out.is_dir():
        raise OSError(errno.ENOTDIR, f"--out {out} is a file, not a folder: choose another --out")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty; pass --force to replace what it holds "
                                  "or choose another --out")  # fmt: skip
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot make {out} ({e.strerror}): choose another --out") from e


def export_backbone(
    run_dir: str | Path, out_dir: str | Path, force: bool = False, image: bool = False
) -> dict[str, Any]:
    """Write the run's backbone in timm's layout (module docstring); returns `config.json`.

    A video run (video ViT or Slow-only ResNet) is written in visrep's video layout
    (`export_video`), a video ViT run with `image` also as
    the timm image ViT its deflated patch embedding gives (`visrep.backbones.inflate`)."""
    cfg, model = load_run(run_dir)
    if image:
        if not isinstance(model.backbone, VideoViT):
            raise ValueError(f"--format timm_image deflates a video ViT run; {run_dir} trained "
                             f"{type(model.backbone).__name__}: use --format timm")  # fmt: skip
        name, kwargs, state = deflated_timm(model.backbone)
        # the video run's normalisation (Moving Fashion-MNIST's or Kinetics' constants)
        norm = video_mean_std(cfg.data, moving=is_fashion_mnist(cfg.data.dataset))
        return _write_timm(cfg, Path(run_dir), Path(out_dir), force, name=name, kwargs=kwargs,
                           fixups={}, num_features=model.backbone.embed_dim, fixed=True,
                           state=state, norm=norm)  # fmt: skip
    if cfg.data.frames:  # timm has no video ViT nor 3-D ResNet: visrep's own layout
        return export_video(cfg, model.backbone, Path(run_dir), Path(out_dir), force)
    if isinstance(model, Detects):  # ViTDet trunk + pyramid + Mask R-CNN: no timm model
        raise ValueError(f"{run_dir} is a detection run (visrep eval detect): timm has no "
                         "Mask R-CNN; export the run it started from (method.source in its "
                         "config.json), or load it with visrep.runs.load_run")  # fmt: skip
    backbone = model.backbone
    return _write_timm(cfg, Path(run_dir), Path(out_dir), force, name=backbone.timm_name,
                       kwargs=dict(backbone.timm_kwargs), fixups=backbone.timm_fixups,
                       num_features=backbone.feature_dim,
                       fixed=hasattr(backbone.model, "patch_embed"),
                       state=backbone.model.state_dict())  # fmt: skip


def _write_timm(cfg: Any, run_dir: Path, out: Path, force: bool, *, name: str,
                kwargs: dict[str, Any], fixups: dict[str, Any], num_features: int, fixed: bool,
                state: dict[str, Any], norm: tuple | None = None) -> dict[str, Any]:  # fmt: skip
    """config.json, model.safetensors and README.md of a timm model `name(**kwargs)`;
    `norm` = (mean, std), by default the image data's (`mean_std`)."""
    prepare_out_dir(out, force)
    mean, std = norm or mean_std(cfg.data)
    size = cfg.data.img_size
    config = {
        "architecture": name,
        "num_classes": 0,
        "num_features": num_features,
        "model_args": kwargs,
        "pretrained_cfg": {
            "mean": list(mean),
            "std": list(std),
            "input_size": [cfg.data.channels, size, size],
            "interpolation": "bicubic",
            # folders are evaluated resize + centre crop 0.875; Fashion-MNIST resized whole
            "crop_pct": 1.0 if is_fashion_mnist(cfg.data.dataset) else 0.875,
            "num_classes": 0,
            "fixed_input_size": fixed,
        },
        "visrep": {
            "method": type(cfg.method).__name__,
            "recipe": cfg.recipe,
            "data": cfg.data.dataset,
            # changes timm has no argument for (a ResNet's small-image stem): apply with
            # visrep.backbones.cnn.apply_fixups(model, fixups) before loading the weights
            "timm_fixups": fixups,
        },
    }
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(
        out / EXPORT_WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"})
    )
    atomic_write_text(out / EXPORT_CONFIG, json.dumps(config, indent=2) + "\n")
    atomic_write_text(out / "README.md", model_card(config, run_dir, out))
    return config


def export_video(cfg: Any, backbone: Any, run_dir: Path, out: Path, force: bool) -> dict[str, Any]:
    """A video ViT, Slow-only ResNet or MViTv2 in visrep's layout
    (`visrep.backbones.video_export`), checked by loading it back: the rebuilt network's
    features on a clip must equal the run's (eval mode)."""
    fmt, key, block = backbone_block(backbone)  # a clear error for any other backbone
    prepare_out_dir(out, force)
    d = cfg.data
    mean, std = video_mean_std(d, moving=is_fashion_mnist(d.dataset))
    config = {
        "format": fmt,
        key: block,
        "preprocessing": {
            "frames": d.frames,
            "frame_stride": d.frame_stride,
            "target_fps": TARGET_FPS,
            "short_side": d.short_side,
            "img_size": d.img_size,
            "mean": list(mean),
            "std": list(std),
            "channels": d.channels,
        },  # fmt: skip
        "visrep": {"method": type(cfg.method).__name__, "recipe": cfg.recipe, "data": d.dataset},
    }
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    atomic_write(
        out / VIDEO_WEIGHTS, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"})
    )
    atomic_write_text(out / VIDEO_CONFIG, json.dumps(config, indent=2) + "\n")
    card = {"video_vit": video_card, "slow_resnet": slow_card, "video_mvit": mvit_card}[key]
    atomic_write_text(out / "README.md", card(config, run_dir, out))
    loaded, _ = load_video_backbone(out)
    clip = torch.randn(2, block["in_chans"], block["frames"], block["img_size"],
                       block["img_size"], generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        same = torch.equal(loaded(clip), backbone.cpu().eval()(clip))
    if not same:
        raise ValueError(f"the network loaded back from {out} differs from the run's")
    return config


def _video_card_head(config: dict[str, Any], key: str, title: str, run_dir: Path) -> list[str]:
    """The first lines of a video export's README.md: what, how trained, its input."""
    v, pre, meta = config[key], config["preprocessing"], config["visrep"]
    return [
        f"# {title} ({v['arch']}) pre-trained with visrep ({meta['method'].removesuffix('Config')})",
        "",
        f"- recipe `{meta['recipe']}`, data `{meta['data']}`, run `{run_dir}`",
        f"- input: clips [N, {v['in_chans']}, {v['frames']}, {v['img_size']}, {v['img_size']}] "
        f"(C, T, H, W): {pre['frames']} frames at stride {pre['frame_stride']} (of "
        f"{pre['target_fps']} fps), normalised with mean {pre['mean']}, std {pre['std']}",
    ]


def slow_card(config: dict[str, Any], run_dir: Path, out: Path) -> str:
    """README.md of a Slow-only ResNet export: the layout and how to load it."""
    v = config["slow_resnet"]
    return "\n".join(
        [
            *_video_card_head(config, "slow_resnet", "Slow-only ResNet", run_dir),
            f"- stages res2-res5: {v['blocks']} bottleneck blocks, width {v['width']}, temporal "
            f"kernels {v['temporal_kernels']}, spatial strides {v['spatial_strides']}; features: "
            f"{v['feature_dim']}-d, {v['features']}",
            "",
            "timm has no 3-D ResNet: `model.safetensors` holds visrep's `SlowResNet` state dict "
            '(BatchNorm running statistics included; docs/export.md, "Slow-only ResNet", lists '
            "the names).",
            "",
            "## Load",
            "",
            "```python",
            "from visrep.backbones.video_export import load_slow_resnet",
            f'model, config = load_slow_resnet("{out.resolve()}")  # eval mode, strict',
            "features = model(clips)  # [N, " + str(v["feature_dim"]) + "]",
            "```",
            "",
        ]
    )


def mvit_card(config: dict[str, Any], run_dir: Path, out: Path) -> str:
    """README.md of an MViTv2 export: the layout and how to load it."""
    v = config["video_mvit"]
    widths = sorted({v["embed_dim"]} | {b["dim_out"] for b in v["blocks"]})
    variant = ("fine-tuning network (every stage start pools the query)" if v["last_pool"] else
               "MaskFeat pre-training network (the last stage start does not pool the query; "
               "`model.finetuning_trunk(drop_path)` gives the fine-tuning one)")  # fmt: skip
    return "\n".join(
        [
            *_video_card_head(config, "video_mvit", "MViTv2", run_dir),
            f"- {v['depth']} blocks, widths {widths}; patch grid {v['grid']} -> output grid "
            f"{v['out_grid']} (stride {v['out_stride']} px) in (t, h, w) order, cls token first; "
            f"the {variant}",
            f"- features: {v['feature_dim']}-d, pool `{v['pool']}` ({v['features']})",
            "",
            "timm's MViTv2 is for images: `model.safetensors` holds visrep's `VideoMViT` state "
            'dict in SlowFast\'s names (docs/export.md, "MViTv2", lists every tensor).',
            "",
            "## Load",
            "",
            "```python",
            "from visrep.backbones.video_export import load_video_mvit",
            f'model, config = load_video_mvit("{out.resolve()}")  # eval mode, strict',
            "features = model(clips)  # [N, " + str(v["feature_dim"]) + "]",
            "```",
            "",
        ]
    )


def video_card(config: dict[str, Any], run_dir: Path, out: Path) -> str:
    """README.md of a video ViT export: the layout and how to load it."""
    v = config["video_vit"]
    return "\n".join(
        [
            *_video_card_head(config, "video_vit", "Video ViT", run_dir),
            f"- tokens: {v['t_patch_size']}×{v['patch_size']}×{v['patch_size']} spacetime patches, "
            f"grid {v['grid']} in (t, h, w) order; features: {v['embed_dim']}-d, pool `{v['pool']}`",
            f"- position table: {v['pos_embed']}",
            "",
            "timm has no video ViT: `model.safetensors` holds visrep's `VideoViT` state dict "
            '(docs/export.md, "Video ViT", lists every tensor).',
            "",
            "## Load",
            "",
            "```python",
            "from visrep.backbones.video_export import load_video_vit",
            f'model, config = load_video_vit("{out.resolve()}")',
            "features = model(clips)  # [N, " + str(v["embed_dim"]) + "]",
            "```",
            "",
            "For still images, `visrep export --ckpt RUN --out DIR --format timm_image` writes the "
            "timm image ViT of the deflated patch embedding (sum over time).",
            "",
        ]
    )


def model_card(config: dict[str, Any], run_dir: Path, out: Path) -> str:
    """README.md of an export: what it is, how it was trained and scored, how to load it."""
    v, pre = config["visrep"], config["pretrained_cfg"]
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    rows = [f"| {k} | {m:.4f} |" for k, m in metrics.items()
            if isinstance(m, float) and k.endswith(("top1", "top5"))]  # fmt: skip
    load = (f"""```python
import timm
model = timm.create_model("local-dir:{out.resolve()}", pretrained=True).eval()
cfg = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**cfg)  # resize, crop, normalise as in training
features = model(transform(pil_image).unsqueeze(0))  # [1, {config['num_features']}]
```""" if not v["timm_fixups"] else f"""timm cannot express this ResNet's small-image stem
({v['timm_fixups']}); build it with visrep's fix-up, then load the weights:

```python
import json, timm, safetensors.torch
from visrep.backbones.cnn import apply_fixups
cfg = json.load(open("config.json"))
model = apply_fixups(timm.create_model(cfg["architecture"], **cfg["model_args"]),
                     cfg["visrep"]["timm_fixups"])
model.load_state_dict(safetensors.torch.load_file("model.safetensors"))
```""")  # fmt: skip
    return "\n".join(
        [
            f"# {config['architecture']} pre-trained with visrep ({v['method'].removesuffix('Config')})",
            "",
            f"- recipe `{v['recipe']}`, data `{v['data']}`, run `{run_dir}`",
            f"- input {pre['input_size']} (channels, height, width), mean {pre['mean']}, std "
            f"{pre['std']}, bicubic, crop_pct {pre['crop_pct']}",
            f"- features: {config['num_features']}-d pooled (no classifier head)",
            "",
            "## Metrics (from the run's final evaluation)",
            "",
            *(["| metric | value |", "|---|---|", *rows] if rows else ["none recorded"]),
            "",
            "## Load",
            "",
            load,
            "",
        ]
    )


# ---------------------------------------------------------------------------------------
# The whole CLIP model for open_clip (docs/export.md has the key mapping)
# ---------------------------------------------------------------------------------------

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
# timm arguments that open_clip's timm adapter sets itself (head, pooling) or that change
# training only; every other argument must equal the timm model's default, because
# open_clip builds the tower with `timm.create_model(timm_model_name)` and nothing else.
_TIMM_FREE = {"num_classes", "global_pool", "fc_norm", "drop_path_rate"}


def _timm_default(ref: Any, key: str) -> Any:
    """The value of timm argument `key` in a default-built timm model `ref`."""
    import torch.nn as nn

    if key == "img_size":
        return ref.patch_embed.img_size[0]
    if key == "patch_size":
        pe = getattr(ref, "patch_embed", None)
        return pe.patch_size[0] if pe is not None else ref.stem[0].stride[0]
    if key == "in_chans":
        return next(m for m in ref.modules() if isinstance(m, nn.Conv2d)).in_channels
    if key == "depth":
        return len(ref.blocks)
    if key == "num_heads":
        return ref.blocks[0].attn.num_heads
    if key == "use_grn":
        return any(type(m).__name__ == "GlobalResponseNorm" for m in ref.modules())
    return "<not checked>"


def timm_default_differences(backbone: Any) -> list[str]:
    """What keeps `timm.create_model(backbone.timm_name)` (all defaults, as open_clip's
    `TimmModel` builds it) from being this backbone; empty when they are the same."""
    import timm
    import torch

    with torch.device("meta"):  # shapes only, no memory
        ref = timm.create_model(backbone.timm_name, pretrained=False)
    diffs = [f"timm_fixups {backbone.timm_fixups}"] if backbone.timm_fixups else []
    for key, value in backbone.timm_kwargs.items():
        if key in _TIMM_FREE:
            continue
        default = _timm_default(ref, key)
        if default != value:
            diffs.append(f"{key}={value!r} (timm's default: {default!r})")
    return diffs


def open_clip_layout(
    model: Any, cfg: Any, out_dir: str | Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(open_clip `model_cfg`, open_clip state dict) of a visrep CLIP/SLIP/FLIP model.

    Raises ValueError naming what differs when the model cannot be expressed 1:1. A
    pretrained text tower writes its HF `config.json` and tokenizer files into `out_dir`
    (open_clip's `local-dir:` loader reads an HF tokenizer from that folder itself).
    """
    import torch

    if not isinstance(model, ImageText):
        raise ValueError(
            f"--format open_clip exports image-text runs (clip, slip, flip); this run is "
            f"{type(model).__name__}: export its backbone for timm (the default --format)"
        )
    bb, m = model.backbone, cfg.method
    diffs = timm_default_differences(bb)
    if diffs:
        raise ValueError(
            f"open_clip builds the image tower as timm.create_model({bb.timm_name!r}) with timm's "
            f"default arguments, and this run's backbone differs: {'; '.join(diffs)}. Export "
            "the image tower alone for timm (`visrep export --ckpt RUN --out DIR`), or train "
            "with the architecture's default image size, patch size, channels and depth"
        )
    state = {f"visual.trunk.{k}": v for k, v in bb.model.state_dict().items()}
    state["visual.head.proj.weight"] = model.image_projection.detach().T  # [E, V]
    vision_cfg = {
        "image_size": cfg.data.img_size,
        "timm_model_name": bb.timm_name,
        "timm_model_pretrained": False,
        "timm_pool": bb.timm_kwargs.get("global_pool", ""),
        "timm_proj": "linear",
        "timm_proj_bias": False,
    }
    if m.text_tower != "clip":
        text_cfg, text_state = _open_clip_pretrained_text(model, Path(out_dir))
    else:  # same names as open_clip's CLIP (text parts at the top level)
        text_state = dict(model.text.state_dict())
        text_cfg = {"context_length": m.context_length, "vocab_size": m.vocab_size,
                    "width": m.text_width, "heads": m.text_heads, "layers": m.text_layers}  # fmt: skip
        text_state["text_projection"] = model.text_projection.detach()
    state |= text_state
    state["logit_scale"] = model.logit_scale.detach()
    model_cfg = {"embed_dim": m.embed_dim, "quick_gelu": True,  # CLIP text MLP (timm: GELU)
                 "vision_cfg": vision_cfg, "text_cfg": text_cfg}  # fmt: skip
    if m.text_tower != "clip":
        model_cfg["custom_text"] = True
    return model_cfg, {k: v.detach().contiguous().cpu().to(torch.float32) for k, v in state.items()}


def _open_clip_pretrained_text(model: Any, hf_dir: Path) -> tuple[dict, dict]:
    """open_clip's HF text tower (`HFTextEncoder`: mean pooler, linear projection without
    bias) for visrep's pretrained tower. Its HF config and tokenizer go to `hf_dir`, which
    the config names by absolute path (open_clip builds BERT with `AutoConfig` from there:
    after moving the folder, edit `hf_model_name`).
    visrep L2-normalises the pooled sentence embedding before the projection (the
    sentence-transformers pipeline) and open_clip does not; the projection has no bias, so
    the two text embeddings differ by a positive factor per caption and are equal once
    normalised, as CLIP uses them (`encode_text(..., normalize=True)`)."""
    tower = model.text
    hf_dir.mkdir(parents=True, exist_ok=True)
    tower.model.config.save_pretrained(hf_dir)
    tower.tokenizer.save_pretrained(hf_dir)
    # open_clip builds BERT without its pooler layer (mean pooling needs none)
    state = {
        f"text.transformer.{k}": v
        for k, v in tower.model.state_dict().items()
        if not k.startswith("pooler.")
    }
    state["text.proj.weight"] = model.text_projection.detach().T  # [E, W]
    path = str(hf_dir.resolve())
    text_cfg = {"hf_model_name": path, "hf_tokenizer_name": path, "hf_model_pretrained": False,
                "hf_proj_type": "linear", "hf_pooler_type": "mean_pooler",
                "context_length": tower.max_length}  # fmt: skip
    return text_cfg, state


def export_open_clip(run_dir: str | Path, out_dir: str | Path, verify: bool = True) -> dict:
    """Write `open_clip_config.json` + `open_clip_model.safetensors`: the whole CLIP model,
    loadable offline with `open_clip.create_model("local-dir:DIR")` (strict state dict).

    With `verify`, the written folder is loaded back through open_clip and its image and
    text embeddings are checked against visrep's on a random batch.
    """
    cfg, model = load_run(run_dir)
    model_cfg, state = open_clip_layout(model, cfg, out_dir)
    mean, std = mean_std(cfg.data)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": cfg.data.img_size,
            "mode": "RGB",
            "mean": list(mean),
            "std": list(std),
            "interpolation": "bilinear",
            "resize_mode": "shortest",
        },  # fmt: skip
        "visrep": {
            "method": type(cfg.method).__name__,
            "recipe": cfg.recipe,
            "text_tower": cfg.method.text_tower,
        },  # fmt: skip
    }
    out = Path(out_dir)
    atomic_write(
        out / OPEN_CLIP_WEIGHTS,
        lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}),
    )
    atomic_write_text(out / OPEN_CLIP_CONFIG, json.dumps(config, indent=2) + "\n")
    if verify:
        check_open_clip_export(out, model, cfg)
    return config


def load_open_clip(out_dir: str | Path):
    """The exported model through open_clip's own loader (strict), in eval mode."""
    import open_clip

    oc = open_clip.create_model(f"local-dir:{Path(out_dir).resolve()}", device="cpu")
    return oc.eval()


def check_open_clip_export(out_dir: str | Path, model: Any, cfg: Any) -> None:
    """Image and text embeddings of open_clip's model equal visrep's (raises otherwise);
    text through open_clip's own tokenizer for the exported config. A pretrained text tower
    is compared after L2 normalisation (see `_open_clip_pretrained_text`)."""
    import open_clip
    import torch
    import torch.nn.functional as F

    oc = load_open_clip(out_dir)
    g = torch.Generator().manual_seed(0)
    size = cfg.data.img_size
    images = torch.randn(2, cfg.data.channels, size, size, generator=g)
    captions = ["a photo of a dog.", "an emoji of a grinning face"]
    tokens = open_clip.get_tokenizer(f"local-dir:{Path(out_dir).resolve()}")(captions)
    pretrained = cfg.method.text_tower != "clip"
    model.eval()
    with torch.no_grad():
        text = model.encode_text(captions if pretrained else tokens)
        oc_text = oc.encode_text(tokens)
        if pretrained:
            text, oc_text = F.normalize(text, dim=-1), F.normalize(oc_text, dim=-1)
        pairs = [(oc.encode_image(images), model.encode_image(images)), (oc_text, text)]
    for name, (got, want) in zip(("image", "text"), pairs):
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            err = (got - want).abs().max().item()
            raise ValueError(f"open_clip's {name} embeddings differ from visrep's (max {err:.3g})")
