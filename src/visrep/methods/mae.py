"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., 2022).

Follows the MAE paper, Sec. 3 (facebookresearch/mae `models_mae.py`): the encoder sees only
the kept 25% of the patches; a light decoder gets the encoded tokens plus mask
tokens and predicts the pixels of every patch; the loss is the MSE on removed
patches of the per-patch normalized pixels.

Long-sequence MAE ("Exploring Long-Sequence Masked Autoencoders", Hu et al., 2022;
facebookresearch/long_seq_mae `models_mae.py`, `util/long_seq_patch_loader.py`) is this
model with `mask_unit` = k > 1: larger inputs give a long token sequence, and masking works on
k×k units of patches (`parts.masking.unit_masking`) so the masked regions keep the size
they had at the original resolution. `no_k_bias_in_vit` drops the attention key bias as
that code can. Its `decoder_downsampling` / `pred_downsampling` options are not ported.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from visrep.backbones.vit import ViT
from visrep.method_configs import MAEConfig
from visrep.parts.masking import Masking, random_masking, unit_anchors, unit_masking
from visrep.parts.patches import normalize_patches, patchify, unpatchify
from visrep.parts.pos_embed import sincos_2d


class MAE(nn.Module):
    def __init__(self, cfg: MAEConfig, backbone: ViT) -> None:
        super().__init__()
        if not isinstance(backbone, ViT):
            raise ValueError("MAE needs a ViT backbone (backbone.name=vit_*)")
        if cfg.mask_unit < 1:
            raise ValueError(f"method.mask_unit must be >= 1 patch, got {cfg.mask_unit}")
        self.cfg = cfg
        self.backbone = backbone
        d, dd, p, c = backbone.embed_dim, cfg.decoder_dim, backbone.patch_size, backbone.in_chans
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        table = sincos_2d(dd, backbone.grid_size, cls_token=True).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(table, requires_grad=False)
        self.decoder_blocks = nn.Sequential(
            *[Block(dd, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=_ln)
              for _ in range(cfg.decoder_depth)]
        )  # fmt: skip
        self.decoder_norm = _ln(dd)
        self.decoder_pred = nn.Linear(dd, p * p * c)
        if cfg.encoder_mask_tokens:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self._init_weights()
        if cfg.no_k_bias_in_vit:
            _drop_k_bias(self)

    def _init_weights(self) -> None:
        """MAE init (paper Appendix A.1; `models_mae.py` `initialize_weights`): xavier-uniform
        Linears (patch embed viewed as a Linear), zero biases, unit LayerNorms, normal(0.02)
        cls and mask tokens."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias) if m.bias is not None else None
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        proj = self.backbone.model.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        nn.init.normal_(self.backbone.model.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        if self.cfg.encoder_mask_tokens:
            nn.init.normal_(self.encoder_mask_token, std=0.02)

    def mask(self, batch: int, device: torch.device, noise: Tensor | None = None) -> Masking:
        """Per-patch masking (`models_mae.py` `random_masking`), or with `mask_unit` k > 1
        long-sequence MAE's unit masking (`parts.masking.unit_masking`).

        `noise` is [N, L] per patch in both cases (default ``torch.rand(N, L)``, as MAE);
        with k > 1 each unit ranks by the noise of its top-left patch, so the unit
        permutation is uniform and k = 1 is exactly MAE. To inject the official loader's
        unit permutation instead, pass ``masking=unit_masking(perm=...)`` to `forward`."""
        r, k, n = self.cfg.mask_ratio, self.cfg.mask_unit, self.backbone.num_patches
        if k == 1:
            return random_masking(batch, n, r, noise=noise, device=device)
        if noise is None:
            noise = torch.rand(batch, n, device=device)
        if noise.shape != (batch, n):
            raise ValueError(f"noise must have shape {(batch, n)}, got {tuple(noise.shape)}")
        grid = self.backbone.grid_size
        perm = noise[:, unit_anchors(grid, k).to(noise.device)].argsort(dim=1)  # [N, U]
        return unit_masking(batch, grid, k, r, perm=perm)

    def encode(self, images: Tensor, masking: Masking) -> Tensor:
        """Encode the kept patches: [N, C, H, W] -> [N, 1+L_keep, D] (kept in shuffled order)."""
        if self.cfg.encoder_mask_tokens:  # baseline: every token, removed ones as [M]
            return self.backbone.encode(
                images, mask=masking.mask, mask_token=self.encoder_mask_token
            )  # [N, 1+L, D]
        return self.backbone.encode(images, masking.ids_keep)

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """[N, 1+L_keep, D] -> per-patch pixel prediction [N, L, p·p·C] (cls dropped)."""
        x = self.decoder_embed(latent)  # [N, 1+L_keep, Dd]
        n, num_tokens = x.shape[0], ids_restore.shape[1]
        if x.shape[1] < 1 + num_tokens:  # append mask tokens, unshuffle (`forward_decoder`)
            fill = self.mask_token.expand(n, 1 + num_tokens - x.shape[1], -1)
            x_ = torch.cat([x[:, 1:], fill], dim=1)  # [N, L, Dd] in shuffled order
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
            x = torch.cat([x[:, :1], x_], dim=1)  # [N, 1+L, Dd], spatial order
        x = x + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]  # [N, L, p·p·C]

    def target(self, images: Tensor) -> Tensor:
        target = patchify(images, self.backbone.patch_size)  # [N, L, p·p·C]
        return normalize_patches(target) if self.cfg.norm_pix_loss else target

    def loss(self, images: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error on removed patches only: Σ m·ℓ / Σ m (paper Sec. 3,
        "Reconstruction target"; `models_mae.py` `forward_loss`)."""
        per_patch = ((pred - self.target(images)) ** 2).mean(dim=-1)  # [N, L]
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, batch: dict, noise: Tensor | None = None, masking: Masking | None = None
    ) -> dict[str, Tensor]:
        """`noise` or a whole `masking` (e.g. `unit_masking(perm=...)`, the ids the official
        long-seq loader hands its model) may be injected; by default drawn here."""
        images = batch["images"]  # [N, C, H, W], normalized
        if masking is None:
            masking = self.mask(images.shape[0], images.device, noise)
        latent = self.encode(images, masking)
        pred = self.decode(latent, masking.ids_restore)
        return {"loss": self.loss(images, pred, masking.mask), "pred": pred, "mask": masking.mask}

    @torch.no_grad()
    def visualize(self, images: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Images for the reconstruction picture, in the input (normalized) space, as the
        panels of the MAE demo notebook (facebookresearch/mae `demo/mae_visualize.ipynb`):
        original | masked (removed patches zeroed) | prediction (the decoder's output on every
        patch, as is: per-patch normalized values with `norm_pix_loss`) | reconstruction
        (visible patches pasted back over the prediction). The demo's checkpoints predict
        raw pixels; with `norm_pix_loss` each masked patch of the reconstruction is
        un-normalized with that patch's true mean and variance, which the model never sees."""
        out = self.forward({"images": images}, noise=noise)
        p, c, grid = self.backbone.patch_size, self.backbone.in_chans, self.backbone.grid_size
        pred, mask = out["pred"], out["mask"].unsqueeze(-1)  # [N, L, P], [N, L, 1]
        patches = patchify(images, p)
        raw_pred = pred
        if self.cfg.norm_pix_loss:  # undo the per-patch normalization with the true statistics
            pred = pred * (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred + patches.mean(-1, keepdim=True)
        return {
            "original": images,
            "masked": unpatchify(patches * (1 - mask), p, c, grid),
            "prediction": unpatchify(raw_pred, p, c, grid),
            "reconstruction": unpatchify(patches * (1 - mask) + pred * mask, p, c, grid),
        }


def _drop_k_bias(model: nn.Module) -> None:
    """Zero the key third of every fused qkv bias and its gradient (long-seq MAE's
    --no_k_bias_in_vit).

    timm's qkv bias is [q | k | v]. A key bias only shifts each query's logits by a
    constant, so softmax ignores it and its true gradient is zero; the hook also removes
    the rounding noise AdamW would otherwise turn into ±lr steps."""
    for m in model.modules():
        qkv = getattr(m, "qkv", None)
        if isinstance(qkv, nn.Linear) and qkv.bias is not None:
            d = qkv.out_features // 3
            with torch.no_grad():
                qkv.bias[d : 2 * d] = 0
            qkv.bias.register_hook(
                lambda g, d=d: torch.cat([g[:d], torch.zeros_like(g[d : 2 * d]), g[2 * d :]])
            )


def _ln(dim: int, **kwargs) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6, **kwargs)  # eps 1e-6 as in `models_mae.py`
