"""The statistics of benchmarks/robustness_msd_matched.py (imported by path): the matched
subset, per-corruption / pooled Spearman ρ and the permutation test."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from robustness_msd_matched import correlations, matched_subset, uncertainty  # noqa: E402


def test_matched_subset_is_the_largest_window():
    top1 = {"none": 80.0, "base": 73.0, "noise": 72.0, "blur": 74.5, "augmix": 71.0}
    assert matched_subset(top1, 2.0) == ["base", "noise", "augmix"]  # 71-73, three schemes
    assert matched_subset(top1, 10.0) == list(top1)
    assert len(matched_subset(top1, 0.0)) == 1


def test_correlations_per_corruption_mean_and_pooled_by_hand():
    msd = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])  # 3 schemes x 2 corruptions
    err = np.array([[5.0, 50.0], [6.0, 40.0], [7.0, 60.0]])
    c = correlations(msd, err)
    assert c["per_corruption"][0] == pytest.approx(1.0)
    assert c["per_corruption"][1] == pytest.approx(-0.5)  # ranks (1,3,2) vs (2,1,3)
    assert c["mean"] == pytest.approx(0.25)
    # pooled: msd ranks (1,4,2,6,3,5), err ranks (1,5,2,4,3,6): 1 - 6·6/(6·35) = 29/35
    assert c["pooled"] == pytest.approx(29 / 35)
    assert np.isnan(correlations(np.ones((3, 1)), err[:, :1])["mean"])  # constant MSD


def test_permutation_p_is_small_only_for_a_real_link():
    rng = np.random.default_rng(0)
    msd = rng.random((6, 15))
    linked = uncertainty(msd, msd + 0.01 * rng.random((6, 15)), 100, 0)
    unlinked = uncertainty(msd, rng.random((6, 15)), 100, 0)
    assert linked["permutation_p_mean"] < 0.02 < unlinked["permutation_p_mean"]
    assert linked["ci95_mean"][0] > 0.8
