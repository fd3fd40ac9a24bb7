"""Detection backbones for Mask R-CNN: ViTDet's plain ViT with a simple feature pyramid, and
a ResNet / ConvNeXt with an FPN.

ViTDet (Li, Mao, Girshick, He, "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022; detectron2 `modeling/backbone/vit.py`, `ViT` and
`SimpleFeaturePyramid`, `configs/common/models/mask_rcnn_vitdet.py`):

* The pre-trained ViT's patch embedding and blocks, without the cls token and without the
  final norm. The absolute position embedding of the pre-training grid is resized
  (bicubic) to the detection grid (detectron2 `get_abs_pos`), and trained.
* Window attention (non-overlapping `window_size`² windows, the map zero-padded to a
  multiple of it after the block's first norm) in every block but a few *global* ones: by
  default the last block of each quarter (2, 5, 8, 11 for depth 12; 5, 11, 17, 23 for 24).
  The blocks are timm's `vision_transformer_sam.Block` (SAM's image encoder is ViTDet's
  backbone: same window partition, same decomposed relative position bias of MViTv2), with
  the pre-trained block's weights loaded unchanged; `rel_pos=True` adds the relative
  position tables (zero init, `use_rel_pos`), sized per block (window or whole grid).
* Simple feature pyramid from the last map only (stride p = patch size): scale 4 =
  ConvT(D, D/2, 2, 2) → LN → GELU → ConvT(D/2, D/4, 2, 2); scale 2 = ConvT(D, D/2, 2, 2);
  scale 1 = identity; scale 1/2 = MaxPool(2, 2); each then Conv1×1(→C, no bias) → LN →
  Conv3×3(C, no bias) → LN, with LN the channel LayerNorm of an NCHW map; "p6" =
  max-pool(k 1, s 2) of p5. No top-down or lateral connections. For ViT-B/16 the strides
  are 4, 8, 16, 32, 64.
* Layer-wise lr decay (detectron2 `get_vit_lr_decay_rate`): patch/pos embed id 0, block i
  id i + 1, everything else (pyramid, RPN, heads) num_layers + 1; lr × decay^(num_layers +
  1 − id), the MAE fine-tuning ids (`visrep.parts.layer_decay.vit_layer_id`).

ResNet / ConvNeXt: the four stage outputs (timm `forward_intermediates`) through
torchvision's `FeaturePyramidNetwork` with a max-pool level on top (Lin et al., FPN, CVPR
2017; the Mask R-CNN baselines of the MoCo / ConvNeXt papers).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from timm.layers import LayerNorm2d, resample_abs_pos_embed
from timm.models.vision_transformer_sam import Block as WindowBlock
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from visrep.backbones.cnn import SMALL_STEMS
from visrep.backbones.pretrained import Pretrained, create_timm
from visrep.parts.layer_decay import layer_decay_scale, vit_layer_id
from visrep.parts.pos_embed import interpolate_pos_embed

LEVELS = ("p2", "p3", "p4", "p5")  # RoI pooling levels; "p6" only feeds the RPN


def default_global_blocks(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the depth (ViTDet's 2, 5, 8, 11 for 12 blocks); all
    blocks for a depth under 4."""
    if depth < 4:
        return tuple(range(depth))
    q = depth // 4
    return tuple(i for i in range(depth) if (i + 1) % q == 0 and i // q < 4)


class ViTDetTrunk(nn.Module):
    """A plain ViT as ViTDet runs it: images [B, C, H, W] -> last map [B, D, H/p, W/p].

    Args:
        vit: a timm `VisionTransformer` holding the pre-trained weights, built for the
            detection image size (its position table already at that grid).
        window_size: side of the attention windows in tokens.
        global_blocks: indices of the blocks with global attention (None: the default).
        rel_pos: add decomposed relative position biases (zero init).
        drop_path: stochastic depth, rising linearly to this value over the blocks.
    """

    def __init__(self, vit: nn.Module, *, window_size: int = 14,
                 global_blocks: tuple[int, ...] | None = None, rel_pos: bool = False,
                 drop_path: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        depth, dim = len(vit.blocks), vit.embed_dim
        self.global_blocks = (
            default_global_blocks(depth) if global_blocks is None else tuple(global_blocks)
        )
        if any(not 0 <= i < depth for i in self.global_blocks):
            raise ValueError(f"global blocks {self.global_blocks} must lie in 0..{depth - 1}")
        self.patch_embed = vit.patch_embed
        self.patch_embed.strict_img_size = False  # padded batches may grow the grid
        self.grid = tuple(self.patch_embed.grid_size)
        # patch tokens' part of the table, as a trained parameter (detectron2 `ViT.pos_embed`)
        self.pos_embed = nn.Parameter(vit.pos_embed[:, vit.num_prefix_tokens :].detach().clone())
        self.window_size, self.embed_dim, self.patch_size = (
            window_size,
            dim,
            self.patch_embed.patch_size[0],
        )
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList()
        for i, b in enumerate(vit.blocks):
            block = WindowBlock(
                dim, b.attn.num_heads, mlp_ratio=b.mlp.fc1.out_features / dim,
                qkv_bias=b.attn.qkv.bias is not None, drop_path=rates[i],
                norm_layer=partial(nn.LayerNorm, eps=b.norm1.eps), use_rel_pos=rel_pos,
                window_size=0 if i in self.global_blocks else window_size, input_size=self.grid,
            )  # fmt: skip
            missing, unexpected = block.load_state_dict(b.state_dict(), strict=False)
            if unexpected or set(missing) - {"attn.rel_pos_h", "attn.rel_pos_w"}:
                raise ValueError(f"block {i} of {type(vit).__name__} does not map onto a ViTDet "
                                 f"block: missing {missing}, unexpected {unexpected}")  # fmt: skip
            self.blocks.append(block)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed(images)  # [B, L, D]
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        pos = self.pos_embed
        if (h, w) != self.grid:  # a padded batch: resize the table to this grid
            pos = resample_abs_pos_embed(pos, (h, w), self.grid, num_prefix_tokens=0)
        x = (x + pos).reshape(x.shape[0], h, w, -1)  # [B, h, w, D]
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)  # [B, D, h, w]


def _conv_ln(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), LayerNorm2d(c_out)]


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid (module docstring): one map [B, D, h, w] of stride p -> {"p2": stride
    p/4, "p3": p/2, "p4": p, "p5": 2p, "p6": 4p}, each with `out_channels` channels."""

    def __init__(self, dim: int, out_channels: int = 256) -> None:
        super().__init__()
        half, quarter = dim // 2, dim // 4
        up4 = [nn.ConvTranspose2d(dim, half, 2, 2), LayerNorm2d(half), nn.GELU(),
               nn.ConvTranspose2d(half, quarter, 2, 2)]  # fmt: skip
        scales = {"p2": (up4, quarter), "p3": ([nn.ConvTranspose2d(dim, half, 2, 2)], half),
                  "p4": ([], dim), "p5": ([nn.MaxPool2d(2, 2)], dim)}  # fmt: skip
        self.stages = nn.ModuleDict({
            name: nn.Sequential(*layers, *_conv_ln(c, out_channels, 1),
                                *_conv_ln(out_channels, out_channels, 3))
            for name, (layers, c) in scales.items()
        })  # fmt: skip
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        out = OrderedDict((name, stage(x)) for name, stage in self.stages.items())
        out["p6"] = F.max_pool2d(out["p5"], kernel_size=1, stride=2)  # LastLevelMaxPool
        return out


class ViTDetBackbone(nn.Module):
    """Trunk + simple feature pyramid: what torchvision's `MaskRCNN` takes as `backbone`
    (an `out_channels` attribute and an ordered dict of maps)."""

    def __init__(self, trunk: ViTDetTrunk, out_channels: int = 256) -> None:
        super().__init__()
        self.trunk = trunk
        self.pyramid = SimpleFeaturePyramid(trunk.embed_dim, out_channels)
        self.out_channels = out_channels
        p = trunk.patch_size
        self.strides = (p // 4, p // 2, p, 2 * p, 4 * p)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        return self.pyramid(self.trunk(images))

    def lr_scale(self, name: str, decay: float) -> float:
        """Layer-wise lr decay of a parameter named inside this module (module docstring)."""
        depth = len(self.trunk.blocks)
        layer = (
            vit_layer_id(name.removeprefix("trunk."), depth)
            if name.startswith("trunk.")
            else depth + 1
        )
        return decay ** (depth + 1 - layer)

    def no_decay_names(self) -> set[str]:
        return {"trunk.pos_embed"}  # detectron2's ViTDet: no weight decay on pos_embed


class CNNFPNBackbone(nn.Module):
    """A timm ResNet / ConvNeXt's last four stage outputs through torchvision's FPN (a
    max-pool level on top): {"p2".."p5", "p6"}."""

    def __init__(self, model: nn.Module, out_channels: int = 256, first_stride: int = 0) -> None:
        super().__init__()
        n = len(model.feature_info)
        self.indices = list(range(n - 4, n))
        channels = [model.feature_info[i]["num_chs"] for i in self.indices]
        model.prune_intermediate_layers(self.indices, prune_head=True)  # the pooled head is unused
        self.body = model
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        first = first_stride or model.feature_info[self.indices[0]]["reduction"]
        self.strides = (first, 2 * first, 4 * first, 8 * first, 16 * first)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.body.forward_intermediates(
            images, indices=self.indices, intermediates_only=True
        )
        out = self.fpn(OrderedDict(zip(LEVELS, maps)))
        out["p6"] = out.pop("pool")
        return out

    def lr_scale(self, name: str, decay: float) -> float:
        """ConvNeXt ids of `visrep.parts.layer_decay` on the body; the FPN gets the peak lr."""
        return (
            layer_decay_scale(self.body, decay)(name.removeprefix("body."))
            if name.startswith("body.")
            else 1.0
        )

    def no_decay_names(self) -> set[str]:
        return set()


def detection_backbone(pre: Pretrained, img_size: int, *, window_size: int = 14,
                       global_blocks: tuple[int, ...] | None = None, rel_pos: bool = False,
                       drop_path: float = 0.0, out_channels: int = 256) -> nn.Module:  # fmt: skip
    """The detection backbone of a pre-trained timm backbone (`visrep.runs.load_pretrained`):
    ViTDet for a ViT (its position table resized to `img_size`), an FPN for a CNN."""
    kwargs = dict(pre.timm_kwargs)
    state = dict(pre.state)
    if pre.timm_name.startswith("vit_"):
        kwargs |= {"img_size": img_size, "global_pool": "token", "fc_norm": False}
        model = create_timm(pre.timm_name, kwargs, pre.timm_fixups)
        grid = tuple(model.patch_embed.grid_size)
        if state["pos_embed"].shape != model.pos_embed.shape:
            state["pos_embed"] = interpolate_pos_embed(
                state["pos_embed"], grid, model.num_prefix_tokens
            )
        state = {k: v for k, v in state.items() if not k.startswith(("fc_norm.", "head."))}
        # the final norm is not used (ViTDet has none); a fine-tuned run's `fc_norm` neither
        missing, unexpected = model.load_state_dict(state, strict=False)
        if (set(missing) | set(unexpected)) - {"norm.weight", "norm.bias"}:
            raise ValueError(f"{pre.source}: weights do not fit {pre.timm_name} (missing "
                             f"{missing}, unexpected {unexpected})")  # fmt: skip
        trunk = ViTDetTrunk(model, window_size=window_size, global_blocks=global_blocks,
                            rel_pos=rel_pos, drop_path=drop_path)  # fmt: skip
        return ViTDetBackbone(trunk, out_channels)
    if pre.timm_name.startswith(("resnet", "convnext")):
        if drop_path:
            kwargs["drop_path_rate"] = drop_path
        model = create_timm(pre.timm_name, kwargs, pre.timm_fixups)
        model.load_state_dict(state)
        # a small ResNet stem (visrep's fixup) downsamples by 1 or 2, not timm's 4
        small = {name: s for s, name in SMALL_STEMS.items()}.get(pre.timm_fixups.get("stem", ""), 0)
        return CNNFPNBackbone(model, out_channels, first_stride=small)
    raise ValueError(f"{pre.source}: no detection backbone for {pre.timm_name}; use a ViT, "
                     "ResNet or ConvNeXt run")  # fmt: skip
