"""`visrep.evals.generation` against closed forms and hand computations: the Fréchet distance
of Gaussians, Kynkäänniemi et al.'s k-NN precision/recall on a tiny set; then
`evaluate_generation` on real Fashion-MNIST images in a trained run's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_fmnist

from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.evals.generation import (
    feature_statistics,
    frechet_distance,
    generation_metrics,
    knn_radii,
    precision_recall,
)
from visrep.loop import train
from visrep.sample import evaluate_generation, real_images


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    # commuting covariances: ‖Δμ‖² + Σ (√v1 − √v2)²
    want = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want)


def test_frechet_distance_against_a_full_covariance_and_a_scaled_identity():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    s1, c = a @ a.T + 0.1 * np.eye(5), 2.0
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Tr((Σ₁·cI)^½) = √c · Σ √λᵢ(Σ₁)
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + 5 * c
    want -= 2 * np.sqrt(c) * np.sqrt(np.linalg.eigvalsh(s1)).sum()
    assert frechet_distance(mu1, s1, mu2, c * np.eye(5)) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_statistics_of_samples_converge_to_the_gaussian_they_come_from():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 3
    mu, sigma = feature_statistics(x)
    assert np.allclose(mu, 3, atol=0.05) and np.allclose(np.diag(sigma), [1, 4, 0.25], rtol=0.05)
    fd = frechet_distance(mu, sigma, np.full(3, 3.0), np.diag([1.0, 4.0, 0.25]))
    assert 0 <= fd < 0.01
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(x[:1])


def test_precision_recall_by_hand():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert torch.equal(knn_radii(real, 1), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(knn_radii(real, 2), torch.tensor([2.0, 1.0, 1.0, 2.0]))
    # 0.5 lies in the ball of 0 (radius 1), 10 in none; fake radii (k = 1) are 9.5 each, so
    # every real point lies within 9.5 of 0.5
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    far = torch.tensor([[20.0], [21.0]])  # radii 1: no real point within 1 of 20 or 21
    assert precision_recall(real, far, k=1) == (0.0, 0.0)
    with pytest.raises(ValueError, match="more than 3 points"):
        knn_radii(real[:3], 3)


def test_generation_metrics_records_its_settings():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 4, generator=g), torch.randn(40, 4, generator=g) + 5
    m = generation_metrics(a, b, k=3)
    assert m["n_real"] == 50 and m["n_generated"] == 40 and m["feature_dim"] == 4
    assert m["pr_k"] == 3 and m["frechet_distance"] > 90 and m["precision"] == 0.0
    with pytest.raises(ValueError, match="different dimensions"):
        generation_metrics(a, b[:, :3])


@requires_fmnist
def test_real_images_score_better_than_noise_in_a_trained_runs_features(tmp_path):
    """Real train images as 'samples' vs uniform noise, both against real test images."""
    run = tmp_path / "ref"
    cfg = replace(smoke(get_recipe("gen_reference_fmnist")), **{
        "run.out_dir": str(run), "run.max_steps": 2, "run.threads": 1, "eval.limit_test": 50,
        "eval.limit_train": 64})  # fmt: skip
    train(cfg)
    n = 64
    real = real_images(run, n, seed=5).permute(0, 2, 3, 1).numpy()  # [n, H, W, 1] uint8
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    good = evaluate_generation(run, run, n=n, samples=real, device="cpu")["reference"]
    bad = evaluate_generation(run, run, n=n, samples=noise, device="cpu")["reference"]
    assert good["recipe"] == "gen_reference_fmnist" and "finetune_top1" in good
    assert good["n_real"] == n and good["feature_dim"] == 512
    assert good["frechet_distance"] < bad["frechet_distance"] / 2
    assert good["precision"] > 0.5 > bad["precision"]
