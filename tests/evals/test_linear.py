"""Linear probe (MAE main_linprobe.py, cached features): schedule, head, training, real data."""

import math
import time
import warnings

import numpy as np
import pytest
import torch
from conftest import FMNIST, requires_fmnist
from torch import nn

import visrep.evals.linear as linear
from visrep.evals.linear import cosine_lr, linear_probe, make_head
from visrep.parts.lars import LARS


def test_cosine_lr_by_hand():
    # Warmup 10 of 90 epochs to a peak of 0.4, cosine to min_lr.
    assert cosine_lr(0.0, 0.4, 10, 90) == 0.0
    assert cosine_lr(2.5, 0.4, 10, 90) == pytest.approx(0.1)
    assert cosine_lr(10.0, 0.4, 10, 90) == pytest.approx(0.4)
    assert cosine_lr(50.0, 0.4, 10, 90) == pytest.approx(0.2)  # half-way: cos(pi/2) = 0
    assert cosine_lr(30.0, 0.4, 10, 90) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(50.0, 0.4, 10, 90, min_lr=0.1) == pytest.approx(0.25)
    assert cosine_lr(90.0, 0.4, 10, 90, min_lr=0.1) == pytest.approx(0.1)
    assert cosine_lr(95.0, 0.4, 10, 90) == pytest.approx(0.0)
    assert cosine_lr(3.0, 0.4, 0, 10) == pytest.approx(0.2 * (1 + math.cos(0.3 * math.pi)))
    assert cosine_lr(5.0, 0.4, 10, 10) == pytest.approx(0.2)  # warmup-only schedule
    assert cosine_lr(10.0, 0.4, 10, 10) == pytest.approx(0.4)


def test_head_is_maes():
    head = make_head(32, 7, torch.Generator().manual_seed(0))
    bn, fc = head
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert isinstance(fc, nn.Linear) and fc.weight.shape == (7, 32)
    assert torch.equal(fc.bias, torch.zeros(7))
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.15)
    same = make_head(32, 7, torch.Generator().manual_seed(0))[1].weight
    assert torch.equal(same, fc.weight)


def _blobs(n, num_classes=4, dim=8, spread=1.0, seed=0):
    centers = 3 * np.random.default_rng(100 + num_classes).normal(size=(num_classes, dim))
    g = np.random.default_rng(seed)
    y = g.integers(0, num_classes, size=n)
    x = centers[y] + spread * g.normal(size=(n, dim))
    return torch.from_numpy(x).float(), torch.from_numpy(y)


