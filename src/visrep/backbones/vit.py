"""ViT backbone: a timm `VisionTransformer` used through its public submodules.

The timm model is created by `timm.create_model` and kept whole in `self.model`,
so its state dict is exactly what `timm.create_model(timm_name, **timm_kwargs)`
expects (docs/export.md). The adapter adds what MAE, FLIP and MaskFeat need and timm does
not offer: encoding only a subset of the patch tokens (`ids_keep`), or every token with the
masked ones replaced by a mask token (`mask`, `mask_token`).
"""

from __future__ import annotations

import functools
from typing import Any

import timm
import torch
from torch import Tensor, nn

from visrep.backbones.shapes import check_image_shape
from visrep.parts.masking import gather_tokens, replace_masked
from visrep.parts.pos_embed import sincos_2d

# name -> timm architecture. Width/depth/heads come from timm; image size, patch size,
# channels and pooling are set per run. The paper sizes are ViT-B/16, L/16, H/14 at 224 px.
VIT_ARCHS: dict[str, str] = {
    "vit_tiny": "vit_tiny_patch16_224",  # D=192, depth 12, 3 heads
    "vit_small": "vit_small_patch16_224",  # D=384, depth 12, 6 heads
    "vit_base": "vit_base_patch16_224",  # D=768, depth 12, 12 heads
    "vit_large": "vit_large_patch16_224",  # D=1024, depth 24, 16 heads
    "vit_huge": "vit_huge_patch14_224",  # D=1280, depth 32, 16 heads
}


@functools.cache
def vit_size(arch: str) -> tuple[int, int, int]:
    """(width, depth, heads) of a `VIT_ARCHS` entry, read from timm's own model definition.

    The model is built on the meta device, so no memory is allocated and nothing is
    initialised; other backbones (e.g. the video ViT) take their sizes from here rather
    than restating timm's table."""
    if arch not in VIT_ARCHS:
        raise ValueError(f"unknown ViT arch {arch!r}; choose one of {sorted(VIT_ARCHS)}")
    with torch.device("meta"):
        model = timm.create_model(VIT_ARCHS[arch], pretrained=False, num_classes=0)
    return model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads


class ViT(nn.Module):
    """A timm ViT that can encode a subset of its tokens.

    Args:
        arch: a key of `VIT_ARCHS`.
        img_size: input side in pixels; must be a multiple of `patch_size`.
        patch_size: p.
        in_chans: 1 for grayscale data such as Fashion-MNIST, 3 for RGB.
        pool: feature pooling for evaluation and export: "token" (cls token after the
            final norm, MAE's linear-probe protocol) or "avg" (mean of the normed patch
            tokens; timm's `fc_norm=False` keeps the pre-trained final norm in use).
        depth: override the number of blocks (0 keeps the architecture's).
        num_heads: override the number of attention heads (0 keeps the architecture's).
        pos_embed: "sincos" (fixed MAE-layout table, not trained) or "learn".
    """

    def __init__(
        self,
        arch: str = "vit_tiny",
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        pool: str = "token",
        depth: int = 0,
        num_heads: int = 0,
        pos_embed: str = "sincos",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in VIT_ARCHS:
            raise ValueError(f"unknown ViT arch {arch!r}; choose one of {sorted(VIT_ARCHS)}")
        if img_size % patch_size:
            raise ValueError(
                f"img_size {img_size} is not a multiple of patch_size {patch_size}: "
                "pick a patch size that divides the image size (e.g. 4 or 7 for 28 px)"
            )
        if pool not in ("token", "avg"):
            raise ValueError(f"pool must be 'token' or 'avg', got {pool!r}")
        self.timm_name = VIT_ARCHS[arch]
        self.timm_fixups: dict[str, Any] = {}
        self.timm_kwargs: dict[str, Any] = dict(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool=pool,
            fc_norm=False,
        )
        if depth:
            self.timm_kwargs["depth"] = depth
        if num_heads:  # e.g. MoCo v3 / SLIP ViT-S: 12 heads instead of timm's 6
            self.timm_kwargs["num_heads"] = num_heads
        if drop_path_rate:
            self.timm_kwargs["drop_path_rate"] = drop_path_rate
        self.model = timm.create_model(self.timm_name, pretrained=False, **self.timm_kwargs)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.img_size = img_size
        self.grid_size: tuple[int, int] = tuple(self.model.patch_embed.grid_size)
        self.embed_dim: int = self.model.embed_dim
        if pos_embed == "sincos":
            table = sincos_2d(self.embed_dim, self.grid_size, cls_token=True)
            self.model.pos_embed.data.copy_(table.unsqueeze(0))
            self.model.pos_embed.requires_grad_(False)
        elif pos_embed != "learn":
            raise ValueError(f"pos_embed must be 'sincos' or 'learn', got {pos_embed!r}")

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def feature_dim(self) -> int:
        return self.embed_dim

    def check_input(self, images: Tensor) -> None:
        check_image_shape(images, self.in_chans, self.img_size)

    def embed(
        self, images: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> Tensor:
        """Patch tokens with position embeddings added: [N, C, H, W] -> [N, L, D].

        With `mask` [N, L] (1 = masked, bool or 0/1) the masked patch embeddings are replaced
        by `mask_token` (broadcast to [N, L, D]) *before* the position embedding, so a masked
        token keeps its position: x_i <- (1 - m_i)·x_i + m_i·t, then x_i + p_i. This is
        MaskFeat's encoder input (SlowFast `slowfast/models/masked.py`, `MaskMViT`) and the
        "encoder w/ [M]" baseline of the MAE paper (Table 1c)."""
        self.check_input(images)
        x = self.model.patch_embed(images)  # [N, L, D]
        if mask is not None:
            x = replace_masked(x, mask, mask_token)
        return x + self.model.pos_embed[:, 1:]

    def cls_token(self, batch: int) -> Tensor:
        """cls token plus its position embedding (zero for sin-cos): [N, 1, D]."""
        cls = self.model.cls_token + self.model.pos_embed[:, :1]
        return cls.expand(batch, -1, -1)

    def blocks(self, tokens: Tensor) -> Tensor:
        """Transformer blocks and the final norm on [N, 1+K, D] tokens (cls first)."""
        x = self.model.norm_pre(tokens)
        x = self.model.blocks(x)
        return self.model.norm(x)

    def encode(
        self,
        images: Tensor,
        ids_keep: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> Tensor:
        """Encode the patch tokens and the cls token: [N, C, H, W] -> [N, 1+K, D].

        Every token (K = L); only those at `ids_keep` [N, K] (MAE's encoder, FLIP); or every
        token with those under `mask` [N, L] replaced by `mask_token` (see `embed`; MaskFeat).
        """
        if ids_keep is not None and mask is not None:
            raise ValueError("pass ids_keep (drop tokens) or mask (replace them), not both")
        x = self.embed(images, mask, mask_token)
        if ids_keep is not None:
            x = gather_tokens(x, ids_keep)
        x = torch.cat([self.cls_token(x.shape[0]), x], dim=1)
        return self.blocks(x)

    def pool(self, tokens: Tensor) -> Tensor:
        """Pooled features from encoded tokens, exactly as timm's `forward_head`."""
        return self.model.forward_head(tokens, pre_logits=True)

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features [N, D]; identical to the exported timm model's output."""
        self.check_input(images)
        return self.model(images)

    def no_weight_decay_names(self) -> set[str]:
        return set()
