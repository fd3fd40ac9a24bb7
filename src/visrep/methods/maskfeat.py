"""MaskFeat: Masked Feature Prediction for Self-Supervised Visual Pre-Training (Wei et al.,
2022), image version on a plain ViT.

Follows the MaskFeat paper, Sec. 3 (facebookresearch/SlowFast `slowfast/models/masked.py`,
`MaskMViT._maskfeat_forward`): block-wise masks (BEiT's, `parts.masking.block_masks`)
replace masked patch embeddings by a learned mask token *before* the position embedding
(`ViT.encode(mask=, mask_token=)`); the encoder sees every token (no dropping, no decoder); a
linear head predicts, for each masked token, the HOG of its cells (SlowFast
`slowfast/models/operators.py` `HOGLayerC`, `parts.hog`) computed from the model input; the
loss is the plain MSE over masked tokens × K dims.

Differences from the official module, by design:
- The head's LayerNorm is the backbone's final `norm` (same eps 1e-6, same place: right
  after the last block), so pre-training computes the paper's blocks → LN → Linear while
  the exported backbone keeps that trained norm for evaluation and fine-tuning.
- The backbone's fixed sin-cos table is turned into the paper's learned position
  embedding here (trainable, trunc_normal(0.02)); it is weight-decayed like the cls and
  mask tokens (SlowFast ZERO_DECAY_POS_CLS False), which the loop's ndim rule does.
- Masks are drawn in the forward pass from a `random.Random` seeded by the torch
  generator, so a step's masks are a function of the loop's per-step seed (exact resume)
  instead of coming from data-loader workers; inject `mask` to bypass it.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from visrep.backbones.mvit import slowfast_init
from visrep.backbones.vit import ViT
from visrep.method_configs import MaskFeatConfig
from visrep.parts.hog import hog, hog_token_targets
from visrep.parts.masking import block_masks, num_block_masked


class MaskFeat(nn.Module):
    def __init__(self, cfg: MaskFeatConfig, backbone: ViT) -> None:
        super().__init__()
        if not isinstance(backbone, ViT):
            raise ValueError("MaskFeat needs a ViT backbone (backbone.name=vit_*)")
        p, cell = backbone.patch_size, cfg.cell_size
        if cell <= 0 or p % cell:
            raise ValueError(
                f"method.cell_size={cell} must divide the patch size {p}: each token predicts "
                "the HOG of the cells it covers"
            )
        num_masked = num_block_masked(backbone.num_patches, cfg.mask_ratio)  # checks the ratio
        if num_masked == 0:
            raise ValueError(
                f"mask_ratio {cfg.mask_ratio} masks no token of {backbone.num_patches}"
            )
        self.cfg = cfg
        self.backbone = backbone
        self.num_masked = num_masked
        self.target_dim = cfg.nbins * (p // cell) ** 2 * backbone.in_chans  # K
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.embed_dim))
        self.head = nn.Linear(backbone.embed_dim, self.target_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """SlowFast init (`slowfast_init`); learned pos embed, cls and mask tokens
        trunc_normal(0.02); head bias 0."""
        vit = self.backbone.model
        slowfast_init(vit)
        vit.pos_embed.requires_grad_(True)  # the backbone's default is a fixed sin-cos table
        for t in (vit.pos_embed, vit.cls_token, self.mask_token, self.head.weight):
            nn.init.trunc_normal_(t, std=0.02)
        nn.init.zeros_(self.head.bias)
        init_patch_embed(vit.patch_embed.proj, self.cfg.patch_embed_init)

    def draw_mask(self, batch: int) -> Tensor:
        """Block-wise masks [N, h, w] (bool) from a Python RNG seeded by the torch generator."""
        rng = random.Random(int(torch.randint(0, 2**62, ())))
        kw = {"min_patches": self.cfg.min_mask_patches or None}
        return block_masks(batch, self.backbone.grid_size, self.num_masked, rng,
                           min_aspect=self.cfg.mask_min_aspect, **kw)  # fmt: skip

    def target(self, images: Tensor) -> Tensor:
        """Per-token HOG of the model input, no gradient: [N, C, H, W] -> [N, L, K]."""
        features = hog(images, self.cfg.nbins, self.cfg.cell_size)  # [N, C, nbins, Hc, Wc]
        return hog_token_targets(features, self.backbone.grid_size)

    def encode(self, images: Tensor, mask: Tensor) -> Tensor:
        """All tokens, masked ones replaced by the mask token before the position embedding:
        [N, C, H, W], mask [N, L] -> [N, 1+L, D] (after the final norm)."""
        return self.backbone.encode(images, mask=mask, mask_token=self.mask_token)

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        return masked_mse(pred, target, mask)

    def forward(self, batch: dict, mask: Tensor | None = None) -> dict[str, Tensor]:
        """`mask`: optional [N, h, w] or [N, L] (bool or 0/1, 1 = masked)."""
        images = batch["images"]  # [N, C, H, W], normalized
        n = images.shape[0]
        mask = self.draw_mask(n) if mask is None else mask
        if mask.numel() != n * self.backbone.num_patches:
            raise ValueError(
                f"mask must be [N, h, w] or [N, h·w] for the {self.backbone.grid_size} token "
                f"grid and {n} images, got {list(mask.shape)}"
            )
        mask = mask.reshape(n, -1).to(images.device, torch.float32)  # [N, L]
        target = self.target(images)  # [N, L, K]
        latent = self.encode(images, mask)  # [N, 1+L, D]
        pred = self.head(latent[:, 1:])  # [N, L, K]; only masked rows enter the loss
        loss = self.loss(pred.float(), target, mask)
        return {"loss": loss, "pred": pred, "mask": mask, "masked_frac": mask.mean()}


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MSE over masked tokens × K dims (MaskFeat paper Sec. 3; nn.MSELoss 'mean' on the
    selected rows, SlowFast `slowfast/models/losses.py` "mse" / "multi_mse"): pred, target
    [N, L, K], mask [N, L] (1 = masked); 0, not NaN, when nothing is masked."""
    sel = mask.bool()
    sq = (pred[sel] - target[sel]) ** 2  # [M, K]
    return sq.sum() / (sel.sum() * pred.shape[-1]).clamp(min=1)


@torch.no_grad()
def init_patch_embed(proj: nn.Module, how: str) -> None:
    """Patch projection init: `how` = "slowfast" keeps `slowfast_init`'s trunc_normal(0.02);
    "xavier" is MAE's xavier-uniform on the flattened projection."""
    if how == "xavier":
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    elif how != "slowfast":
        raise ValueError(f"method.patch_embed_init must be slowfast or xavier, got {how!r}")