@pytest.mark.parametrize("optimizer", ["lars", "sgd"])
def test_separable_blobs_are_learned(optimizer):
    xtr, ytr = _blobs(512, spread=0.3)
    xte, yte = _blobs(256, spread=0.3, seed=1)
    kw = dict(epochs=40, batch_size=32, warmup_epochs=2, blr=16.0, optimizer=optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # budget 16 * 512 * 40 / 256 = 1280: no warning
        m = linear_probe(xtr, ytr, xte, yte, **kw)
    assert m["linear_top1"] == 1.0 and m["linear_train_top1"] == 1.0
    assert "linear_top5" not in m  # only 4 classes


def test_metrics_settings_and_reproducibility():
    xtr, ytr = _blobs(700, num_classes=6, spread=3.0)
    xte, yte = _blobs(300, num_classes=6, spread=3.0, seed=1)
    kw = dict(epochs=20, batch_size=64, warmup_epochs=2, blr=30.0, weight_decay=1e-4, seed=3)
    m = linear_probe(xtr, ytr, xte, yte, **kw)
    assert set(m) == {
        "linear_top1", "linear_top5", "linear_train_top1", "linear_epochs",
        "linear_batch_size", "linear_lr", "linear_blr", "linear_optimizer",
        "linear_weight_decay", "linear_warmup_epochs", "linear_seed",
    }  # fmt: skip
    assert m["linear_lr"] == pytest.approx(30.0 * 64 / 256)
    assert (m["linear_epochs"], m["linear_batch_size"], m["linear_optimizer"]) == (20, 64, "lars")
    assert (m["linear_blr"], m["linear_weight_decay"], m["linear_seed"]) == (30.0, 1e-4, 3)
    # Overlapping blobs: sklearn LogisticRegression gets 0.797 on this split.
    assert 0.75 < m["linear_top1"] < 0.85 and m["linear_top1"] <= m["linear_top5"]
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert linear_probe(xtr, ytr, xte, yte, **kw) == m
        assert torch.get_num_threads() == 3  # the probe's 1-thread limit is undone
    finally:
        torch.set_num_threads(threads)


def test_small_budget_warns_and_under_fits():
    # 700 * 20 / 256 = 55 at blr 1: LARS barely moves the std-0.01 weight and
    # the (plain-SGD) bias alone classifies; logistic regression gets 0.797.
    xtr, ytr = _blobs(700, num_classes=6, spread=3.0)
    xte, yte = _blobs(300, num_classes=6, spread=3.0, seed=1)
    with pytest.warns(UserWarning, match=r"under-fit.* = 55 < 1000"):
        m = linear_probe(xtr, ytr, xte, yte, epochs=20, batch_size=64)
    assert m["linear_top1"] < 0.4


@pytest.mark.filterwarnings("ignore:LARS linear probe")
def test_schedule_is_per_iteration_and_drops_the_last_batch(monkeypatch):
    # 10 samples, batch 4 -> 2 iterations per epoch (the 2 left over are dropped, as in MAE).
    calls = []

    def spy(progress_epochs, base_lr, warmup_epochs, total_epochs, min_lr=0.0):
        calls.append((progress_epochs, base_lr, warmup_epochs, total_epochs))
        return cosine_lr(progress_epochs, base_lr, warmup_epochs, total_epochs, min_lr)

    monkeypatch.setattr(linear, "cosine_lr", spy)
    seen_lrs, seen_batches = [], []
    step = LARS.step

    def spy_step(self, closure=None):
        seen_lrs.append(self.param_groups[0]["lr"])
        seen_batches.append(self.param_groups[0]["params"][0].grad is not None)
        return step(self, closure)

    monkeypatch.setattr(LARS, "step", spy_step)
    xtr, ytr = _blobs(10)
    linear_probe(xtr, ytr, xtr, ytr, epochs=3, batch_size=4, warmup_epochs=1, blr=0.64)
    assert [c[0] for c in calls] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert {c[1:] for c in calls} == {(0.01, 1, 3)}
    assert seen_lrs == pytest.approx([cosine_lr(c[0], 0.01, 1, 3) for c in calls])
    assert all(seen_batches)


@pytest.mark.filterwarnings("ignore:LARS linear probe")
def test_input_validation():
    xtr, ytr = _blobs(20)
    with pytest.raises(ValueError, match="optimizer"):
        linear_probe(xtr, ytr, xtr, ytr, optimizer="adam", epochs=1)
    with pytest.raises(ValueError, match="dimension"):
        linear_probe(xtr, ytr, xtr[:, :3], ytr, epochs=1)
    with pytest.raises(ValueError, match="train_labels"):
        linear_probe(xtr, ytr[:5], xtr, ytr, epochs=1)
    with pytest.raises(ValueError, match="integer"):
        linear_probe(xtr, ytr, xtr, ytr.float(), epochs=1)
    with pytest.raises(ValueError, match="num_classes"):
        linear_probe(xtr, ytr, xtr, ytr, num_classes=2, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        linear_probe(xtr, ytr, xtr, ytr, epochs=0)
    with pytest.raises(ValueError, match="cpu_threads"):
        linear_probe(xtr, ytr, xtr, ytr, epochs=1, cpu_threads=0)


def _read_idx(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST through the library's reader -> (flattened pixels / 255 [N, 784], labels)."""
    from visrep.data.fashion_mnist import load_fashion_mnist

    x, y = load_fashion_mnist(FMNIST, "test" if split == "t10k" else split)
    return x[:n].flatten(1).float() / 255, y[:n]


needs_fmnist = requires_fmnist


@needs_fmnist
def test_fashion_mnist_raw_pixels_subset():
    # Defaults on 20k training images (~1.7k LARS steps): measured 0.8406, above
    # sklearn LogisticRegression's 0.8324 on the same 20k. MAE's blr 0.1 gives
    # 0.826 here, which is why the default is 1.0 (see visrep.evals.linear).
    xtr, ytr = _read_idx("train", 20000)
    xte, yte = _read_idx("t10k")
    start = time.perf_counter()
    m = linear_probe(xtr, ytr, xte, yte)
    print(f"linear probe, 20k Fashion-MNIST: {m} in {time.perf_counter() - start:.1f}s")
    assert m["linear_top1"] == pytest.approx(0.8406, abs=3e-3)
    assert m["linear_top1"] > 0.8324


@pytest.mark.slow
@needs_fmnist
def test_fashion_mnist_raw_pixels_full_vs_logistic_regression():
    # Measured: probe 0.8451 (train 0.8801) in ~15 s on 2 busy CPU cores;
    # LogisticRegression 0.8435 in ~70 s.
    from sklearn.linear_model import LogisticRegression

    xtr, ytr = _read_idx("train")
    xte, yte = _read_idx("t10k")
    start = time.perf_counter()
    m = linear_probe(xtr, ytr, xte, yte)
    seconds = time.perf_counter() - start
    # timing is printed, not asserted (a loaded host takes several times longer; speed is
    # measured by benchmarks/)
    print(f"linear probe, full Fashion-MNIST: {m} in {seconds:.1f}s")
    assert m["linear_top1"] == pytest.approx(0.8451, abs=3e-3)
    logreg = LogisticRegression(max_iter=1000).fit(xtr.numpy(), ytr.numpy())
    reference = (logreg.predict(xte.numpy()) == yte.numpy()).mean()
    print(f"sklearn LogisticRegression: {reference:.4f}")
    assert m["linear_top1"] >= reference - 0.005
