"""SparK: sparse and hierarchical masked modeling for CNNs (Tian et al., ICLR 2023).

Follows the SparK paper and keyu-tian/SparK `pretrain/spark.py`: 60% of the cells of the
encoder's final-stride grid are masked (round, not floor: `SparK.len_keep`); the CNN runs
sparsely on the visible cells (dense ops with masks, `parts/sparse.py`: BatchNorm /
LayerNorm statistics over visible positions only) and returns its four stage outputs; each is
densified (sparse norm, a per-scale mask token at masked positions, a projection to the
decoder width) and a light UNet decoder (`parts/light_decoder.py`) reconstructs the
image; the loss is the MSE to per-patch normalized pixels on masked cells only.
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from visrep.backbones.cnn import CNN
from visrep.method_configs import SparKConfig
from visrep.parts.light_decoder import LightDecoder
from visrep.parts.masking import nothing_visible_message
from visrep.parts.patches import normalize_patches, patchify, unpatchify
from visrep.parts.sparse import SparseConvNeXt, SparseResNet, sparse_batch_norm, upsample_mask


def num_visible(cells: int, mask_ratio: float) -> int:
    """round(f²·(1 − r)) visible cells (`pretrain/spark.py` `len_keep`; MAE/FCMAE floor
    instead: 20 vs 19 of 49)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    visible = round(cells * (1 - mask_ratio))
    if visible == 0:
        raise ValueError(nothing_visible_message(cells, mask_ratio))
    return visible


