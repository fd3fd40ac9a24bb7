"""Video ViT: spacetime patches through timm blocks (MAE-ST's encoder).

"Masked Autoencoders As Spatiotemporal Learners" (Feichtenhofer, Fan, Li, He, NeurIPS 2022),
Sec. 3 and Appendix A; facebookresearch/mae_st `util/video_vit.py` (PatchEmbed) and
`models_mae.py` / `models_vit.py` (separable position embeddings, cls token).

- Patch embedding: Conv3d(C, D, kernel = stride = (t_patch, p, p)) on [N, C, T, H, W] gives
  a (T/t_patch) × (H/p) × (W/p) grid, flattened time-major: token order (t, h, w).
- Position: learned and separable, a spatial table [1, h·w, D] repeated over time plus a
  temporal table [1, T', D] repeated over space (repeat-interleave), trunc-normal(0.02);
  the cls token has its own position vector. Tables are gathered at `ids_keep` and added
  *after* masking, so the encoder only ever sees kept tokens.
- Blocks are timm's `Block` (pre-norm, qkv bias, LayerNorm eps 1e-6) as in `models_mae.py`.

State-dict layout (what an export of this backbone holds; timm has no video ViT):
`patch_embed.proj.{weight [D, C, t, p, p], bias}`, `cls_token [1, 1, D]`,
`pos_embed_spatial [1, h·w, D]`, `pos_embed_temporal [1, T', D]`, `pos_embed_class [1, 1, D]`,
`blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*` (timm names), `norm.*` —
the official mae_st names except that q, k, v are fused as timm's `attn.qkv`.

Clip features (`forward`): with pool "avg", the mean of the last block's
patch tokens (cls excluded) through the final LayerNorm; with "token", the normed cls token.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from visrep.backbones.vit import VIT_ARCHS, vit_size
from visrep.parts.masking import gather_tokens, replace_masked


class PatchEmbed3d(nn.Module):
    """Conv3d spacetime patches: [N, C, T, H, W] -> [N, T'·h·w, D] in (t, h, w) order."""

    def __init__(self, in_chans: int, dim: int, patch: int, t_patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, (t_patch, patch, patch), (t_patch, patch, patch))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, D, T', h, w] -> [N, L, D]


class VideoViT(nn.Module):
    """A ViT on spacetime patches that can encode a subset of its tokens (module docstring)."""

    def __init__(
        self,
        arch: str = "vit_tiny",
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        frames: int = 16,
        t_patch_size: int = 2,
        pool: str = "avg",
        depth: int = 0,
        num_heads: int = 0,
        pos_embed: str = "learn",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in VIT_ARCHS:
            raise ValueError(f"unknown ViT arch {arch!r}; choose one of {sorted(VIT_ARCHS)}")
        if img_size % patch_size or frames % t_patch_size:
            raise ValueError(
                f"a {frames}-frame {img_size} px clip does not split into {t_patch_size}×"
                f"{patch_size}×{patch_size} patches: data.frames must be a multiple of "
                "backbone.t_patch_size and data.img_size of backbone.patch_size"
            )
        if pos_embed != "learn":
            raise ValueError("a video ViT has MAE-ST's learned separable position table: "
                             "set backbone.pos_embed=learn")  # fmt: skip
        if pool not in ("token", "avg"):
            raise ValueError(f"pool must be 'token' or 'avg', got {pool!r}")
        dim, n_blocks, heads = vit_size(arch)  # timm's sizes, as the image ViT
        n_blocks, heads = depth or n_blocks, num_heads or heads
        self.arch, self.pool_mode, self.drop_path_rate = arch, pool, drop_path_rate
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.frames, self.t_patch_size, self.embed_dim = frames, t_patch_size, dim
        self.grid: tuple[int, int, int] = (
            frames // t_patch_size,
            img_size // patch_size,
            img_size // patch_size,
        )
        self.patch_embed = PatchEmbed3d(in_chans, dim, patch_size, t_patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, self.grid[1] * self.grid[2], dim))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.grid[0], dim))
        self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, dim))
        rates = torch.linspace(0, drop_path_rate, n_blocks).tolist()
        self.blocks = nn.Sequential(
            *[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=r, norm_layer=_ln)
              for r in rates]
        )  # fmt: skip
        self.norm = _ln(dim)
        for p in (self.cls_token, self.pos_embed_spatial, self.pos_embed_temporal,
                  self.pos_embed_class):  # fmt: skip
            nn.init.trunc_normal_(p, std=0.02)

    def init_kwargs(self) -> dict:
        """The constructor arguments that rebuild this encoder (`VideoViT(**init_kwargs())`)."""
        return {"arch": self.arch, "img_size": self.img_size, "patch_size": self.patch_size,
                "in_chans": self.in_chans, "frames": self.frames,
                "t_patch_size": self.t_patch_size, "pool": self.pool_mode,
                "depth": len(self.blocks), "num_heads": self.blocks[0].attn.num_heads,
                "drop_path_rate": self.drop_path_rate}  # fmt: skip

    def with_drop_path(self, rate: float) -> VideoViT:
        """A copy of this encoder with stochastic depth `rate` (linear over the blocks, as
        mae_st `models_vit.py`), its weights loaded strictly: fine-tuning's trunk."""
        vit = VideoViT(**(self.init_kwargs() | {"drop_path_rate": rate}))
        vit.load_state_dict(self.state_dict(), strict=True)
        return vit

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def feature_dim(self) -> int:
        return self.embed_dim

    def check_input(self, video: Tensor) -> None:
        expected = (self.in_chans, self.frames, self.img_size, self.img_size)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(
                f"video backbone expects clips [B, {', '.join(map(str, expected))}] (B, C, T, H, "
                f"W), got {list(video.shape)}; set data.frames / data.img_size / data.channels"
            )

    def pos_table(self) -> Tensor:
        """Separable table [1, L, D]: spatial repeated over time + temporal repeated over space."""
        t, h, w = self.grid
        spatial = self.pos_embed_spatial.repeat(1, t, 1)
        temporal = torch.repeat_interleave(self.pos_embed_temporal, h * w, dim=1)
        return spatial + temporal

    def encode(
        self,
        video: Tensor,
        ids_keep: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> Tensor:
        """Normed tokens [N, 1+K, D] (cls first) of all patches or those at `ids_keep` [N, K];
        position added after the gather (mae_st `forward_encoder`). With `mask` [N, L] (1 =
        masked) and `mask_token` [1, 1, D], masked patch embeddings are replaced by the token
        *before* the position table is added, and every token is encoded (video MaskFeat,
        SlowFast `slowfast/models/masked.py` `_maskfeat_forward`)."""
        return self.norm(self._blocks(video, ids_keep, mask, mask_token))

    def _blocks(
        self,
        video: Tensor,
        ids_keep: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> Tensor:
        self.check_input(video)
        x = self.patch_embed(video)  # [N, L, D]
        if mask is not None:  # the image ViT's replacement, before the position table
            x = replace_masked(x, mask, mask_token)
        pos = self.pos_table().expand(x.shape[0], -1, -1)
        if ids_keep is not None:
            x, pos = gather_tokens(x, ids_keep), gather_tokens(pos, ids_keep)
        cls = (self.cls_token + self.pos_embed_class).expand(x.shape[0], -1, -1)
        return self.blocks(torch.cat([cls, x + pos], dim=1))

    def forward(self, video: Tensor) -> Tensor:
        """Clip features [N, D] (module docstring)."""
        x = self._blocks(video)
        return self.norm(x[:, 1:].mean(dim=1) if self.pool_mode == "avg" else x[:, 0])

    def no_weight_decay_names(self) -> set[str]:
        return set()


def _ln(dim: int, **kwargs) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6, **kwargs)
