"""visrep.data.corruptions: the 15 + 4 ImageNet-C corruptions (CIFAR-10-C constants under
64 px, imagecorruptions from 64 px) and CIFAR-10-C-bar keep shape, dtype and range, grow
with severity, draw one field for a grey image, reproduce from a seed, and match hand
computations of the reference formulas."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_fmnist

from visrep.data.corruptions import (
    _CIFAR_C,
    BENCHMARK,
    CATEGORY,
    HELD_OUT,
    SUITES,
    corrupt,
    corrupt_each,
    image_seed,
)
from visrep.data.corruptions_bar import C_BAR_LEVELS, levels

# severity does not grow the distance to the clean image for these, by the reference tables:
# CIFAR-10-C elastic_transform's affine jitter shrinks from 0.08·S (s1) to 0.03·S (s5) while
# its smooth displacement grows; spatter switches from water (s1-3) to mud (s4-5); saturate is
# the identity on grey images at s1-3 (S = 0)
NOT_MONOTONE = {"elastic_transform", "spatter", "saturate"}


@pytest.fixture(scope="module")
def fmnist():
    from visrep.data.fashion_mnist import load_fashion_mnist

    x, _ = load_fashion_mnist(split="test")
    return x[:12, 0].numpy()  # [12, 28, 28] uint8


def test_suites_are_the_papers_lists():
    assert len(BENCHMARK) == 15 and len(HELD_OUT) == 4 and len(SUITES["c_bar"]) == 10
    assert set(CATEGORY) == set(BENCHMARK) | set(HELD_OUT) | set(C_BAR_LEVELS) | set(
        SUITES["imagenet_c_bar"]
    )
    assert C_BAR_LEVELS["blue_noise_sample"] == (0.7, 1.4, 2.1, 3.5, 4.2)
    assert len(SUITES["imagenet_c_bar"]) == 10  # perlin_noise included
    assert levels("sparkles", 32) == (0.7, 3.5, 5.6, 6.3, 7.0)  # CIFAR-10-C-bar under 64 px
    assert levels("sparkles", 64) == (1.0, 2.0, 3.0, 5.0, 6.0)  # ImageNet-C-bar from 64 px


@requires_fmnist
@pytest.mark.parametrize("name", sorted({n for s in SUITES.values() for n in s}))
def test_shape_dtype_range_and_severity(fmnist, name):
    dist = []
    for s in range(1, 6):
        out = corrupt(fmnist, name, s, seed=7)
        assert out.shape == fmnist.shape and out.dtype == np.uint8
        dist.append(np.abs(out.astype(float) - fmnist).mean())
    if name not in NOT_MONOTONE:
        assert dist[4] > dist[0], (name, dist)
        assert dist[4] > 0.5, (name, dist)  # severity 5 visibly changes the image


def test_rgb_and_large_images_keep_shape():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for name in ("gaussian_noise", "frost", "saturate", "transverse_chromatic_abberation"):
        assert corrupt(rgb, name, 3, 1).shape == rgb.shape
    big = rng.integers(0, 256, (1, 64, 64), dtype=np.uint8)  # imagecorruptions backend
    for name in ("gaussian_noise", "glass_blur", "motion_blur", "fog", "frost"):
        out = corrupt(big, name, 2, 1)
        assert out.shape == big.shape and out.dtype == np.uint8 and (out != big).any()


def test_one_draw_for_the_batch_and_one_per_image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    two = corrupt(np.concatenate([img, img]), "gaussian_noise", 3, seed=5)
    np.testing.assert_array_equal(two[0], two[1])  # one transform = one noise field
    np.testing.assert_array_equal(two[:1], corrupt(img, "gaussian_noise", 3, seed=5))
    assert (corrupt(img, "gaussian_noise", 3, seed=6) != two[:1]).any()
    each = corrupt_each(np.concatenate([img, img]), "gaussian_noise", 3, base_seed=0)
    assert (each[0] != each[1]).any()  # an evaluation set draws per image
    np.testing.assert_array_equal(
        each[1:], corrupt(img, "gaussian_noise", 3, image_seed("gaussian_noise", 3, 1))
    )
    assert image_seed("a", 1, 0) != image_seed("a", 1, 1) != image_seed("a", 2, 1)


def test_gaussian_noise_std_is_the_table_constant():
    flat = np.full((1, 32, 32), 128, dtype=np.uint8)  # mid-grey: no clipping
    for s in (1, 3, 5):
        res = [(corrupt(flat, "gaussian_noise", s, k).astype(float) - 128) / 255 for k in range(4)]
        assert np.std(res) == pytest.approx(_CIFAR_C["gaussian_noise"][s - 1], rel=0.05)


def test_contrast_is_the_formula_exactly():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (1, 32, 32), dtype=np.uint8)
    c = _CIFAR_C["contrast"][2]
    f = x[0] / 255.0
    want = np.uint8(np.clip((f - f.mean()) * c + f.mean(), 0, 1) * 255)
    np.testing.assert_array_equal(corrupt(x, "contrast", 3, 0)[0], want)


def test_grey_impulse_noise_is_full_intensity():
    # one field shared by the three channels: salt-and-pepper stays 0 / 255 after luma
    flat = np.full((1, 28, 28), 100, dtype=np.uint8)
    out = corrupt(flat, "impulse_noise", 5, 3)
    changed = out[out != 100]
    assert len(changed) > 10 and set(np.unique(changed)) <= {0, 255}


def test_small_images_are_padded_and_cropped_back():
    x = np.zeros((1, 28, 28), dtype=np.uint8)
    x[0, 10:18, 10:18] = 200
    out = corrupt(x, "pixelate", 5, 0)
    assert out.shape == (1, 28, 28)
    # brightness on a black background: s·255 added everywhere (HSV V + c on grey)
    b = corrupt(np.zeros((1, 28, 28), np.uint8), "brightness", 5, 0)
    assert (b == np.uint8(0.3 * 255)).all()


def test_c_bar_definitions():
    rng = np.random.default_rng(3)
    x = rng.integers(30, 226, (1, 32, 32, 3), dtype=np.uint8)
    cut = corrupt(x, "checkerboard_cutout", 5, 0)
    changed = (cut != x).any(-1)
    assert changed.any() and (cut[changed] == 128).all()  # cells become grey 128
    holes = corrupt(x, "blue_noise_sample", 5, 0)
    assert (holes <= x).all() and ((holes == 0).all(-1)).any()  # black holes, nothing added
    inv = corrupt(x, "inverse_sparkles", 5, 0)
    assert (inv >= x).mean() > 0.99  # white everywhere outside the star
    # single_frequency_greyscale adds the same plane wave to the three channels
    wave = corrupt(x, "single_frequency_greyscale", 2, 0).astype(int) - x
    inside = ((x > 60) & (x < 190)).all(-1)  # no clipping there
    assert (wave[inside][:, 0] == wave[inside][:, 1]).mean() > 0.95


def test_bad_input_is_a_clear_error():
    x = np.zeros((1, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "rain", 1, 0)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6, 0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(x.astype(np.float32), "fog", 1, 0)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        corrupt(np.zeros((1, 28, 28, 2), np.uint8), "fog", 1, 0)
