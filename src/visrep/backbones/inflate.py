"""Image ViT <-> video ViT: inflation and deflation of the patch embedding.

Inflation (I3D, "Quo Vadis, Action Recognition?", Carreira and Zisserman, CVPR 2017, Sec.
2.3 "Inflating 2D ConvNets into 3D"; the image-initialised video ViTs of the MAE-ST paper,
"Masked Autoencoders As Spatiotemporal Learners", Feichtenhofer et al., NeurIPS 2022, Sec.
5): a 2-D patch kernel W [D, C, p, p] becomes the t×p×p kernel W / t copied over time, so on
a clip of t identical frames the Conv3d gives exactly the Conv2d of one frame. Deflation is
the reverse, the sum over time Σ_u W[:, :, u]: a video-trained tubelet read on a still image
(every frame of the tubelet equal to it). Deflating an inflated kernel gives the original.
The released facebookresearch/mae_st code holds no inflation routine (its models start from
scratch or from its own video checkpoints), so the rule is I3D's, as the paper describes it.

The rest of the encoder maps by name (timm's `Block` in both: `blocks.{i}.*`, `norm.*`). The
position tables: the image table's patch rows become the spatial table, its cls row the
class position, and the temporal table starts at zero (no image counterpart), so every
time slot of an inflated encoder starts with the image's positions. Deflation adds the mean
temporal vector to the spatial table (exact for one time slot; an average otherwise).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from visrep.backbones.video_vit import VideoViT
from visrep.backbones.vit import VIT_ARCHS


def inflate_patch_weight(weight: Tensor, t_patch: int) -> Tensor:
    """[D, C, p, p] -> [D, C, t, p, p]: the 2-D kernel copied over t frames, divided by t."""
    if weight.ndim != 4:
        raise ValueError(f"a 2-D patch kernel is [D, C, p, p], got {list(weight.shape)}")
    return weight.unsqueeze(2).repeat(1, 1, t_patch, 1, 1) / t_patch


def deflate_patch_weight(weight: Tensor) -> Tensor:
    """[D, C, t, p, p] -> [D, C, p, p]: the sum over the kernel's t frames."""
    if weight.ndim != 5:
        raise ValueError(f"a spacetime patch kernel is [D, C, t, p, p], got {list(weight.shape)}")
    return weight.sum(dim=2)


def _shared(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The keys an image ViT (timm) and the video ViT name alike: blocks and the final norm."""
    return {k: v for k, v in state.items() if k.startswith(("blocks.", "norm."))}


def inflate_into(video: VideoViT, image_state: dict[str, Tensor], source: str = "image") -> None:
    """Load a timm image ViT's state dict (`visrep.backbones.pretrained.Pretrained.state`)
    into `video`, inflating its patch embedding (module docstring). Raises a ValueError naming
    what differs when the two encoders are not the same ViT (width, depth, patch, channels,
    grid)."""
    t, h, w = video.grid
    pos = image_state.get("pos_embed")
    want = {
        "patch_embed.proj.weight": (video.embed_dim, video.in_chans, video.patch_size,
                                    video.patch_size),
        "pos_embed": (1, 1 + h * w, video.embed_dim),
    }  # fmt: skip
    for key, shape in want.items():
        got = tuple(image_state[key].shape) if key in image_state else None
        if got != shape:
            raise ValueError(
                f"{source}: {key} is {list(got) if got else 'missing'}, the video ViT needs "
                f"{list(shape)}: start from an image ViT run of the same backbone.name, "
                "backbone.patch_size, data.img_size and data.channels (a cls token, no "
                "registers)"
            )
    state = dict(video.state_dict())
    shared = _shared(image_state)
    missing = [k for k in _shared(state) if k not in shared]
    if missing or any(shared[k].shape != state[k].shape for k in shared if k in state):
        raise ValueError(f"{source}: its blocks are not the video ViT's (e.g. "
                         f"{(missing or sorted(shared))[0]}): use the same backbone.name, "
                         "backbone.depth and backbone.num_heads")  # fmt: skip
    state |= {k: shared[k] for k in _shared(state)}
    weight = inflate_patch_weight(image_state["patch_embed.proj.weight"], video.t_patch_size)
    state |= {
        "patch_embed.proj.weight": weight,
        "patch_embed.proj.bias": image_state["patch_embed.proj.bias"],
        "cls_token": image_state["cls_token"],
        "pos_embed_class": pos[:, :1],
        "pos_embed_spatial": pos[:, 1:],
        "pos_embed_temporal": torch.zeros_like(video.pos_embed_temporal),
    }
    video.load_state_dict({k: v.to(state[k].dtype) for k, v in state.items()})


def deflated_timm(video: VideoViT) -> tuple[str, dict[str, Any], dict[str, Tensor]]:
    """(timm name, timm kwargs, state dict) of the image ViT that reads a still image as the
    video ViT reads a tubelet of identical frames (module docstring). Features match the video
    ViT's pooling: "avg" = LayerNorm of the mean patch token (timm's `fc_norm` after an
    Identity `norm`), "token" = the normed cls token."""
    avg = video.pool_mode == "avg"
    n_blocks, heads = len(video.blocks), video.blocks[0].attn.num_heads
    kwargs = dict(img_size=video.img_size, patch_size=video.patch_size, in_chans=video.in_chans,
                  num_classes=0, global_pool=video.pool_mode, fc_norm=avg, depth=n_blocks,
                  num_heads=heads)  # fmt: skip
    src = {k: v.detach() for k, v in video.state_dict().items()}
    spatial = src["pos_embed_spatial"] + src["pos_embed_temporal"].mean(dim=1, keepdim=True)
    state = {
        "cls_token": src["cls_token"],
        "pos_embed": torch.cat([src["pos_embed_class"], spatial], dim=1),
        "patch_embed.proj.weight": deflate_patch_weight(src["patch_embed.proj.weight"]),
        "patch_embed.proj.bias": src["patch_embed.proj.bias"],
    }
    for k, v in _shared(src).items():
        state[k.replace("norm.", "fc_norm.", 1) if avg and k.startswith("norm.") else k] = v
    return VIT_ARCHS[video.arch], kwargs, state
