"""MaskFeat's HOG target (MaskFeat paper Sec. 3; facebookresearch/SlowFast
`slowfast/models/operators.py` `HOGLayerC`, nbins 9, 8 px cells).

Per image channel, without grayscale conversion or a max over channels:

1. reflect-pad by one pixel;
2. cross-correlate with Kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]] and Ky = Kxᵀ (Sobel,
   both the negative of the usual derivative direction; consistent, so orientation mod
   π is unchanged) -> gx, gy;
3. magnitude sqrt(gx² + gy²), phase φ = atan2(gx, gy) — in *that* argument order, i.e.
   measured from the y axis (the swapped order permutes the bins);
4. bin b = floor(φ/π · nbins) mod nbins: unsigned orientation, hard assignment (no
   bilinear vote between bins, no Gaussian spatial window);
5. each pixel adds its magnitude to its bin, summed over non-overlapping cell×cell cells
   (remainder rows/columns that do not fill a cell are dropped, as the official unfold);
6. each cell's histogram is L2-normalised per channel (eps 1e-12), no block normalisation.

Because of step 6, HOG is invariant to a positive or negative rescaling of a channel and,
the kernels summing to zero, to adding a constant: the HOG of an ImageNet-normalised image
equals that of the [0, 1] image up to the eps.

Everything is batched on tensors (no loop over images) and runs where the images are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sobel_gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel reflect-padded cross-correlation with Kx and Ky: [N, C, H, W] -> (gx, gy).

    Computed separably on slices (smooth [1, 2, 1] across, then left minus right / top
    minus bottom), which equals the 3×3 cross-correlation in real arithmetic and is
    *exactly* zero on constant regions. A conv kernel's accumulation order can leave
    ~1e-7 of roundoff there, which the per-cell normalisation (eps 1e-12) blows up into a
    unit-norm histogram of noise: with `F.conv2d`, 21% of the cells of normalised
    Fashion-MNIST images (flat background) got such a target where the [0, 1] image has 0.
    """
    p = F.pad(images, (1, 1, 1, 1), mode="reflect")  # [N, C, H+2, W+2]
    h, w = images.shape[-2:]
    down = p[..., :h, :] + 2 * p[..., 1 : h + 1, :] + p[..., 2:, :]  # [N, C, H, W+2]
    across = p[..., :w] + 2 * p[..., 1 : w + 1] + p[..., 2:]  # [N, C, H+2, W]
    gx = down[..., :w] - down[..., 2:]  # Kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    gy = across[..., :h, :] - across[..., 2:, :]  # Ky = Kxᵀ
    return gx, gy


def orientation_histograms(gx: Tensor, gy: Tensor, nbins: int = 9, cell: int = 8) -> Tensor:
    """Unnormalised per-cell orientation histograms (steps 3-5 above).

    Args:
        gx, gy: gradients [N, C, H, W] in the convention of `sobel_gradients`.
        nbins: orientation bins over [0, π).
        cell: cell side in pixels.

    Returns:
        [N, C, nbins, H // cell, W // cell]: per cell and bin, the sum of the magnitudes
        of the cell's pixels whose orientation falls in that bin.
    """
    n, c, h, w = gx.shape
    hc, wc = h // cell, w // cell
    if hc == 0 or wc == 0:
        raise ValueError(f"image {h}x{w} is smaller than one {cell}x{cell} HOG cell")
    magnitude = torch.hypot(gx, gy)
    phase = torch.atan2(gx, gy)  # (gx, gy): angle from the y axis, as the official code
    bins = torch.floor(phase / math.pi * nbins).long() % nbins  # [N, C, H, W] in 0..nbins-1
    hist = magnitude.new_zeros(n, c, nbins, h, w)
    hist.scatter_add_(2, bins.unsqueeze(2), magnitude.unsqueeze(2))  # one bin per pixel
    hist = hist[..., : hc * cell, : wc * cell].reshape(n, c, nbins, hc, cell, wc, cell)
    return hist.sum(dim=(4, 6))  # sum-pool over each cell


def normalize_cells(hist: Tensor, eps: float = 1e-12) -> Tensor:
    """L2-normalise each cell's histogram per channel (over the bin dim, step 6 above)."""
    return F.normalize(hist, p=2.0, dim=2, eps=eps)


@torch.no_grad()
def hog(images: Tensor, nbins: int = 9, cell: int = 8) -> Tensor:
    """MaskFeat HOG of a batch: [N, C, H, W] -> [N, C, nbins, H // cell, W // cell].

    Computed in fp32 whatever the autocast state (the target must not depend on it), and
    without gradient: it is a fixed function of the model input.
    """
    with torch.autocast(images.device.type, enabled=False):
        x = images.float()
        gx, gy = sobel_gradients(x)
        return normalize_cells(orientation_histograms(gx, gy, nbins, cell))


def hog_token_targets(features: Tensor, grid: tuple[int, int]) -> Tensor:
    """Lay the HOG cells out per token (SlowFast `slowfast/models/masked.py`
    `MaskMViT._get_hog_label_2d`).

    Args:
        features: [N, C, nbins, Hc, Wc] from `hog`.
        grid: token grid (h, w); Hc and Wc must be multiples of it (s = Hc / h cells per
            token side).

    Returns:
        [N, h·w, C·nbins·s·s], tokens row-major; inside a token the vector is ordered
        (k, u, v) with k = c·nbins + b the channel-bin index, (u, v) the cell's row and
        column inside the token: index k·s² + u·s + v.
    """
    n, c, nbins, hc, wc = features.shape
    gh, gw = grid
    if hc % gh or wc % gw or hc // gh != wc // gw:
        raise ValueError(
            f"HOG cell grid {hc}x{wc} does not tile the {gh}x{gw} token grid: choose a cell "
            "size that divides the patch size"
        )
    s = hc // gh
    x = features.reshape(n, c * nbins, gh, s, gw, s)  # [N, K0, i, u, j, v]
    x = x.permute(0, 2, 4, 1, 3, 5)  # [N, i, j, K0, u, v]
    return x.reshape(n, gh * gw, c * nbins * s * s)
