"""MaskFeat HOG (SlowFast `HOGLayerC`): hand-built images, the formulas, and scikit-image.

scikit-image's `hog` differs from MaskFeat's by design in four ways; the comparison
configures it as close as it goes and states what is left:

1. Orientation origin: skimage measures atan2(d/drow, d/dcol) from the column axis,
   MaskFeat atan2(gx, gy) from the row axis. Mod π the two differ by a reflection plus a
   90° (4.5-bin) shift, so the bin edges cannot be made to coincide on the same image;
   on the *transposed* image skimage's angle equals MaskFeat's exactly, so skimage is run
   on Iᵀ and its cell grid transposed back.
2. Normalisation: `cells_per_block=(1, 1), block_norm="L2"` is a per-cell L2 norm with
   eps² = 1e-10 under the square root (MaskFeat: max(norm, 1e-12)); skimage also averages
   instead of summing over the cell, which the normalisation cancels.
3. Binning: both use hard assignment of the magnitude to [20°·b, 20°·(b + 1)) (no bilinear
   vote), unsigned orientation; one channel at a time (skimage's multichannel mode keeps
   the strongest channel per pixel, MaskFeat keeps every channel).
4. Gradients: skimage uses central differences [-1, 0, 1] with zero gradient on the
   border rows/columns; MaskFeat a Sobel kernel (with [1, 2, 1] smoothing) on a
   reflect-padded image. This is the one difference left on.

Given skimage's own gradients, our binning, pooling and normalisation reproduce skimage to
~1e-7 (`test_binning_pooling_and_norm_equal_skimage_given_its_gradients`). With the Sobel
gradients on, agreement is what the Sobel smoothing allows; measured (this machine,
skimage 0.26): per-cell cosine 0.90 / 0.93 / 0.81, Pearson r of all entries 0.74 / 0.87
/ 0.75, argmax bin equal in 54% / 64% / 61% of the cells and within one bin in 75% / 87%
/ 89%, for camera (8 px cells), astronaut (3 channels, 8 px) and 200 Fashion-MNIST test
images (4 px cells). The test asserts these figures minus a small margin.
"""

import math

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from conftest import FMNIST, requires_fmnist
from skimage.feature import hog as skimage_hog

from visrep.parts.hog import (
    hog,
    hog_token_targets,
    normalize_cells,
    orientation_histograms,
    sobel_gradients,
)


def skimage_cells(channel: np.ndarray, nbins: int, cell: int) -> np.ndarray:
    """skimage HOG of one channel, configured as close to MaskFeat as it goes (see the
    module docstring): [nbins, H // cell, W // cell]."""
    out = skimage_hog(
        channel.T.astype(np.float64),
        orientations=nbins,
        pixels_per_cell=(cell, cell),
        cells_per_block=(1, 1),
        block_norm="L2",
        feature_vector=False,
    )  # [Wc, Hc, 1, 1, nbins] for the transposed image
    return out[:, :, 0, 0, :].transpose(2, 1, 0)


def central_differences(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """skimage's gradients (row, column), zero on the border rows / columns."""
    x = channel.astype(np.float64)
    g_row, g_col = np.zeros_like(x), np.zeros_like(x)
    g_row[1:-1] = x[2:] - x[:-2]
    g_col[:, 1:-1] = x[:, 2:] - x[:, :-2]
    return g_row, g_col


def agreement(ref: np.ndarray, ours: np.ndarray, nbins: int = 9) -> dict[str, float]:
    """Figures over cells [..., nbins, Hc, Wc] that are non-empty in both."""
    ref = ref.reshape(-1, *ref.shape[-3:])
    ours = ours.reshape(-1, *ours.shape[-3:])
    both = (np.linalg.norm(ref, axis=1) > 0.5) & (np.linalg.norm(ours, axis=1) > 0.5)
    d = np.abs(ref.argmax(1) - ours.argmax(1))
    d = np.minimum(d, nbins - d)  # circular bin distance
    return {
        "cosine": float((ref * ours).sum(1)[both].mean()),
        "pearson": float(np.corrcoef(ref.ravel(), ours.ravel())[0, 1]),
        "argmax": float((d == 0)[both].mean()),
        "within_one_bin": float((d <= 1)[both].mean()),
    }


def photos() -> dict[str, np.ndarray]:
    astronaut = skimage.data.astronaut()
    return {
        "camera": skimage.data.camera()[None],
        "astronaut": np.stack([astronaut[..., c] for c in range(3)]),
    }


def fmnist(n: int = 200) -> np.ndarray:
    from visrep.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(FMNIST, "test")
    return images[:n, 0].numpy()


# -- scikit-image -----------------------------------------------------------------------


def _given_skimage_gradients(channels: np.ndarray, nbins: int, cell: int) -> None:
    for ch in channels:
        g_row, g_col = central_differences(ch)
        # MaskFeat's kernels are left-minus-right / top-minus-bottom: gx = -d/dcol, gy = -d/drow
        gx = torch.from_numpy(-g_col)[None, None]
        gy = torch.from_numpy(-g_row)[None, None]
        ours = normalize_cells(orientation_histograms(gx, gy, nbins, cell))[0, 0].numpy()
        ref = skimage_cells(ch, nbins, cell)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["camera", "astronaut"])
