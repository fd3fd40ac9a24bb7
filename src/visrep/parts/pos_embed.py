"""Fixed 2-D sin-cos position embeddings (MAE paper Appendix A.1, mae `util/pos_embed.py`;
moco-v3 `vits.py` `build_2d_sincos_position_embedding`).

Two layouts exist and their weights are not exchangeable:
MAE (also DiT, FLIP, long-seq MAE) puts the column in the first half,
MoCo v3 puts the row first. Frequencies are computed in float64 then cast,
as in mae `util/pos_embed.py`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from timm.layers import resample_abs_pos_embed
from torch import Tensor


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[len(positions), dim]: [sin(p·ω), cos(p·ω)], ω_k = 10000^(-k/(dim/2))."""
    if dim % 2:
        raise ValueError(f"1-D sin-cos dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.einsum("p,k->pk", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(
    dim: int,
    grid: int | tuple[int, int],
    *,
    cls_token: bool = False,
    layout: Literal["mae", "mocov3"] = "mae",
) -> Tensor:
    """Fixed 2-D sin-cos table [(1 if cls) + gh·gw, dim], float32.

    Token index = row·gw + column (row-major, as MAE's `patchify`). With ``cls_token`` a zero row
    is prepended: the cls token gets no positional signal.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs dim divisible by 4, got {dim}")
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    emb_col = sincos_1d(dim // 2, cols)
    emb_row = sincos_1d(dim // 2, rows)
    halves = (emb_col, emb_row) if layout == "mae" else (emb_row, emb_col)
    table = np.concatenate(halves, axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()


def interpolate_pos_embed(
    pos_embed: Tensor, new_grid: int | tuple[int, int], num_prefix_tokens: int = 1
) -> Tensor:
    """Resize a [1, prefix + gh·gw, D] position-embedding table to another patch grid.

    MAE fine-tuning at a new resolution (facebookresearch/mae `util/pos_embed.py`,
    `interpolate_pos_embed`): the cls (prefix) rows are kept as they are, the grid rows are
    resized bicubically (align_corners=False, no antialias) to the new grid; the table is
    returned as is when the grid does not change. The old grid must be square, as in MAE.

    This is timm's `resample_abs_pos_embed` with ``antialias=False``: timm's default
    (antialias on, whose bicubic kernel is PIL's a = -0.5 rather than PyTorch's -0.75) gives
    a different table even when upsampling, so MAE's setting is passed explicitly.
    """
    gh, gw = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
    num_grid = pos_embed.shape[1] - num_prefix_tokens
    old = int(round(num_grid**0.5))
    if old * old != num_grid:
        raise ValueError(f"position embedding has {num_grid} grid rows, not a square grid")
    return resample_abs_pos_embed(
        pos_embed,
        [gh, gw],
        old_size=[old, old],
        num_prefix_tokens=num_prefix_tokens,
        interpolation="bicubic",
        antialias=False,
    )
