"""Batched augmentation on tensors: random resized crop + flip for a whole batch at once.

Per-sample PIL augmentation of small images runs ~540 img/s per core on the
reference CPU; the same crop done for the whole batch with one ``grid_sample``
call runs ~10x faster (``benchmarks/views_loader.py`` measures the two-view case), and on
a GPU it runs where the model does. The crop follows torchvision's ``RandomResizedCrop``
(Szegedy et al., 2015, "Inception" crop; the crop used by MAE, SimSiam, MoCo v3,
SimCLR) and every random draw comes from an injectable ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

# Fashion-MNIST train-set pixel statistics in [0, 1] units (checked by a test).
FMNIST_MEAN: tuple[float, ...] = (0.2860,)
FMNIST_STD: tuple[float, ...] = (0.3530,)
IMAGENET_MEAN: tuple[float, ...] = tuple(IMAGENET_DEFAULT_MEAN)
IMAGENET_STD: tuple[float, ...] = tuple(IMAGENET_DEFAULT_STD)

_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params tries 10 boxes


def random_resized_crop_params(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw ``n`` crop boxes with torchvision ``RandomResizedCrop.get_params`` semantics.

    Per sample: up to 10 candidates with area ``~ U(scale) * H * W`` and aspect
    ratio ``exp(U(log ratio))``, side lengths rounded to whole pixels; the first
    one that fits is placed uniformly at random (integer offsets); if none fits,
    the central crop of the whole image clamped to ``ratio``. Vectorised: all 10
    candidates of all samples are drawn at once, so the *distribution* equals
    torchvision's but the draws (and hence the boxes for a given seed) differ.

    Args:
        n: number of boxes.
        height, width: image size in pixels.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).
        generator: CPU generator for every draw, for exact reproducibility.

    Returns:
        float ``[n, 4]`` boxes ``(top, left, h, w)`` in pixels (whole numbers), CPU.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    # Fixed draw order (areas, ratios, offsets) so a seed fixes the result.
    area_frac = torch.empty(n, _ATTEMPTS, dtype=torch.float64).uniform_(*scale, generator=generator)
    aspect = torch.exp(
        torch.empty(n, _ATTEMPTS, dtype=torch.float64).uniform_(
            float(log_ratio[0]), float(log_ratio[1]), generator=generator
        )
    )
    offset_u = torch.rand(n, 2, dtype=torch.float64, generator=generator)

    target = area * area_frac
    w = torch.round(torch.sqrt(target * aspect))  # [n, 10]
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1)  # first valid attempt (0 if none)
    rows = torch.arange(n)
    w, h, any_fit = w[rows, first], h[rows, first], fits.any(dim=1)

    # Fallback: the whole image, clamped to the allowed aspect-ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fb_w, fb_h = round(height * max(ratio)), height
    else:
        fb_w, fb_h = width, height
    w = torch.where(any_fit, w, float(fb_w))
    h = torch.where(any_fit, h, float(fb_h))
    # Uniform integer offsets in [0, H - h]; min() guards against u == 1 - eps rounding up.
    top = torch.minimum(torch.floor(offset_u[:, 0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(offset_u[:, 1] * (width - w + 1)), width - w)
    top = torch.where(any_fit, top, float((height - fb_h) // 2))
    left = torch.where(any_fit, left, float((width - fb_w) // 2))
    return torch.stack([top, left, h, w], dim=1).float()


def resized_crop(
    images: Tensor,
    boxes: Tensor,
    size: int | tuple[int, int],
    flip: Tensor | None = None,
) -> Tensor:
    """Crop a box from each image and resize it to ``size``, for the whole batch at once.

    One ``affine_grid`` + ``grid_sample`` (bilinear, ``align_corners=False``): output
    pixel ``(i, j)`` of an ``S_h x S_w`` output samples the input at pixel-edge
    coordinates ``(top + (i + .5) h / S_h, left + (j + .5) w / S_w)``, the same points
    as torchvision's crop-then-``interpolate``. Sample points are clamped to the box's
    outermost pixel centres, as when the box is cut out first, so nothing outside the
    box leaks in at the border. A horizontal flip negates the x scale of the affine map.
    No antialiasing: a box much larger than ``size`` aliases (pre-resize big images,
    e.g. with :func:`visrep.data.folder.load_folder_tensors`).

    Args:
        images: ``[B, C, H, W]`` uint8 or float, values in [0, 255].
        boxes: ``[B, 4]`` ``(top, left, h, w)`` in pixels.
        size: output side, or ``(height, width)``.
        flip: optional bool ``[B]``; True mirrors that sample horizontally.

    Returns:
        float ``[B, C, S_h, S_w]`` in [0, 255] (float32 unless ``images`` is float).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}.")
    b, c, height, width = images.shape
    if boxes.shape != (b, 4):
        raise ValueError(f"boxes must be [{b}, 4] (top, left, h, w), got {tuple(boxes.shape)}.")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x = images if images.is_floating_point() else images.float()
    boxes = boxes.to(device=x.device, dtype=torch.float64)
    top, left, h, w = boxes.unbind(dim=1)

    # Normalised coords (align_corners=False): u = 2 * p / W - 1 for edge coordinate p.
    # p = left + (u_out + 1) / 2 * w  =>  u_in = (w / W) u_out + (2 left + w) / W - 1.
    sx, sy = w / width, h / height
    if flip is not None:
        sx = torch.where(flip.to(x.device), -sx, sx)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * left + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = sy, (2 * top + h) / height - 1
    grid = F.affine_grid(theta.to(x.dtype), [b, c, out_h, out_w], align_corners=False)

    # Clamp to the first/last pixel centre inside the box (edge coords left + .5, left + w - .5).
    lo = torch.stack([(2 * left + 1) / width - 1, (2 * top + 1) / height - 1], dim=1)
    hi = torch.stack([(2 * (left + w) - 1) / width - 1, (2 * (top + h) - 1) / height - 1], dim=1)
    lo, hi = lo.to(x.dtype)[:, None, None, :], hi.to(x.dtype)[:, None, None, :]
    grid = torch.maximum(torch.minimum(grid, hi), lo)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class BatchedRandomResizedCrop:
    """RandomResizedCrop + random horizontal flip (p = 0.5) applied to a whole batch.

    Boxes and flips are drawn on the CPU from ``generator`` (so a seed reproduces a
    batch exactly on any device), then the crop runs where ``images`` live.

    Args:
        size: output side in pixels.
        scale: crop area range as a fraction of the image (MAE uses (0.2, 1.0)).
        ratio: crop aspect-ratio range.
        hflip: whether to flip half of the samples horizontally.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}.")
        self.size, self.scale, self.ratio, self.hflip = size, scale, ratio, hflip

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``[B, C, H, W]`` uint8/float images to float ``[B, C, size, size]``."""
        b, _, height, width = images.shape
        boxes = random_resized_crop_params(b, height, width, self.scale, self.ratio, generator)
        flip = torch.rand(b, generator=generator) < 0.5 if self.hflip else None
        return resized_crop(images, boxes, self.size, flip)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, "
            f"ratio={tuple(round(r, 4) for r in self.ratio)}, hflip={self.hflip})"
        )


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(images / 255 - mean) / std`` per channel.

    Args:
        images: float ``[..., C, H, W]`` in [0, 255] (the output of :func:`resized_crop`).
        mean, std: per-channel statistics in [0, 1] units, one value per channel.
    """
    c = images.shape[-3]
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"normalize got {c}-channel images but {len(mean)} mean and {len(std)} std values; "
            "use FMNIST_MEAN/STD for 1-channel and IMAGENET_MEAN/STD for 3-channel images."
        )
    dtype = images.dtype if images.is_floating_point() else torch.float32
    m = torch.tensor(mean, dtype=dtype, device=images.device).view(c, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=images.device).view(c, 1, 1)
    return (images.to(dtype) / 255 - m) / s
