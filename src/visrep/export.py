"""Export a pre-trained backbone for the timm ecosystem.

`backbone.safetensors` holds the timm model's state dict; `backbone.json` holds what
is needed to rebuild it and feed it::

    meta = json.load(open("backbone.json"))
    model = timm.create_model(meta["timm_name"], **meta["timm_kwargs"])
    apply_fixups(model, meta["timm_fixups"])  # only when non-empty: see cnn.py
    model.load_state_dict(safetensors.torch.load_file("backbone.safetensors"), strict=True)
    features = model(normalized_images)  # == visrep's features

Images are normalized with `meta["mean"]`/`meta["std"]` (0-1 units) at `meta["input_size"]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from visrep.capabilities import ImageText
from visrep.data.preprocess import mean_std
from visrep.io import atomic_write, atomic_write_text
from visrep.runs import load_run


def export_backbone(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    cfg, model = load_run(run_dir)
    backbone = model.backbone
    mean, std = mean_std(cfg.data)
    meta = {
        "timm_name": backbone.timm_name,
        "timm_kwargs": backbone.timm_kwargs,
        # changes timm has no argument for (e.g. a ResNet's small-image stem); apply them with
        # visrep.backbones.cnn.apply_fixups(model, meta["timm_fixups"]) before loading
        "timm_fixups": backbone.timm_fixups,
        "mean": list(mean),
        "std": list(std),
        "input_size": [cfg.data.channels, cfg.data.img_size, cfg.data.img_size],
        "feature_dim": backbone.feature_dim,
        "method": type(cfg.method).__name__,
        "recipe": cfg.recipe,
    }
    out = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.model.state_dict().items()}
    atomic_write(
        out / "backbone.safetensors",
        lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}),
    )
    atomic_write_text(out / "backbone.json", json.dumps(meta, indent=2) + "\n")
    return meta


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
