"""Weighted k-NN (InstDisc / DINO eval_knn.py): hand-built cases, sklearn parity, real data."""

import math
import time

import numpy as np
import pytest
import torch
from conftest import FMNIST, requires_fmnist

from visrep.evals.knn import knn, knn_class_scores


def _hand_case():
    """Query (1, 0); one class-0 neighbour at cos 1, two class-1 neighbours at cos 0.6.

    A class-0 point at cos -1 is never among the k=3 nearest.
    """
    train = torch.tensor([[2.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[5.0, 0.0]])
    return train, labels, query


@pytest.mark.parametrize(("temperature", "winner"), [(0.07, 0), (0.5, 0), (1.0, 1), (0.0, 1)])
def test_weighting_can_overturn_the_majority_by_hand(temperature, winner):
    train, labels, query = _hand_case()
    scores = knn_class_scores(train, labels, query, k=3, temperature=temperature)[0]
    if temperature > 0:
        # Weights exp(sim / T): class 1 / class 0 = 2 exp(0.6 / T) / exp(1 / T).
        assert (scores[1] / scores[0]).item() == pytest.approx(2 * math.exp(-0.4 / temperature))
    else:
        # Majority vote: 2 votes against 1 whatever the similarities.
        assert scores.argmax().item() == 1
    metrics = knn(train, labels, query, torch.tensor([0]), k=3, temperature=temperature)
    assert metrics["knn_top1"] == float(winner == 0)


def test_majority_vote_tie_goes_to_the_larger_summed_similarity():
    # Two votes each; class 1's voters are more similar in sum (0.9 + 0.8 > 1.0 + 0.6).
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.9, math.sqrt(1 - 0.81)], [0.8, 0.6]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    scores = knn_class_scores(train, labels, query, k=4, temperature=0)
    assert scores.argmax().item() == 1
    # One more class-0 vote outweighs any similarity sum.
    train5 = torch.cat([train, torch.tensor([[-1.0, 0.0]])])
    labels5 = torch.cat([labels, torch.tensor([0])])
    scores = knn_class_scores(train5, labels5, query, k=5, temperature=0)
    assert scores.argmax().item() == 0


def test_metrics_dict_and_top5_ignores_classes_without_votes():
    train, labels, query = _hand_case()
    queries = torch.cat([query, query, query])
    # T=0.07 predicts class 0; class 1 is second; class 5 got no votes.
    m = knn(train, labels, queries, torch.tensor([0, 1, 5]), k=3, num_classes=6)
    assert m == {
        "knn_top1": pytest.approx(1 / 3),
        "knn_top5": pytest.approx(2 / 3),
        "knn_k": 3,
        "knn_temperature": 0.07,
        "knn_n_train": 4,
        "knn_n_test": 3,
    }
    assert "knn_top5" not in knn(train, labels, query, torch.tensor([0]), k=3)


def _clusters(n, num_classes, dim=16, seed=0, spread=1.5):
    """Gaussian blobs around class centres that depend only on num_classes and dim."""
    centers = np.random.default_rng(num_classes).normal(size=(num_classes, dim))
    g = np.random.default_rng(seed)
    y = g.integers(0, num_classes, size=n)
    x = centers[y] + spread * g.normal(size=(n, dim))
    return torch.from_numpy(x).float(), torch.from_numpy(y)


def test_majority_vote_matches_sklearn_cosine_knn():
    from sklearn.neighbors import KNeighborsClassifier

    xtr, ytr = _clusters(600, 4, seed=0)
    xte, yte = _clusters(300, 4, seed=1)
    k = 7
    scores = knn_class_scores(xtr, ytr, xte, k=k, temperature=0)
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(xtr.numpy(), ytr.numpy())
    sk_pred = torch.from_numpy(sk.predict(xte.numpy()))
    votes = torch.div(scores, 2 * k + 1, rounding_mode="floor")  # exact integer vote counts
    proba = torch.from_numpy(sk.predict_proba(xte.numpy()))
    torch.testing.assert_close(votes / k, proba)  # same neighbour sets
    untied = (votes == votes.max(1, keepdim=True).values).sum(1) == 1
    assert untied.float().mean() > 0.8
    assert torch.equal(scores.argmax(1)[untied], sk_pred[untied])
    # Two classes and odd k: no vote ties, so the accuracies agree exactly.
    xtr, ytr = _clusters(500, 2, seed=2, spread=3.0)
    xte, yte = _clusters(400, 2, seed=3, spread=3.0)
    sk = KNeighborsClassifier(n_neighbors=9, metric="cosine").fit(xtr.numpy(), ytr.numpy())
    sk_acc = (sk.predict(xte.numpy()) == yte.numpy()).mean()
    assert 0.6 < sk_acc < 1.0
    assert knn(xtr, ytr, xte, yte, k=9, temperature=0)["knn_top1"] == pytest.approx(sk_acc)


