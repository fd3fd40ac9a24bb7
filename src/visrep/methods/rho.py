"""The ρ-spatiotemporal study: ρMoCo, ρBYOL, ρSimCLR, ρSwAV (Feichtenhofer, Fan, Xiong,
Girshick, He, "A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning",
CVPR 2021, Sec. 3; facebookresearch/SlowFast `slowfast/models/contrastive.py`
`ContrastiveModel`, `contrastive_forward`, `contrastive_parameter_surgery`).

The positives of a video are its ρ clips (`data.clips`; ρ = 1: two augmentations of one
clip), each forwarded on its own (its own BatchNorm batch, as the official per-clip
forwards); every query clip is compared with the other ρ − 1 (`parts.rho_losses`).

How the official step is kept:
- "Sequential" mode (MoCo, BYOL, SimCLR) calls backward once per query clip; here the
  per-query losses are summed and back-propagated once, which accumulates the same
  gradient. The logged `loss_official` is Σ_k loss_k / (2ρ) as the official log; `loss`
  is what is optimised.
- Momentum encoders (MoCo, BYOL) are full backbone + projector copies updated on
  parameters only, m = 1 − (1 − m0)·½(1 + cos(π e/E)) (`parts.ema`), right after each
  optimizer step, i.e. before the next keys (the official update at the start of the next
  forward). Keys: one no-grad forward per clip, L2-normalised projector outputs.
- ρMoCo's queue is per process (keys are not gathered) and all ρ key sets of a step are
  enqueued after the losses; ρSimCLR gathers with gradient (`parts.losses.nt_xent`) and its
  inner clips' features serve both pairs they belong to (the official forwards them twice:
  the same values in train mode). Shuffle-BN is not done: it changes nothing on one process,
  and the projector of ρMoCo has no BatchNorm.
- Official "no update" windows (ρMoCo's first queue_len / batch steps, ρSwAV's prototypes
  in epoch 0) set gradients to None; here they are multiplied by zero (DDP needs every
  parameter in the graph), so weight decay still acts during them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visrep.method_configs import RhoBYOLConfig, RhoMoCoConfig, RhoSimCLRConfig, RhoSwAVConfig
from visrep.methods.views import clip_views
from visrep.parts.ema import cosine_momentum, ema_update, frozen_copy
from visrep.parts.heads import mlp
from visrep.parts.losses import nt_xent
from visrep.parts.rho_losses import l2_normalize, rho_byol_loss, rho_moco_loss, rho_swav_loss


def _others(items: list, k: int) -> list:
    return items[:k] + items[k + 1 :]


def _official_log(loss: Tensor, rho: int) -> Tensor:
    return loss.detach() / (2 * rho)  # "to have same loss as symm model" (contrastive_forward)


class _Momentum(nn.Module):
    """Shared by ρMoCo and ρBYOL: momentum copies of backbone + projector, their keys, the
    EMA after each step and a step counter (a buffer, so a resumed run keeps it)."""

    def _init_momentum(self, m0: float) -> None:
        self.momentum_backbone = frozen_copy(self.backbone)
        self.momentum_projector = frozen_copy(self.projector)
        self.momentum, self.m0 = m0, m0
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        # logged as a tensor: a float read in `forward` makes `run.compile` recompile per step
        self.register_buffer("momentum_logged", torch.tensor(m0), persistent=False)

    @torch.no_grad()
    def keys(self, views: list[Tensor]) -> list[Tensor]:
        """One no-grad forward per clip: normalised momentum projections [n, d]."""
        return [l2_normalize(self.momentum_projector(self.momentum_backbone(v))) for v in views]

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        self.steps_done += 1
        self.momentum = cosine_momentum(self.m0, progress)
        self.momentum_logged.fill_(self.momentum)
        ema_update(self.momentum_backbone, self.backbone, self.momentum)
        ema_update(self.momentum_projector, self.projector, self.momentum)


class RhoMoCo(_Momentum):
    def __init__(self, cfg: RhoMoCoConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg, self.backbone = cfg, backbone
        d, h, e = backbone.feature_dim, cfg.mlp_dim, cfg.dim
        self.projector = mlp([d, h, h, e], bias=True, last_bn=False, hidden_bn=False)
        self._init_momentum(cfg.m0)
        stdv = 1.0 / math.sqrt(e / 3)  # uniform, unit norm on average (official init)
        self.register_buffer("queue", torch.rand(cfg.queue_len, e) * 2 * stdv - stdv)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        views = clip_views(batch, "ρMoCo")  # ρ × [n, C, T, H, W]
        keys = self.keys(views)
        queue = self.queue.clone()
        loss = sum(
            rho_moco_loss(l2_normalize(self.projector(self.backbone(v))), _others(keys, k),
                          queue, self.cfg.tau)
            for k, v in enumerate(views)
        )  # fmt: skip
        if self.training:
            self._enqueue(keys)
        # while the queue is still filling the loss is zeroed; a tensor condition, not a
        # Python bool, so `run.compile` neither breaks the graph nor recompiles per step
        frozen = self.steps_done < self.cfg.freeze_steps
        return {"loss": torch.where(frozen, loss * 0.0, loss), "loss_official": _official_log(loss, len(views)),
                "momentum": self.momentum_logged.clone()}  # fmt: skip

    @torch.no_grad()
    def _enqueue(self, keys: list[Tensor]) -> None:
        """Every clip's keys at a ring pointer (MOCO_MULTI_VIEW_QUEUE), this process only."""
        k = len(self.queue)
        for key in keys:
            idx = (self.queue_ptr + torch.arange(len(key), device=key.device)) % k
            self.queue[idx] = key.to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + len(key)) % k)


