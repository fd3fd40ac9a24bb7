"""RCG: Return of Unconditional Generation: A Self-supervised Representation Generation
Method (Li, Katabi & He, NeurIPS 2024; LTH14/rcg).

Unconditional generation in three parts (paper Sec. 3, Fig. 2):

1. A frozen self-supervised encoder with its projection head maps an image to a
   representation, standardised per sample across its dimensions, (r − mean)/std with the
   unbiased std (`rdm/models/diffusion/ddpm.py` `get_input`; `engine_dit.py`).
2. The representation diffusion model (RDM): a DDPM on that vector with the latent-diffusion
   "linear" schedule, predicting x₀ under a plain L2 loss averaged over dimensions; the
   denoiser is `SimpleMLP` (`rdm/modules/diffusionmodules/latentmlp.py`). Sampling: DDIM,
   η = 1 (RCG's `rdm_eta`).
3. A pixel generator conditioned on the representation: here RCG's DiT variant
   (`pixel_generator/dit/models.py`), c = t_emb + Linear(rep); during training a rep is
   replaced by a learned `fake_latent` (normal 0.02) with p = 0.1, and guidance contrasts the
   sampled rep with the fake latent (`engine_dit.py` `gen_img`).

One run trains both stages: the RDM for `method.rdm_steps` optimizer steps, then the pixel
generator (they are independent: the generator learns from the encoder's representation of
the real image, not from RDM samples). `steps_done` is a buffer of the checkpoint, so a
resumed run continues in the right stage. Only the active stage's parameters get
gradients, and its EMA is updated. The generator is trained in pixel space (data in
[−1, 1]), not on the paper's VAE latents (not available offline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from visrep.backbones.vit import ViT
from visrep.data.preprocess import make_preprocess
from visrep.method_configs import DiTConfig, RCGConfig
from visrep.methods.dit import DiTNet, timestep_embedding
from visrep.methods.mocov3 import MoCoV3
from visrep.methods.simclr import SimCLR
from visrep.parts.diffusion import GaussianDiffusion, ldm_linear_betas, linear_betas
from visrep.parts.ema import ema_update, frozen_copy

# the projection head RCG puts on the encoder: MoCo v3's base-encoder projector (RCG loads
# `base_encoder` with its head, `pretrained_enc/models_pretrained_enc.py`), SimCLR's head
HEADS: dict[type, str] = {MoCoV3: "projector", SimCLR: "head"}


def standardize(rep: Tensor) -> Tensor:
    """[N, D] -> per-sample (rep − mean_d) / std_d, unbiased std (`ddpm.py` `get_input`)."""
    return (rep - rep.mean(dim=1, keepdim=True)) / rep.std(dim=1, keepdim=True)


def projection_encoder(method: nn.Module) -> nn.Sequential:
    """backbone → projection head of a trained MoCo v3 / SimCLR model, frozen, in eval mode."""
    head = HEADS.get(type(method))
    if head is None:
        raise ValueError(f"method.encoder: a {type(method).__name__} run has no projection "
                         f"head RCG can use; give a MoCo v3 or SimCLR run")  # fmt: skip
    enc = nn.Sequential(method.backbone, getattr(method, head))
    return enc.eval().requires_grad_(False)


@dataclass(frozen=True)
class EncoderInput:
    """Generator pixels (normalised by `mean`/`std`) -> the encoder's input: back to [0, 1],
    then the encoder run's resize, channels and normalisation (RCG: ImageNet statistics,
    bicubic to 224)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    enc_size: int
    enc_channels: int
    enc_mean: tuple[float, ...]
    enc_std: tuple[float, ...]

    def __call__(self, x: Tensor) -> Tensor:
        m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        to_enc = make_preprocess(self.enc_size, self.enc_channels, self.enc_mean, self.enc_std)
        return to_enc((x * s + m) * 255.0)


class ResBlock(nn.Module):
    """`latentmlp.py` `ResBlock`: x + out(in(x) + emb(t)), the output Linear zero-initialised."""

    def __init__(self, width: int, time_dim: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, width))
        self.out_layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Linear(width, width))  # fmt: skip
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return x + self.out_layers(self.in_layers(x) + self.emb_layers(emb))


