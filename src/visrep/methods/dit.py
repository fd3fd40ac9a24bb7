"""DiT: Scalable Diffusion Models with Transformers (Peebles & Xie, ICCV 2023).

Follows the paper, Sec. 3.2 (facebookresearch/DiT `models.py`, `train.py`, `sample.py`;
facebookresearch/DiT `models.py`). A ViT denoiser on patch tokens (fixed MAE-layout sin-cos table, no cls)
conditioned on c = t_emb + y_emb through adaLN-Zero: each block regresses
(shift, scale, gate) × 2 from c by SiLU → Linear(D, 6D), zero-initialised, so every block
starts as the identity and the network outputs exactly 0. The last layer modulates a
non-affine LayerNorm and maps each token to p·p·2C values (ε and the variance
interpolation v, unpatchified in MAE's (u, v, c) order). Training: uniform t, the hybrid
loss L_simple + L_vlb (`visrep.parts.diffusion`), labels dropped to the null class with
p = 0.1, a model EMA (0.9999) used for sampling, with classifier-free guidance
(`forward_with_cfg`, guidance on the first 3 ε channels as upstream).

The token path is the run's timm ViT (`backbone`, what `visrep export` writes): its patch
embedding, position table and each block's attention and MLP (tanh GELU, as DiT) are
DiT's; its LayerNorms are held at weight 1, bias 0 (frozen: DiT's norms have no affine),
its cls token is unused and frozen. The exported backbone is this trunk without
conditioning (every shift and scale 0, every gate 1), not a representation the paper
evaluates. Pixel space by default (data in [−1, 1]: data.mean = data.std = 0.5); with
`method.latent` the paper's VAE latents (a user-supplied diffusers AutoencoderKL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visrep.backbones.vit import VIT_ARCHS, ViT
from visrep.method_configs import DiTConfig
from visrep.parts.diffusion import GaussianDiffusion
from visrep.parts.ema import ema_update, frozen_copy
from visrep.parts.patches import unpatchify

FREQ_DIM = 256  # the timestep sinusoid's size (`TimestepEmbedder.frequency_embedding_size`)


def timestep_embedding(t: Tensor, dim: int = FREQ_DIM, max_period: float = 10000.0) -> Tensor:
    """[N] -> [N, dim]: [cos(t·ω), sin(t·ω)] (cos half first), ω_k = exp(−ln(max_period)·k/half)
    in float32, as `TimestepEmbedder.timestep_embedding` (GLIDE's)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x·(1 + scale) + shift, per sample ([N, L, D] with [N, D])."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTNet(nn.Module):
    """The denoiser: (x_t [N, C, H, W], t [N], y [N] or None) -> (ε, v) [N, 2C, H, W]."""

    def __init__(self, cfg: DiTConfig, backbone: ViT) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        vit = backbone.model
        d, p, c = backbone.embed_dim, backbone.patch_size, backbone.in_chans
        self.in_chans, self.patch, self.grid = c, p, backbone.grid_size
        for blk in vit.blocks:  # DiT's MLP: tanh-approximate GELU (export records it)
            blk.mlp.act = nn.GELU(approximate="tanh")
        backbone.timm_kwargs["act_layer"] = "gelu_tanh"
        self.t_embedder = nn.Sequential(nn.Linear(FREQ_DIM, d), nn.SiLU(), nn.Linear(d, d))
        # num_classes + 1 rows: the last is the null class of classifier-free guidance
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, d) if cfg.num_classes else None
        self.adaLN = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d)) for _ in range(len(vit.blocks))
        )
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final_linear = nn.Linear(d, p * p * 2 * c)
        self._init_weights()

    def _init_weights(self) -> None:
        """`models.py` `initialize_weights`: xavier-uniform Linears with zero bias, the patch
        embedding like a Linear, labels N(0, 0.02), timestep MLP weights N(0, 0.02), and
        adaLN-Zero: every modulation Linear and the output Linear zero. The ViT's norms are
        frozen at (1, 0), i.e. DiT's LayerNorm without affine (eps 1e-6, timm's ViT)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        vit = self.backbone.model
        proj = vit.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder[2].weight, std=0.02)
        for mod in [*self.adaLN, self.final_adaLN]:
            nn.init.zeros_(mod[-1].weight)
            nn.init.zeros_(mod[-1].bias)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)
        for norm in [*(n for b in vit.blocks for n in (b.norm1, b.norm2)), vit.norm]:
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)
            norm.requires_grad_(False)
        vit.cls_token.requires_grad_(False)  # unused by DiT
        if not isinstance(vit.pos_embed, nn.Parameter) or vit.pos_embed.requires_grad:
            raise ValueError(
                "DiT needs the fixed sin-cos position table (backbone.pos_embed=sincos)"
            )

    def embed_labels(self, y: Tensor, drop: Tensor | None = None) -> Tensor:
        """`LabelEmbedder`: labels where `drop` is true become the null class num_classes."""
        if drop is not None:
            y = torch.where(drop, torch.full_like(y, self.cfg.num_classes), y)
        return self.y_embedder(y)

    def condition(self, t: Tensor, y: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """c = t_emb + y_emb [N, D] (t_emb alone when unconditional)."""
        c = self.t_embedder(timestep_embedding(t))
        if self.y_embedder is not None:
            if y is None:
                raise ValueError("a class-conditional DiT needs labels (y)")
            c = c + self.embed_labels(y, drop)
        return c

    def block(self, i: int, h: Tensor, c: Tensor) -> Tensor:
        """DiT block i with adaLN-Zero (`DiTBlock`): [N, T, D] tokens, [N, D] condition."""
        blk = self.backbone.model.blocks[i]
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN[i](c).chunk(6, dim=1)
        h = h + gate1.unsqueeze(1) * blk.attn(modulate(blk.norm1(h), shift1, scale1))
        return h + gate2.unsqueeze(1) * blk.mlp(modulate(blk.norm2(h), shift2, scale2))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        drop: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        """`cond` [N, D], if given, is added to c (RCG: the embedded representation)."""
        vit = self.backbone.model
        h = vit.patch_embed(x) + vit.pos_embed[:, 1:]  # [N, T, D], T = (H/p)·(W/p)
        c = self.condition(t, y, drop)  # [N, D]
        if cond is not None:
            c = c + cond
        for i in range(len(self.adaLN)):
            h = self.block(i, h, c)
        shift, scale = self.final_adaLN(c).chunk(2, dim=1)
        out = self.final_linear(modulate(vit.norm(h), shift, scale))  # [N, T, p·p·2C]
        return unpatchify(out, self.patch, 2 * self.in_chans, self.grid)  # [N, 2C, H, W]

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """x_T for n samples [n, C, H, W], drawn on the CPU (reproducible), on the net's device."""
        c, (gh, gw), p = self.in_chans, self.grid, self.patch
        z = torch.randn(n, c, gh * p, gw * p, generator=generator)
        return z.to(next(self.parameters()).device)

    def forward_with_cfg(
        self, x: Tensor, t: Tensor, y: Tensor | None, scale: float, cond: Tensor | None = None
    ) -> Tensor:
        """Classifier-free guidance (`forward_with_cfg`): x, t, y (or `cond`) hold the batch
        twice, labels then null labels (RCG: representations then the fake latent); the first
        half of x is used for both. On the first k ε channels
        (k = cfg_channels, upstream 3; 0 = all C) ε = ε_u + s·(ε_c − ε_u), both halves; the
        rest (remaining ε channels, the variance) is each half's own output."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y, cond=cond)
        k = min(self.cfg.cfg_channels or self.in_chans, self.in_chans)
        eps, rest = out[:, :k], out[:, k:]
        cond, uncond = eps.split(len(eps) // 2, dim=0)
        guided = uncond + scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)


@dataclass(frozen=True)
class _CropFlipOnly:
    """The labelled-batch augmentation knobs `visrep.data.labelled` reads, all off: DiT
    trains on crop + flip only (`train.py`: centre crop, random flip)."""

    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1
    color_jitter: float = 0.0
    auto_augment: str = ""


class DiT(nn.Module):
    """The method: `net` (trained), `ema` (its EMA, sampled from), the diffusion process."""

    def __init__(self, cfg: DiTConfig, backbone: ViT) -> None:
        super().__init__()
        if not isinstance(backbone, ViT):
            raise ValueError("DiT needs a ViT backbone (backbone.name=vit_*)")
        if cfg.num_classes < 0 or not 0 <= cfg.class_dropout < 1:
            raise ValueError("method.num_classes must be >= 0 and method.class_dropout in [0, 1)")
        if cfg.latent and not cfg.vae:
            raise ValueError(
                "method.latent=true diffuses VAE latents and needs method.vae=PATH, a diffusers "
                "AutoencoderKL folder (the paper's stabilityai/sd-vae-ft-ema); it is not "
                "available offline. Train in pixel space with method.latent=false"
            )
        if cfg.latent:  # the token path runs on latents: 4 channels at 1/8 of the image side
            backbone = _latent_vit(backbone)
        self.cfg = cfg
        self.net = DiTNet(cfg, backbone)
        self.ema = frozen_copy(self.net) if cfg.ema_decay > 0 else None
        self.diffusion = GaussianDiffusion.linear(cfg.diffusion_steps)
        self._vae: list[Any] = []  # loaded on first use, kept out of the state dict

    @property
    def backbone(self) -> ViT:
        return self.net.backbone

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def on_step_end(self, progress: float) -> None:
        """EMA after every optimizer step (`train.py` `update_ema`)."""
        if self.ema is not None:
            ema_update(self.ema, self.net, self.cfg.ema_decay)

    def train_data(self, cfg: Any, *, rank: int, world_size: int, device: torch.device) -> Any:
        """Images with labels (the labelled train split of `eval.dataset`, as fine-tuning
        reads it: Fashion-MNIST, or a folder with train/<class>/; `data.limit` images) when
        class-conditional; the ordinary image batches of `data.dataset` when not."""
        from visrep.config import replace

        if not self.cfg.num_classes:
            from visrep.data.pipeline import build_train_data

            return build_train_data(cfg.data, cfg.optim.batch_size, seed=cfg.run.seed, rank=rank,
                                    world_size=world_size, device=device, text=False)  # fmt: skip
        from visrep.data.labelled import train_batches

        if not cfg.eval.dataset:
            raise ValueError("a class-conditional DiT reads its labels from eval.dataset "
                             "(fashion_mnist, or a folder with train/<class>/); set it, or "
                             "method.num_classes=0 for an unconditional DiT")  # fmt: skip
        lab = replace(cfg, method=_CropFlipOnly(), **{"eval.limit_train": cfg.data.limit})
        data, k = train_batches(lab, rank=rank, world_size=world_size, device=device)
        if k > self.cfg.num_classes:
            raise ValueError(f"{cfg.eval.dataset} has {k} classes, method.num_classes is "
                             f"{self.cfg.num_classes}")  # fmt: skip
        return data

    # --- latent space (the paper's setting)
    def vae(self) -> Any:
        if not self._vae:
            try:
                from diffusers.models import AutoencoderKL
            except ImportError as e:
                raise ImportError("latent DiT needs diffusers (pip install diffusers)") from e
            self._vae.append(
                AutoencoderKL.from_pretrained(self.cfg.vae).eval().requires_grad_(False)
            )
        return self._vae[0]

    @torch.no_grad()
    def to_model_space(self, images: Tensor) -> Tensor:
        """Pixels in [−1, 1] -> what is diffused (themselves, or VAE posterior sample × 0.18215)."""
        if not self.cfg.latent:
            return images
        vae = self.vae().to(images.device)
        return vae.encode(images).latent_dist.sample() * self.cfg.latent_scale

    @torch.no_grad()
    def to_pixels(self, x: Tensor) -> Tensor:
        if not self.cfg.latent:
            return x
        return self.vae().to(x.device).decode(x / self.cfg.latent_scale).sample

    def forward(
        self,
        batch: dict,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Hybrid loss on a batch; t [N] (uniform over the T steps), noise and the label-drop
        mask [N] (p = class_dropout) are drawn here unless given."""
        x0 = self.to_model_space(batch["images"])  # [N, C, H, W]
        n = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.diffusion.num_timesteps, (n,), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        y = batch.get("labels") if self.cfg.num_classes else None
        if y is not None and drop is None and self.training:
            drop = torch.rand(n, device=x0.device) < self.cfg.class_dropout
        terms = self.diffusion.training_losses(
            lambda xt, tt: self.net(xt, tt, y, drop), x0, t, noise
        )
        return {k: v.mean() for k, v in terms.items()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        cfg_scale: float = 1.0,
        steps: int | str = 250,
        ddim: bool = False,
        eta: float = 0.0,
        use_ema: bool = True,
        clip: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Tensor:
        """n samples in model space [n, C, H, W] (`sample.py`): the process respaced to `steps`
        ("250", or `space_timesteps`' forms), DDPM or DDIM, guidance `cfg_scale` on `labels`
        [n] (scale 1: the conditional model alone); pixel predictions of x_0 clamped to
        `clip` = (low, high) [1, C, 1, 1]."""
        net = self.ema if use_ema and self.ema is not None else self.net
        net.eval()
        diffusion = GaussianDiffusion.linear(self.cfg.diffusion_steps, str(steps))
        dev = next(net.parameters()).device
        z = net.noise(n, generator)
        if self.cfg.num_classes and labels is None:
            raise ValueError("a class-conditional DiT samples given labels")
        if not self.cfg.num_classes or cfg_scale == 1.0:
            y = labels.to(dev) if self.cfg.num_classes else None
            fn = lambda x, t: net(x, t, y)  # noqa: E731
        else:
            y = torch.cat([labels, torch.full_like(labels, self.cfg.num_classes)]).to(dev)
            z = torch.cat([z, z])
            fn = lambda x, t: net.forward_with_cfg(x, t, y, cfg_scale)  # noqa: E731
        if clip is not None and not self.cfg.latent:  # latents are not clamped (sample.py)
            clip = (clip[0].to(dev), clip[1].to(dev))
        else:
            clip = None
        x = diffusion.sample(fn, z, ddim=ddim, eta=eta, clip=clip, generator=generator,
                             progress=progress)  # fmt: skip
        return x[:n]  # guided: the first half (the null-class half is its copy)


def _latent_vit(backbone: ViT) -> ViT:
    """The same ViT for latents: 4 channels at 1/8 of the image side."""
    arch = next(k for k, v in VIT_ARCHS.items() if v == backbone.timm_name)
    kw = backbone.timm_kwargs
    if backbone.img_size % 8 or (backbone.img_size // 8) % backbone.patch_size:
        raise ValueError(f"latent DiT: data.img_size/8 = {backbone.img_size / 8:g} must be a "
                         f"multiple of backbone.patch_size={backbone.patch_size}")  # fmt: skip
    return ViT(arch, img_size=backbone.img_size // 8, patch_size=backbone.patch_size, in_chans=4,
               pool=kw["global_pool"], depth=kw.get("depth", 0), num_heads=kw.get("num_heads", 0))  # fmt: skip