class RhoBYOL(_Momentum):
    def __init__(self, cfg: RhoBYOLConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg, self.backbone = cfg, backbone
        d, h, e = backbone.feature_dim, cfg.mlp_dim, cfg.dim
        self.projector = mlp([d, h, e], bias=False, last_bn=False, last_bias=True)
        self.predictor = mlp([e, h, e], bias=False, last_bn=False, last_bias=True)
        self._init_momentum(cfg.m0)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        views = clip_views(batch, "ρBYOL")
        keys = self.keys(views)
        loss = sum(
            rho_byol_loss(l2_normalize(self.predictor(self.projector(self.backbone(v)))),
                          _others(keys, k), self.cfg.tau)
            for k, v in enumerate(views)
        )  # fmt: skip
        return {"loss": loss, "loss_official": _official_log(loss, len(views)),
                "momentum": self.momentum_logged.clone()}  # fmt: skip


class RhoSimCLR(nn.Module):
    def __init__(self, cfg: RhoSimCLRConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg, self.backbone = cfg, backbone
        d, h, e = backbone.feature_dim, cfg.mlp_dim, cfg.dim
        self.projector = mlp([d, h, h, e], bias=True, last_bn=False, hidden_bn=False)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        views = clip_views(batch, "ρSimCLR")
        z = [self.projector(self.backbone(v)) for v in views]  # ρ × [n, d]
        # ρ − 1 chained pairs (clip k, clip k + 1) in the (random) clip order, not all pairs
        loss = sum(nt_xent(z[k], z[k + 1], self.cfg.tau) for k in range(len(z) - 1))
        return {"loss": loss, "loss_official": _official_log(loss, len(views))}


class RhoSwAV(nn.Module):
    def __init__(self, cfg: RhoSwAVConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg, self.backbone = cfg, backbone
        d, h, e = backbone.feature_dim, cfg.mlp_dim, cfg.dim
        self.projector = mlp([d, h, h, e], bias=False, last_bn=False, last_bias=True)
        self.prototypes = nn.Linear(e, cfg.prototypes, bias=False)  # PyTorch's default init
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        views = clip_views(batch, "ρSwAV")
        with torch.no_grad():  # prototypes row-normalised in place before the forward
            self.prototypes.weight.copy_(l2_normalize(self.prototypes.weight))
        w = self.prototypes.weight
        # epoch 0: prototypes get a zero gradient (a tensor condition: no recompiles)
        w = torch.where(self.steps_done < self.cfg.freeze_prototypes_steps, w.detach() + 0.0 * w, w)
        scores = [l2_normalize(self.projector(self.backbone(v))) @ w.T for v in views]
        loss = rho_swav_loss(scores, self.cfg.sinkhorn_eps, self.cfg.tau, self.cfg.sinkhorn_iters)
        return {"loss": loss}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        self.steps_done += 1
