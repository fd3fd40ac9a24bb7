"""FCMAE: the fully convolutional masked autoencoder of ConvNeXt V2 (Woo et al., 2023).

Follows the ConvNeXt V2 paper, Sec. 2 (facebookresearch/ConvNeXt-V2 `models/fcmae.py`): 60%
of the cells of the encoder's final-stride grid (32×32 px at 224) are removed; the ConvNeXt
encoder runs sparsely on the visible cells (here: densely with the mask applied before and
after each conv, the numerically equivalent form the paper's Sec. 2 gives;
`parts/sparse.py`); a 1×1 conv projects to the decoder width, mask tokens fill the
removed cells, one ConvNeXt V2 block decodes, a 1×1 conv predicts each cell's pixels;
the MSE is averaged over removed cells only.
"""

from __future__ import annotations

import torch
from timm.models.convnext import ConvNeXtBlock
from torch import Tensor, nn

from visrep.backbones.cnn import CNN
from visrep.method_configs import FCMAEConfig
from visrep.parts.masking import num_keep, random_masking
from visrep.parts.patches import normalize_patches, patchify, unpatchify
from visrep.parts.sparse import SparseConvNeXt


class FCMAE(nn.Module):
    def __init__(self, cfg: FCMAEConfig, backbone: CNN) -> None:
        super().__init__()
        if not (isinstance(backbone, CNN) and backbone.timm_name.startswith("convnext")):
            raise ValueError("FCMAE needs a ConvNeXt backbone (backbone.name=convnextv2_*)")
        if cfg.init not in ("fcmae", "timm"):
            raise ValueError(f"method.init must be 'fcmae' or 'timm', got {cfg.init!r}")
        self.cfg = cfg
        self.backbone = backbone
        self.encoder = SparseConvNeXt(backbone.model, cfg.grn_stats)  # hooks, no parameters
        # The pooled-feature LayerNorm (timm's head.norm) is not part of the pre-training
        # encoder (`SparseConvNeXtV2` in ConvNeXt-V2 `models/convnextv2_sparse.py` has no
        # final norm) and gets no gradient: frozen, so DDP (which expects a gradient for every
        # trainable parameter) works; it stays at its identity init.
        backbone.model.head.requires_grad_(False)
        self.patch_size = p = self.encoder.stride  # the mask unit = the encoder's total stride
        if backbone.img_size % p:
            raise ValueError(
                f"data.img_size {backbone.img_size} must be a multiple of the encoder's total "
                f"stride {p} (FCMAE masks {p}×{p} px cells)"
            )
        self.grid = (backbone.img_size // p,) * 2
        num_keep(self.grid[0] * self.grid[1], cfg.mask_ratio)  # refuse a mask hiding everything
        dd = cfg.decoder_dim
        self.proj = nn.Conv2d(backbone.feature_dim, dd, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, dd, 1, 1))
        self.decoder = nn.Sequential(
            *[ConvNeXtBlock(dd, use_grn=True, ls_init_value=None) for _ in range(cfg.decoder_depth)]
        )  # V2 blocks: dw 7×7, LN (eps 1e-6), Linear, GELU, GRN, Linear, residual
        self.pred = nn.Conv2d(dd, p * p * backbone.in_chans, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """init="fcmae": `FCMAE._init_weights` (ConvNeXt-V2 `models/fcmae.py`) overrides the
        encoder's own init. Depthwise kernels, pointwise weights (MinkowskiLinear there) and
        every nn.Conv2d (stem, proj, decoder dw conv, pred) get trunc_normal std 1.0 (timm's
        default, cut at ±2), the downsamplers std 0.02, biases 0; decoder Linears keep
        PyTorch's init; mask token normal(0.02). init="timm": the encoder keeps timm's init
        (std 0.02) and the decoder gets the same."""
        nn.init.normal_(self.mask_token, std=0.02)
        enc = self.backbone.model
        downsamplers = [
            s.downsample[1] for s in enc.stages if isinstance(s.downsample, nn.Sequential)
        ]
        decoder_linears = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        if self.cfg.init == "fcmae":
            std_of = {id(m): 0.02 for m in downsamplers} | {id(m): None for m in decoder_linears}
            modules = list(self.modules())
        else:
            std_of, modules = {}, [self.proj, *self.decoder.modules(), self.pred]
        for m in modules:
            std = std_of.get(id(m), 1.0 if self.cfg.init == "fcmae" else 0.02)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and std is not None:
                nn.init.trunc_normal_(m.weight.view(m.weight.shape[0], -1), std=std, a=-2, b=2)
                nn.init.zeros_(m.bias)

    def mask(self, batch: int, device: torch.device, noise: Tensor | None = None) -> Tensor:
        """[N, gh, gw], 1 = removed. Official draw: torch.randn(N, L) (`models/fcmae.py`
        `gen_random_mask`)."""
        num = self.grid[0] * self.grid[1]
        if noise is None:
            noise = torch.randn(batch, num, device=device)
        return random_masking(batch, num, self.cfg.mask_ratio, noise=noise).mask.view(
            batch, *self.grid
        )

    def decode(self, latent: Tensor, mask: Tensor) -> Tensor:
        """[N, D, gh, gw] -> pixel prediction per cell [N, L, p·p·C] (MAE's patch order)."""
        x = self.proj(latent)  # [N, Dd, gh, gw]
        m = mask.unsqueeze(1).to(x.dtype)  # [N, 1, gh, gw]
        x = x * (1 - m) + self.mask_token * m
        x = self.pred(self.decoder(x))  # [N, p·p·C, gh, gw]
        return x.flatten(2).transpose(1, 2)  # [N, L, p·p·C], cells row-major

    def target(self, images: Tensor) -> Tensor:
        target = patchify(images, self.patch_size)  # [N, L, p·p·C]
        return normalize_patches(target) if self.cfg.norm_pix_loss else target

    def loss(self, images: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """MSE on removed cells only: Σ m·ℓ / Σ m (paper Sec. 2; `models/fcmae.py`
        `forward_loss`)."""
        per_patch = ((pred - self.target(images)) ** 2).mean(dim=-1)  # [N, L]
        mask = mask.flatten(1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        images = batch["images"]  # [N, C, H, W], normalized
        self.backbone.check_input(images)
        mask = self.mask(images.shape[0], images.device, noise)  # [N, gh, gw]
        latent = self.encoder(images, mask)  # [N, D, gh, gw], zero at removed cells
        pred = self.decode(latent, mask)
        return {"loss": self.loss(images, pred, mask), "pred": pred, "mask": mask.flatten(1)}

    @torch.no_grad()
    def visualize(self, images: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """original | masked (removed cells zeroed) | prediction (the decoder's output as is)
        | reconstruction (visible cells pasted back; with `norm_pix_loss`, masked cells
        un-normalized with their true statistics), in the input (normalized) space, as
        `MAE.visualize`."""
        out = self.forward({"images": images}, noise=noise)
        p, c = self.patch_size, self.backbone.in_chans
        pred, mask = out["pred"], out["mask"].unsqueeze(-1)  # [N, L, P], [N, L, 1]
        patches = patchify(images, p)
        raw_pred = pred
        if self.cfg.norm_pix_loss:  # undo the per-patch normalization with the true statistics
            pred = pred * (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred + patches.mean(-1, keepdim=True)
        return {
            "original": images,
            "masked": unpatchify(patches * (1 - mask), p, c, self.grid),
            "prediction": unpatchify(raw_pred, p, c, self.grid),
            "reconstruction": unpatchify(patches * (1 - mask) + pred * mask, p, c, self.grid),
        }
