"""Layer-wise lr decay for fine-tuning (facebookresearch/mae `util/lr_decay.py`,
facebookresearch/mae_st `util/lr_decay.py` for the video ViT, facebookresearch/ConvNeXt-V2
`optim_factory.py`).

Group lr = lr × decay^(num_layers − id): the deeper a layer, the closer its lr to the peak.
ResNets (2-D and the Slow-only 3-D ResNet) get none (no official recipe layers them). The
training loop reads the factor per parameter name from the method (`lr_scale`) and stores it
as the group's `lr_scale`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def is_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed")


def vit_layer_id(name: str, depth: int) -> int:
    """MAE `util/lr_decay.py` (`get_layer_id_for_vit`): cls_token, pos_embed, patch_embed -> 0;
    block i -> i + 1; everything else (fc_norm, norm, head) -> depth + 1. The video ViT's
    separable tables (`pos_embed_spatial`, `_temporal`, `_class`) are layer 0 too (mae_st
    `util/lr_decay.py`: names starting with "pos_embed"). MViTv2 (`VideoMViT`: `blocks`,
    `patch_embed`, `cls_token`) gets the same ids (SlowFast `models/optimizer.py`
    `get_layer_id`), its relative-position tables with their block."""
    if name in ("cls_token", "reg_token") or name.startswith(("patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def convnext_layer_id(name: str, depths: list[int], kind: str) -> int:
    """ConvNeXt V2 `optim_factory.py` (`get_num_layer_for_convnext_single`,
    `get_num_layer_for_convnext`) on timm names. timm's `stem.*` is the official
    `downsample_layers.0`, `stages.i.downsample.*` is `downsample_layers.i`, `stages.i.blocks.b`
    is `stages.i.b`; the head (norm + fc) is "everything else".

    single: downsampler i -> sum(depths[:i]) + 1; block (i, b) -> sum(depths[:i]) + b + 1;
    else sum(depths) + 1. group (Base/Large, stages [3, 3, 27, 3] in 12 groups): stem -> 0;
    stage 0/1 and downsampler 1/2 -> index + 1; stage-2 block b -> 3 + b // 3; downsampler 3 and
    stage 3 -> 12; else 13.
    """
    parts = name.split(".")
    if parts[0] == "stem":
        stage, block = 0, None
    elif parts[0] == "stages" and parts[2] == "downsample":
        stage, block = int(parts[1]), None
    elif parts[0] == "stages" and parts[2] == "blocks":
        stage, block = int(parts[1]), int(parts[3])
    else:
        return sum(depths) + 1 if kind == "single" else 13
    if kind == "single":
        return sum(depths[:stage]) + (block or 0) + 1
    if block is None:
        return {0: 0, 1: 2, 2: 3, 3: 12}[stage]
    return {0: 1, 1: 2, 2: 3 + block // 3, 3: 12}[stage]


def layer_decay_scale(model: nn.Module, decay: float, kind: str = "auto") -> Callable[[str], float]:
    """timm parameter name -> lr scale. ViT (MAE): decay^(num_layers - id), num_layers =
    depth + 1, so patch_embed gets decay^(depth + 1), the last block decay, the head 1.
    ConvNeXt: the official values decay^(num_layers + 1 - id), num_layers = sum(depths)
    (single) or 12 (group). ResNet: 1 everywhere."""
    if decay == 1.0:
        return lambda name: 1.0
    if is_vit(model):
        depth = len(model.blocks)
        return lambda name: decay ** (depth + 1 - vit_layer_id(name, depth))
    convnext = hasattr(model, "stages") and hasattr(model, "stem")
    if convnext and all(hasattr(s, "blocks") for s in model.stages):  # ConvNeXt (V1/V2)
        depths = [len(s.blocks) for s in model.stages]
        if kind == "auto":
            kind = "group" if depths[2] == 27 else "single"
        if kind not in ("single", "group"):
            raise ValueError(f"method.layer_decay_type must be auto, single or group: {kind!r}")
        top = sum(depths) + 1 if kind == "single" else 13
        return lambda name: decay ** (top - convnext_layer_id(name, depths, kind))
    return lambda name: 1.0  # ResNet, Slow ResNet: no layer decay


# the video ViT's position tables (mae_st `models_vit.py` `no_weight_decay()`)
VIDEO_POS_NAMES = {"pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"}


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """MAE's `no_weight_decay()` = {pos_embed, cls_token, dist_token} (3-D, so named), and
    MAE-ST's separable tables for the video ViT. None for a model that decays its cls token
    and position tables (`decay_pos_cls`: MViTv2, SlowFast ZERO_DECAY_POS_CLS False)."""
    if not is_vit(model) or getattr(model, "decay_pos_cls", False):
        return set()
    names = {"pos_embed", "cls_token", "dist_token", "reg_token"}
    return names | VIDEO_POS_NAMES if hasattr(model, "pos_embed_spatial") else names