class SimpleMLP(nn.Module):
    """The RDM denoiser (`latentmlp.py` `SimpleMLP`): (x_t [N, d], t [N]) -> x̂₀ [N, d]."""

    def __init__(self, dim: int, width: int, depth: int, time_dim: int) -> None:
        super().__init__()
        self.width = width
        self.time_embed = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(),
                                        nn.Linear(time_dim, time_dim))  # fmt: skip
        self.input_proj = nn.Linear(dim, width)
        self.res_blocks = nn.ModuleList(ResBlock(width, time_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width, eps=1e-6), nn.SiLU(), nn.Linear(width, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.width))  # [N, time_dim], [cos, sin]
        h = self.input_proj(x)  # [N, width]
        for block in self.res_blocks:
            h = block(h, emb)
        return self.out(h)  # [N, d]


class RepDiT(nn.Module):
    """RCG's DiT: c = t_emb + rep_embedder(rep), rep -> fake_latent where `drop` is true."""

    def __init__(self, cfg: RCGConfig, backbone: ViT, rep_dim: int) -> None:
        super().__init__()
        dit = DiTConfig(num_classes=0, diffusion_steps=cfg.diffusion_steps,
                        cfg_channels=cfg.cfg_channels)  # fmt: skip
        self.net = DiTNet(dit, backbone)
        self.rep_embedder = nn.Linear(rep_dim, backbone.embed_dim)
        nn.init.xavier_uniform_(self.rep_embedder.weight)
        nn.init.zeros_(self.rep_embedder.bias)
        self.fake_latent = nn.Parameter(torch.randn(1, rep_dim) * 0.02)

    def embed(self, rep: Tensor, drop: Tensor | None = None) -> Tensor:
        if drop is not None:
            rep = torch.where(drop[:, None], self.fake_latent.expand_as(rep), rep)
        return self.rep_embedder(rep)  # [N, D]

    def forward(self, x: Tensor, t: Tensor, rep: Tensor, drop: Tensor | None = None) -> Tensor:
        return self.net(x, t, cond=self.embed(rep, drop))

    def forward_with_cfg(self, x: Tensor, t: Tensor, rep: Tensor, scale: float) -> Tensor:
        """x and rep hold the batch twice: representations, then the fake latent."""
        return self.net.forward_with_cfg(x, t, None, scale, cond=self.embed(rep))


