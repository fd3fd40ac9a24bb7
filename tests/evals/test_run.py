import pytest
import torch
from conftest import requires_fmnist
from torch import nn

from visrep.configs import resolved_recipe
from visrep.data.augment import FMNIST_MEAN, FMNIST_STD
from visrep.evals.run import evaluate


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach())
        return x.flatten(1)


@requires_fmnist
def test_evaluate_feeds_images_normalized_like_training():
    """Regression: the eval path once divided by 255 twice (near-constant inputs)."""
    cfg = resolved_recipe("mae_fmnist")
    rec = Recorder()
    m = evaluate(rec, cfg.data, cfg.eval, protocols=("knn",), limit=300)
    x = torch.cat(rec.seen)
    lo, hi = -FMNIST_MEAN[0] / FMNIST_STD[0], (1 - FMNIST_MEAN[0]) / FMNIST_STD[0]
    assert x.min() == pytest.approx(lo, abs=1e-4) and x.max() == pytest.approx(hi, abs=1e-4)
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3
    assert m["knn_top1"] > 0.6 and m["knn_n_train"] == 300


class FakeClock:
    """A clock that only the encoder below advances: the measured rate is exact."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class Slow(nn.Module):
    """Raw pixels at a known cost per image on the fake clock."""

    def __init__(self, clock: FakeClock, seconds_per_image: float):
        super().__init__()
        self.clock, self.spi = clock, seconds_per_image

    def forward(self, x):
        self.clock.now += self.spi * len(x)
        return x.flatten(1)


@requires_fmnist
def test_eval_budget_shrinks_the_splits_to_fit_and_a_large_budget_changes_nothing(monkeypatch):
    import visrep.evals.run as run
    from visrep.config import replace

    clock = FakeClock()
    monkeypatch.setattr(run, "time", clock)
    cfg = resolved_recipe("mae_fmnist")
    ev = replace(cfg.eval, batch_size=100, linear_epochs=1)
    # 2 ms per image: a 0.1-minute budget allows 0.75 * 6 s / 2 ms = 2250 images, a third
    # of them (750) for the test split
    m = evaluate(Slow(clock, 0.002), cfg.data, replace(ev, budget_minutes=0.1),
                 protocols=("knn",), limit=5000)  # fmt: skip
    assert (m["knn_n_train"], m["knn_n_test"], m["eval_budget_minutes"]) == (1500, 750, 0.1)
    m = evaluate(Slow(clock, 1.0), cfg.data, replace(ev, budget_minutes=0.1),
                 protocols=("knn",), limit=5000)  # fmt: skip
    assert m["knn_n_train"] == m["knn_n_test"] == run.MIN_BUDGET_IMAGES  # the floor
    m = evaluate(Recorder(), cfg.data, replace(ev, budget_minutes=60), protocols=("knn",),
                 limit=400)  # fmt: skip
    full = evaluate(Recorder(), cfg.data, ev, protocols=("knn",), limit=400)
    assert m["knn_n_train"] == m["knn_n_test"] == 400 and m["knn_top1"] == full["knn_top1"]