def test_invariant_to_feature_scale_and_chunking():
    xtr, ytr = _clusters(500, 6, seed=0, spread=2.5)
    xte, yte = _clusters(200, 6, seed=1, spread=2.5)
    ref = knn(xtr, ytr, xte, yte, k=10)
    assert 0.3 < ref["knn_top1"] < 1.0
    g = torch.Generator().manual_seed(0)
    scale_tr = torch.exp(4 * torch.rand(500, 1, generator=g) - 2)  # per-sample in [e^-2, e^2]
    scale_te = torch.exp(4 * torch.rand(200, 1, generator=g) - 2)
    assert knn(xtr * scale_tr, ytr, xte * scale_te, yte, k=10) == ref
    for chunk_size in (1, 7, 199, 5000):
        assert knn(xtr, ytr, xte, yte, k=10, chunk_size=chunk_size) == ref
    scores = knn_class_scores(xtr, ytr, xte, k=10)
    # Only float32 matmul rounding differs between chunkings (amplified by 1 / T).
    chunked = knn_class_scores(xtr, ytr, xte, k=10, chunk_size=3)
    torch.testing.assert_close(chunked, scores, rtol=2e-5, atol=0)


def test_input_validation():
    xtr, ytr = _clusters(20, 3)
    xte, yte = _clusters(5, 3, seed=1)
    with pytest.raises(ValueError, match="k must be in"):
        knn(xtr, ytr, xte, yte, k=21)
    with pytest.raises(ValueError, match="train_labels"):
        knn(xtr, ytr[:-1], xte, yte)
    with pytest.raises(ValueError, match="test_labels"):
        knn(xtr, ytr, xte, yte[:-1], k=5)
    with pytest.raises(ValueError, match="dimension"):
        knn(xtr, ytr, xte[:, :3], yte, k=5)
    with pytest.raises(ValueError, match="integer"):
        knn(xtr, ytr.float(), xte, yte, k=5)
    with pytest.raises(ValueError, match="temperature"):
        knn(xtr, ytr, xte, yte, k=5, temperature=-0.1)
    with pytest.raises(ValueError, match="num_classes"):
        knn(xtr, ytr, xte, yte, k=5, num_classes=2)


def _read_idx(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST through the library's reader -> (flattened pixels / 255 [N, 784], labels)."""
    from visrep.data.fashion_mnist import load_fashion_mnist

    x, y = load_fashion_mnist(FMNIST, "test" if split == "t10k" else split)
    return x[:n].flatten(1).float() / 255, y[:n]


needs_fmnist = requires_fmnist


@needs_fmnist
def test_fashion_mnist_raw_pixels_full():
    # DINO settings on raw pixels; measured 0.8459 (majority vote 0.8434; sklearn
    # cosine majority 0.8407, the gap being vote ties only), ~9 s on 2 CPU cores.
    xtr, ytr = _read_idx("train")
    xte, yte = _read_idx("t10k")
    start = time.perf_counter()
    m = knn(xtr, ytr, xte, yte, k=20, temperature=0.07)
    print(f"k-NN full Fashion-MNIST: {m} in {time.perf_counter() - start:.1f}s")
    assert m["knn_top1"] == pytest.approx(0.8459, abs=5e-4)
    assert m["knn_top5"] == pytest.approx(0.9843, abs=5e-4)


def test_reading_the_bank_in_chunks_of_float16_changes_nothing():
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(300, 8, generator=g), torch.randn(50, 8, generator=g)
    ytr, yte = torch.randint(0, 6, (300,), generator=g), torch.randint(0, 6, (50,), generator=g)
    whole = knn_class_scores(train, ytr, test, k=20, bank_chunk=10**6)
    for bank_chunk in (1, 7, 64, 299):
        chunked = knn_class_scores(train, ytr, test, k=20, bank_chunk=bank_chunk)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)  # matmul blocking
        assert torch.equal(chunked.argmax(1), whole.argmax(1))
    half = knn(train.half(), ytr, test, yte, k=20, bank_chunk=64)
    assert half["knn_top1"] == knn(train, ytr, test, yte, k=20)["knn_top1"]


def test_bank_chunks_are_capped_in_bytes(monkeypatch):
    # wide features (raw pixels: 3,072-d) are read in fewer rows per chunk, same result
    import visrep.evals.knn as knn_module

    g = torch.Generator().manual_seed(2)
    train, test = torch.randn(200, 16, generator=g), torch.randn(30, 16, generator=g)
    ytr = torch.randint(0, 5, (200,), generator=g)
    whole = knn_class_scores(train, ytr, test, k=10)
    seen = []
    real_topk = torch.Tensor.topk

    def spy(self, *a, **kw):
        seen.append(self.shape[1])
        return real_topk(self, *a, **kw)

    monkeypatch.setattr(knn_module, "BANK_CHUNK_BYTES", 4 * 16 * 7)  # 7 float32 rows
    monkeypatch.setattr(torch.Tensor, "topk", spy)
    chunked = knn_class_scores(train, ytr, test, k=10)
    monkeypatch.undo()
    assert max(seen) == 10 + 7  # running top-k + one 7-row chunk, never more
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(chunked.argmax(1), whole.argmax(1))
