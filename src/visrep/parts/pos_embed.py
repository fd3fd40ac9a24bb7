"""Fixed 2-D sin-cos position embeddings (METHODS.md §0.6).

Two layouts exist and their weights are not exchangeable:
MAE (also DiT, FLIP, long-seq MAE) puts the column in the first half,
MoCo v3 puts the row first. Frequencies are computed in float64 then cast,
as in mae `util/pos_embed.py`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
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

    Token index = row·gw + column (row-major, §0.4). With ``cls_token`` a zero row
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