def test_binning_pooling_and_norm_equal_skimage_given_its_gradients(name):
    _given_skimage_gradients(photos()[name], nbins=9, cell=8)


@requires_fmnist
@pytest.mark.parametrize(("nbins", "cell"), [(9, 4), (9, 7), (6, 4)])
def test_binning_equals_skimage_on_fashion_mnist_given_its_gradients(nbins, cell):
    _given_skimage_gradients(fmnist(20), nbins, cell)


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("camera", {"cosine": 0.88, "pearson": 0.72, "argmax": 0.52, "within_one_bin": 0.72}),
        ("astronaut", {"cosine": 0.91, "pearson": 0.85, "argmax": 0.61, "within_one_bin": 0.84}),
    ],
)
def test_sobel_hog_agrees_with_skimage_on_photos(name, floor):
    channels = photos()[name]
    ref = np.stack([skimage_cells(ch, 9, 8) for ch in channels])
    ours = hog(torch.from_numpy(channels).float()[None], 9, 8)[0].numpy()
    got = agreement(ref, ours)
    assert all(got[k] >= v for k, v in floor.items()), got


@requires_fmnist
def test_sobel_hog_agrees_with_skimage_on_fashion_mnist():
    images = fmnist(200)
    ref = np.stack([skimage_cells(im, 9, 4) for im in images])
    ours = hog(torch.from_numpy(images).float()[:, None], 9, 4)[:, 0].numpy()
    got = agreement(ref, ours)
    floor = {"cosine": 0.79, "pearson": 0.73, "argmax": 0.59, "within_one_bin": 0.86}
    assert all(got[k] >= v for k, v in floor.items()), got


# -- hand-built images and the formulas --------------------------------------------------


