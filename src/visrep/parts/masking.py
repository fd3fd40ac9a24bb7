"""Token masking.

`random_masking` is MAE's shuffle-by-argsort masking (MAE paper Sec. 3, "Simple
implementation"; mae `models_mae.py` `random_masking`). Every random draw can be injected
through `noise`, so a test can reproduce the official forward exactly.

`unit_masking` is long-sequence MAE's masking (facebookresearch/long_seq_mae
`util/long_seq_patch_loader.py`): the mask unit is a k×k block of patches, decoupled from
the patch size. A permutation of the units (given, or drawn) is expanded into a permutation
of the patches, so every kept token belongs to a kept unit; with k = 1 it is
`random_masking` driven by the same permutation.

`block_mask` is BEiT's block-wise masking (BEiT paper Algorithm 1; microsoft/unilm
`beit/masking_generator.py`) as MaskFeat uses it. Its draws come from a `random.Random` in
the official order, so a seeded instance reproduces the official generator's masks exactly.
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
    """Number of kept tokens, floor as in MAE (`int(L * (1 - r))`, `random_masking`)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    keep = int(num_tokens * (1 - mask_ratio))
    if keep == 0:
        raise ValueError(nothing_visible_message(num_tokens, mask_ratio))
    return keep


def nothing_visible_message(cells: int, mask_ratio: float) -> str:
    """The error for a mask that hides every token or cell (MAE's floor, SparK's round)."""
    return (
        f"mask_ratio {mask_ratio} leaves no visible token or cell of {cells}: the encoder "
        f"would see nothing and learn nothing; use larger images (data.img_size), a smaller "
        f"patch or stride, or a lower method.mask_ratio"
    )


