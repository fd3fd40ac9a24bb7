"""Schedules as pure functions of training progress (facebookresearch/mae `util/lr_sched.py`,
keyu-tian/SparK `pretrain/utils/lr_control.py`)."""

from __future__ import annotations

import math


def cosine_lr(
    epoch: float,
    base_lr: float,
    warmup_epochs: float,
    total_epochs: float,
    min_lr: float = 0.0,
    warmup_start: float = 0.0,
) -> float:
    """MAE's per-iteration schedule at fractional epoch e (mae `util/lr_sched.py`):
    linear warmup to `base_lr`, then half-cosine to `min_lr` at `total_epochs`. The warmup
    starts at `warmup_start` × `base_lr` (MAE: 0; SparK's `lr_wd_annealing`: 0.005)."""
    if epoch < warmup_epochs:
        return base_lr * (warmup_start + (1.0 - warmup_start) * epoch / warmup_epochs)
    span = max(total_epochs - warmup_epochs, 1e-12)
    t = min((epoch - warmup_epochs) / span, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def cosine_weight_decay(progress: float, wd: float, wd_end: float) -> float:
    """SparK's weight-decay schedule (`pretrain/utils/lr_control.py` `lr_wd_annealing`): a
    half-cosine from `wd` at progress 0 to `wd_end` at progress 1 (rising for SparK: 0.04 -> 0.2).
    SparK's progress is it / (max_it - 1); here it is the loop's e / epochs."""
    t = min(max(progress, 0.0), 1.0)
    return wd_end + (wd - wd_end) * 0.5 * (1.0 + math.cos(math.pi * t))
