"""Backbones. `BACKBONES` maps a name to its constructor (a literal dict, no registry magic)."""

from torch import nn

from visrep.backbones.cnn import CNN, CNN_ARCHS
from visrep.backbones.vit import VIT_ARCHS, ViT
from visrep.config import BackboneConfig, DataConfig

BACKBONES = {name: ViT for name in VIT_ARCHS} | {name: CNN for name in CNN_ARCHS}


def build_backbone(bb: BackboneConfig, data: DataConfig) -> nn.Module:
    """The image backbone `backbone.*` names, for `data.img_size` and `data.channels`."""
    if bb.name not in BACKBONES:
        raise ValueError(f"unknown backbone {bb.name!r}; choose one of {sorted(BACKBONES)}")
    if bb.name in VIT_ARCHS:
        extra = {"pos_embed": bb.pos_embed}
    elif bb.pos_embed != "sincos":
        raise ValueError(f"backbone.pos_embed applies to ViTs only; {bb.name} has none")
    else:
        extra = {}
    return BACKBONES[bb.name](
        bb.name,
        **extra,
        img_size=data.img_size,
        patch_size=bb.patch_size,
        in_chans=data.channels,
        pool=bb.pool,
        depth=bb.depth,
        num_heads=bb.num_heads,
        drop_path_rate=bb.drop_path_rate,
    )


__all__ = ["BACKBONES", "CNN", "CNN_ARCHS", "ViT", "VIT_ARCHS", "build_backbone"]
