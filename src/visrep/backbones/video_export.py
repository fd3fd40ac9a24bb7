"""The exported layout of a video ViT, and its loader (timm has no video ViT).

`visrep export --ckpt VIDEO_RUN --out DIR` writes (docs/export.md, "Video ViT"):

- `model.safetensors`: the `VideoViT` state dict, names as in the official MAE-ST encoder
  (facebookresearch/mae_st `models_vit.py`) except q, k, v fused as timm's `attn.qkv`:
  `patch_embed.proj.{weight [D, C, t, p, p], bias [D]}`, `cls_token [1, 1, D]`,
  `pos_embed_spatial [1, h·w, D]`, `pos_embed_temporal [1, T', D]`, `pos_embed_class
  [1, 1, D]`, `blocks.{i}.*` (timm `Block`), `norm.{weight, bias}`;
- `config.json`: `format` = "visrep-video-vit" and the encoder's shape under `video_vit`
  (arch, embed_dim, depth, num_heads, mlp_ratio, norm_eps, patch_size, t_patch_size, frames,
  img_size, in_chans, pool, grid [T', h, w], token_order "t,h,w", pos_embed: how the table is
  built) and the input under `preprocessing` (frames, frame_stride, target fps, mean, std);
- `README.md`: a model card.

`load_video_vit(DIR)` rebuilds the encoder from these two files (strict state dict, no code
executed: safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch

from visrep.backbones.video_vit import VideoViT

VIDEO_FORMAT = "visrep-video-vit"
VIDEO_CONFIG, VIDEO_WEIGHTS = "config.json", "model.safetensors"
POS_EMBED_LAYOUT = (
    "separable, learned: table[t·h·w + i] = pos_embed_spatial[i] + pos_embed_temporal[t] "
    "(spatial repeated over time, temporal repeat-interleaved over space), added to the patch "
    "tokens; the cls token gets pos_embed_class"
)


def is_video_export(path: str | Path) -> bool:
    """A folder written by `visrep export` for a video ViT run."""
    cfg = Path(path) / VIDEO_CONFIG
    return cfg.is_file() and json.loads(cfg.read_text()).get("format") == VIDEO_FORMAT


def video_vit_config(vit: VideoViT) -> dict[str, Any]:
    """The `video_vit` block of config.json: everything `load_video_vit` needs."""
    block = vit.blocks[0]
    return {
        "arch": vit.arch,
        "embed_dim": vit.embed_dim,
        "depth": len(vit.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / vit.embed_dim,
        "norm_eps": vit.norm.eps,
        "patch_size": vit.patch_size,
        "t_patch_size": vit.t_patch_size,
        "frames": vit.frames,
        "img_size": vit.img_size,
        "in_chans": vit.in_chans,
        "pool": vit.pool_mode,
        "grid": list(vit.grid),
        "token_order": "t,h,w",
        "pos_embed": POS_EMBED_LAYOUT,
        "input": "[N, C, T, H, W] float clips, normalised with preprocessing.mean / std",
    }


def load_video_vit(path: str | Path) -> tuple[VideoViT, dict[str, Any]]:
    """The exported video ViT (eval mode) and its config.json."""
    path = Path(path)
    if not is_video_export(path):
        raise ValueError(f"{path} holds no video ViT export ({VIDEO_CONFIG} with format "
                         f"{VIDEO_FORMAT!r}): write one with `visrep export --ckpt VIDEO_RUN "
                         f"--out {path}`")  # fmt: skip
    config = json.loads((path / VIDEO_CONFIG).read_text())
    v = config["video_vit"]
    model = VideoViT(v["arch"], img_size=v["img_size"], patch_size=v["patch_size"],
                     in_chans=v["in_chans"], frames=v["frames"], t_patch_size=v["t_patch_size"],
                     pool=v["pool"], depth=v["depth"], num_heads=v["num_heads"])  # fmt: skip
    state = safetensors.torch.load_file(str(path / VIDEO_WEIGHTS))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path / VIDEO_WEIGHTS} does not fit the encoder {path / VIDEO_CONFIG} "
                         f"describes ({str(e).splitlines()[0]}): export the run again") from e  # fmt: skip
    return model.eval(), config