def random_masking(
    batch: int,
    num_tokens: int,
    mask_ratio: float,
    *,
    noise: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Masking:
    """Per-sample random masking by argsort of i.i.d. noise (mae `random_masking`).

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
    return masking_from_shuffle(torch.argsort(noise, dim=1), mask_ratio)  # small noise kept


def masking_from_shuffle(ids_shuffle: Tensor, mask_ratio: float) -> Masking:
    """Keep the first ``floor(L * (1 - r))`` tokens of a per-sample permutation (as mae
    `random_masking`): ids_shuffle [N, L] -> ids_keep, mask (1 = removed, original order),
    ids_restore."""
    batch, num_tokens = ids_shuffle.shape
    keep = num_keep(num_tokens, mask_ratio)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_tokens, device=ids_shuffle.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to the original token order
    return Masking(ids_keep, mask, ids_restore)


def unit_order(unit: int) -> list[tuple[int, int]]:
    """(ry, rx) offsets of the patches inside a k×k mask unit, in the order the official
    loader lists them (`util/long_seq_patch_loader.py`): column offset rx outer, row offset
    ry inner, i.e. (0,0), (1,0), ..., (k-1,0), (0,1), ... — for k = 2: (0,0), (1,0), (0,1),
    (1,1)."""
    return [(ry, rx) for rx in range(unit) for ry in range(unit)]


def unit_shuffle(perm: Tensor, grid: tuple[int, int], unit: int) -> Tensor:
    """Expand a permutation of mask units into a permutation of patches.

    Units tile the (h, w) patch grid row-major on a ceil(h/k) × ceil(w/k) unit grid (unit
    u covers patch rows k·(u // uw) + ry and columns k·(u % uw) + rx). Each unit in
    `perm` order contributes its patch indices consecutively, in `unit_order`. When k does
    not divide the grid, the units on the bottom/right border are partial: their
    out-of-range patches are dropped (as the official loader does), so the result is
    still a permutation of all h·w patches.

    Args:
        perm: [N, U] a permutation of range(U) per sample, U = ceil(h/k)·ceil(w/k).
        grid: (h, w) patch grid.
        unit: k, the mask unit side in patches.

    Returns:
        ids_shuffle [N, h·w].
    """
    (gh, gw), k = grid, unit
    uw = -(-gw // k)
    offsets = torch.tensor(unit_order(k), device=perm.device)  # [k², 2] (ry, rx)
    y = (perm // uw * k).unsqueeze(-1) + offsets[:, 0]  # [N, U, k²] patch rows
    x = (perm % uw * k).unsqueeze(-1) + offsets[:, 1]  # [N, U, k²] patch columns
    ids = (y * gw + x).flatten(1)  # [N, U·k²]
    inside = ((y < gh) & (x < gw)).flatten(1)  # the same count, h·w, in every row
    return ids[inside].view(perm.shape[0], gh * gw)


def unit_anchors(grid: tuple[int, int], unit: int) -> Tensor:
    """[U] index of each mask unit's first (top-left) patch, units in row-major order."""
    (gh, gw), k = grid, unit
    uy, ux = torch.meshgrid(torch.arange(0, gh, k), torch.arange(0, gw, k), indexing="ij")
    return (uy * gw + ux).flatten()


def unit_masking(
    batch: int,
    grid: tuple[int, int],
    unit: int,
    mask_ratio: float,
    *,
    perm: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Masking:
    """Long-sequence MAE masking: whole k×k units of patches are kept or removed.

    ids_shuffle = `unit_shuffle(perm)`; ids_restore is its inverse; the first
    ``int(L * (1 - r))`` entries are kept (L = h·w), which are whole units when
    L·(1 − r) is a multiple of k² and the grid is divisible by k. With k = 1 this is
    `random_masking` with ``argsort(noise) = perm``.

    Args:
        batch: N.
        grid: (h, w) patch grid.
        unit: k >= 1, the mask unit side in patches (the official ``--mask_downsampling``).
        mask_ratio: r.
        perm: optional [N, U] permutations of the units, U = ceil(h/k)·ceil(w/k). The
            official loader draws ``np.random.permutation(U)`` per image; pass those to
            reproduce it. When None, drawn as ``argsort(torch.rand(N, U, generator=...))``.
        generator: the source of the draw when `perm` is None (default: torch's global
            generator, which the training loop seeds per step).
        device: where to draw when `perm` is None.
    """
    if unit < 1:
        raise ValueError(f"mask unit must be >= 1 patch, got {unit}")
    num_units = -(-grid[0] // unit) * -(-grid[1] // unit)
    if perm is None:
        perm = torch.rand(batch, num_units, generator=generator, device=device).argsort(dim=1)
    elif perm.shape != (batch, num_units):
        raise ValueError(
            f"perm must have shape {(batch, num_units)} (units of {unit}x{unit} patches on a "
            f"{grid[0]}x{grid[1]} grid), got {tuple(perm.shape)}"
        )
    return masking_from_shuffle(unit_shuffle(perm.long(), grid, unit), mask_ratio)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x [N, L, D], ids [N, K] -> [N, K, D]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def replace_masked(x: Tensor, mask: Tensor, token: Tensor | None) -> Tensor:
    """x_i <- (1 - m_i)·x_i + m_i·t: masked embeddings [N, L, D] replaced by `token`
    (broadcast), before any position embedding (MaskFeat; MAE's "encoder w/ [M]").
    `mask` [N, L] is 1 (or True) where masked."""
    if token is None:
        raise ValueError("encoding with a mask needs the mask_token that replaces it")
    m = mask.unsqueeze(-1).to(x.dtype)  # [N, L, 1]
    return x * (1 - m) + token.to(x.dtype) * m


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
    """BEiT-style block-wise mask on an (h, w) token grid (BEiT `MaskingGenerator`).

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


def cube_mask(
    window: tuple[int, int, int],
    num_masked: int,
    rng: random.Random,
    *,
    min_patches: int | None = None,
    max_patches: int | None = None,
    min_aspect: float = 0.3,
    attempts: int = 100,
) -> Tensor:
    """Spatiotemporal cube mask of video MaskFeat (MaskFeat paper Sec. 4.1;
    facebookresearch/SlowFast `slowfast/datasets/transform.py` `MaskingGenerator3D`, called
    from `slowfast/datasets/kinetics.py` `_gen_mask`) on a (T', H', W') grid of mask units.

    Rounds of box placement until `num_masked` units are masked or a round adds nothing.
    A round makes up to `attempts` tries, each drawing from `rng` in the official order:
    area ~ uniform(min_patches, max_patches) (the constructor's bound, not the units left:
    the 2-D generator differs here), log-aspect ~ uniform(log a, −log a), t ~ randint(1, T')
    (drawn even when the shape is rejected); the shape h = round(√(area·aspect)),
    w = round(√(area/aspect)) is accepted only if w < W' and h < H'; then top ~ randint(0,
    H' − h), left ~ randint(0, W' − w), front ~ randint(0, T' − t). A box is kept if it
    newly covers between 1 and the units still missing. The count never exceeds
    `num_masked` and can stay below it.

    Args:
        window: (T', H', W') mask-unit grid.
        num_masked: target count, Python's round(T'·H'·W'·r).
        rng: the source of every draw.
        min_patches: None = H'·W' // 5 (SlowFast `_gen_mask`).
        max_patches: None = H'·W'.
        min_aspect: aspect range [min_aspect, 1 / min_aspect], log-uniform.
        attempts: tries per round (100 in the 3-D generator).

    Returns:
        bool [T', H', W'], True = masked.
    """
    t_, h_, w_ = window
    max_patches = h_ * w_ if max_patches is None else max_patches
    min_patches = h_ * w_ // 5 if min_patches is None else min_patches
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = np.zeros(window, dtype=bool)
    count = 0
    while count < num_masked:
        room = num_masked - count
        added = 0
        for _ in range(attempts):
            area = rng.uniform(min_patches, max_patches)
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            t = rng.randint(1, t_)
            if w < w_ and h < h_:
                top, left = rng.randint(0, h_ - h), rng.randint(0, w_ - w)
                front = rng.randint(0, t_ - t)
                box = mask[front : front + t, top : top + h, left : left + w]
                new = t * h * w - int(box.sum())
                if 0 < new <= room:
                    box[...] = True
                    added = new
            if added:
                break
        if added == 0:
            break
        count += added
    return torch.from_numpy(mask)