def step(kind: str, size: int = 16) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = {
        "vertical_edge": (x >= size // 2).float(),  # dark left, bright right
        "vertical_edge_flipped": (x < size // 2).float(),
        "horizontal_edge": (y >= size // 2).float(),
        "ramp_x_plus_y": (x + y).float(),
        "ramp_x_minus_y": (x - y).float(),
    }[kind]
    return img[None, None]


@pytest.mark.parametrize(
    ("kind", "expected_bin"),
    [
        # gx = -4 (left minus right), gy = 0: φ = atan2(-4, 0) = -π/2 -> floor(-4.5) mod 9 = 4
        ("vertical_edge", 4),
        ("vertical_edge_flipped", 4),  # unsigned: the opposite contrast lands in the same bin
        # gx = 0, gy = -4: φ = atan2(0, -4) = π -> floor(9) mod 9 = 0
        ("horizontal_edge", 0),
        # gx = gy = -8: φ = -3π/4 -> floor(-6.75) mod 9 = 2 (45° mod 180 lies in [40°, 60°))
        ("ramp_x_plus_y", 2),
        # gx = -8, gy = 8: φ = -π/4 -> floor(-2.25) mod 9 = 6 (135° lies in [120°, 140°))
        ("ramp_x_minus_y", 6),
    ],
)
def test_edges_land_in_their_bin(kind, expected_bin):
    # interior cells: on the border, reflect padding zeroes the gradient across the border
    features = hog(step(kind), nbins=9, cell=4)[0, 0, :, 1:-1, 1:-1]  # [9, 2, 2]
    occupied = features.norm(dim=0) > 0
    assert occupied.any()
    one_hot = F.one_hot(torch.tensor(expected_bin), 9).float()
    for u, v in occupied.nonzero().tolist():
        torch.testing.assert_close(features[:, u, v], one_hot)


def test_atan2_argument_order_matters():
    # with atan2(gy, gx) a vertical edge would land in bin 0 and a horizontal one in bin 4
    gx, gy = sobel_gradients(step("vertical_edge"))
    assert math.isclose(float(torch.atan2(gx, gy)[0, 0, 5, 8]), -math.pi / 2, abs_tol=1e-6)
    assert hog(step("vertical_edge"), 9, 4)[0, 0, 4].sum() > 0
    assert hog(step("vertical_edge"), 9, 4)[0, 0, 0].sum() == 0


def test_gradients_are_the_sobel_cross_correlation_on_reflect_padded_images():
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    kx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=torch.float64)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    gx, gy = sobel_gradients(x)
    torch.testing.assert_close(gx, F.conv2d(padded, kx.expand(3, 1, 3, 3), groups=3))
    torch.testing.assert_close(gy, F.conv2d(padded, kx.t().expand(3, 1, 3, 3), groups=3))


def test_gradients_are_exactly_zero_on_constant_regions():
    x = torch.full((4, 1, 28, 28), (0 - 0.2860) / 0.3530)  # normalised black background
    x[:, :, 10:18, 10:18] = 1.3
    features = hog(x, 9, 4)
    assert features[:, :, :, 0, 0].abs().max() == 0  # empty cell -> zero target, not noise
    assert features[:, :, :, 3, 3].abs().max() == 0  # constant inside too


def test_hog_equals_the_formula_computed_pixel_by_pixel():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 8, 12, dtype=torch.float64)
    nbins, cell = 6, 4
    gx, gy = sobel_gradients(x)
    expected = torch.zeros(2, 2, nbins, 2, 3, dtype=torch.float64)
    for n, c, i, j in np.ndindex(2, 2, 8, 12):
        phi = math.atan2(float(gx[n, c, i, j]), float(gy[n, c, i, j]))
        b = math.floor(phi / math.pi * nbins) % nbins
        expected[n, c, b, i // cell, j // cell] += math.hypot(gx[n, c, i, j], gy[n, c, i, j])
    norm = expected.norm(dim=2, keepdim=True).clamp(min=1e-12)
    torch.testing.assert_close(hog(x, nbins, cell), (expected / norm).float())


def test_shapes_drop_partial_cells_and_reject_tiny_images():
    assert hog(torch.randn(3, 3, 30, 17), nbins=9, cell=8).shape == (3, 3, 9, 3, 2)
    assert hog(torch.randn(1, 1, 28, 28), nbins=12, cell=7).shape == (1, 1, 12, 4, 4)
    with pytest.raises(ValueError, match="smaller than one"):
        hog(torch.randn(1, 1, 6, 6), cell=8)


def test_scaling_the_image_leaves_hog_unchanged():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(hog(4.0 * x), hog(x))  # exact scaling: bit-identical
    # a general factor rounds the gradients, which may move a pixel lying on a bin edge
    diff = (hog(3.7 * x) - hog(x)).abs().amax(dim=2)  # per cell
    assert (diff < 1e-5).float().mean() > 0.99


@requires_fmnist
def test_normalised_and_unit_range_inputs_agree_up_to_rounding_at_the_zero_bin_edge():
    """(x - mean) / std scales every gradient by 1/std and the constant cancels, so the HOG
    is unchanged in real arithmetic. In floats, gradients at exactly 0° (frequent in
    quantized images) sit on the edge between bins 0 and 8 and rounding picks the side:
    the only differences are magnitude moving between those two bins."""
    x = torch.from_numpy(fmnist(256)).float()[:, None] / 255
    mean, std = 0.2860, 0.3530
    xn = (x - mean) / std
    a, b = hog(x, 9, 4), hog(xn, 9, 4)
    same = ((a - b).abs().amax(dim=2) < 1e-5).float().mean()
    assert same > 0.97  # measured 0.985
    assert torch.equal(a.norm(dim=2) == 0, b.norm(dim=2) == 0)  # empty cells stay empty
    ha = orientation_histograms(*sobel_gradients(x), 9, 4)
    hb = orientation_histograms(*sobel_gradients(xn), 9, 4) * std

    def merge_wrap(h):  # bins 0 and 8 are neighbours across 0° = 180°
        return torch.cat([h[:, :, :1] + h[:, :, 8:], h[:, :, 1:8]], dim=2)

    scale = ha.sum(dim=2, keepdim=True) + 1e-6
    assert ((merge_wrap(ha) - merge_wrap(hb)).abs() / scale).max() < 2e-4


def test_hog_is_fp32_and_gradient_free_under_autocast():
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hog(x)
    assert out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out, hog(x))


# -- token layout (SlowFast `_get_hog_label_2d`) -----------------------------------------


def test_token_targets_order_channel_bin_then_cell_row_then_cell_col():
    n, c, nbins, gh, gw, s = 2, 3, 4, 2, 3, 2
    features = torch.randn(n, c, nbins, gh * s, gw * s)
    out = hog_token_targets(features, (gh, gw))
    assert out.shape == (n, gh * gw, c * nbins * s * s)
    for i, j, ch, b, u, v in np.ndindex(gh, gw, c, nbins, s, s):
        k = ch * nbins + b
        assert out[1, i * gw + j, k * s * s + u * s + v] == features[1, ch, b, i * s + u, j * s + v]


def test_token_targets_match_unfold_of_the_official_layout():
    # SlowFast: flatten (C, nbins), move channels last, unfold rows then columns by s
    features = torch.randn(2, 3, 9, 8, 8)
    flat = features.flatten(1, 2).permute(0, 2, 3, 1)  # [N, Hc, Wc, 27]
    ref = flat.unfold(1, 2, 2).unfold(2, 2, 2).flatten(1, 2).flatten(2)  # [N, 16, 27*2*2]
    torch.testing.assert_close(hog_token_targets(features, (4, 4)), ref)


def test_token_targets_reject_cells_that_do_not_tile_the_tokens():
    with pytest.raises(ValueError, match="divides the patch size"):
        hog_token_targets(torch.randn(1, 1, 9, 7, 7), (2, 2))
