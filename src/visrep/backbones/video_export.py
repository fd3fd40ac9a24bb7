"""The exported layouts of the video backbones, and their loaders (timm has no video ViT and
no 3-D ResNet).

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

A Slow-only ResNet run (`visrep.backbones.slow_resnet`) is written the same way
(docs/export.md, "Slow-only ResNet"): `config.json` with `format` = "visrep-slow-resnet", the
network's shape under `slow_resnet` (arch, blocks, width, temporal kernels, spatial strides,
in_chans, frames, img_size, feature_dim) and the same `preprocessing`; `model.safetensors`,
the `SlowResNet` state dict (BatchNorm running statistics included); `load_slow_resnet(DIR)`
rebuilds it strictly.

An MViTv2 run (`visrep.backbones.mvit`; Li et al., CVPR 2022; facebookresearch/SlowFast
`slowfast/models/video_model_builder.py` `MViT`) likewise (docs/export.md, "MViTv2"):
`config.json` with `format` = "visrep-video-mvit", the encoder's shape under `video_mvit`
(arch, img_size, in_chans, frames, pool, last_pool, embed_dim, feature_dim, patch grid,
output grid and stride, the per-block schedule, token order, input) and the same
`preprocessing`; `model.safetensors`, the `VideoMViT` state dict in SlowFast's names;
`load_video_mvit(DIR)` rebuilds it strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from visrep.backbones.mvit import (
    PATCH_KERNEL,
    PATCH_PADDING,
    PATCH_STRIDE,
    POOL_KERNEL,
    BlockSpec,
    VideoMViT,
)
from visrep.backbones.slow_resnet import (
    SLOW_ARCHS,
    SPATIAL_STRIDES,
    TEMPORAL_KERNELS,
    SlowResNet,
)
from visrep.backbones.video_vit import VideoViT

VIDEO_FORMAT = "visrep-video-vit"
SLOW_FORMAT = "visrep-slow-resnet"
MVIT_FORMAT = "visrep-video-mvit"
VIDEO_FORMATS = (VIDEO_FORMAT, SLOW_FORMAT, MVIT_FORMAT)  # every video export's `format`
VIDEO_CONFIG, VIDEO_WEIGHTS = "config.json", "model.safetensors"
POS_EMBED_LAYOUT = (
    "separable, learned: table[t·h·w + i] = pos_embed_spatial[i] + pos_embed_temporal[t] "
    "(spatial repeated over time, temporal repeat-interleaved over space), added to the patch "
    "tokens; the cls token gets pos_embed_class"
)


def export_format(path: str | Path) -> str:
    """The `format` of a folder's config.json ("" when there is none)."""
    cfg = Path(path) / VIDEO_CONFIG
    return str(json.loads(cfg.read_text()).get("format", "")) if cfg.is_file() else ""


def is_video_export(path: str | Path) -> bool:
    """A folder written by `visrep export` for a video ViT run."""
    return export_format(path) == VIDEO_FORMAT


def slow_resnet_config(net: SlowResNet) -> dict[str, Any]:
    """The `slow_resnet` block of config.json: everything `load_slow_resnet` needs."""
    blocks, width = SLOW_ARCHS[net.arch]
    return {
        "arch": net.arch,
        "blocks": list(blocks),
        "width": width,
        "temporal_kernels": list(TEMPORAL_KERNELS),
        "spatial_strides": list(SPATIAL_STRIDES),
        "in_chans": net.in_chans,
        "frames": net.frames,
        "img_size": net.img_size,
        "feature_dim": net.feature_dim,
        "features": "global average pool of res5 over (T, H, W)",
        "input": "[N, C, T, H, W] float clips, normalised with preprocessing.mean / std",
    }


def backbone_block(backbone: nn.Module) -> tuple[str, str, dict[str, Any]]:
    """(format, config key, block) of a video backbone's export."""
    if isinstance(backbone, VideoViT):
        return VIDEO_FORMAT, "video_vit", video_vit_config(backbone)
    if isinstance(backbone, SlowResNet):
        return SLOW_FORMAT, "slow_resnet", slow_resnet_config(backbone)
    if isinstance(backbone, VideoMViT):
        return MVIT_FORMAT, "video_mvit", video_mvit_config(backbone)
    raise ValueError(f"no exported layout for a {type(backbone).__name__} video backbone")


def _load_strict(model: nn.Module, path: Path, what: str) -> None:
    """The safetensors weights into `model`, strictly; a mismatch is one clear error."""
    state = safetensors.torch.load_file(str(path / VIDEO_WEIGHTS))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path / VIDEO_WEIGHTS} does not fit the {what} {path / VIDEO_CONFIG} "
                         f"describes ({_mismatch(model, state)}): export the run again") from e  # fmt: skip