class RCG(nn.Module):
    """The method: frozen `encoder`, `rdm` (+ `rdm_ema`), `gen` (+ `gen_ema`), two stages."""

    def __init__(
        self,
        cfg: RCGConfig,
        backbone: ViT,
        encoder: nn.Module | None = None,
        encoder_input: Callable[[Tensor], Tensor] | None = None,
        rep_dim: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, ViT):
            raise ValueError("RCG's pixel generator is a DiT: it needs a ViT backbone")
        if encoder is None or encoder_input is None or rep_dim < 1:
            raise ValueError("RCG needs a frozen encoder: set method.encoder=RUN, a MoCo v3 or "
                             "SimCLR run folder (visrep train mocov3_fmnist)")  # fmt: skip
        if not 0 <= cfg.rep_dropout < 1 or cfg.rdm_steps < 0:
            raise ValueError("method.rep_dropout must be in [0, 1) and method.rdm_steps >= 0")
        self.cfg, self.encoder_input, self.num_classes = cfg, encoder_input, 0
        self.encoder = encoder.eval().requires_grad_(False)
        self.rdm = SimpleMLP(rep_dim, cfg.rdm_width, cfg.rdm_depth, cfg.rdm_time_dim)
        self.gen = RepDiT(cfg, backbone, rep_dim)
        self.rdm_ema = frozen_copy(self.rdm) if cfg.ema_decay > 0 else None
        self.gen_ema = frozen_copy(self.gen) if cfg.ema_decay > 0 else None
        self.rdm_diffusion = GaussianDiffusion(ldm_linear_betas(cfg.rdm_diffusion_steps))
        self.diffusion = GaussianDiffusion(linear_betas(cfg.diffusion_steps))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        # loop param groups: the RDM at optim.lr × rdm_lr_scale with weight decay, the
        # generator without (DiT)
        self.no_decay_names = {n for n, _ in self.named_parameters() if n.startswith("gen.")}

    @property
    def backbone(self) -> ViT:
        return self.gen.net.backbone

    @property
    def stage(self) -> int:
        """0: the RDM trains; 1: the pixel generator trains."""
        return int(int(self.steps_done) >= self.cfg.rdm_steps)

    def lr_scale(self, name: str) -> float:
        return self.cfg.rdm_lr_scale if name.startswith("rdm.") else 1.0

    def train(self, mode: bool = True) -> RCG:
        super().train(mode)
        self.encoder.eval()  # frozen, BN statistics included
        return self

    def on_step_end(self, progress: float) -> None:
        """Count the optimizer step; EMA of the model that just stepped."""
        online, ema = (self.rdm, self.rdm_ema) if self.stage == 0 else (self.gen, self.gen_ema)
        if ema is not None:
            ema_update(ema, online, self.cfg.ema_decay)
        self.steps_done += 1

    @torch.no_grad()
    def represent(self, images: Tensor) -> Tensor:
        """Generator pixels [N, C, H, W] -> standardised representations [N, d]."""
        return standardize(self.encoder(self.encoder_input(images)).float())

    def forward(
        self,
        batch: dict,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The active stage's loss; t, noise and the rep-drop mask [N] are drawn unless given."""
        x = batch["images"]  # [N, C, H, W], normalised pixels
        rep = self.represent(x)  # [N, d]
        stage = self.stage
        target = rep if stage == 0 else x
        n, diffusion = len(x), self.rdm_diffusion if stage == 0 else self.diffusion
        if t is None:
            t = torch.randint(0, diffusion.num_timesteps, (n,), device=x.device)
        if noise is None:
            noise = torch.randn_like(target)
        if stage == 0:  # x₀-parameterisation, L2 averaged over dims (logvar 0, no VLB)
            x0_hat = self.rdm(diffusion.q_sample(rep, t, noise), t)
            loss = ((rep - x0_hat.float()) ** 2).mean()
            return {"loss": loss, "rdm_loss": loss.detach(), "stage": torch.tensor(0.0)}
        if drop is None and self.training:
            drop = torch.rand(n, device=x.device) < self.cfg.rep_dropout
        terms = diffusion.training_losses(lambda xt, tt: self.gen(xt, tt, rep, drop), x, t, noise)
        return {k: v.mean() for k, v in terms.items()} | {"stage": torch.tensor(1.0)}

    def x0_to_model_output(self, net: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
        """The RDM as `GaussianDiffusion.sample` calls it: x̂₀ -> (ε̂, v = −1: the posterior
        variance, LDM's fixed small variance; DDIM does not read it)."""
        d = self.rdm_diffusion

        def fn(x: Tensor, t: Tensor) -> Tensor:
            x0 = net(x, t).float()
            eps = (d._at(d.sqrt_recip_alphas_cumprod, t, 2) * x - x0) / d._at(
                d.sqrt_recipm1_alphas_cumprod, t, 2
            )
            return torch.cat([eps, -torch.ones_like(eps)], dim=1)

        return fn

    @torch.no_grad()
    def sample_reps(
        self, n: int, *, use_ema: bool = True, generator: torch.Generator | None = None
    ) -> Tensor:
        """n representations [n, d] from the RDM: DDIM with `rdm_sample_steps`, η `rdm_eta`."""
        net = self.rdm_ema if use_ema and self.rdm_ema is not None else self.rdm
        net.eval()
        steps = self.cfg.rdm_sample_steps
        process = GaussianDiffusion.respaced(
            ldm_linear_betas(self.cfg.rdm_diffusion_steps), f"ddim{steps}"
        )
        dev = next(net.parameters()).device
        z = torch.randn(n, self.rdm.out[-1].out_features, generator=generator).to(dev)
        return process.sample(self.x0_to_model_output(net), z, ddim=True, eta=self.cfg.rdm_eta,
                              generator=generator)  # fmt: skip

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
        reps: Tensor | None = None,
    ) -> Tensor:
        """n images [n, C, H, W]: representations from the RDM (or `reps`), then the pixel
        generator, guided by `cfg_scale` against the fake latent (1: the conditional model)."""
        if labels is not None:
            raise ValueError("RCG is unconditional: it takes no labels")
        if reps is None:
            reps = self.sample_reps(n, use_ema=use_ema, generator=generator)
        gen = self.gen_ema if use_ema and self.gen_ema is not None else self.gen
        gen.eval()
        z = gen.net.noise(n, generator)
        dev = z.device
        reps = reps.to(dev)
        if cfg_scale == 1.0:
            fn = lambda x, t: gen(x, t, reps)  # noqa: E731
        else:
            reps = torch.cat([reps, gen.fake_latent.expand_as(reps)])
            z = torch.cat([z, z])
            fn = lambda x, t: gen.forward_with_cfg(x, t, reps, cfg_scale)  # noqa: E731
        process = GaussianDiffusion.linear(self.cfg.diffusion_steps, str(steps))
        clip = None if clip is None else (clip[0].to(dev), clip[1].to(dev))
        x = process.sample(fn, z, ddim=ddim, eta=eta, clip=clip, generator=generator,
                           progress=progress)  # fmt: skip
        return x[:n]

    def to_pixels(self, x: Tensor) -> Tensor:
        return x
