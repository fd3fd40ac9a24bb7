"""Sweep analysis: the Student t-test, the bin-level sweet spot, the smoothness fit."""

import numpy as np
import pytest

from visrep.graphs.analysis import best_vs_complete, smoothness, student_t_test, sweet_spot


def test_student_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for na, nb, shift in ((3, 3, 0.5), (3, 9, 2.0), (6, 2, -1.0), (15, 3, 0.1)):
        a, b = rng.normal(0, 1, na), rng.normal(shift, 1.5, nb)
        want = stats.ttest_ind(a, b)
        t, p = student_t_test(a, b)
        assert t == pytest.approx(want.statistic, rel=1e-10)
        assert p == pytest.approx(want.pvalue, rel=1e-8)


def test_sweet_spot_keeps_bins_not_significantly_worse():
    rows = [
        {"C": 0.30, "L": 2.0, "errors": [10.0, 10.1, 9.9]},  # best
        {"C": 0.32, "L": 2.0, "errors": [10.2, 10.0, 10.1]},  # same bin as the best
        {"C": 0.50, "L": 1.8, "errors": [10.1, 9.8, 10.4]},  # not significantly worse
        {"C": 0.90, "L": 1.1, "errors": [14.0, 14.1, 13.9]},  # significantly worse
    ]
    s = sweet_spot(rows, 12, (1.0, 2.5))
    assert s["best"]["C_centre"] == pytest.approx(0.2917, abs=1e-3)
    assert len(s["best"]["errors"]) == 6
    assert s["sweet_spot"]["bins_kept"] == 2 and s["sweet_spot"]["bins_occupied"] == 3
    assert s["sweet_spot"]["C"][1] < 0.6


def test_smoothness_and_gap():
    rng = np.random.default_rng(0)
    c, length = rng.uniform(0, 1, 30), rng.uniform(1, 2.5, 30)
    rows = [{"C": a, "L": b, "errors": list(10 + (a - 0.4) ** 2 + rng.normal(0, 0.01, 3))}
            for a, b in zip(c, length)]  # fmt: skip
    fit = smoothness(rows)
    assert fit["r2"] > 0.9 and fit["r2_loo"] > 0.8 and fit["split_seed_reliability"] > 0.5
    gap = best_vs_complete([10.0, 10.2, 10.1], [11.0, 11.2, 10.9])
    assert gap["gap"] == pytest.approx(0.9333, abs=1e-3) and gap["beats_by_more_than_se"]
