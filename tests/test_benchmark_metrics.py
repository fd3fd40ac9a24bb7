"""Metrics computed by benchmark scripts (benchmarks/ is not a package: imported by path)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from grn_collapse import cosine_distance, cosine_distance_pairwise  # noqa: E402


def test_grn_feature_cosine_distance_equals_the_pairwise_formula():
    torch.manual_seed(0)
    x = torch.randn(5, 64, 6, 6).relu()
    x[:, 3] = 0  # a dead channel: distance 1/2 to every channel, itself included
    x[1, 10] = 7.0
    torch.testing.assert_close(cosine_distance(x), cosine_distance_pairwise(x))
    same = torch.randn(2, 1, 4, 4).abs().expand(2, 8, 4, 4)  # identical channels: collapsed
    torch.testing.assert_close(cosine_distance(same), torch.zeros(2), atol=1e-6, rtol=0)
    dead = torch.zeros(1, 8, 4, 4)
    torch.testing.assert_close(cosine_distance(dead), torch.full((1,), 0.5))
