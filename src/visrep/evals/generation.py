"""Sample-quality statistics on features: Fréchet distance and k-NN precision/recall.

- Fréchet distance between Gaussians fitted to two feature sets (Heusel et al., "GANs
  Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS
  2017, Eq. 6): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), with the matrix square root by
  `scipy.linalg.sqrtm` and the numerical guards of mseitzer/pytorch-fid
  (`src/pytorch_fid/fid_score.py` `calculate_frechet_distance`: add ε·I to both covariances
  when the product is singular, drop an imaginary part that is numerical noise). FID is
  this distance on Inception-v3 pool features; visrep computes it on the features of a
  network it trained (Inception weights are not available offline), so the number is a
  "Fréchet distance in <network> features", comparable only with itself.
- Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019, Sec. 2;
  kynkaanniemi/improved-precision-and-recall-metric `precision_recall.py`): each set's
  manifold is the union of balls around its points whose radius is the distance to the
  point's k-th nearest neighbour in the same set (k = 3); precision is the share of
  generated points inside the real manifold, recall the share of real points inside the
  generated one.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import Tensor


def feature_statistics(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, rows are samples) in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be [N >= 2, D]; got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2·Tr((Σ₁Σ₂)^½) between N(μ₁, Σ₁) and N(μ₂, Σ₂)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two feature sets have different dimensions")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # singular product: offset both diagonals
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has an imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def knn_radii(features: Tensor, k: int) -> Tensor:
    """[N] distance of each point to its k-th nearest other point of the same set."""
    if len(features) <= k:
        raise ValueError(f"k = {k} nearest neighbours need more than {k} points")
    d = torch.cdist(features, features)  # [N, N], the diagonal (self) is 0
    return d.kthvalue(k + 1, dim=1).values  # k + 1: the point itself is the smallest


def coverage(queries: Tensor, points: Tensor, radii: Tensor, batch: int = 1024) -> float:
    """Share of `queries` within radii[j] of some points[j] (inside the points' manifold)."""
    inside = [(torch.cdist(queries[i : i + batch], points) <= radii[None]).any(dim=1)
              for i in range(0, len(queries), batch)]  # fmt: skip
    return float(torch.cat(inside).float().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of `fake` against `real` features [N, D] (Kynkäänniemi et al.)."""
    real, fake = real.double(), fake.double()
    precision = coverage(fake, real, knn_radii(real, k))
    recall = coverage(real, fake, knn_radii(fake, k))
    return precision, recall


def generation_metrics(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, float | int]:
    """Fréchet distance and precision/recall of generated features against real ones, with
    the settings that make the numbers reproducible."""
    if real.shape[1] != fake.shape[1]:
        raise ValueError("real and generated features have different dimensions")
    fd = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    precision, recall = precision_recall(real, fake, k)
    return {"frechet_distance": fd, "precision": precision, "recall": recall, "pr_k": k,
            "n_real": len(real), "n_generated": len(fake), "feature_dim": real.shape[1]}  # fmt: skip
