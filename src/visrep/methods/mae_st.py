"""MAE-ST: "Masked Autoencoders As Spatiotemporal Learners" (Feichtenhofer, Fan, Li, He,
NeurIPS 2022).

MAE on spacetime patches (paper Sec. 3; facebookresearch/mae_st `models_mae.py`,
`util/video_vit.py`). A clip [N, C, T, H, W] becomes T/t_patch × h × w
tokens (order t, h, w; `backbones.video_vit.VideoViT`); 90% of them, drawn at random over
all of spacetime, are removed; the encoder sees the rest with their separable learned
position embeddings added *after* masking; a light decoder with its own separable table and
cls token predicts, for every token, the pixels of `t_pred = t_patch·pred_t_dim/T` target
frames; the loss is the MSE on removed tokens of the per-patch normalised pixels.

[PITFALL] Target frames are `linspace(0, T − 1, pred_t_dim)` truncated: [0, 2, 4, 6, 8, 10,
12, 15] for T = 16, pred_t_dim = 8, so the last time slot predicts frame 15, not 14
(`forward_loss`).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from visrep.backbones.video_vit import VideoViT
from visrep.method_configs import MAESTConfig
from visrep.parts.masking import Masking, random_masking
from visrep.parts.patches import normalize_patches


def target_frames(num_frames: int, pred_t_dim: int) -> Tensor:
    """Indices of the predicted frames: linspace(0, T − 1, pred_t_dim), truncated (.long())."""
    return torch.linspace(0, num_frames - 1, pred_t_dim).long()


def patchify_video(video: Tensor, patch: int, t_patch: int) -> Tensor:
    """[N, C, T, H, W] -> [N, (T/u)·h·w, u·p·p·C] with tokens in (t, h, w) order and, inside a
    token, (u, row, column, channel) with channel fastest (mae_st `patchify`)."""
    n, c, t, h, w = video.shape
    u, p = t_patch, patch
    x = video.reshape(n, c, t // u, u, h // p, p, w // p, p)
    x = torch.einsum("nctuhpwq->nthwupqc", x)
    return x.reshape(n, (t // u) * (h // p) * (w // p), u * p * p * c)


def unpatchify_video(patches: Tensor, patch: int, t_patch: int, channels: int,
                     grid: tuple[int, int, int]) -> Tensor:  # fmt: skip
    """Inverse of `patchify_video`: [N, T'·h·w, u·p·p·C] -> [N, C, T'·u, h·p, w·p]."""
    n, (t, h, w), u, p = patches.shape[0], grid, t_patch, patch
    x = patches.reshape(n, t, h, w, u, p, p, channels)
    x = torch.einsum("nthwupqc->nctuhpwq", x)
    return x.reshape(n, channels, t * u, h * p, w * p)


class MAEST(nn.Module):
    def __init__(self, cfg: MAESTConfig, backbone: VideoViT) -> None:
        super().__init__()
        if not isinstance(backbone, VideoViT):
            raise ValueError("MAE-ST needs a video ViT: set data.frames (e.g. 16) and "
                             "backbone.name=vit_*")  # fmt: skip
        frames, u = backbone.frames, backbone.t_patch_size
        if not 0 < cfg.pred_t_dim <= frames or (u * cfg.pred_t_dim) % frames:
            raise ValueError(
                f"method.pred_t_dim={cfg.pred_t_dim} must be in [1, data.frames={frames}] with "
                f"t_patch_size·pred_t_dim a multiple of data.frames (each token then predicts "
                f"t_patch_size·pred_t_dim/frames frames)"
            )
        self.cfg, self.backbone = cfg, backbone
        self.t_pred = u * cfg.pred_t_dim // frames
        t, h, w = backbone.grid
        d, dd = backbone.embed_dim, cfg.decoder_dim
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, dd))  # left at zero (official)
        self.decoder_pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, dd))
        self.decoder_pos_embed_temporal = nn.Parameter(torch.zeros(1, t, dd))
        self.decoder_pos_embed_class = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_blocks = nn.Sequential(
            *[Block(dd, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=_ln)
              for _ in range(cfg.decoder_depth)]
        )  # fmt: skip
        self.decoder_norm = _ln(dd)
        p, c = backbone.patch_size, backbone.in_chans
        self.decoder_pred = nn.Linear(dd, self.t_pred * p * p * c)
        self.register_buffer(
            "target_index", target_frames(frames, cfg.pred_t_dim), persistent=False
        )
        if cfg.encoder_mask_tokens:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self._init_weights()

    def _init_weights(self) -> None:
        """mae_st `initialize_weights` (trunc_init off): trunc-normal(0.02) cls token and
        position tables, xavier-uniform patch projection (as a Linear) and Linears, zero
        biases, unit LayerNorms, normal(0.02) mask token; the decoder cls token stays zero."""
        bb = self.backbone
        for p in (bb.cls_token, bb.pos_embed_spatial, bb.pos_embed_temporal, bb.pos_embed_class,
                  self.decoder_pos_embed_spatial, self.decoder_pos_embed_temporal,
                  self.decoder_pos_embed_class):  # fmt: skip
            nn.init.trunc_normal_(p, std=0.02)
        w = bb.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        if self.cfg.encoder_mask_tokens:
            nn.init.normal_(self.encoder_mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias) if m.bias is not None else None
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def mask(self, batch: int, device: torch.device, noise: Tensor | None = None) -> Masking:
        """Random masking over all L spacetime tokens: keep int(L·(1 − r)) (noise: [N, L],
        by default `torch.rand(N, L)` as mae_st `random_masking`)."""
        return random_masking(batch, self.backbone.num_patches, self.cfg.mask_ratio,
                              noise=noise, device=device)  # fmt: skip

    def decoder_pos_table(self) -> Tensor:
        """[1, 1 + L, Dd]: class position, then the separable spatial + temporal table."""
        t, h, w = self.backbone.grid
        table = self.decoder_pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(
            self.decoder_pos_embed_temporal, h * w, dim=1
        )
        return torch.cat([self.decoder_pos_embed_class, table], dim=1)

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Encoded kept tokens [N, K, D] (cls removed) -> prediction [N, L, t_pred·p·p·C]."""
        x = self.decoder_embed(latent)  # [N, K, Dd]
        n, num_tokens = x.shape[0], ids_restore.shape[1]
        if x.shape[1] < num_tokens:  # kept tokens only (not the encoder_mask_tokens baseline)
            fill = self.mask_token.expand(n, num_tokens - x.shape[1], -1)
            x = torch.cat([x, fill], dim=1)  # [N, L, Dd] in shuffled order
            x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([self.decoder_cls_token.expand(n, -1, -1), x], dim=1)
        x = x + self.decoder_pos_table()
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]

    def target(self, video: Tensor) -> Tensor:
        """Pixels of the target frames, per token [N, L, t_pred·p·p·C] (norm-pix: per patch,
        unbiased variance, eps 1e-6 inside the root)."""
        frames = video.index_select(2, self.target_index.to(video.device))
        target = patchify_video(frames, self.backbone.patch_size, self.t_pred)
        return normalize_patches(target) if self.cfg.norm_pix_loss else target

    def loss(self, video: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean over removed tokens of the per-token MSE: Σ m·ℓ / Σ m (`forward_loss`)."""
        per_token = ((pred - self.target(video)) ** 2).mean(dim=-1)  # [N, L]
        return (per_token * mask).sum() / mask.sum()

    def forward(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        video = batch["images"]  # [N, C, T, H, W], normalised clips
        masking = self.mask(video.shape[0], video.device, noise)
        if self.cfg.encoder_mask_tokens:  # baseline: every token, removed ones as [M]
            latent = self.backbone.encode(video, mask=masking.mask,
                                          mask_token=self.encoder_mask_token)[:, 1:]  # fmt: skip
        else:
            latent = self.backbone.encode(video, masking.ids_keep)[:, 1:]  # [N, K, D], no cls
        pred = self.decode(latent, masking.ids_restore)
        return {"loss": self.loss(video, pred, masking.mask), "pred": pred, "mask": masking.mask}

    def visualize(self, video: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """Clips of the target frames [N, C, pred_t_dim, H, W] for the report's frames strip
        (the panels of the image MAE's `visualize`; the MAE-ST paper's Fig. 2-3 and the GIFs of
        facebookresearch/mae_st `demo/` show the same): original | masked (removed
        tokens zeroed) | prediction (the decoder's output as is) | reconstruction (visible
        tokens pasted back over the prediction, un-normalised with each masked token's true
        statistics under `norm_pix_loss`)."""
        out = self.forward({"images": video}, noise=noise)
        pred, mask = out["pred"], out["mask"].unsqueeze(-1)  # [N, L, P], [N, L, 1]
        frames = video.index_select(2, self.target_index.to(video.device))
        bb = self.backbone
        patches = patchify_video(frames, bb.patch_size, self.t_pred)
        raw = pred
        if self.cfg.norm_pix_loss:
            pred = pred * (patches.var(-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred + patches.mean(-1, keepdim=True)
        back = lambda x: unpatchify_video(x, bb.patch_size, self.t_pred, bb.in_chans, bb.grid)  # noqa: E731
        return {"original": frames, "masked": back(patches * (1 - mask)), "prediction": back(raw),
                "reconstruction": back(patches * (1 - mask) + pred * mask)}  # fmt: skip


def _ln(dim: int, **kwargs) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6, **kwargs)  # eps 1e-6 as in mae_st `models_mae.py`
