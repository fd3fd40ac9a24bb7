"""Multi-view augmentation for joint-embedding methods (SimSiam, MoCo v3, SimCLR).

One part, configured per view by a :class:`ViewAug`, with each paper's values in
:data:`VIEW_PRESETS`. Every pipeline in the papers is, per view (moco-v3 `main_moco.py` and
`moco/loader.py`, simsiam `main_simsiam.py` and `simsiam/loader.py`, SLIP `datasets.py`)::

    RandomResizedCrop -> ColorJitter (p) -> RandomGrayscale (p) -> GaussianBlur (p)
    -> Solarize (p) -> HorizontalFlip -> Normalize

:class:`BatchedViews` runs it for a whole batch of tensors at once on the images'
device, with per-sample random parameters drawn from an injectable
``torch.Generator`` (per-sample PIL is ~10x slower than batched tensor ops at 32 px on a
CPU; ``benchmarks/views_loader.py`` measures it against torchvision v2).
:func:`folder_views_transform` is the same augmentation as a per-sample torchvision v2
pipeline, for DataLoader workers decoding image folders.

Conventions (both paths):

- Values are on the 0..255 scale throughout (uint8 in, float 0..255 out); the
  solarize threshold is 0..255 (PIL's ``ImageOps.solarize`` default 128: pixels
  ``>= 128`` become ``255 - x``).
- Colour jitter follows torchvision ``ColorJitter``: factors ``~ U(max(0, 1 - s),
  1 + s)`` for brightness/contrast/saturation, hue shift ``~ U(-h, h)``, and the four
  ops applied in a random order per sample (``randperm(4)``). The batched path keeps
  float precision between ops where PIL/torchvision-uint8 round to integers.
- Grayscale is ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` (PIL's ``convert("L")``)
  replicated to three channels.
- Gaussian blur: the official code uses PIL ``GaussianBlur(radius=sigma)`` (three box
  blurs whose support is about +-3 sigma). Here: a true Gaussian truncated at
  ``radius = ceil(3 sigma)`` pixels, kernel size ``2 * radius + 1`` (:func:`blur_kernel_size`),
  reflect padding, i.e. exactly ``torchvision...gaussian_blur(img, [k, k], [sigma, sigma])``
  with that ``k``.
- The horizontal flip is folded into the crop's affine map: every colour op is
  per-pixel or uses flip-invariant statistics, and the blur kernel is symmetric, so
  flipping first or last gives the same image.

Grayscale (1-channel) data: saturation, hue and grayscale are no-ops (a gray image
has no chroma; torchvision and PIL do the same); brightness, contrast, blur,
solarize, crop and flip apply unchanged. The random draws are the same as for RGB,
so a seed gives the same crops for both.

Small images (``img_size < SMALL_IMAGE_SIZE`` = 64): the blur is dropped by default
(``small_image_blur="drop"``), as SimCLR does for CIFAR-10 at 32 px (official README
command: ``--use_blur=False``) and lightly's CIFAR-10 examples do (``gaussian_blur=0.0``
for SimCLR and BYOL views). At 28-32 px, sigma up to 2 px blurs away most of the detail
an object has, while sigma scaled to the image (``"scale"``: ``sigma * img_size / 224``,
i.e. 0.0125-0.25 px at 28 px) is close to the identity and only costs time. ``"keep"``
keeps the paper's sigma. Solarize and everything else are kept at every size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from visrep.data.augment import random_resized_crop_params, resized_crop

SMALL_IMAGE_SIZE = 64  # below this side length the small-image blur rule applies
REFERENCE_SIZE = 224  # image side the papers' blur sigma was chosen for
SMALL_IMAGE_BLUR_RULES = ("drop", "scale", "keep")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL convert("L")


@dataclass(frozen=True)
class ViewAug:
    """The augmentation of one view. Defaults: crop + flip only; presets set the rest.

    Attributes:
        crop_scale: RandomResizedCrop area range (fraction of the image).
        crop_ratio: RandomResizedCrop aspect-ratio range (width / height).
        hflip_p: probability of a horizontal flip.
        jitter_p: probability of applying colour jitter (RandomApply).
        brightness, contrast, saturation: jitter strength s; factor ~ U(max(0, 1 - s), 1 + s).
        hue: jitter strength h in [0, 0.5]; hue shift ~ U(-h, h) of a full turn.
        grayscale_p: probability of converting to grayscale (RGB only).
        blur_p: probability of a Gaussian blur.
        blur_sigma: blur sigma range in pixels, sigma ~ U(blur_sigma).
        solarize_p: probability of solarizing.
        solarize_threshold: on the 0..255 scale; pixels >= threshold are inverted.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 128.0

    def __post_init__(self) -> None:
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")
        if not 0 <= self.solarize_threshold <= 255:
            raise ValueError(
                f"solarize_threshold is on the 0..255 scale, got {self.solarize_threshold}"
            )

    @property
    def jitter_strengths(self) -> tuple[float, float, float, float]:
        return (self.brightness, self.contrast, self.saturation, self.hue)


