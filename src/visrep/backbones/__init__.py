"""Backbones. `BACKBONES` maps a name to its constructor (a literal dict, no registry magic)."""

from torch import nn

from visrep.backbones.cnn import CNN, CNN_ARCHS
from visrep.backbones.slow_resnet import SLOW_ARCHS, SlowResNet
from visrep.backbones.video_vit import VideoViT
from visrep.backbones.vit import VIT_ARCHS, ViT
from visrep.config import BackboneConfig, DataConfig

BACKBONES = (
    {name: ViT for name in VIT_ARCHS}
    | {name: CNN for name in CNN_ARCHS}
    | {name: SlowResNet for name in SLOW_ARCHS}  # video only
)


def build_backbone(bb: BackboneConfig, data: DataConfig) -> nn.Module:
    """The image backbone `backbone.*` names, for `data.img_size` and `data.channels`; with
    `data.frames` > 0 its video version (ViTs: `VideoViT`, spacetime patches)."""
    if bb.name not in BACKBONES:
        raise ValueError(f"unknown backbone {bb.name!r}; choose one of {sorted(BACKBONES)}")
    if bb.name in SLOW_ARCHS:
        if not data.frames:
            raise ValueError(f"{bb.name} is a video backbone: set data.frames (e.g. 8)")
        return SlowResNet(bb.name, in_chans=data.channels, frames=data.frames,
                          img_size=data.img_size)  # fmt: skip
    if data.frames:
        if bb.name not in VIT_ARCHS:
            raise ValueError(f"video data (data.frames={data.frames}) needs a ViT or Slow "
                             f"ResNet backbone (vit_*, slow_*), got {bb.name}")  # fmt: skip
        return VideoViT(bb.name, img_size=data.img_size, patch_size=bb.patch_size,
                        in_chans=data.channels, frames=data.frames,
                        t_patch_size=bb.t_patch_size, pool=bb.pool, depth=bb.depth,
                        num_heads=bb.num_heads, pos_embed=bb.pos_embed,
                        drop_path_rate=bb.drop_path_rate)  # fmt: skip
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


__all__ = ["BACKBONES", "CNN", "CNN_ARCHS", "SLOW_ARCHS", "SlowResNet", "ViT", "VIT_ARCHS",
           "VideoViT", "build_backbone"]  # fmt: skip
