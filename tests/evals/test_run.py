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
