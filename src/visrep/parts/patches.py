"""Patchify in MAE's order and the normalized-pixel target (MAE paper Sec. 3, "Reconstruction
target"; facebookresearch/mae `models_mae.py` `patchify`, `forward_loss`).

A patch vector is ordered (row-in-patch u, column-in-patch v, channel c) with the
channel fastest: index = (u·p + v)·C + c. This is *not* `F.unfold`'s order
(channel slowest), a classic parity pitfall.
"""

from __future__ import annotations

from torch import Tensor


def patchify(images: Tensor, patch: int) -> Tensor:
    """[N, C, H, W] -> [N, L, p·p·C], L = (H/p)·(W/p), tokens row-major."""
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = images.reshape(n, c, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [N, gh, gw, u, v, C]
    return x.reshape(n, gh * gw, patch * patch * c)


def unpatchify(patches: Tensor, patch: int, channels: int, grid: tuple[int, int]) -> Tensor:
    """Inverse of `patchify`: [N, L, p·p·C] -> [N, C, gh·p, gw·p]."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, patch, patch, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)  # [N, C, gh, u, gw, v]
    return x.reshape(n, channels, gh * patch, gw * patch)


def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-patch normalization of the MAE target: (x - mean) / sqrt(var + eps).

    The variance is the *unbiased* (N-1) estimator, as in the official code
    (`torch.var` default in mae `models_mae.py` `forward_loss`); eps sits inside the square
    root.
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True, unbiased=True)
    return (target - mean) / (var + eps) ** 0.5
