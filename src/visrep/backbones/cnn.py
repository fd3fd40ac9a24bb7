"""Convolutional backbones: timm ResNet and ConvNeXt used whole (docs/export.md).

Features are timm's pre-logits (global average pool; ConvNeXt adds its head norm), so the
exported state dict loads into `timm.create_model(timm_name, **timm_kwargs)` with
`strict=True` and gives the same features.

`patch_size` is the stem's downsampling factor:
  * ConvNeXt: timm's own `patch_size` argument (4 at 224 px). timm keeps the total stride
    at 32 for patch 2 (stage 1 then downsamples too); patch 1 gives a total stride of 8.
  * ResNet: 4 is the standard stem (7×7 stride-2 conv + stride-2 max-pool); 1 is the
    small-image stem of the CIFAR literature (SimCLR paper Appendix B.9, SimSiam's CIFAR
    runs): a 3×3 stride-1 conv and no max-pool; 2 is the same conv with stride 2 (4×
    cheaper, for 28-64 px images on a CPU budget). timm has no argument for these, so the
    exported `config.json` names the stem in `visrep.timm_fixups` and `apply_fixups` rebuilds it
    (two lines, see `apply_fixups`) before `load_state_dict`.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from visrep.backbones.shapes import check_image_shape

CNN_ARCHS: dict[str, str] = {
    "resnet18": "resnet18",  # 512-d features, BasicBlock [2, 2, 2, 2]
    "resnet50": "resnet50",  # 2048-d, Bottleneck [3, 4, 6, 3], stride on the 3x3 (torchvision's)
    "convnext_atto": "convnext_atto",  # dims 40-320, depths [2, 2, 6, 2]
    "convnext_tiny": "convnext_tiny",  # dims 96-768, depths [3, 3, 9, 3]
    "convnext_small": "convnext_small",  # dims 96-768, depths [3, 3, 27, 3] (SparK's ConvNeXt-S)
    "convnext_base": "convnext_base",
    "convnextv2_atto": "convnextv2_atto",  # ConvNeXt V2: GRN in every block
    "convnextv2_tiny": "convnextv2_tiny",
    "convnextv2_base": "convnextv2_base",
    "convnextv2_femto": "convnextv2_femto",  # dims 48-384, depths [2, 2, 6, 2]
    "convnextv2_pico": "convnextv2_pico",  # dims 64-512, depths [2, 2, 6, 2]
    "convnextv2_nano": "convnextv2_nano",  # dims 80-640, depths [2, 2, 8, 2]
    "convnextv2_large": "convnextv2_large",  # dims 192-1536, depths [3, 3, 27, 3]
    "convnextv2_huge": "convnextv2_huge",  # dims 352-2816, depths [3, 3, 27, 3]
    # ConvNeXt V2 without GRN (the ConvNeXt V2 paper's GRN ablation): exported with use_grn=False
    "convnextv2_atto_nogrn": "convnextv2_atto",
}
# timm arguments an arch name implies (they travel in the exported `timm_kwargs`)
ARCH_KWARGS: dict[str, dict[str, Any]] = {"convnextv2_atto_nogrn": {"use_grn": False}}
SMALL_STEMS = {1: "resnet_3x3_s1_nomaxpool", 2: "resnet_3x3_s2_nomaxpool"}


def apply_fixups(model: nn.Module, fixups: dict[str, Any]) -> nn.Module:
    """Apply the architecture changes timm has no argument for, in place.

    `{"stem": "resnet_3x3_s{S}_nomaxpool"}` (S = 1 or 2): `model.conv1 = nn.Conv2d(in_chans,
    stem_width, 3, S, 1, bias=False)`; `model.maxpool = nn.Identity()`.
    """
    stem = fixups.get("stem")
    strides = {name: s for s, name in SMALL_STEMS.items()}
    if stem in strides:
        old = model.conv1
        model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, strides[stem], 1, bias=False)
        model.maxpool = nn.Identity()
    elif stem is not None:
        raise ValueError(f"unknown stem fixup {stem!r}")
    return model


class CNN(nn.Module):
    """A timm ResNet or ConvNeXt returning pooled features [N, D].

    Args:
        arch: a key of `CNN_ARCHS`.
        img_size: input side in pixels (only checked; CNNs take any size the strides allow).
        patch_size: stem downsampling (see the module docstring).
        in_chans: 1 for grayscale data, 3 for RGB.
        pool: "avg" (CNN features are always globally averaged; "token" is accepted and
            means the same, so a ViT recipe can switch backbone without another override).
        depth, num_heads: ViT-only knobs; must be 0.
        drop_path_rate: stochastic depth.
    """

    def __init__(
        self,
        arch: str,
        *,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        pool: str = "avg",
        depth: int = 0,
        num_heads: int = 0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in CNN_ARCHS:
            raise ValueError(f"unknown CNN arch {arch!r}; choose one of {sorted(CNN_ARCHS)}")
        if depth or num_heads:
            raise ValueError(
                "backbone.depth / backbone.num_heads apply to ViTs only; set them to 0"
            )
        if pool not in ("avg", "token"):
            raise ValueError(f"pool must be 'avg' for a CNN, got {pool!r}")
        self.timm_name = CNN_ARCHS[arch]
        self.timm_kwargs: dict[str, Any] = dict(in_chans=in_chans, num_classes=0)
        self.timm_fixups: dict[str, Any] = {}
        is_resnet = arch.startswith("resnet")
        if is_resnet and patch_size in SMALL_STEMS:
            self.timm_fixups["stem"] = SMALL_STEMS[patch_size]
        elif is_resnet and patch_size != 4:
            raise ValueError(
                f"a ResNet stem downsamples by 4 (backbone.patch_size=4) or, for small "
                f"images, by 1 or 2 (a 3x3 conv of that stride, no max-pool); got {patch_size}"
            )
        elif not is_resnet:
            self.timm_kwargs["patch_size"] = patch_size
        if drop_path_rate:
            self.timm_kwargs["drop_path_rate"] = drop_path_rate
        self.timm_kwargs |= ARCH_KWARGS.get(arch, {})
        self.model = apply_fixups(
            timm.create_model(self.timm_name, pretrained=False, **self.timm_kwargs),
            self.timm_fixups,
        )
        self.in_chans, self.img_size, self.patch_size = in_chans, img_size, patch_size
        self.feature_dim: int = self.model.num_features
        if img_size < self.stride:
            raise ValueError(
                f"{arch} with stem downsampling {patch_size} reduces the image by "
                f"{self.stride}; img_size {img_size} is too small: use backbone.patch_size=1 "
                "(or 2 for a ResNet), or larger images"
            )

    @property
    def stride(self) -> int:
        """Total downsampling of the final feature map (timm's, or the small stem's)."""
        if self.timm_fixups.get("stem") in SMALL_STEMS.values():  # timm's info predates it
            return self.patch_size * 8
        return self.model.feature_info[-1]["reduction"]

    @property
    def num_patches(self) -> int:
        """Cells of the final feature map at `img_size` (the mask grid of FCMAE, ConvNeXt V2
        paper Sec. 2)."""
        return (self.img_size // self.stride) ** 2

    def check_input(self, images: Tensor) -> None:
        check_image_shape(images, self.in_chans, self.img_size)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features [N, D]; identical to the exported timm model's output."""
        self.check_input(images)
        return self.model(images)
