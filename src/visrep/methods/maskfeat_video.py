"""MaskFeat on video (Wei, Fan, Xie, Wu, Yuille, Feichtenhofer, "Masked Feature Prediction
for Self-Supervised Visual Pre-Training", CVPR 2022, Sec. 4) on MViTv2 or a plain video ViT.

facebookresearch/SlowFast `slowfast/models/masked.py` (`MaskMViT._maskfeat_forward`,
`_get_hog_label_3d`, `_get_multiscale_mask`), `slowfast/datasets/transform.py`
(`MaskingGenerator3D`), `slowfast/datasets/kinetics.py` (`_gen_mask`). The released video
configs use MViTv2 (`backbones.mvit.VideoMViT`); MaskMViT also runs a plain
ViT in MaskFeat mode by configuration (MAE-ST's video ViT, `backbones.video_vit.VideoViT`):

1. Cube mask on a (T', H', W') window of mask units over the *output* token grid
   (`parts.masking.cube_mask`; unit = `mask_unit` output tokens a side), nearest-upsampled
   to the output grid (prediction/target selection) and to the patch grid (mask-token
   replacement). ViT: both grids are the patch grid. MViTv2-S: output 14 × 14 (the
   pre-training variant), patches 56 × 56, so a unit is 2 × 2 output and 8 × 8 input tokens.
2. Masked patch embeddings are replaced by a learned mask token (ViT: before the separable
   position table; MViT: no absolute position, relative biases in attention); the encoder
   sees every token (no dropping, no decoder).
3. Target: HOG (`parts.hog`, per RGB channel, per-cell L2) of one frame per temporal token,
   frames 0, u, 2u, … (u = the temporal patch stride, 2), laid out per output token as image
   MaskFeat's ((k, u, v) order), tokens in (t, h, w) order; the cls token is never predicted.
4. Head: LayerNorm → Linear on the last block's tokens (PRETRAIN_DEPTH = the last block);
   loss: plain MSE over masked tokens × K (`maskfeat.masked_mse`). The LayerNorm is the
   backbone's final `norm` (the image MaskFeat's choice: the export keeps the trained norm,
   and every parameter of the model is used, as DistributedDataParallel requires); SlowFast
   deletes MViT's norm in pre-training and starts the fine-tuning norm afresh.

As in image MaskFeat, masks are drawn in the forward pass from a `random.Random` seeded by
the torch generator (the loop seeds it per step: exact resume); inject `mask` to bypass.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor, nn

from visrep.backbones.mvit import VideoMViT, slowfast_init
from visrep.backbones.video_vit import VideoViT
from visrep.method_configs import MaskFeatVideoConfig
from visrep.methods.maskfeat import init_patch_embed, masked_mse
from visrep.parts.hog import hog, hog_token_targets
from visrep.parts.masking import cube_mask, num_block_masked


class MaskFeatVideo(nn.Module):
    def __init__(self, cfg: MaskFeatVideoConfig, backbone: VideoViT | VideoMViT) -> None:
        super().__init__()
        if not isinstance(backbone, VideoViT | VideoMViT):
            raise ValueError("video MaskFeat needs a video ViT or an MViTv2: set data.frames "
                             "(e.g. 16) and backbone.name=vit_* or mvitv2_*")  # fmt: skip
        self.grid, self.out_grid, stride = token_grids(backbone)
        cell, unit = cfg.cell_size, cfg.mask_unit
        t, h, w = self.out_grid
        if cell <= 0 or stride % cell:
            raise ValueError(f"method.cell_size={cell} must divide the {stride} px output-token "
                             "stride: each token predicts the HOG of the cells it covers")  # fmt: skip
        if unit <= 0 or h % unit or w % unit or min(h, w) // unit < 2:
            hint = (" (MViTv2 pre-trains with backbone.mvit_last_pool=false: twice the grid)"
                    if isinstance(backbone, VideoMViT) and backbone.last_pool else "")  # fmt: skip
            raise ValueError(f"method.mask_unit={unit} must divide the {h}×{w} token grid into "
                             "at least 2 × 2 mask units (a box must be narrower than the "
                             f"window); lower method.mask_unit or raise data.img_size{hint}")  # fmt: skip
        self.cfg, self.backbone = cfg, backbone
        self.window = (t, h // unit, w // unit)  # (T', H', W') mask units
        self.num_masked = num_block_masked(t * (h // unit) * (w // unit), cfg.mask_ratio)
        if self.num_masked == 0:
            raise ValueError(f"mask_ratio {cfg.mask_ratio} masks no unit of {self.window}")
        self.target_dim = cfg.nbins * (stride // cell) ** 2 * backbone.in_chans  # K
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))  # patch width
        self.head = nn.Linear(backbone.feature_dim, self.target_dim)  # last block's width
        self._init_weights()

    def _init_weights(self) -> None:
        """SlowFast init (`mvit.slowfast_init`; an MViTv2 starts with it already);
        separable position tables, cls and mask tokens, head weight trunc_normal(0.02); head
        bias 0. `encoder_init="backbone"` keeps a ViT encoder as built (mask token and head
        only)."""
        bb, how = self.backbone, self.cfg.encoder_init
        if how not in ("slowfast", "backbone"):
            raise ValueError(f"method.encoder_init must be slowfast or backbone, got {how!r}")
        tokens = [self.mask_token, self.head.weight]
        reinit = isinstance(bb, VideoViT) and how == "slowfast"
        if reinit:  # (this draw order keeps seeded ViT runs as they were)
            slowfast_init(bb)
            tokens = [bb.cls_token, bb.pos_embed_spatial, bb.pos_embed_temporal,
                      bb.pos_embed_class, *tokens]  # fmt: skip
        for t in tokens:
            nn.init.trunc_normal_(t, std=0.02)
        nn.init.zeros_(self.head.bias)
        if reinit or isinstance(bb, VideoMViT):
            init_patch_embed(bb.patch_embed.proj, self.cfg.patch_embed_init)

    def draw_mask(self, batch: int) -> Tensor:
        """Cube masks [N, T', H', W'] (bool) from a Python RNG seeded by the torch generator."""
        rng = random.Random(int(torch.randint(0, 2**62, ())))
        kw = {"min_patches": self.cfg.min_mask_patches or None}
        return torch.stack([cube_mask(self.window, self.num_masked, rng,
                                      min_aspect=self.cfg.mask_min_aspect, **kw)
                            for _ in range(batch)])  # fmt: skip

    def token_mask(self, unit_mask: Tensor) -> Tensor:
        """Mask units [N, T', H', W'] -> output tokens [N, L] in (t, h, w) order (nearest
        upsampling of the spatial axes, SlowFast `_get_multiscale_mask`)."""
        u = self.cfg.mask_unit
        m = unit_mask.repeat_interleave(u, dim=2).repeat_interleave(u, dim=3)
        return m.flatten(1)

    def input_mask(self, token_mask: Tensor) -> Tensor:
        """Output tokens [N, L] -> patch-grid tokens [N, L_in]: each output token's s × s
        patches (s = patch grid / output grid: 4 for MViTv2-S's pre-training variant, 1 for
        a ViT), the same nearest upsampling of the unit mask (`_maskfeat_forward`)."""
        s = self.grid[1] // self.out_grid[1]
        if s == 1:
            return token_mask
        m = token_mask.reshape(-1, *self.out_grid)
        return m.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3).flatten(1)

    def target(self, video: Tensor) -> Tensor:
        """Per-token HOG of frames 0, u, 2u, … of the model input, no gradient:
        [N, C, T, H, W] -> [N, L, K] (SlowFast `_get_hog_label_3d`)."""
        frames = video[:, :, :: self.backbone.t_patch_size]  # [N, C, T', H, W]
        n, c, t = frames.shape[:3]
        flat = frames.transpose(1, 2).reshape(n * t, c, *frames.shape[3:])
        features = hog(flat, self.cfg.nbins, self.cfg.cell_size)  # [N·T', C, nbins, Hc, Wc]
        per_frame = hog_token_targets(features, self.out_grid[1:])  # [N·T', h·w, K]
        return per_frame.reshape(n, t * per_frame.shape[1], -1)

    def forward(self, batch: dict, mask: Tensor | None = None) -> dict[str, Tensor]:
        """`mask`: optional unit mask [N, T', H', W'] or output-token mask [N, L] (1 = masked)."""
        video = batch["images"]  # [N, C, T, H, W], normalised clips
        n, num_tokens = video.shape[0], math.prod(self.out_grid)
        mask = self.draw_mask(n) if mask is None else mask
        if mask.ndim == 4:
            mask = self.token_mask(mask)
        if tuple(mask.shape) != (n, num_tokens):
            raise ValueError(f"mask must be [N, {', '.join(map(str, self.window))}] units or "
                             f"[N, {num_tokens}] tokens for {n} clips, got "
                             f"{list(mask.shape)}")  # fmt: skip
        mask = mask.to(video.device, torch.float32)  # [N, L] on the output grid
        target = self.target(video)  # [N, L, K]
        latent = self.backbone.encode(video, mask=self.input_mask(mask), mask_token=self.mask_token)
        pred = self.head(latent[:, 1:])  # [N, L, K]; only masked rows enter the loss
        loss = masked_mse(pred.float(), target, mask)
        return {"loss": loss, "pred": pred, "mask": mask, "masked_frac": mask.mean()}


def token_grids(backbone: VideoViT | VideoMViT) -> tuple[tuple, tuple, int]:
    """(patch grid, output grid, output stride in pixels): a ViT predicts on its patch grid;
    an MViTv2 on its last block's grid."""
    if isinstance(backbone, VideoMViT):
        return backbone.grid, backbone.out_grid, backbone.out_stride
    return backbone.grid, backbone.grid, backbone.patch_size
