"""ImageNet-C-bar perlin_noise (Mintun, Kirillov and Xie, NeurIPS 2021;
facebookresearch/augmentation-corruption `imagenet_c_bar/corrupt.py` `PerlinNoise` and the
Perlin generator of `experiments/overlap/augmentations/utils/noise.py`): the lattice noise
by hand, its statistics, golden values of the reference generator, and the corruption's
shape/dtype/range, seeding, severity and blend amplitude."""

from __future__ import annotations

import numpy as np
import pytest

from visrep.data.corruptions import SUITES, corrupt
from visrep.data.corruptions_bar import (
    IMAGENET_C_BAR_LEVELS,
    PERLIN_B,
    levels,
    perlin,
    perlin_noise,
    perlin_tables,
    turbulence,
)


def test_perlin_by_hand_with_injected_tables():
    # every gradient (1, 0): noise = 1.5·(rx − s(rx)), s(t) = 3t² − 2t³, whatever y
    p, g = np.arange(2 * PERLIN_B + 2) % PERLIN_B, np.tile([1.0, 0.0], (2 * PERLIN_B + 2, 1))
    x = np.array([0.0, 0.25, 0.5, 3.75])
    y = np.array([0.6, 0.1, 7.3, 2.0])
    s = lambda t: t * t * (3 - 2 * t)  # noqa: E731
    want = 1.5 * np.array([0.0, 0.25 - s(0.25), 0.5 - s(0.5), 0.75 - s(0.75)])
    np.testing.assert_allclose(perlin(x, y, p, g), want, atol=1e-12)
    assert want[1] == pytest.approx(0.140625)  # 1.5·(0.25 − 0.15625)
    # turbulence: Σ |noise(f·x)| / f over f = 1, 2, 4, 8, 16 (at x = 0.25: 0.25, 0.5, 1, 2, 4)
    t = turbulence(np.array([0.25]), np.array([0.0]), p, g)
    assert t[0] == pytest.approx(0.140625 + 0 + 0 + 0 + 0)


def test_reference_generator_golden_values():
    # values of the reference PerlinNoiseGenerator(RandomState(0)) (noise, turbulence 16),
    # computed once with its per-point Python code
    p, g = perlin_tables(np.random.RandomState(0))
    assert list(p[:5]) == [138, 12, 48, 9, 251]
    np.testing.assert_allclose(g[0], [-0.37292105, -0.92786308], atol=1e-8)
    pts = np.array([[0.3, 0.7], [2.25, 5.5], [6.9, 0.1]])
    np.testing.assert_allclose(perlin(pts[:, 0], pts[:, 1], p, g),
                               [-0.24937830885085005, 0.4876983566239247, -0.16958077659026433],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(turbulence(pts[:, 0], pts[:, 1], p, g),
                               [0.34776551314695847, 0.5762967877962973, 0.4248622853139132],
                               rtol=1e-12)  # fmt: skip
    # tables: p[:B] a permutation, both tables repeated past B, unit gradients
    assert sorted(p[:PERLIN_B]) == list(range(PERLIN_B))
    np.testing.assert_array_equal(p[PERLIN_B : 2 * PERLIN_B], p[:PERLIN_B])
    np.testing.assert_array_equal(p[2 * PERLIN_B :], p[:2])  # entry by entry: B + i ← i
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0)


def test_noise_statistics():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 7, 200), rng.uniform(0, 7, 200)
    draws = np.stack([perlin(x, y, *perlin_tables(np.random.RandomState(k))) for k in range(300)])
    # zero at every lattice point; zero-mean over gradient draws everywhere
    lattice = perlin(np.arange(6.0), np.arange(6.0)[::-1], *perlin_tables(np.random.RandomState(1)))
    np.testing.assert_allclose(lattice, 0.0, atol=1e-12)
    assert abs(draws.mean()) < 0.01 and draws.std() > 0.1
    # |noise| ≤ 1.5·(max corner |g·d| ≤ √2): the reference's scale keeps it inside ±1.5·√2
    assert np.abs(draws).max() <= 1.5 * np.sqrt(2)


def test_official_amplitude_on_a_flat_image():
    # out = (1 − α)·img + 255·α·n, α = level·0.5/10, n = clip(0.5·turbulence + 0.5, 0, 1),
    # pixel (y, x) ↦ (y, x)·224/(32·S)
    s, lv = 32, IMAGENET_C_BAR_LEVELS["perlin_noise"][4]
    img = np.full((s, s, 3), 100.0)
    rs = np.random.RandomState(5)
    out = perlin_noise(img, lv, rs)
    seed = np.random.RandomState(5).randint(low=0, high=2**32)
    p, g = perlin_tables(np.random.RandomState(seed))
    yy, xx = np.meshgrid(np.arange(s) * 7 / s, np.arange(s) * 7 / s, indexing="ij")
    n = np.clip(0.5 * turbulence(yy, xx, p, g) + 0.5, 0, 1)
    alpha = lv * 0.5 / 10
    np.testing.assert_allclose(out[..., 0], (1 - alpha) * 100 + 255 * alpha * n, atol=1e-9)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()  # grey


def test_corruption_shape_dtype_seed_and_severity():
    assert "perlin_noise" in SUITES["imagenet_c_bar"] and len(SUITES["imagenet_c_bar"]) == 10
    assert levels("perlin_noise", 28) == (4.6, 5.2, 5.8, 7.6, 8.8)  # not in CIFAR-10-C-bar
    rng = np.random.default_rng(2)
    for x in (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)):  # fmt: skip
        dist = []
        for sev in range(1, 6):
            out = corrupt(x, "perlin_noise", sev, seed=9)
            assert out.shape == x.shape and out.dtype == np.uint8
            np.testing.assert_array_equal(out, corrupt(x, "perlin_noise", sev, seed=9))
            dist.append(np.abs(out.astype(float) - x).mean())
        assert all(a < b for a, b in zip(dist, dist[1:])), dist  # α grows with the level
        assert (corrupt(x, "perlin_noise", 3, seed=10) != corrupt(x, "perlin_noise", 3, 9)).any()
