"""Momentum (EMA) encoders (MoCo v3 paper Sec. 3, Algorithm 1; moco-v3 `moco/builder.py`).

The momentum branch is a frozen copy of the online branch, updated in place by
θ_k ← m·θ_k + (1 − m)·θ_q on parameters only (its BatchNorm running statistics are its own,
from its own forward passes). The methods call `ema_update` from their `on_step_end`
hook, i.e. right after the optimizer step and therefore before the next keys are
computed, which is exactly when the official code updates (inside the next forward).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with every parameter's requires_grad False (the initial momentum branch)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter pair (same order)."""
    t = list(target.parameters())
    o = list(online.parameters())
    if len(t) != len(o):
        raise ValueError("target and online modules have different parameter lists")
    torch._foreach_mul_(t, m)
    torch._foreach_add_(t, [p.detach() for p in o], alpha=1 - m)


def cosine_momentum(m0: float, progress: float) -> float:
    """MoCo v3's `--moco-m-cos` schedule: m = 1 − ½(1 + cos(π·e/epochs))·(1 − m0), with
    progress = e/epochs ∈ [0, 1]: m0 at the start, 1 at the end (moco-v3
    `main_moco.py` `adjust_moco_momentum`)."""
    progress = min(max(progress, 0.0), 1.0)
    return 1 - 0.5 * (1 + math.cos(math.pi * progress)) * (1 - m0)
