"""Token masking.

`random_masking` is MAE's shuffle-by-argsort masking (METHODS.md §0.5,
mae `models_mae.py:random_masking`). Every random draw can be injected through
`noise`, so a test can reproduce the official forward exactly.

`block_mask` is BEiT's block-wise masking as MaskFeat uses it (METHODS.md §2.2). Its
draws come from a `random.Random` in the official order, so a seeded instance
reproduces the official generator's masks exactly.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class Masking(NamedTuple):
    ids_keep: Tensor  # [N, L_keep] kept token indices, in ascending-noise (shuffled) order
    mask: Tensor  # [N, L] float, 0 = kept, 1 = removed, in the original token order
    ids_restore: Tensor  # [N, L] argsort(ids_shuffle): un-shuffles [kept, removed] back


def num_keep(num_tokens: int, mask_ratio: float) -> int:
    """Number of kept tokens, floor as in MAE (`int(L * (1 - r))`, §0.5 step 1)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return int(num_tokens * (1 - mask_ratio))


def random_masking(
    batch: int,
    num_tokens: int,
    mask_ratio: float,
    *,
    noise: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Masking:
    """Per-sample random masking by argsort of i.i.d. noise (§0.5).

    Args:
        batch: N.
        num_tokens: L.
        mask_ratio: r; ``floor(L * (1 - r))`` tokens are kept.
        noise: optional [N, L] noise; only its per-row ranks matter (small = keep).
            The official MAE draw is ``torch.rand(N, L, device=x.device)``, which is
            what is drawn here when ``noise`` is None.
        device: where to draw the noise when it is not given.
    """
    if noise is None:
        noise = torch.rand(batch, num_tokens, device=device)
    if noise.shape != (batch, num_tokens):
        raise ValueError(f"noise must have shape {(batch, num_tokens)}, got {tuple(noise.shape)}")
    keep = num_keep(num_tokens, mask_ratio)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_tokens, device=noise.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to the original token order
    return Masking(ids_keep, mask, ids_restore)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x [N, L, D], ids [N, K] -> [N, K, D]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def num_block_masked(num_tokens: int, mask_ratio: float) -> int:
    """Target number of masked tokens for block-wise masking: Python's round(L·r), as
    SlowFast (`round(14 * 14 * 0.4)` = 78; note round-half-to-even)."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    return round(num_tokens * mask_ratio)


def block_mask(
    grid: tuple[int, int],
    num_masked: int,
    rng: random.Random,
    *,
    min_patches: int | None = None,
    max_patches: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    attempts: int = 10,
) -> Tensor:
    """BEiT-style block-wise mask on an (h, w) token grid (§2.2).

    Rounds of rectangle placement until `num_masked` cells are masked or a round adds
    nothing. A round makes up to `attempts` tries: area ~ U(min_patches, room) with
    room = min(num_masked - masked so far, max_patches), log-aspect ~ U(log min_aspect,
    log max_aspect), side lengths rounded (Python round); a rectangle is placed only if
    strictly narrower and shorter than the grid, at top ~ randint(0, h - rh), left ~
    randint(0, w - rw); it is accepted if it newly covers between 1 and `room` cells. The
    round ends at the first try that masked something. The count is therefore never above
    `num_masked` and can stay below it (early stop).

    Args:
        grid: (h, w) token grid.
        num_masked: target count (`num_block_masked`).
        rng: the source of every draw, called in the official order: uniform (area),
            uniform (log-aspect), then, if the rectangle fits, randint (top), randint (left).
        min_patches: smallest target area; None = num_masked // 5 (SlowFast's rule).
        max_patches: largest rectangle per round; None = num_masked.
        min_aspect, max_aspect: aspect range (h / w); max_aspect None = 1 / min_aspect.
        attempts: tries per round.

    Returns:
        bool [h, w], True = masked.
    """
    h, w = grid
    min_patches = num_masked // 5 if min_patches is None else min_patches
    max_patches = num_masked if max_patches is None else max_patches
    log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
    mask = np.zeros((h, w), dtype=bool)
    count = 0
    while count < num_masked:
        room = min(num_masked - count, max_patches)
        added = 0
        for _ in range(attempts):
            area = rng.uniform(min_patches, room)
            aspect = math.exp(rng.uniform(*log_aspect))
            rh = int(round(math.sqrt(area * aspect)))
            rw = int(round(math.sqrt(area / aspect)))
            if rw < w and rh < h:
                top, left = rng.randint(0, h - rh), rng.randint(0, w - rw)
                window = mask[top : top + rh, left : left + rw]
                new = rh * rw - int(window.sum())
                if 0 < new <= room:
                    window[...] = True
                    added = new
            if added:
                break
        if added == 0:
            break  # a whole round placed nothing: stop below the target
        count += added
    return torch.from_numpy(mask)


def block_masks(
    batch: int, grid: tuple[int, int], num_masked: int, rng: random.Random, **kwargs
) -> Tensor:
    """`block_mask` for N images, drawn one after the other from `rng`: bool [N, h, w]."""
    return torch.stack([block_mask(grid, num_masked, rng, **kwargs) for _ in range(batch)])
