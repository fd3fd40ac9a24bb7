"""Common corruptions: the 15 ImageNet-C corruptions (+ 4 held-out) at 5 severities
(Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations", ICLR 2019; hendrycks/robustness `ImageNet-C/create_c/make_cifar_c.py`,
`make_imagenet_c.py`) and the CIFAR-10-C-bar corruptions (Mintun et al., NeurIPS 2021;
`visrep.data.corruptions_bar`).

Backends, by image side S:

* S ≥ 64: the maintained `imagecorruptions` package (the `imagecorruptions-imaug` 1.1.5
  fork, which runs on NumPy 2 / scikit-image 0.26, unlike `imagecorruptions` 1.1.2),
  ImageNet-C constants. Thin wrapper: its global-`np.random` draws are seeded from the
  transform's seed; a grey image is passed as a 2-D image (one noise field, not three)
  to the corruptions that draw pixel fields, and as a replicated RGB image (then luma) to
  the others (its `gaussian_blur`/`glass_blur`/`motion_blur` break on 2-D input).
* S < 64 (Fashion-MNIST, CIFAR): the package refuses S < 32 and only has the 224-px
  ImageNet-C constants, far too strong at 28-32 px; so this module implements the
  **CIFAR-10-C** table of `make_cifar_c.py` with every size-dependent quantity taken from
  the actual side (images under 32 px are zero-padded to 32 and cropped back), reusing the
  package's helpers (`disk`, `plasma_fractal`, the numpy motion-blur kernel, the numba
  glass-blur shuffle, the frost pictures). motion_blur and snow use that numpy kernel, not
  ImageMagick as Hendrycks' script did.

Grey input: every random field (noise, glass-blur swaps, elastic displacement, snow, fog)
is drawn once as an H×W field, so all three channels share it; colour effects (frost,
spatter, saturate, C-bar chromatic aberration and brownish noise) are computed in RGB and
the result returned as ITU-R 601 luma (0.299, 0.587, 0.114), rounded, as PIL's "L".

A *transform* is (name, severity, seed): `corrupt(images, name, severity, seed)` applies
the same draw to every image of the batch (what the Minimal Sample Distance embeds);
`corrupt_each` gives image i its own seed `image_seed(name, severity, i)` (what an
evaluation set is). Output: same shape and dtype (uint8) as the input.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
from collections.abc import Callable, Iterator
from io import BytesIO

import cv2
import numpy as np
from imagecorruptions import corruptions as ic
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as nd_zoom
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian
from skimage.util import random_noise

from visrep.data.corruptions_bar import C_BAR, C_BAR_LEVELS, IMAGENET_C_BAR_LEVELS, levels

BENCHMARK: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
HELD_OUT: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CATEGORY: dict[str, str] = (
    dict.fromkeys(BENCHMARK[:3], "noise") | dict.fromkeys(BENCHMARK[3:7], "blur")
    | dict.fromkeys(BENCHMARK[7:11], "weather") | dict.fromkeys(BENCHMARK[11:], "digital")
    | dict.fromkeys(HELD_OUT, "extra") | dict.fromkeys(IMAGENET_C_BAR_LEVELS, "c_bar")
    | dict.fromkeys(C_BAR_LEVELS, "c_bar")
)  # fmt: skip
# c_bar: CIFAR-10-C-bar (the list for small images); imagenet_c_bar: ImageNet-C-bar's 10
SUITES: dict[str, tuple[str, ...]] = {
    "c": BENCHMARK, "held_out": HELD_OUT, "c_bar": tuple(C_BAR_LEVELS),
    "imagenet_c_bar": tuple(IMAGENET_C_BAR_LEVELS),
}  # fmt: skip
LUMA = np.array([0.299, 0.587, 0.114])
_LARGE = 64  # from this side on, imagecorruptions with the ImageNet-C constants

# make_cifar_c.py, severities 1..5
_CIFAR_C: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [np.arange(1, e, 0.01) for e in (1.06, 1.11, 1.16, 1.21, 1.26)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],  # × S
}  # fmt: skip


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (the reference code and imagecorruptions draw from it)
    and restore its state afterwards, so a corruption has no effect on other draws."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def image_seed(name: str, severity: int, index: int, base: int = 0) -> int:
    """A counter-based seed for image `index` of the (name, severity) set: the set is
    reproducible without storing it, and independent of the order it is computed in."""
    key = f"{base}/{name}/{severity}/{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


# ---- CIFAR-10-C table (x: float [S, S, C] in [0, 1], C = 1 for grey, 3 for RGB) ----


def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.stack([fn(np.ascontiguousarray(x[..., c])) for c in range(x.shape[-1])], -1)


def _zoom_centre(x: np.ndarray, z: float) -> np.ndarray:
    """Zoom into the centre by z (bilinear), keeping the size (`clipped_zoom` of
    make_cifar_c.py: ceil crop, scipy zoom order 1, central trim)."""
    h = x.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = nd_zoom(x[top : top + ch, top : top + ch], (z, z, 1), order=1)
    t = (out.shape[0] - h) // 2
    return out[t : t + h, t : t + h]


def _glass(x: np.ndarray, c: tuple, seed: int) -> np.ndarray:
    blur = lambda a: gaussian(a, sigma=c[0], channel_axis=-1)  # noqa: E731
    x8 = np.ascontiguousarray(np.uint8(blur(x) * 255))
    # imagecorruptions' numba loop: rows/cols from S − δ down to δ + 1, offsets in [−δ, δ)
    x8 = ic._shuffle_pixels_njit_glass_blur(x8.shape[0], x8.shape[1], x8, c, seed % 2**32)
    return blur(x8 / 255.0)


def _snow(x: np.ndarray, c: tuple) -> np.ndarray:
    s = x.shape[0]
    layer = np.random.normal(size=(s, s), loc=c[0], scale=c[1])
    layer = _zoom_centre(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer8 = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)
    layer = np.round(ic._motion_blur(layer8, c[4], c[5], np.random.uniform(-135, -45)))
    layer = np.clip(layer, 0, 255)[..., None] / 255.0
    grey = x @ LUMA[:, None] if x.shape[-1] == 3 else x
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2)


def _frost(x: np.ndarray, c: tuple) -> np.ndarray:
    s = x.shape[0]
    idx = np.random.randint(5)  # the reference draws from 5 of the 6 pictures
    name = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"][idx]
    with importlib.resources.as_file(
        importlib.resources.files(ic.__package__) / "frost" / name
    ) as p:
        frost = cv2.imread(str(p))
    frost = cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)
    y0 = np.random.randint(0, frost.shape[0] - s)
    x0 = np.random.randint(0, frost.shape[1] - s)
    crop = frost[y0 : y0 + s, x0 : x0 + s][..., ::-1] / 255.0  # BGR -> RGB
    return c[0] * _rgb(x) + c[1] * crop


def _spatter(x: np.ndarray, c: tuple) -> np.ndarray:
    s, x = x.shape[0], _rgb(x).astype(np.float32)
    liquid = gaussian(np.random.normal(size=(s, s), loc=c[0], scale=c[1]), sigma=c[2])
    liquid[liquid < c[3]] = 0
    if c[5] == 0:  # water: pale turquoise streaks along the liquid's edges
        liquid8 = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, ker), (3, 3)).astype(np.float32)
        m = liquid8 * dist
        m = m / max(m.max(), 1e-12) * c[4]
        # (175, 238, 238) added to channels 0, 1, 2 (the reference's "BGR" conversions
        # only append an alpha channel)
        colour = np.array([175, 238, 238], dtype=np.float32) / 255
        return x + m[..., None] * colour
    m = gaussian(np.where(liquid > c[3], 1.0, 0.0), sigma=c[4])  # mud
    m[m < 0.8] = 0
    return x * (1 - m[..., None]) + m[..., None] * (np.array([63, 42, 20]) / 255)


def _hsv(x: np.ndarray, channel: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    hsv = rgb2hsv(_rgb(x))
    hsv[..., channel] = np.clip(fn(hsv[..., channel]), 0, 1)
    return hsv2rgb(hsv)


def _pil(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    img = Image.fromarray(np.uint8(np.clip(_rgb(x), 0, 1) * 255))
    return np.asarray(fn(img), dtype=np.float64) / 255.0


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


def _elastic(x: np.ndarray, c: tuple) -> np.ndarray:
    s = x.shape[0]
    c = tuple(v * s for v in c)
    centre, half = np.float32([s, s]) // 2, s // 3
    pts1 = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    pts2 = pts1 + np.random.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    affine = cv2.getAffineTransform(pts1, pts2)
    x = _per_channel(
        lambda a: cv2.warpAffine(a, affine, (s, s), borderMode=cv2.BORDER_REFLECT_101),
        x.astype(np.float32),
    )  # fmt: skip
    field = lambda: gaussian(np.random.uniform(-1, 1, (s, s)), c[1], mode="reflect", truncate=3)  # noqa: E731
    dx, dy = (field() * c[0]).astype(np.float32), (field() * c[0]).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    return _per_channel(
        lambda a: map_coordinates(a, [yy + dy, xx + dx], order=1, mode="reflect"), x
    )  # fmt: skip


def _cifar_c(x: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One CIFAR-10-C corruption of x [S, S, C] in [0, 1]; draws from the global generator
    (seeded by the caller), fields shaped [S, S, C] so a grey image gets one field."""
    c, s = _CIFAR_C[name][severity - 1], x.shape[0]
    rnd = np.random
    if name == "gaussian_noise":
        return x + rnd.normal(size=x.shape, scale=c)
    if name == "shot_noise":
        return rnd.poisson(x * c) / c
    if name == "impulse_noise":
        return random_noise(x, mode="s&p", amount=c, rng=seed % 2**32)
    if name == "speckle_noise":
        return x + x * rnd.normal(size=x.shape, scale=c)
    if name == "gaussian_blur":
        return gaussian(x, sigma=c, channel_axis=-1)
    if name == "glass_blur":
        return _glass(x, c, seed)
    if name == "defocus_blur":
        kernel = ic.disk(radius=c[0], alias_blur=c[1])
        return _per_channel(lambda a: cv2.filter2D(a, -1, kernel), x)
    if name == "motion_blur":
        return ic._motion_blur(x, c[0], c[1], rnd.uniform(-45, 45))
    if name == "zoom_blur":
        x = x.astype(np.float32)
        return (x + sum(_zoom_centre(x, z) for z in c)) / (len(c) + 1)
    if name == "snow":
        return _snow(x, c)
    if name == "frost":
        return _frost(x, c)
    if name == "fog":
        top = x.max()
        size = 1 << (s - 1).bit_length()  # plasma map: the next power of two ≥ S
        x = x + c[0] * ic.plasma_fractal(mapsize=size, wibbledecay=c[1])[:s, :s, None]
        return x * top / (top + c[0])
    if name == "brightness":
        return np.clip(x + c, 0, 1) if x.shape[-1] == 1 else _hsv(x, 2, lambda v: v + c)
    if name == "contrast":
        m = x.mean(axis=(0, 1), keepdims=True)
        return (x - m) * c + m
    if name == "saturate":
        return _hsv(x, 1, lambda v: v * c[0] + c[1])
    if name == "spatter":
        return _spatter(x, c)
    if name == "jpeg_compression":
        return _pil(x, lambda im: _jpeg(im, c))
    if name == "pixelate":
        small = (int(s * c), int(s * c))
        return _pil(x, lambda im: im.resize(small, Image.BOX).resize((s, s), Image.BOX))
    if name == "elastic_transform":
        return _elastic(x, c)
    raise AssertionError(name)


