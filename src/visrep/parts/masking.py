"""Token masking.

`random_masking` is MAE's shuffle-by-argsort masking (METHODS.md §0.5,
mae `models_mae.py:random_masking`). Every random draw can be injected through
`noise`, so a test can reproduce the official forward exactly.
"""

from __future__ import annotations

from typing import NamedTuple

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