def _mismatch(model: nn.Module, state: dict[str, Any]) -> str:
    """The first few tensors a weights file lacks, adds or holds in another shape."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    parts = [f"missing {k}" for k in want if k not in got]
    parts += [f"unexpected {k}" for k in got if k not in want]
    parts += [f"{k} {list(got[k])} where the network has {list(want[k])}"
              for k in want if k in got and got[k] != want[k]]  # fmt: skip
    return "; ".join(parts[:3]) + (f"; {len(parts) - 3} more" if len(parts) > 3 else "")


def _export_config(path: Path, fmt: str, what: str) -> dict[str, Any]:
    if export_format(path) != fmt:
        raise ValueError(f"{path} holds no {what} export ({VIDEO_CONFIG} with format {fmt!r}): "
                         f"write one with `visrep export --ckpt VIDEO_RUN --out {path}`")  # fmt: skip
    return json.loads((path / VIDEO_CONFIG).read_text())


MVIT_FEATURES = {
    "avg": "final LayerNorm of the mean of the last block's non-cls tokens",
    "token": "the last block's cls token through the final LayerNorm",
}


def _block_row(spec: BlockSpec) -> dict[str, Any]:
    return {"dim": spec.dim, "dim_out": spec.dim_out, "heads": spec.heads,
            "stride_q": list(spec.stride_q), "stride_kv": list(spec.stride_kv),
            "grid_out": list(spec.grid_out)}  # fmt: skip


def video_mvit_config(net: VideoMViT) -> dict[str, Any]:
    """The `video_mvit` block of config.json: what `load_video_mvit` rebuilds the network
    from (arch, img_size, in_chans, frames, pool, last_pool) and, derived from those, its
    shape for readers without visrep (the per-block schedule, grids, widths)."""
    return {
        "arch": net.arch,
        "img_size": net.img_size,
        "in_chans": net.in_chans,
        "frames": net.frames,
        "pool": net.pool_mode,
        "last_pool": net.last_pool,
        "embed_dim": net.embed_dim,
        "feature_dim": net.feature_dim,
        "depth": len(net.blocks),
        "grid": list(net.grid),
        "out_grid": list(net.out_grid),
        "out_stride": net.out_stride,
        "patch_embed": {
            "kernel": list(PATCH_KERNEL),
            "stride": list(PATCH_STRIDE),
            "padding": list(PATCH_PADDING),
        },
        "pool_kernel": list(POOL_KERNEL),
        "mlp_ratio": net.blocks[0].mlp.fc1.out_features / net.embed_dim,
        "norm_eps": net.norm.eps,
        "blocks": [_block_row(s) for s in net.schedule],
        "token_order": "t,h,w",
        "cls_token": True,
        "pos_embed": "none: decomposed relative positions in every block (rel_pos_t, rel_pos_h, "
        "rel_pos_w), no absolute table",
        "features": MVIT_FEATURES[net.pool_mode],
        "input": "[N, C, T, H, W] float clips, normalised with preprocessing.mean / std",
    }


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
    config = _export_config(path, VIDEO_FORMAT, "video ViT")
    v = config["video_vit"]
    model = VideoViT(v["arch"], img_size=v["img_size"], patch_size=v["patch_size"],
                     in_chans=v["in_chans"], frames=v["frames"], t_patch_size=v["t_patch_size"],
                     pool=v["pool"], depth=v["depth"], num_heads=v["num_heads"])  # fmt: skip
    _load_strict(model, path, "encoder")
    return model.eval(), config


def load_slow_resnet(path: str | Path) -> tuple[SlowResNet, dict[str, Any]]:
    """The exported Slow-only ResNet (eval mode: BatchNorm on its running statistics) and its
    config.json."""
    path = Path(path)
    config = _export_config(path, SLOW_FORMAT, "Slow-only ResNet")
    v = config["slow_resnet"]
    model = SlowResNet(v["arch"], in_chans=v["in_chans"], frames=v["frames"],
                       img_size=v["img_size"])  # fmt: skip
    _load_strict(model, path, "Slow ResNet")
    return model.eval(), config


def load_video_mvit(path: str | Path) -> tuple[VideoMViT, dict[str, Any]]:
    """The exported MViTv2 (eval mode) and its config.json. The network is rebuilt from
    arch, img_size, in_chans, frames, pool and last_pool; a config whose recorded schedule
    or grids differ from the rebuilt network's (a hand-edited file) is one clear error."""
    path = Path(path)
    config = _export_config(path, MVIT_FORMAT, "MViTv2")
    v = config["video_mvit"]
    model = VideoMViT(v["arch"], img_size=v["img_size"], in_chans=v["in_chans"],
                      frames=v["frames"], pool=v["pool"], last_pool=v["last_pool"])  # fmt: skip
    rebuilt = video_mvit_config(model)
    differ = sorted(k for k in ("blocks", "grid", "out_grid", "feature_dim", "embed_dim")
                    if rebuilt[k] != v.get(k))  # fmt: skip
    if differ:
        raise ValueError(f"{path / VIDEO_CONFIG} describes an MViTv2 whose {', '.join(differ)} "
                         f"differ from the {v['arch']} it names: export the run again")  # fmt: skip
    _load_strict(model, path, "MViTv2")
    return model.eval(), config


def load_video_backbone(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Any exported video backbone, by its config.json's `format`."""
    fmt = export_format(path)
    if fmt == SLOW_FORMAT:
        return load_slow_resnet(path)
    if fmt == MVIT_FORMAT:
        return load_video_mvit(path)
    return load_video_vit(path)
