"""Losses of the ρ-spatiotemporal study ("A Large-Scale Study on Unsupervised
Spatiotemporal Representation Learning", Feichtenhofer, Fan, Xiong, Girshick, He, CVPR 2021,
Sec. 3), as facebookresearch/SlowFast `slowfast/models/contrastive.py` (`ContrastiveModel`
forward branches moco / byol / swav, `sim_loss`, `sinkhorn`, `Normalize`) computes them.

One query clip k is compared with the other ρ − 1 clips of the same videos; the methods sum
these per-query losses (the official "sequential" mode calls backward once per query, which
accumulates the same gradient). ρSimCLR reuses `visrep.parts.losses.nt_xent`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def l2_normalize(x: Tensor) -> Tensor:
    """x / ‖x‖ over dim 1 with no epsilon (SlowFast `Normalize`)."""
    return x / x.pow(2).sum(1, keepdim=True).sqrt()


def rho_moco_loss(q: Tensor, keys: list[Tensor], queue: Tensor, tau: float) -> Tensor:
    """ρMoCo loss of one query clip (moco branch): for each other clip's keys k_i,
    logits_i = [q·k_i (row-wise) | q Qᵀ] / τ; the ρ − 1 blocks are stacked to
    [(ρ−1)n, 1 + K] and the cross entropy with label 0 is averaged over all rows.

    Args:
        q: normalised queries [n, d] (with gradient).
        keys: normalised momentum keys of the other clips, ρ − 1 tensors [n, d].
        queue: [K, d] negatives of earlier iterations (this process's own queue).
        tau: temperature (0.1).
    """
    neg = q @ queue.detach().T  # [n, K]
    logits = torch.cat([torch.cat([(q * k).sum(1, keepdim=True), neg], 1) for k in keys]) / tau
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=q.device))


def rho_byol_loss(p: Tensor, keys: list[Tensor], tau: float) -> Tensor:
    """ρBYOL loss of one query clip (byol branch, `sim_loss`): the mean over the other clips
    of −mean_n ⟨p, z'_i⟩ / τ, with p the normalised prediction and z'_i the normalised
    momentum projections (τ = 0.5: −2·cos, BYOL's 2 − 2 cos up to a constant)."""
    return sum(-(p * k).sum(1).mean() / tau for k in keys) / len(keys)


@torch.no_grad()
def sinkhorn(scores: Tensor, eps: float, iters: int = 3) -> Tensor:
    """SwAV codes of one process's batch (SlowFast `sinkhorn`, single-machine path):
    Q = exp(s/ε)ᵀ [K, n] / ΣQ; `iters` times scale rows to 1/K then columns to 1/n; finally
    every column to sum 1. Returns [n, K], each row summing to 1."""
    q = torch.exp(scores.float() / eps).T  # [K, n]
    q = q / q.sum()
    k, n = q.shape
    for _ in range(iters):
        q = q * ((1.0 / k) / q.sum(1)).unsqueeze(1)
        q = q * ((1.0 / n) / q.sum(0)).unsqueeze(0)
    return (q / q.sum(0, keepdim=True)).T


def rho_swav_loss(scores: list[Tensor], eps: float, tau: float, iters: int = 3) -> Tensor:
    """ρSwAV loss (swav branch, public-code path): codes q_a by `sinkhorn` for clips a ∈
    {0, 1} only (the other ρ − 2 clips only predict); loss = ½ Σ_a (1/(ρ−1)) Σ_{v≠a}
    −mean_n Σ_k q_a[n, k] log softmax(s_v / τ)[n, k].

    Args:
        scores: per clip, prototype scores s_v = z_v Cᵀ [n, K] of the normalised projection
            and the row-normalised prototypes.
        eps: Sinkhorn ε (0.05). tau: softmax temperature (0.1).
    """
    rho = len(scores)
    total = scores[0].new_zeros(())
    for a in range(2):
        code = sinkhorn(scores[a].detach(), eps, iters)
        sub = sum(-(code * F.log_softmax(scores[v] / tau, dim=1)).sum(1).mean()
                  for v in range(rho) if v != a)  # fmt: skip
        total = total + sub / (rho - 1)
    return total / 2