# The papers' recipes, one ViewAug per view. Values: the official code named in each comment.
VIEW_PRESETS: dict[str, tuple[ViewAug, ...]] = {
    # MoCo v3 (moco-v3 `main_moco.py`, `moco/loader.py`): BYOL's asymmetric pair; ViT recipes
    # crop_min 0.08.
    "mocov3": (
        ViewAug(crop_scale=(0.08, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.2, hue=0.1, grayscale_p=0.2, blur_p=1.0, solarize_p=0.0),
        ViewAug(crop_scale=(0.08, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.2, hue=0.1, grayscale_p=0.2, blur_p=0.1, solarize_p=0.2),
    ),
    # MoCo v3 ResNet-50 recipes (moco-v3 `CONFIG.md`): the same pair with crop_min 0.2.
    "mocov3_resnet": (
        ViewAug(crop_scale=(0.2, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.2, hue=0.1, grayscale_p=0.2, blur_p=1.0, solarize_p=0.0),
        ViewAug(crop_scale=(0.2, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.2, hue=0.1, grayscale_p=0.2, blur_p=0.1, solarize_p=0.2),
    ),
    # SimSiam (simsiam `main_simsiam.py`): MoCo v2's recipe, the same for both views.
    "simsiam": (
        ViewAug(crop_scale=(0.2, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5),
        ViewAug(crop_scale=(0.2, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5),
    ),
    # SimCLR as SLIP's SSL branch (SLIP `datasets.py` `get_dataset`), the same for both views.
    "simclr": (
        ViewAug(crop_scale=(0.08, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5),
        ViewAug(crop_scale=(0.08, 1.0), jitter_p=0.8, brightness=0.4, contrast=0.4,
                saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5),
    ),
}  # fmt: skip


def view_preset(name: str) -> tuple[ViewAug, ...]:
    """The preset ``name`` of :data:`VIEW_PRESETS`, or a ValueError that lists them."""
    try:
        return VIEW_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown view preset {name!r}; choose one of {', '.join(VIEW_PRESETS)} "
            "(data.views='' trains on one crop, MAE style)"
        ) from None


def for_image_size(
    augs: tuple[ViewAug, ...], img_size: int, small_image_blur: str = "drop"
) -> tuple[ViewAug, ...]:
    """Adapt views to the output size: below ``SMALL_IMAGE_SIZE`` px apply the blur rule.

    Args:
        augs: the views (e.g. a preset).
        img_size: output side in pixels.
        small_image_blur: ``"drop"`` (blur_p = 0, SimCLR's CIFAR setting; the default),
            ``"scale"`` (sigma * img_size / 224), or ``"keep"`` (the paper's sigma).
    """
    if small_image_blur not in SMALL_IMAGE_BLUR_RULES:
        raise ValueError(
            f"small_image_blur must be one of {SMALL_IMAGE_BLUR_RULES}, got {small_image_blur!r}"
        )
    if img_size >= SMALL_IMAGE_SIZE or small_image_blur == "keep":
        return tuple(augs)
    if small_image_blur == "drop":
        return tuple(dataclasses.replace(a, blur_p=0.0) for a in augs)
    k = img_size / REFERENCE_SIZE
    return tuple(
        dataclasses.replace(a, blur_sigma=(a.blur_sigma[0] * k, a.blur_sigma[1] * k)) for a in augs
    )


# ---------------------------------------------------------------------------------------
# Batched ops: x is float [B, C, H, W] on the 0..255 scale, per-sample parameters [B].
# The `_name_` versions work in place on a tensor the caller owns (fewer fresh buffers:
# on CPU a fresh 10 MB buffer costs more in page faults than the arithmetic on it).
# torch.where and bool masks are avoided on whole images: on CPU they run ~10x slower
# than float arithmetic.


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def luma(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma ``[B, 1, H, W]`` of RGB ``x`` (the image itself if 1-channel)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (r * LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


def _mean_luma(x: Tensor) -> Tensor:
    """Mean luma per image ``[B, 1, 1, 1]`` (mean of luma = luma of channel means)."""
    m = x.mean(dim=(2, 3))  # [B, C]
    if x.shape[1] == 3:
        m = m @ torch.tensor(LUMA, device=x.device, dtype=x.dtype)[:, None]
    return m.view(-1, 1, 1, 1)


def grayscale(x: Tensor) -> Tensor:
    """Luma replicated to every channel (torchvision ``rgb_to_grayscale(x, C)``)."""
    return luma(x).expand_as(x).contiguous()


def _brightness_(x: Tensor, factor: Tensor) -> Tensor:
    return x.mul_(_per_sample(factor, x)).clamp_(0, 255)


def _contrast_(x: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, x)
    offset = (1 - f) * _mean_luma(x)  # before x changes
    return x.mul_(f).add_(offset).clamp_(0, 255)


def _saturation_(x: Tensor, factor: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    f = _per_sample(factor, x)
    gray = luma(x).mul_(1 - f)
    return x.mul_(f).add_(gray).clamp_(0, 255)


def _hue_(x: Tensor, shift: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)  # [B, H, W] each
    v, c = x.amax(dim=1), x.amin(dim=1)
    c = torch.sub(v, c, out=c)  # chroma
    inv = c.clamp(min=1e-6).reciprocal_()  # c = 0 => every difference below is 0
    # Which channel holds the max, ties resolved R > G > B as torchvision's _rgb_to_hsv.
    is_r = (r == v).to(x.dtype)
    is_g = (g == v).to(x.dtype).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    # Hue in sextants [0, 6): R: (g - b)/c, G: 2 + (b - r)/c, B: 4 + (r - g)/c.
    h = (g - b).mul_(is_r).add_((b - r).mul_(is_g)).add_((r - g).mul_(is_b)).mul_(inv)
    h.add_(is_g, alpha=2).add_(is_b, alpha=4).add_(6 * _per_sample(shift, x).view(-1, 1, 1))
    h = torch.remainder(h, 6, out=h)
    for ch, n in ((r, 5.0), (g, 3.0), (b, 1.0)):
        # channel = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6; min(k, 4 - k) = 2 - |k - 2|
        k = torch.remainder(h + n, 6).sub_(2).abs_().neg_().add_(2).clamp_(0, 1)
        torch.sub(v, k.mul_(c), out=ch)
    return x


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f * x)``: blend with black (torchvision ``adjust_brightness``)."""
    return _brightness_(x.float().clone(), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f * x + (1 - f) * m)``, m = mean luma of each image."""
    return _contrast_(x.float().clone(), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f * x + (1 - f) * luma(x))``; identity for 1-channel images."""
    return _saturation_(x.float().clone(), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of a turn, [-0.5, 0.5]); identity for 1 channel.

    Hue in sextants ``h`` from the max channel (as torchvision's ``_rgb_to_hsv``), then
    back with ``channel_n = V - C * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h) mod 6``,
    ``n = 5, 3, 1`` for R, G, B (the closed form of HSV -> RGB); V = max, C = max - min.
    Saturation and value are unchanged, so no clamping is needed.
    """
    return _hue_(x.float().clone(), shift)


_JITTER_OPS = (_brightness_, _contrast_, _saturation_, _hue_)


def color_jitter(
    x: Tensor, factors: Tensor, order: Tensor, enabled: tuple[bool, ...] = (True,) * 4
) -> Tensor:
    """torchvision ``ColorJitter`` with per-sample factors and a per-sample op order.

    Args:
        x: float ``[B, C, H, W]`` in 0..255 (not modified).
        factors: ``[B, 4]`` brightness, contrast, saturation factors and hue shift.
        order: long ``[B, 4]`` (CPU): slot ``k`` of sample ``i`` applies op ``order[i, k]``
            (a permutation of 0..3 in ``factors``' column order); the value 4 skips the
            slot (samples that are not jittered).
        enabled: ops with strength 0 are skipped (torchvision sets them to None).

    Per slot the batch is regrouped (stable sort by op id) so every op runs in place on
    one contiguous slice: one gather per slot instead of one per (slot, op).
    """
    order, factors = order.cpu(), factors.cpu()
    n = len(x)
    rows = torch.arange(n)
    held = rows  # held[j] = original index of the sample in row j of y
    y, spare = x, torch.empty_like(x)  # two buffers, regrouped into each other in turn
    for slot in range(4):
        key = order[:, slot]
        new = torch.argsort(key, stable=True)
        where_now = torch.empty_like(held)
        where_now[held] = rows
        out = spare
        spare = torch.empty_like(x) if y is x else y
        y = _gather_rows(y, where_now[new].to(x.device), out)
        held = new
        bounds = torch.bincount(key, minlength=5).cumsum(0).tolist()
        for op, fn in enumerate(_JITTER_OPS):
            lo, hi = (bounds[op - 1] if op else 0), bounds[op]
            if enabled[op] and hi > lo:
                fn(y[lo:hi], factors[held[lo:hi], op])
    back = torch.empty_like(held)
    back[held] = rows
    return _gather_rows(y, back.to(x.device), spare)


def _gather_rows(x: Tensor, index: Tensor, out: Tensor | None = None) -> Tensor:
    """``x[index]`` along dim 0 through a 2-D view (the 4-D index_select path is ~8x
    slower on CPU), optionally into a preallocated ``out``."""
    flat = x.reshape(len(x), -1)
    if out is None:
        return flat.index_select(0, index).view(-1, *x.shape[1:])
    torch.index_select(flat, 0, index, out=out.view(len(out), -1))
    return out


def blur_kernel_size(sigma: float, max_radius: int | None = None) -> int:
    """Odd kernel size ``2 * ceil(3 sigma) + 1`` (radius capped at ``max_radius``)."""
    radius = math.ceil(3 * sigma)
    if max_radius is not None:
        radius = min(radius, max_radius)
    return 2 * radius + 1


def _reflect(index: Tensor, n: int) -> Tensor:
    """Reflect out-of-range indices into [0, n) without repeating the edge (``mode="reflect"``)."""
    index = index.abs()
    return torch.where(index > n - 1, 2 * (n - 1) - index, index)


def _blur_matrices(sigma: Tensor, radii: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """``[B, n, n]`` matrices M with ``(M v)_i = sum_t w_t v[reflect(i + t)]``: a 1-D
    Gaussian (taps beyond each sample's radius zero) with reflect padding folded in."""
    big = int(radii.max())
    t = torch.arange(-big, big + 1, device=sigma.device, dtype=torch.float64)  # [K]
    w = torch.exp(-0.5 * (t / sigma[:, None]) ** 2) * (t.abs() <= radii[:, None])
    w = w / w.sum(dim=1, keepdim=True)  # [B, K]
    src = _reflect(torch.arange(n, device=sigma.device)[:, None] + t.long(), n)  # [n, K]
    m = torch.zeros(len(sigma), n, n, device=sigma.device, dtype=torch.float64)
    m.scatter_add_(2, src.expand(len(sigma), n, -1), w[:, None, :].expand(-1, n, -1))
    return m.to(dtype)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample Gaussian blur, separable, reflect padding, radius ``ceil(3 sigma)``.

    Sample ``i`` equals torchvision's ``gaussian_blur`` with kernel size
    :func:`blur_kernel_size` ``(sigma[i])`` (reflect padding). Each axis is one batched
    matmul with a per-sample banded matrix that holds the kernel and the padding: exact,
    no padded copy, and on par with a grouped convolution (one group per sample and
    channel) on this CPU at 28-64 px, where depthwise convolutions run far below peak.
    The radius is capped at ``size - 1`` of each axis (reflect padding needs it).
    """
    b, c, height, width = x.shape
    sig = sigma.to(device=x.device, dtype=torch.float64)
    radii = torch.ceil(3 * sig)
    if int(radii.max()) == 0:
        return x
    mw = _blur_matrices(sig, radii.clamp(max=width - 1), width, x.dtype)  # [B, W, W]
    mh = _blur_matrices(sig, radii.clamp(max=height - 1), height, x.dtype)  # [B, H, H]
    y = torch.bmm(x.reshape(b, c * height, width), mw.transpose(1, 2))  # along W: [B, C*H, W]
    y = y.view(b, c, height, width).transpose(1, 2).reshape(b, height, c * width)
    y = torch.bmm(mh, y)  # along H: [B, H, C*W], one (H x H) @ (H x C*W) product per sample
    return y.view(b, height, c, width).transpose(1, 2)


def solarize(x: Tensor, threshold: float = 128.0) -> Tensor:
    """``255 - x`` where ``x >= threshold`` (PIL ``ImageOps.solarize``), 0..255 scale."""
    flip = x.ge(threshold).to(x.dtype)
    return torch.addcmul(x, flip, 255 - 2 * x)


# ---------------------------------------------------------------------------------------


@dataclass
class ViewParams:
    """Every random draw of one view for a batch of B samples (CPU tensors).

    Build with :meth:`BatchedViews.draw` or by hand to inject exact parameters.
    """

    boxes: Tensor  # float [B, 4] crop (top, left, h, w) in source pixels
    flip: Tensor  # bool [B]
    jitter: Tensor  # bool [B] colour jitter applied
    factors: Tensor  # float [B, 4] brightness, contrast, saturation factors, hue shift
    order: Tensor  # long [B, 4] per-sample permutation of the four jitter ops
    gray: Tensor  # bool [B]
    blur: Tensor  # bool [B]
    sigma: Tensor  # float [B] blur sigma in output pixels
    solarize: Tensor  # bool [B]


def draw_view_params(
    aug: ViewAug, n: int, height: int, width: int, generator: torch.Generator | None = None
) -> ViewParams:
    """Draw one view's parameters for ``n`` samples, in a fixed order from ``generator``."""
    g = generator
    boxes = random_resized_crop_params(n, height, width, aug.crop_scale, aug.crop_ratio, g)
    flip = torch.rand(n, generator=g) < aug.hflip_p
    jitter = torch.rand(n, generator=g) < aug.jitter_p
    u = torch.rand(n, 4, generator=g)
    lo = torch.tensor([max(0.0, 1 - s) for s in aug.jitter_strengths[:3]] + [-aug.hue])
    hi = torch.tensor([1 + s for s in aug.jitter_strengths[:3]] + [aug.hue])
    factors = lo + (hi - lo) * u
    order = torch.rand(n, 4, generator=g).argsort(dim=1)  # uniform random permutation
    gray = torch.rand(n, generator=g) < aug.grayscale_p
    blur = torch.rand(n, generator=g) < aug.blur_p
    sigma = torch.empty(n).uniform_(*aug.blur_sigma, generator=g)
    sol = torch.rand(n, generator=g) < aug.solarize_p
    return ViewParams(boxes, flip, jitter, factors, order, gray, blur, sigma, sol)


def apply_view(images: Tensor, aug: ViewAug, params: ViewParams, size: int) -> Tensor:
    """One view of a batch with given parameters: crop+flip, jitter, gray, blur, solarize.

    Args:
        images: ``[B, C, H, W]`` uint8 or float in 0..255, any device.
        aug: the view's settings (which jitter ops are on, the solarize threshold).
        params: the draws (:func:`draw_view_params`).
        size: output side.

    Returns:
        float ``[B, C, size, size]`` in 0..255 on ``images.device``.
    """
    dev = images.device
    x = resized_crop(images, params.boxes, size, params.flip)  # [B, C, S, S], flip folded in

    enabled = tuple(s > 0 for s in aug.jitter_strengths)
    if params.jitter.any() and any(enabled):
        order = torch.where(params.jitter[:, None], params.order, 4)  # 4: not jittered
        x = color_jitter(x, params.factors, order, enabled)
    # The other ops touch only their subset of the batch: gather, transform, scatter back.
    if params.gray.any() and x.shape[1] == 3:
        idx = params.gray.nonzero().squeeze(1).to(dev)
        x.index_copy_(0, idx, grayscale(_gather_rows(x, idx)))
    if params.blur.any():
        idx = params.blur.nonzero().squeeze(1).to(dev)
        x.index_copy_(0, idx, gaussian_blur(_gather_rows(x, idx), params.sigma[params.blur]))
    if params.solarize.any():
        idx = params.solarize.nonzero().squeeze(1).to(dev)
        x.index_copy_(0, idx, solarize(_gather_rows(x, idx), aug.solarize_threshold))
    return x


class BatchedViews:
    """Several augmented views of a batch, all ops batched on the images' device.

    Per-sample random parameters are drawn on the CPU from ``generator`` (view by view,
    in a fixed order), so the views are a pure function of the generator's seed on any
    device. See the module docstring for the op definitions and the small-image and
    grayscale rules.

    Args:
        img_size: output side in pixels.
        augs: one :class:`ViewAug` per view, e.g. ``VIEW_PRESETS["simsiam"]``.
        channels: 1 (grayscale) or 3 (RGB); images must have this many channels.
        small_image_blur: the blur rule below 64 px (:func:`for_image_size`).
    """

    def __init__(
        self,
        img_size: int,
        augs: tuple[ViewAug, ...],
        channels: int,
        small_image_blur: str = "drop",
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if not augs:
            raise ValueError("augs needs at least one ViewAug")
        self.img_size, self.channels = img_size, channels
        self.augs = for_image_size(tuple(augs), img_size, small_image_blur)

    def draw(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> list[ViewParams]:
        """Every view's parameters, as :meth:`__call__` draws them."""
        return [draw_view_params(a, n, height, width, generator) for a in self.augs]

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Views of ``images`` ``[B, C, H, W]`` (uint8 or float 0..255).

        Returns:
            one float ``[B, C, img_size, img_size]`` tensor in 0..255 per view.
        """
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"expected [B, {self.channels}, H, W] images, got shape {tuple(images.shape)}"
            )
        b, _, height, width = images.shape
        params = self.draw(b, height, width, generator)
        return [apply_view(images, a, p, self.img_size) for a, p in zip(self.augs, params)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(img_size={self.img_size}, channels={self.channels}, augs={self.augs})"


# ---------------------------------------------------------------------------------------
# Per-sample torchvision v2 pipeline (DataLoader workers; draws from torch's global RNG).


class RandomGaussianBlur:
    """With probability ``p``: blur with sigma ~ U(sigma), kernel :func:`blur_kernel_size`.

    torchvision's ``v2.GaussianBlur`` fixes the kernel size for every sigma; this one
    sizes it per draw like the batched path (and PIL's ~3 sigma support).
    """

    def __init__(self, sigma: tuple[float, float], p: float) -> None:
        self.sigma, self.p = sigma, p

    def __call__(self, image: Tensor) -> Tensor:
        if torch.rand(1).item() >= self.p:
            return image
        s = float(torch.empty(1).uniform_(*self.sigma).item())
        k = blur_kernel_size(s, max_radius=min(image.shape[-2:]) - 1)
        return TF.gaussian_blur(image, [k, k], [s, s])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, p={self.p})"


def view_transform(img_size: int, aug: ViewAug, channels: int) -> Callable[[Tensor], Tensor]:
    """One view as a per-sample v2 pipeline on a uint8 ``[C, H, W]`` tensor."""
    steps: list[Callable] = [
        v2.RandomResizedCrop(
            img_size, scale=aug.crop_scale, ratio=aug.crop_ratio,
            interpolation=v2.InterpolationMode.BILINEAR, antialias=True,
        )
    ]  # fmt: skip
    b, c, s, h = aug.jitter_strengths
    if channels == 1:  # no chroma: saturation and hue are no-ops (module docstring)
        s, h = 0.0, 0.0
    if aug.jitter_p > 0 and (b or c or s or h):
        jitter = v2.ColorJitter(brightness=b or None, contrast=c or None,
                                saturation=s or None, hue=h or None)  # fmt: skip
        steps.append(v2.RandomApply([jitter], p=aug.jitter_p))
    if aug.grayscale_p > 0 and channels == 3:
        steps.append(v2.RandomGrayscale(p=aug.grayscale_p))
    if aug.blur_p > 0:
        steps.append(RandomGaussianBlur(aug.blur_sigma, aug.blur_p))
    if aug.solarize_p > 0:
        steps.append(v2.RandomSolarize(aug.solarize_threshold, p=aug.solarize_p))
    if aug.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=aug.hflip_p))
    return v2.Compose(steps)


class MultiView:
    """Applies each view's transform to one image and returns the list of views."""

    def __init__(self, transforms: list[Callable[[Tensor], Tensor]]) -> None:
        self.transforms = transforms

    def __call__(self, image: Tensor) -> list[Tensor]:
        return [t(image) for t in self.transforms]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"


def folder_views_transform(
    img_size: int, augs: tuple[ViewAug, ...], channels: int, small_image_blur: str = "drop"
) -> MultiView:
    """The augmentation of :class:`BatchedViews` as per-sample torchvision v2 transforms.

    For :class:`visrep.data.pipeline.FolderTrainData`'s DataLoader workers: input a uint8
    ``[C, H, W]`` image of any size, output a list of uint8 ``[C, img_size, img_size]``
    views. Crop: bilinear with antialias (PIL-like for large sources). Colour ops
    round to uint8 after each op as torchvision does on uint8 images; randomness comes
    from torch's global RNG (the pipeline seeds it per item).
    """
    augs = for_image_size(tuple(augs), img_size, small_image_blur)
    return MultiView([view_transform(img_size, a, channels) for a in augs])