# ---- one image ----

_FIELD_CORRUPTIONS = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                      "elastic_transform", "snow", "fog"}  # fmt: skip


def _large(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions (ImageNet-C constants) on one uint8 image [H, W] or [H, W, 3]."""
    fn = ic.__dict__[name]
    kw = {"seed": seed % 2**32} if name in ("impulse_noise", "glass_blur") else {}
    grey = img.ndim == 2
    arg = img if grey and name in _FIELD_CORRUPTIONS else (np.stack([img] * 3, -1) if grey else img)
    out = np.asarray(fn(Image.fromarray(arg), severity, **kw), dtype=np.float64)
    return out[..., None] if out.ndim == 2 else out


def _one(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt one uint8 image [H, W] (grey) or [H, W, 3]; returns float 0..255, [H, W, C']
    with C' = 3 when a grey image went through a colour effect."""
    h, w = img.shape[:2]
    with _numpy_seed(seed):
        if name in C_BAR:
            rgb = np.stack([img] * 3, -1) if img.ndim == 2 else img
            return C_BAR[name](rgb.astype(np.float64), levels(name, h)[severity - 1],
                               np.random.RandomState(seed % 2**32))  # fmt: skip
        if min(h, w) >= _LARGE:
            return _large(img, name, severity, seed)
        x = img[..., None] if img.ndim == 2 else img
        return np.clip(_cifar_c(x / 255.0, name, severity, seed), 0, 1) * 255


def _pad(images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad images under 32 px to 32 (CIFAR-10-C's size; Fashion-MNIST's background is
    0, so objects keep their scale); returns the offsets to crop back."""
    h, w = images.shape[1:3]
    ph, pw = max(0, 32 - h), max(0, 32 - w)
    if not (ph or pw):
        return images, (0, 0)
    pad = [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (images.ndim - 3)
    return np.pad(images, pad), (ph // 2, pw // 2)


def _check(images: np.ndarray, name: str, severity: int) -> None:
    if name not in CATEGORY:
        raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CATEGORY)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1..5, got {severity!r}")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError("corrupt() takes a uint8 numpy array of images (0..255)")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be [N, H, W] (grey) or [N, H, W, 3], got {images.shape}")
    if images.shape[1] != images.shape[2] and name in C_BAR:
        raise ValueError(f"{name} needs square images, got {images.shape[1:3]}")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One transform — corruption `name` at `severity` with all its random draws fixed by
    `seed` — applied to every image of `images` (uint8 [N, H, W] or [N, H, W, 3]).

    Returns an array of the same shape and dtype. Float results are clipped to [0, 255] and
    truncated to uint8 as the reference scripts do (`np.uint8(...)`); a grey image that
    went through a colour effect is returned as its rounded ITU-R 601 luma.
    """
    _check(images, name, severity)
    padded, (top, left) = _pad(images)
    out = np.empty_like(padded)
    for i, img in enumerate(padded):
        y = np.uint8(np.clip(_one(img, name, severity, seed), 0, 255))
        if images.ndim == 3:  # grey in, grey out
            y = y[..., 0] if y.shape[-1] == 1 else np.rint(y @ LUMA).clip(0, 255).astype(np.uint8)
        out[i] = y
    h, w = images.shape[1:3]
    return out[:, top : top + h, left : left + w]


def corrupt_each(
    images: np.ndarray, name: str, severity: int, base_seed: int = 0, start: int = 0
) -> np.ndarray:
    """The evaluation set: image i (numbered from `start`) gets its own draw,
    seed `image_seed(name, severity, start + i, base_seed)`."""
    _check(images, name, severity)
    return np.concatenate([
        corrupt(images[i : i + 1], name, severity, image_seed(name, severity, start + i, base_seed))
        for i in range(len(images))
    ]) if len(images) else images.copy()  # fmt: skip
