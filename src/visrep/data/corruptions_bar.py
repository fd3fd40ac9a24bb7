"""The CIFAR-10-C-bar and ImageNet-C-bar corruptions (Mintun, Kirillov and Xie, "On
Interaction Between Augmentations and Corruptions in Natural Corruption Robustness",
NeurIPS 2021, §5 and Appendix; facebookresearch/augmentation-corruption
`imagenet_c_bar/corrupt.py`, `imagenet_c_bar/{cifar10_c_bar,imagenet_c_bar}.csv`; the
Perlin generator of `experiments/overlap/augmentations/utils/noise.py`), vectorised over
pixels.

The official classes loop over pixels in Python (up to ~0.6 s per 32-px image); these
functions compute the same fields with whole-array numpy. Each takes a float RGB image
`[S, S, 3]` in 0..255, a level on the paper's 0..10 scale (the csv's severities are such
levels, not indices) and a seeded `numpy.random.RandomState` that plays the role of
`np.random` in the official `sample_parameters`, and returns the corrupted float image
(clipped and cast by the caller). Known differences from the reference, all at the level
of interpolation details: bilinear sampling uses scipy's `map_coordinates(order=1,
mode="grid-constant")` (zero outside, as the official `bilinear_interpolation`), and
`pinch_and_twirl` samples every cell from the input image where the official loop samples
from the partly warped output (cells only overlap where a pinch reaches past its disc).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import ifft2
from scipy.ndimage import gaussian_filter, map_coordinates, rotate, zoom
from skimage.draw import line_aa

# imagenet_c_bar/cifar10_c_bar.csv: the ten corruptions and their five levels (0..10 scale)
C_BAR_LEVELS: dict[str, tuple[float, ...]] = {
    "blue_noise_sample": (0.7, 1.4, 2.1, 3.5, 4.2),
    "brownish_noise": (2.5, 4.0, 5.5, 6.5, 7.0),
    "checkerboard_cutout": (1.0, 2.0, 3.0, 4.0, 5.0),
    "circular_motion_blur": (2.8, 3.6, 4.4, 5.2, 6.0),
    "inverse_sparkles": (1.0, 1.5, 2.5, 4.5, 5.0),
    "lines": (0.5, 1.0, 1.5, 2.0, 2.5),
    "pinch_and_twirl": (5.5, 6.0, 6.5, 8.5, 10.0),
    "ripple": (5.5, 6.0, 6.5, 7.5, 8.0),
    "sparkles": (0.7, 3.5, 5.6, 6.3, 7.0),
    "transverse_chromatic_abberation": (1.0, 2.0, 5.0, 9.0, 10.0),
}


# imagenet_c_bar/imagenet_c_bar.csv (used from 64 px; perlin_noise, not in CIFAR-10-C-bar,
# at every size)
IMAGENET_C_BAR_LEVELS: dict[str, tuple[float, ...]] = {
    "caustic_refraction": (2.35, 3.2, 4.9, 6.6, 9.15),
    "inverse_sparkles": (1.0, 2.0, 4.0, 9.0, 10.0),
    "sparkles": (1.0, 2.0, 3.0, 5.0, 6.0),
    "perlin_noise": (4.6, 5.2, 5.8, 7.6, 8.8),
    "blue_noise_sample": (0.8, 1.6, 2.4, 4.0, 5.6),
    "plasma_noise": (4.75, 7.0, 8.5, 9.25, 10.0),
    "checkerboard_cutout": (2.0, 3.0, 4.0, 5.0, 6.0),
    "cocentric_sine_waves": (3.0, 5.0, 8.0, 9.0, 10.0),
    "single_frequency_greyscale": (1.0, 1.5, 2.0, 4.5, 5.0),
    "brownish_noise": (1.0, 2.0, 3.0, 4.0, 5.0),
}


def levels(name: str, side: int) -> tuple[float, ...]:
    """The five levels of `name`: ImageNet-C-bar's from 64 px (where it lists the
    corruption), CIFAR-10-C-bar's below."""
    if (side >= 64 and name in IMAGENET_C_BAR_LEVELS) or name not in C_BAR_LEVELS:
        return IMAGENET_C_BAR_LEVELS[name]
    return C_BAR_LEVELS[name]