class SparK(nn.Module):
    # no weight decay on these names (besides 1-D parameters and biases): the `nowd_keys`
    # of SparK's `pretrain/main.py`
    no_decay_keywords = ("cls_token", "pos_embed", "mask_token", "gamma")

    def __init__(self, cfg: SparKConfig, backbone: CNN) -> None:
        super().__init__()
        if not isinstance(backbone, CNN):
            raise ValueError("SparK needs a CNN backbone (backbone.name=resnet* or convnext*)")
        self.cfg, self.backbone = cfg, backbone
        model, resnet = backbone.model, backbone.timm_name.startswith("resnet")
        self.encoder = SparseResNet(model, backbone.stride) if resnet else SparseConvNeXt(model)
        if not resnet:  # the pooled-feature norm is not part of the encoder: no gradient (FCMAE)
            model.head.requires_grad_(False)
        self.patch_size = p = backbone.stride  # the mask unit = the encoder's total stride
        if backbone.img_size % p:
            raise ValueError(
                f"data.img_size {backbone.img_size} must be a multiple of the encoder's total "
                f"stride {p} (SparK masks {p}×{p} px cells)"
            )
        self.grid = backbone.img_size // p
        num_visible(self.grid**2, cfg.mask_ratio)  # refuse a mask that hides everything now
        self.decoder = LightDecoder(p, cfg.decoder_dim, backbone.in_chans)
        chans = [
            f["num_chs"] for f in model.feature_info if f["module"].startswith(("layer", "stages"))
        ]
        # smallest map first; a stride-1 first stage (small stems) has no decoder block left
        chans = chans[::-1][: len(self.decoder.dec)]
        norm = cfg.densify_norm if cfg.densify_norm != "auto" else ("bn" if resnet else "ln")
        norms = {"bn": nn.BatchNorm2d, "ln": lambda c: LayerNorm2d(c, eps=1e-6), "none": None}
        if norm not in norms:
            raise ValueError(f"method.densify_norm must be auto, bn, ln or none, got {norm!r}")
        self.densify_norms = nn.ModuleList(
            norms[norm](c) if norms[norm] else nn.Identity() for c in chans
        )
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in chans)
        for t in self.mask_tokens:
            nn.init.trunc_normal_(t, mean=0.0, std=0.02, a=-0.02, b=0.02)
        widths = self.decoder.channels
        self.densify_projs = nn.ModuleList(  # PyTorch's default init, as SparK
            nn.Identity()
            if i == 0 and c == widths[0]
            else nn.Conv2d(c, widths[i], kernel_size=1 if i == 0 else 3, padding=0 if i == 0 else 1)
            for i, c in enumerate(chans)
        )

    def mask(
        self, batch: int, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Visible-cell map [N, 1, f, f] (True = visible, `SparK.mask`): the first round(f²(1−r))
        of argsort(noise); official draw torch.rand(N, f², generator) on the CPU."""
        cells = self.grid**2
        if noise is None:
            noise = torch.rand(batch, cells, generator=generator)
        keep = noise.argsort(dim=1)[:, : num_visible(cells, self.cfg.mask_ratio)]
        active = torch.zeros(batch, cells, dtype=torch.bool, device=noise.device)
        return active.scatter(1, keep, True).view(batch, 1, self.grid, self.grid)

    def densify(self, feats: list[Tensor], active: Tensor) -> list[Tensor]:
        """Encoder maps (largest first) -> decoder inputs (smallest first): step 3 ("densify")
        of `SparK.forward`."""
        to_dec = []
        for i, x in enumerate(feats[::-1][: len(self.mask_tokens)]):  # [N, C_i, f·2^i, f·2^i]
            vis = upsample_mask(active, x.shape[-2:])  # [N, 1, f·2^i, f·2^i]
            norm = self.densify_norms[i]
            x = sparse_batch_norm(norm, x, vis) if isinstance(norm, _BatchNorm) else norm(x)
            x = torch.where(vis, x, self.mask_tokens[i].to(x.dtype))  # tokens at masked cells
            to_dec.append(self.densify_projs[i](x))  # [N, W_i, f·2^i, f·2^i]
        return to_dec

    def loss(self, images: Tensor, rec: Tensor, active: Tensor) -> Tensor:
        """`SparK.forward` step 4: MSE to per-patch normalized pixels (always; unbiased var,
        eps 1e-6), on masked cells: Σ masked / (n_masked + 1e-8)."""
        target = normalize_patches(patchify(images, self.patch_size))  # [N, L, p·p·C]
        per_patch = ((patchify(rec, self.patch_size) - target) ** 2).mean(dim=-1)  # [N, L]
        masked = (~active).flatten(1).to(per_patch.dtype)  # [N, L]
        return (per_patch * masked).sum() / (masked.sum() + 1e-8)

    def forward(
        self, batch: dict, active: Tensor | None = None, noise: Tensor | None = None
    ) -> dict[str, Tensor]:
        images = batch["images"]  # [N, C, H, W], normalized
        self.backbone.check_input(images)
        if active is None:
            active = self.mask(images.shape[0], noise)
        if tuple(active.shape) != (images.shape[0], 1, self.grid, self.grid):
            raise ValueError(
                f"active must be [N, 1, {self.grid}, {self.grid}] (bool, True = visible)"
            )
        active = active.to(images.device)  # [N, 1, f, f] bool
        masked = images * upsample_mask(active, images.shape[-2:])  # pixel-level map (step 1)
        feats = self.encoder.features(masked, ~active[:, 0])  # 4 × [N, C_i, ...], 0 at masked
        rec = self.decoder(self.densify(feats, active))  # [N, C, H, W]
        return {"loss": self.loss(images, rec, active), "rec": rec, "active": active}

    @torch.no_grad()
    def visualize(self, images: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """original | masked | prediction (the decoder's per-cell normalized output as is) |
        reconstruction (masked cells un-normalized with their true statistics, visible cells
        pasted back), in the input (normalized) space, as `MAE.visualize`."""
        out = self.forward({"images": images}, noise=noise)
        p, c, grid = self.patch_size, self.backbone.in_chans, (self.grid, self.grid)
        patches, rec = patchify(images, p), patchify(out["rec"], p)
        rec = rec * (patches.var(-1, keepdim=True) + 1e-6) ** 0.5 + patches.mean(-1, keepdim=True)
        vis = out["active"].flatten(1).unsqueeze(-1).to(patches.dtype)  # [N, L, 1]
        return {
            "original": images,
            "masked": unpatchify(patches * vis, p, c, grid),
            "prediction": out["rec"],
            "reconstruction": unpatchify(patches * vis + rec * (1 - vis), p, c, grid),
        }
