"""Gaussian diffusion as DiT trains and samples it (Peebles & Xie, "Scalable Diffusion Models
with Transformers", ICCV 2023, Sec. 3.1; facebookresearch/DiT `diffusion/__init__.py`,
`diffusion/gaussian_diffusion.py`, `diffusion/respace.py`, `diffusion/diffusion_utils.py`,
themselves from openai/guided-diffusion, Nichol & Dhariwal 2021).

- Schedule: 1000 steps, β linear from 1e-4 to 0.02 (scaled by 1000/T), ᾱ_t = Π(1 − β_s);
  every table is computed in float64 and gathered then cast to float32, as the official
  `_extract_into_tensor`.
- The model predicts ε and a variance interpolation v ∈ [−1, 1] per element ("learned
  range"): log σ² = ½(v + 1)·log β_t + ½(1 − v)·log β̃_t (β̃: the posterior variance,
  clipped at t = 0).
- Hybrid loss (Nichol & Dhariwal, Sec. 3.1): L_simple = mean‖ε − ε̂‖² plus L_vlb in bits
  per dimension, computed with the mean frozen (ε̂ detached) so L_vlb trains only the
  variance: KL(q(x_{t−1}|x_t, x_0) ‖ p(x_{t−1}|x_t)) for t > 0, the discretized Gaussian
  decoder NLL of x_0 (data in [−1, 1], 256 bins) at t = 0.
- Sampling: ancestral DDPM or DDIM (η = 0 by default) on a respaced process
  (`space_timesteps`: "250" keeps 250 evenly strided steps of the 1000; "ddim25" the DDIM
  paper's integer stride); the network is called with the original step indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

# model(x_t [N, C, H, W], t [N] original step indices) -> [N, 2C, H, W] (ε then v)
ModelFn = Callable[[Tensor, Tensor], Tensor]


def linear_betas(num_steps: int = 1000) -> Tensor:
    """float64 [T]: linspace(1e-4·s, 0.02·s, T) with s = 1000 / T (`get_named_beta_schedule`)."""
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


def ldm_linear_betas(num_steps: int = 1000, start: float = 0.0015, end: float = 0.0195) -> Tensor:
    """float64 [T]: linspace(√start, √end, T)² (latent-diffusion's "linear" schedule,
    CompVis/latent-diffusion `ldm/modules/diffusionmodules/util.py` `make_beta_schedule`;
    RCG's RDM, LTH14/rcg `rdm/models/diffusion/ddpm.py`)."""
    return torch.linspace(start**0.5, end**0.5, num_steps, dtype=torch.float64) ** 2


def space_timesteps(num_steps: int, section_counts: str | Iterable[int]) -> list[int]:
    """The original steps a respaced process keeps, sorted (`respace.py` `space_timesteps`).

    "250" (or [250]): 250 steps strided evenly over [0, T − 1], rounded; "10,15,20": the
    process cut in three equal sections strided to those counts; "ddimN": the integer stride
    whose range(0, T, stride) has exactly N steps (DDIM paper)."""
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[4:])
            for stride in range(1, num_steps):
                if len(range(0, num_steps, stride)) == want:
                    return list(range(0, num_steps, stride))
            raise ValueError(
                f"cannot take exactly {want} of {num_steps} steps with an integer stride"
            )
        section_counts = [int(x) for x in section_counts.split(",")]
    counts = list(section_counts)
    size_per, extra = divmod(num_steps, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        kept += [start + round(k * stride) for k in range(count)]  # Python round, as upstream
        start += size
    return sorted(set(kept))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) elementwise, in nats (`diffusion_utils.py` `normal_kl`)."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )  # fmt: skip


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))): the approximation upstream uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """log P(x) of data in [−1, 1] quantised to 256 bins of width 2/255 under N(mean, e^{2·log_scale}),
    elementwise in nats; the edge bins take the whole tail (`discretized_gaussian_log_likelihood`)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta)
    )


def mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


class GaussianDiffusion:
    """The tables of one (possibly respaced) process: ε-prediction, learned-range variance.

    `timestep_map[i]` is the original step the network sees for step i of this process
    (identity unless respaced)."""

    def __init__(self, betas: Tensor, timestep_map: list[int] | None = None) -> None:
        b = betas.to(torch.float64)
        if b.ndim != 1 or not bool(((b > 0) & (b <= 1)).all()):
            raise ValueError("betas must be a 1-D tensor in (0, 1]")
        self.num_timesteps = len(b)
        self.timestep_map = torch.tensor(timestep_map or list(range(len(b))), dtype=torch.long)
        self.betas = b
        ab = torch.cumprod(1.0 - b, dim=0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        self.alphas_cumprod, self.alphas_cumprod_prev = ab, ab_prev
        self.sqrt_alphas_cumprod = ab.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - ab).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / ab).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / ab - 1.0).sqrt()
        var = b * (1.0 - ab_prev) / (1.0 - ab)  # β̃_t, 0 at t = 0
        self.posterior_variance = var
        # log β̃ with t = 0 replaced by t = 1 (β̃_0 = 0)
        self.posterior_log_variance_clipped = torch.log(torch.cat([var[1:2], var[1:]]))
        self.posterior_mean_coef1 = b * ab_prev.sqrt() / (1.0 - ab)
        self.posterior_mean_coef2 = (1.0 - ab_prev) * (1.0 - b).sqrt() / (1.0 - ab)
        self.log_betas = torch.log(b)

    @classmethod
    def linear(
        cls, num_steps: int = 1000, respacing: str | Iterable[int] = ""
    ) -> GaussianDiffusion:
        """The DiT process (`create_diffusion`), respaced to `respacing` ("" = every step):
        the kept steps' ᾱ define new betas β'_i = 1 − ᾱ_{k_i}/ᾱ_{k_{i−1}} (`SpacedDiffusion`)."""
        return cls.respaced(linear_betas(num_steps), respacing)

    @classmethod
    def respaced(cls, betas: Tensor, respacing: str | Iterable[int] = "") -> GaussianDiffusion:
        """The process of `betas` respaced to `respacing` ("" = every step; the forms of
        `space_timesteps`), as `SpacedDiffusion`."""
        if not respacing:
            return cls(betas)
        num_steps = len(betas)
        keep = space_timesteps(num_steps, respacing)
        ab = torch.cumprod(1.0 - betas, dim=0)
        last, new = 1.0, []
        for k in keep:
            new.append(1.0 - ab[k].item() / last)
            last = ab[k].item()
        return cls(torch.tensor(new, dtype=torch.float64), keep)

    @staticmethod
    def _at(table: Tensor, t: Tensor, ndim: int) -> Tensor:
        """table[t] as float32, shaped [N, 1, ...] to broadcast (`_extract_into_tensor`)."""
        v = table.to(t.device)[t].float()
        return v.view(-1, *([1] * (ndim - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε."""
        return (self._at(self.sqrt_alphas_cumprod, t, x0.ndim) * x0
                + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)  # fmt: skip

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clipped log-variance of q(x_{t−1} | x_t, x_0)."""
        n = x0.ndim
        mean = (self._at(self.posterior_mean_coef1, t, n) * x0
                + self._at(self.posterior_mean_coef2, t, n) * xt)  # fmt: skip
        return mean, self._at(self.posterior_log_variance_clipped, t, n)

    def p_mean_variance(
        self, out: Tensor, xt: Tensor, t: Tensor, clip: tuple[Tensor, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """p(x_{t−1} | x_t) from the network's output [N, 2C, ...] = (ε̂, v): mean, log-variance
        and the predicted x_0 (clamped to `clip` = (low, high) if given; upstream clamps to
        [−1, 1] when `clip_denoised`)."""
        c = xt.shape[1]
        eps, v = out.float().split(c, dim=1)
        n = xt.ndim
        frac = (v + 1) / 2
        log_var = (frac * self._at(self.log_betas, t, n)
                   + (1 - frac) * self._at(self.posterior_log_variance_clipped, t, n))  # fmt: skip
        x0 = (self._at(self.sqrt_recip_alphas_cumprod, t, n) * xt
              - self._at(self.sqrt_recipm1_alphas_cumprod, t, n) * eps)  # fmt: skip
        if clip is not None:
            x0 = torch.maximum(torch.minimum(x0, clip[1]), clip[0])
        mean, _ = self.q_posterior(x0, xt, t)
        return {"mean": mean, "log_variance": log_var, "pred_xstart": x0, "eps": eps}

    def vb_terms_bpd(self, out: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """L_vlb per sample in bits per dimension [N]: the KL of the true posterior to the
        model's for t > 0, the decoder NLL of x_0 at t = 0 (`_vb_terms_bpd`, no clipping)."""
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        p = self.p_mean_variance(out, xt, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, p["mean"], p["log_variance"]))
        nll = -discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"])
        nll = mean_flat(nll)
        return torch.where(t == 0, nll, kl) / math.log(2.0)

    def training_losses(
        self, model: ModelFn, x0: Tensor, t: Tensor, noise: Tensor
    ) -> dict[str, Tensor]:
        """Per-sample hybrid loss [N]: mse (L_simple on ε) + vb (L_vlb with the mean frozen,
        so it trains only the variance; `training_losses`, loss type MSE + learned range)."""
        xt = self.q_sample(x0, t, noise)
        out = model(xt, self.timestep_map.to(t.device)[t]).float()
        c = x0.shape[1]
        if out.shape[1] != 2 * c:
            raise ValueError(f"the model must output 2×{c} channels (ε, v), got {out.shape[1]}")
        eps, v = out.split(c, dim=1)
        vb = self.vb_terms_bpd(torch.cat([eps.detach(), v], dim=1), x0, xt, t)
        mse = mean_flat((noise - eps) ** 2)
        return {"loss": mse + vb, "mse": mse, "vb": vb}

    @torch.no_grad()
    def sample(
        self,
        model: ModelFn,
        noise: Tensor,
        *,
        ddim: bool = False,
        eta: float = 0.0,
        clip: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Tensor:
        """x_0 from x_T = `noise`, stepping t = T' − 1 … 0 of this process: ancestral DDPM
        (x_{t−1} = μ + σ·z, no noise at t = 0; `p_sample`) or DDIM (`ddim_sample`, Song et al.
        Eq. 12: x_{t−1} = √ᾱ_{t−1}·x̂_0 + √(1 − ᾱ_{t−1} − σ²)·ε̂ + σ·z with
        σ = η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}))."""
        x = noise
        steps = range(self.num_timesteps - 1, -1, -1)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc="sample", unit="step")
        tmap = self.timestep_map.to(x.device)
        for i in steps:
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            p = self.p_mean_variance(model(x, tmap[t]), x, t, clip)
            z = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
            nonzero = float(i != 0)
            if not ddim:
                x = p["mean"] + nonzero * torch.exp(0.5 * p["log_variance"]) * z
                continue
            n = x.ndim
            ab, ab_prev = (
                self._at(self.alphas_cumprod, t, n),
                self._at(self.alphas_cumprod_prev, t, n),
            )
            # ε re-derived from the (clipped) x̂_0, as upstream
            eps = (self._at(self.sqrt_recip_alphas_cumprod, t, n) * x - p["pred_xstart"]) / (
                self._at(self.sqrt_recipm1_alphas_cumprod, t, n)
            )
            sigma = eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
            mean = p["pred_xstart"] * ab_prev.sqrt() + (1 - ab_prev - sigma**2).sqrt() * eps
            x = mean + nonzero * sigma * z
        return x