def level(lv: float, maxval: float) -> float:
    """`float_parameter` of the reference (`augmentations/utils/severity.py`): lv·max/10."""
    return float(lv) * maxval / 10.0


def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(s, dtype=np.float64), np.arange(s, dtype=np.float64),
                       indexing="ij")  # fmt: skip  # (y, x), each [S, S]


def _sample(img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Bilinear sampling of every channel at (yy, xx), zero outside the image."""
    return np.stack([map_coordinates(img[..., c], [yy, xx], order=1, mode="grid-constant")
                     for c in range(img.shape[-1])], axis=-1)  # fmt: skip


def _spectral_noise(s: int, rs: np.random.RandomState, power: np.ndarray) -> np.ndarray:
    """Real noise with amplitude spectrum `power` and random phases mirrored so the inverse
    FFT is (close to) real, normalised to unit std (`BlueNoiseSample.transform`)."""
    phases = rs.uniform(0, 2 * np.pi, size=(s, s // 2))
    if s % 2 == 0:
        phases = np.concatenate((phases, phases[::-1, ::-1]), axis=1)
    else:
        mid = rs.uniform(0, 2 * np.pi, size=(s // 2, 1))
        mid = np.concatenate((mid, [[0.0]], mid[::-1]), axis=0)
        phases = np.concatenate((phases, mid, phases[::-1, ::-1]), axis=1)
    spec = np.roll(power * np.exp(1j * phases), (s // 2, s // 2), axis=(0, 1))
    noise = np.real(ifft2(spec))
    return noise / np.std(noise)


def _radius_from_centre(s: int) -> np.ndarray:
    y, x = _grid(s)
    return np.hypot(x - s / 2, y - s / 2)  # [S, S]


def blue_noise_sample(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Black holes where blue noise (amplitude ∝ frequency) falls under a threshold."""
    seed, threshold = rs.randint(0, 2**32), level(lv, 3.0) - 2.5
    noise = _spectral_noise(
        img.shape[0], np.random.RandomState(seed), _radius_from_centre(img.shape[0])
    )
    return img * (noise > threshold)[..., None]


def brownish_noise(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Additive 1/f²-like noise, one independent field per colour channel."""
    seed, intensity = rs.randint(0, 2**32), level(lv, 64)
    local, s = np.random.RandomState(seed), img.shape[0]
    power = 1.0 / (_radius_from_centre(s) ** 2 + 1)
    noise = np.stack([_spectral_noise(s, local, power) for _ in range(3)], axis=-1)
    return img + intensity * noise


def checkerboard_cutout(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Grey (128) cells of a rotated checkerboard, each kept with probability `fraction`."""
    s = img.shape[0]
    angle = rs.uniform(0, 2 * np.pi)
    cell = max(rs.uniform(0.1, 0.25) * s, 1)
    fraction, seed = level(lv, 1.0), rs.randint(0, 2**32)
    n = int(4 * s // cell)
    grid = np.random.RandomState(seed).uniform(size=(n, n)) < fraction
    y, x = _grid(s)
    nx = (np.cos(angle) * y + np.sin(angle) * x) / cell
    ny = (-np.sin(angle) * y + np.cos(angle) * x) / cell
    # int() of the float modulo, and negative indices wrap (Python indexing), as the reference
    same = np.trunc(np.mod(nx, 2)) == np.trunc(np.mod(ny, 2))
    cut = same & grid[np.trunc(nx).astype(int), np.trunc(ny).astype(int)]
    return np.where(cut[..., None], 128.0, img)


def circular_motion_blur(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Weighted mean of 21 rotations in [−θ, θ], weights exp(−2u²), u ∈ [−1, 1]."""
    amount = level(lv, 15)
    u = 2 * np.arange(21) / 20 - 1
    w = np.exp(-2 * u**2)
    x = img / 255.0
    out = sum(wi * rotate(x, ui * amount, reshape=False) for ui, wi in zip(u, w))
    return np.clip(out / w.sum() * 255, 0, 255)


def _star(s: int, centre: np.ndarray, lengths: np.ndarray, amount: float) -> np.ndarray:
    """The sparkle weight f(y, x) in [0, 1] of one star (`Sparkles.transform` kernel)."""
    y, x = _grid(s)
    dy, dx = y - centre[0], x - centre[1]
    rays = len(lengths)
    d = (np.arctan2(dx, dy) + np.pi) / (2 * np.pi) * rays
    i = d.astype(int)
    f = d - i
    length = lengths[i % rays] + f * (lengths[(i + 1) % rays] - lengths[i % rays])
    g = (length**2 / (dy**2 + dx**2 + 1e-4)) ** ((100 - amount) / 50.0)
    return np.clip((1 - (f - 0.5) ** 2) * g, 0, 1)


def sparkles(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Five white star-shaped sparkles applied one after the other."""
    s = img.shape[0]
    centres = rs.uniform(0, s, size=(5, 2))
    radius = level(lv, 0.1) * s
    seed, nrays = rs.randint(0, 2**32), rs.randint(50, 200, size=5)
    local, out = np.random.RandomState(seed), img.astype(np.float64)
    for centre, rays in zip(centres, nrays):
        lengths = np.maximum(1, radius + 0.25 * radius * local.randn(rays))
        f = _star(s, centre, lengths, 50) if radius != 0 else np.zeros((s, s))
        out = out + f[..., None] * (255.0 - out)
    return out


def inverse_sparkles(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """White everywhere except inside one star around a random centre."""
    s = img.shape[0]
    centre = rs.uniform(0.25, 0.75, size=2) * s
    amount = 100 - level(lv, 65)
    seed, rays = rs.randint(0, 2**32), rs.randint(50, 200)
    radius = 0.25 * s
    lengths = radius + 0.25 * radius * np.random.RandomState(seed).randn(rays)
    f = _star(s, centre, lengths, amount)
    return 255.0 + f[..., None] * (img - 255.0)


def lines(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """⌊density·S⌋ anti-aliased grey lines of half-length S around a base angle."""
    s = img.shape[0]
    density = level(lv, 1.0)
    angle, variation = rs.uniform(0, 2 * np.pi), rs.uniform(0.1, 1.0)
    local, out = np.random.RandomState(rs.randint(0, 2**32)), img.astype(np.float64)
    for _ in range(int(density * s)):
        x, y = s * local.uniform(), s * local.uniform()
        a = angle + 2 * np.pi * variation * (local.uniform() - 0.5)
        dy, dx = np.sin(a) * s, np.cos(a) * s
        r, c, val = line_aa(int(x - dx), int(y - dy), int(x + dx), int(y + dy))
        keep = (r >= 0) & (c >= 0) & (r < s) & (c < s)
        r, c, val = r[keep], c[keep], val[keep][:, None]
        out[r, c] = (1.0 - val) * out[r, c] + val * 128
    return out


def pinch_and_twirl(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """A 3×3 (5×5 at 224 px) grid of discs, each pinched and twirled by ±angle."""
    s = img.shape[0]
    k = 5 if s == 224 else 3
    angles = np.array([rs.choice([1, -1]) * level(lv, np.pi / 2) for _ in range(k * k)])
    angles, amount = angles.reshape(k, k), level(lv, 0.4) + 0.1
    side = s // k
    radius = side / 2
    y, x = _grid(s)
    sy, sx = y.copy(), x.copy()
    for i in range(k):
        for j in range(k):
            cy, cx = j * side + radius, i * side + radius  # the reference's (u + r, l + r)
            cell = (y >= j * side) & (y < (j + 1) * side) & (x >= i * side) & (x < (i + 1) * side)
            dy, dx = y - cy, x - cx
            dist = np.hypot(dy, dx)
            inside = cell & (dist <= radius) & (np.round(dist, 3) != 0)
            d = np.where(inside, dist / radius, 0.5)
            t = np.sin(np.pi * 0.5 * d) ** (-amount)
            a = angles[i, j] * (1 - d) ** 2
            wy = cy + dy * t * np.cos(a) - dx * t * np.sin(a)
            wx = cx + dy * t * np.sin(a) + dx * t * np.cos(a)
            sy, sx = np.where(inside, wy, sy), np.where(inside, wx, sx)
    return _sample(img.astype(np.float64), sy, sx)


def ripple(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Sinusoidal displacement along both axes."""
    s = img.shape[0]
    amp = np.array([level(lv, 0.025)] * 2) * s
    wavelengths = rs.uniform(0.1, 0.3, size=2) * s
    phases = rs.uniform(0, 2 * np.pi, size=2)
    y, x = _grid(s)
    sy = y + amp[0] * np.sin(2 * np.pi * y / wavelengths[0] + phases[0])
    sx = x + amp[1] * np.sin(2 * np.pi * x / wavelengths[1] + phases[1])
    return _sample(img.astype(np.float64), sy, sx)


def transverse_chromatic_abberation(img: np.ndarray, lv: float, rs: np.random.RandomState
                                    ) -> np.ndarray:  # fmt: skip
    """Each colour channel zoomed by 1, 1 + a/2 or 1 + a (random order), centre-cropped."""
    s, scale = img.shape[0], level(lv, 0.5)
    scales = np.array([1.0, 1.0 + scale / 2, 1.0 + scale])[rs.permutation(3)]
    out = img.copy()
    for c in range(3):
        # the reference zooms the uint8 channel: the spline output is rounded-off uint8
        z = zoom(img[..., c].astype(np.uint8), scales[c], prefilter=False)
        e = (z.shape[0] - s) // 2
        out[..., c] = z[e : e + s, e : e + s]
    return out


def single_frequency_greyscale(img: np.ndarray, lv: float, rs: np.random.RandomState
                               ) -> np.ndarray:  # fmt: skip
    """One grey plane wave sin(x·f₀ + y·f₁ + φ) of amplitude lv·196/10 added."""
    f_mag = rs.uniform(-np.pi, np.pi)
    f2 = rs.uniform(-abs(f_mag), abs(f_mag))
    freq = np.array([f_mag, f2])[rs.permutation(2)]
    phase, amp = rs.uniform(0, 2 * np.pi), level(lv, 196)
    y, x = _grid(img.shape[0])
    return img + amp * np.sin(x * freq[0] + y * freq[1] + phase)[..., None]


def cocentric_sine_waves(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """Rings around a random centre, wobbled by sin(angle·freq), added per channel."""
    s = img.shape[0]
    offset = rs.uniform(0, s, size=2)
    freq, amplitude = rs.uniform(0, 10), rs.uniform(0, s / 10)
    ring = rs.uniform(0, s / 10)
    intensity = np.array([level(lv, 128)] * 3)
    y, x = _grid(s)
    angle = np.arctan2(x - offset[0], y - offset[1]) * freq
    n = ((np.hypot(x - offset[0], y - offset[1]) + np.sin(angle) * amplitude) % ring) / ring - 0.5
    return img + n[..., None] * intensity


def plasma_noise(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """A swirling RGB plasma (iterated rotations of the coordinates) blended in."""
    s = img.shape[0]
    t, iters = rs.uniform(0.0, 6 * np.pi), rs.randint(4, 7)
    sharp, scale = rs.uniform(0.5, 1.0), rs.uniform(0.075, 0.2) * s
    amp = level(lv, 64)
    y, x = _grid(s)
    x, y = x / scale, y / scale
    i = np.array([1.0, 1.0, 1.0, 0.0])
    for _ in range(iters):
        r0 = np.cos(y * i[0] - i[3] + t / i[1]) / i[2]
        r1 = np.sin(x * i[0] - i[3] + t / i[1]) / i[2]
        r0, r1 = r0 - 0.3 * r1, r1 + 0.3 * r0
        x, y = x + r0, y + r1
        i = i * np.array([1.93, 1.15, 2.25 - sharp, t * i[1]])
    colour = np.stack([np.sin(x - t), np.sin((x + y + np.sin(t)) * 0.5), np.sin(y + t)], -1)
    return (1 - amp / 255) * img + amp * colour


def _caustics(s: int, t: float, size: float) -> np.ndarray:
    """The caustic field [S, S] in [0, 1] (`CausticRefraction`'s noise kernel)."""
    y, x = _grid(s)
    p0 = np.mod(y / size, 1) * 6.28318530718 - 250
    p1 = np.mod(x / size, 1) * 6.28318530718 - 250
    i0, i1, c = p0.copy(), p1.copy(), np.ones((s, s))
    for n in range(5):
        tn = t * (1.0 - 3.5 / (n + 1))
        i0, i1 = (p0 + np.cos(tn - i0) + np.sin(tn + i1), p1 + np.sin(tn - i1) + np.cos(tn + i0))
        c = c + 1.0 / np.hypot(p0 / (np.sin(i0 + tn) / 0.005), p1 / (np.cos(i1 + tn) / 0.005))
    return np.clip(np.abs(1.17 - (c / 5.0) ** 1.4) ** 8.0, 0, 1)


def caustic_refraction(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """The image seen through a caustic-shaped lens: each pixel samples the image at its
    refraction offset (η = 4) through the caustic field's slope, plus a lighting term."""
    s = img.shape[0]
    t, size = rs.uniform(0.5, 2.0), rs.uniform(0.75, 1.25) * s
    lens_scale, lighting = level(lv, 0.5 * s), level(lv, 2.0)
    field = gaussian_filter(_caustics(s, t, size), sigma=1)  # equal channels: luma = value
    pad = np.pad(field, 1)  # 0 outside
    north, south = pad[1:-1, :-2], pad[1:-1, 2:]  # (y, x − 1), (y, x + 1): the code's names
    west, east = pad[:-2, 1:-1], pad[2:, 1:-1]  # (y − 1, x), (y + 1, x)
    n = np.stack([east - west, south - north, np.ones_like(field)], -1)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    out_angle = np.arcsin(np.sin(np.arccos(n[..., 2])) / 4.0)
    sp = np.stack([-n[..., 1], n[..., 0]], -1)  # (0, 0, 1) × n, normalised (z = 0)
    sp = sp / np.maximum(np.linalg.norm(sp, axis=-1, keepdims=True), 1e-12)
    ortho = np.stack([-n[..., 2] * sp[..., 1], n[..., 2] * sp[..., 0]], -1)  # n × sp, (y, x)
    ref = np.cos(out_angle)[..., None] * n[..., :2] + np.sin(out_angle)[..., None] * ortho
    ref = np.where((np.abs(n[..., 2]) >= 1 - 1e-3)[..., None], 0.0, ref)  # incident as is
    ref = np.round(ref * lens_scale, 3)
    y, x = _grid(s)
    out = _sample(img / 255.0, y + ref[..., 0], x + ref[..., 1])
    out = out + ((north - south) * lighting + (east - west) * lighting)[..., None]
    return np.clip(out, 0, 1) * 255


# Perlin's lattice: B gradients/permutation entries, offset N keeps coordinates positive
PERLIN_B, PERLIN_N = 256, 16 * 256


def perlin_tables(rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """The permutation `p` [2B + 2] and unit gradients `g` [2B + 2, 2] of Perlin's reference
    `noise2` (Perlin, "An Image Synthesizer", SIGGRAPH 1985; the generator of
    augmentation-corruption `experiments/overlap/augmentations/utils/noise.py`), drawn
    from `rs` in the reference's order: 2B + 2 gradients ((r mod 2B) − B)/B normalised,
    then a Fisher-Yates-like shuffle of p[:B] (i from B − 1 down, j = r mod B), then both
    tables repeated past B. A zero gradient draw (probability 2⁻¹⁸ each) stays zero here;
    the reference divides by its zero norm (NaN pixels)."""
    b = PERLIN_B
    g = np.array([(rs.randint(low=0, high=2**31, size=2) % (2 * b) - b) / b
                  for _ in range(2 * b + 2)])  # fmt: skip  # [2B + 2, 2]
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    g = np.divide(g, norm, out=np.zeros_like(g), where=norm > 0)
    p = np.arange(2 * b + 2)
    for i in range(b - 1, -1, -1):
        j = rs.randint(low=0, high=2**31) % b
        p[i], p[j] = p[j], p[i]
    # the reference copies entry by entry (B + i ← i), so 2B and 2B + 1 receive entries 0, 1
    p[b : 2 * b], g[b : 2 * b] = p[:b], g[:b]
    p[2 * b :], g[2 * b :] = p[:2], g[:2]
    return p, g


def perlin(x: np.ndarray, y: np.ndarray, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient noise at points (x, y) (any equal shapes): the four lattice corners'
    gradients dotted with the offsets, blended by the s-curve 3t² − 2t³, times 1.5.
    Zero at every lattice point, zero-mean over gradient draws."""

    def axis(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = v + PERLIN_N
        b0 = t.astype(np.int64) % PERLIN_B  # int() of a positive float: floor
        return b0, (b0 + 1) % PERLIN_B, t % 1.0  # corner below, above, offset in [0, 1)

    bx0, bx1, rx0 = axis(x)
    by0, by1, ry0 = axis(y)
    rx1, ry1 = rx0 - 1.0, ry0 - 1.0
    i, j = p[bx0], p[bx1]
    b00, b10, b01, b11 = p[i + by0], p[j + by0], p[i + by1], p[j + by1]
    sx, sy = rx0**2 * (3.0 - 2.0 * rx0), ry0**2 * (3.0 - 2.0 * ry0)
    u, v = rx0 * g[b00, 0] + ry0 * g[b00, 1], rx1 * g[b10, 0] + ry0 * g[b10, 1]
    a = u + sx * (v - u)
    u, v = rx0 * g[b01, 0] + ry1 * g[b01, 1], rx1 * g[b11, 0] + ry1 * g[b11, 1]
    b = u + sx * (v - u)
    return 1.5 * (a + sy * (b - a))


def turbulence(x: np.ndarray, y: np.ndarray, p: np.ndarray, g: np.ndarray,
               octaves: float = 16.0) -> np.ndarray:  # fmt: skip
    """Σ_{f = 1, 2, 4, ... ≤ octaves} |perlin(f·x, f·y)| / f (the reference's `turbulence`)."""
    out, f = np.zeros(np.broadcast(x, y).shape), 1.0
    while f <= octaves:
        out = out + np.abs(perlin(f * x, f * y, p, g)) / f
        f *= 2
    return out


def perlin_noise(img: np.ndarray, lv: float, rs: np.random.RandomState) -> np.ndarray:
    """A grey turbulence field n = clip(0.5·turbulence + 0.5, 0, 1) over 5 octaves, blended
    in: (1 − α)·img + 255·α·n, α = lv·0.5/10. The image spans 7 lattice cells at any size
    (pixel (y, x) ↦ (y, x)·224/(32·S), the reference's matrix m)."""
    s = img.shape[0]
    alpha, seed = level(lv, 0.5), rs.randint(low=0, high=2**32)
    p, g = perlin_tables(np.random.RandomState(seed))
    y, x = _grid(s)
    scale = 224 / (32 * s)
    n = np.clip(0.5 * turbulence(y * scale, x * scale, p, g) + 0.5, 0, 1)  # [S, S]
    return (1 - alpha) * img + 255 * alpha * n[..., None]


# name -> function(img [S, S, 3] float 0..255, level, RandomState) -> float image
C_BAR = {
    "blue_noise_sample": blue_noise_sample,
    "brownish_noise": brownish_noise,
    "checkerboard_cutout": checkerboard_cutout,
    "circular_motion_blur": circular_motion_blur,
    "inverse_sparkles": inverse_sparkles,
    "lines": lines,
    "pinch_and_twirl": pinch_and_twirl,
    "ripple": ripple,
    "sparkles": sparkles,
    "transverse_chromatic_abberation": transverse_chromatic_abberation,
    "single_frequency_greyscale": single_frequency_greyscale,
    "cocentric_sine_waves": cocentric_sine_waves,
    "plasma_noise": plasma_noise,
    "caustic_refraction": caustic_refraction,
    "perlin_noise": perlin_noise,
}
