"""Backbones. `BACKBONES` maps a name to its constructor (a literal dict, no registry magic)."""

from torch import nn

from visrep.backbones.cnn import CNN, CNN_ARCHS
from visrep.backbones.mvit import MVIT_ARCHS, VideoMViT
from visrep.backbones.slow_resnet import SLOW_ARCHS, SlowResNet
from visrep.backbones.video_vit import VideoViT
from visrep.backbones.vit import VIT_ARCHS, ViT
from visrep.config import BackboneConfig, DataConfig

BACKBONES = (
    {name: ViT for name in VIT_ARCHS}
    | {name: CNN for name in CNN_ARCHS}
    | {name: SlowResNet for name in SLOW_ARCHS}  # video only
    | {name: VideoMViT for name in MVIT_ARCHS}  # video only
)


def build_backbone(bb: BackboneConfig, data: DataConfig) -> nn.Module:
    """The image backbone `backbone.*` names, for `data.img_size` and `data.channels`; with
    `data.frames` > 0 its video version (ViTs: `VideoViT`, spacetime patches). The video-only
    backbones: `slow_*` (`SlowResNet`) and `mvitv2_*` (`VideoMViT`, whose patch embedding
    and pooling are fixed by the architecture: backbone.patch_size and pos_embed do not
    apply; `backbone.mvit_last_pool` picks the fine-tuning or MaskFeat pre-training grid)."""
    if bb.name not in BACKBONES:
        raise ValueError(f"unknown backbone {bb.name!r}; choose one of {sorted(BACKBONES)}")
    if bb.name in SLOW_ARCHS:
        if not data.frames:
            raise ValueError(f"{bb.name} is a video backbone: set data.frames (e.g. 8)")
        return SlowResNet(bb.name, in_chans=data.channels, frames=data.frames,
                          img_size=data.img_size)  # fmt: skip
    if bb.name in MVIT_ARCHS:
        return _mvit(bb, data)
    if data.frames:
        if bb.name not in VIT_ARCHS:
            raise ValueError(f"video data (data.frames={data.frames}) needs a ViT, MViTv2 or "
                             f"Slow ResNet backbone (vit_*, mvitv2_*, slow_*), got {bb.name}")  # fmt: skip
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


def _mvit(bb: BackboneConfig, data: DataConfig) -> VideoMViT:
    """An MViTv2 for `data`'s clips; the ViT-only settings refused rather than ignored."""
    if not data.frames:
        raise ValueError(f"{bb.name} is a video backbone (MViTv2 on clips): set data.frames "
                         "(e.g. 16); for images use a ViT (vit_*) or a CNN")  # fmt: skip
    if bb.depth or bb.num_heads:
        raise ValueError(f"backbone.depth / backbone.num_heads apply to ViTs; {bb.name} has "
                         "its stages' depth and heads: leave them at 0 or pick another "
                         f"mvitv2_* ({', '.join(sorted(MVIT_ARCHS))})")  # fmt: skip
    if bb.t_patch_size != 2:
        raise ValueError(f"{bb.name}'s patch embedding has temporal stride 2 (kernel 3): "
                         f"backbone.t_patch_size={bb.t_patch_size} does not apply")  # fmt: skip
    return VideoMViT(bb.name, img_size=data.img_size, in_chans=data.channels,
                     frames=data.frames, pool=bb.pool, last_pool=bb.mvit_last_pool,
                     drop_path_rate=bb.drop_path_rate)  # fmt: skip


__all__ = ["BACKBONES", "CNN", "CNN_ARCHS", "MVIT_ARCHS", "SLOW_ARCHS", "SlowResNet", "ViT",
           "VIT_ARCHS", "VideoMViT", "VideoViT", "build_backbone"]  # fmt: skip
