"""Weighted k-nearest-neighbour classification on frozen features.

The protocol of Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination" (InstDisc, CVPR 2018, §3.4) as implemented in
facebookresearch/dino ``eval_knn.py`` (``knn_classifier``): L2-normalised
features, cosine similarity, the k most similar training images vote for their
class with weight ``exp(sim / T)``, and the class with the largest summed weight
is the prediction. DINO reports k=20, T=0.07.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.evals.features import check_feature_pair, check_labels

# float32 bytes of one chunk of the memory bank k-NN reads at a time (`_topk_over_bank`)
BANK_CHUNK_BYTES = 64 * 2**20


def _validate(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor | None,
    k: int,
    temperature: float,
    num_classes: int | None,
) -> int:
    """Checks shapes and settings; returns the number of classes."""
    check_feature_pair(train_features, test_features)
    named = [("train", train_features, train_labels)]
    if test_labels is not None:
        named.append(("test", test_features, test_labels))
    classes = check_labels(named, num_classes)
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(f"k must be in [1, {train_features.shape[0]}] (N_train); got k={k}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = majority vote); got {temperature}")
    return classes


def _vote(sim: Tensor, neighbour_labels: Tensor, temperature: float, num_classes: int) -> Tensor:
    """Per-class scores ``[B, C]`` from neighbour similarities and labels ``[B, k]``.

    Classes that no neighbour voted for score exactly 0; every voted class scores > 0.
    """
    scores = sim.new_zeros(sim.shape[0], num_classes, dtype=torch.float64)
    if temperature > 0:
        # exp(sim / T) as in InstDisc / DINO. Subtracting each row's largest
        # similarity rescales that row's weights by one constant (same ranking)
        # and keeps exp finite for small T, where exp(1/T) overflows float32.
        shifted = (sim - sim[:, :1]).double() / temperature  # [B, k], sim sorted descending
        return scores.scatter_add_(1, neighbour_labels, shifted.exp())
    # Majority vote, ties broken by the larger summed similarity: one lexicographic
    # score count * (2k + 1) + (sum_sim + count). For a class with c votes the
    # second term lies in [0, 2c] within [0, 2k], so it never outweighs one vote.
    k = sim.shape[1]
    votes = scores.scatter_add_(1, neighbour_labels, torch.ones_like(sim, dtype=torch.float64))
    sim_sums = torch.zeros_like(scores).scatter_add_(1, neighbour_labels, sim.double())
    return votes * (2 * k + 1) + (sim_sums + votes)


def _topk_over_bank(
    query: Tensor, bank: Tensor, k: int, bank_chunk: int, device: str | torch.device
) -> tuple[Tensor, Tensor]:
    """Cosine similarities and indices [B, k] (sorted, descending) of the k rows of `bank`
    [N, D] closest to the normalised `query` [B, D], reading the bank a chunk at a time: at
    most `bank_chunk` rows and BANK_CHUNK_BYTES as float32 on `device` (16,384 rows of 192-d
    features, 5,461 of 3,072-d raw pixels). The bank may stay float16 or memory-mapped, and
    memory stays at one float32 chunk plus B x chunk similarities whatever N and D.

    Each chunk's similarities are divided by its rows' norms (what `F.normalize` does to the
    rows, without a normalised copy of the chunk), and the running top-k indices are mapped
    from positions, never materialising a [B, chunk] index matrix."""
    rows_per_chunk = max(1, min(bank_chunk, BANK_CHUNK_BYTES // (4 * max(bank.shape[1], 1))))
    best_sim = query.new_empty(query.shape[0], 0)
    best_idx = torch.empty(query.shape[0], 0, dtype=torch.long, device=query.device)
    for start in range(0, bank.shape[0], rows_per_chunk):
        rows = bank[start : start + rows_per_chunk].to(device, torch.float32)  # [R, D]
        norms = torch.linalg.vector_norm(rows, dim=1).clamp_min_(1e-12)  # F.normalize's eps
        sim = torch.cat([best_sim, (query @ rows.T).div_(norms)], dim=1)  # [B, k + R]
        del rows
        best_sim, pos = sim.topk(min(k, sim.shape[1]), dim=1, largest=True, sorted=True)
        kept = best_idx.shape[1]  # the first `kept` columns of sim are the running best
        from_chunk = pos - kept + start  # bank row of a position in this chunk
        if kept:
            previous = best_idx.gather(1, pos.clamp(max=kept - 1))
            best_idx = torch.where(pos < kept, previous, from_chunk)
        else:
            best_idx = from_chunk
    return best_sim, best_idx


@torch.no_grad()
def knn_class_scores(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    bank_chunk: int = 16384,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Per-class k-NN scores for every test sample; ``argmax`` is the prediction.

    Args and the scoring rule are those of :func:`knn`. Scores are only comparable
    within a row; classes no neighbour voted for score exactly 0.

    Returns:
        ``[M, C]`` float64 scores on the CPU.
    """
    num_classes = _validate(
        train_features, train_labels, test_features, None, k, temperature, num_classes
    )
    if chunk_size < 1 or bank_chunk < 1:
        raise ValueError(f"chunk_size and bank_chunk must be >= 1; got {chunk_size}, {bank_chunk}")
    labels = train_labels.to(torch.long)  # [N]
    out = []
    for start in range(0, test_features.shape[0], chunk_size):
        query = test_features[start : start + chunk_size].to(device, torch.float32)
        query = F.normalize(query, dim=1)  # [B, D]
        sim, idx = _topk_over_bank(query, train_features, k, bank_chunk, device)  # [B, k]
        # Voting is cheap ([B, k]); doing it on the CPU in float64 keeps the
        # majority-vote tie-break exact on every device.
        out.append(_vote(sim.cpu(), labels[idx.cpu()], temperature, num_classes))
    if not out:
        return torch.zeros(0, num_classes, dtype=torch.float64)
    return torch.cat(out)


@torch.no_grad()
def knn(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    bank_chunk: int = 16384,
    device: str | torch.device = "cpu",
) -> dict[str, float | int]:
    """Weighted k-NN accuracy of frozen features (InstDisc §3.4; DINO ``eval_knn.py``).

    Features are L2-normalised, so similarity is cosine and the scale of the
    features does not matter. Each test sample's k most similar training samples
    vote for their label with weight ``exp(sim / temperature)``; the class with
    the largest summed weight is the prediction.

    ``temperature=0`` means a plain (unweighted) majority vote, the classic k-NN
    (as sklearn's ``KNeighborsClassifier(metric="cosine")``); a tie in votes goes
    to the class whose voters have the larger summed similarity.

    Deviation from DINO, top-5 only: a class no neighbour voted for never counts
    as a top-5 hit. DINO sorts such zero-score classes in arbitrary order, which
    makes top-5 depend on tie order whenever fewer than 5 classes receive votes
    (common with few classes and k=20).

    Args:
        train_features: ``[N, D]`` features of the labelled (memory) set.
        train_labels: ``[N]`` integer labels.
        test_features: ``[M, D]`` features to classify.
        test_labels: ``[M]`` integer labels.
        k: Number of neighbours (DINO: 20; 1 <= k <= N).
        temperature: Softmax temperature of the vote weights (DINO: 0.07); 0
            means majority vote.
        num_classes: Number of classes; inferred from the labels if None.
        chunk_size: Test samples per similarity matrix (memory ~ chunk_size * bank_chunk).
        bank_chunk: Training rows read (and normalised as float32) at a time, at most
            BANK_CHUNK_BYTES of them; the features may be float16 or memory-mapped (``visrep.evals.features.FeatureStore``).
        device: Where the similarities are computed.

    Returns:
        ``knn_top1`` (and ``knn_top5`` if there are >= 5 classes) as fractions in
        [0, 1], plus the settings ``knn_k``, ``knn_temperature``, ``knn_n_train``
        and ``knn_n_test``.

    Raises:
        ValueError: On mismatched shapes, non-integer or negative labels,
            ``k`` outside ``[1, N]``, negative temperature, or an empty test set.
    """
    num_classes = _validate(
        train_features, train_labels, test_features, test_labels, k, temperature, num_classes
    )
    if test_features.shape[0] == 0:
        raise ValueError("test set is empty; accuracy is undefined")
    scores = knn_class_scores(
        train_features,
        train_labels,
        test_features,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        chunk_size=chunk_size,
        bank_chunk=bank_chunk,
        device=device,
    )  # [M, C]
    target = test_labels.to(torch.long).view(-1, 1)  # [M, 1]
    metrics: dict[str, float | int] = {
        "knn_top1": (scores.argmax(1, keepdim=True) == target).double().mean().item()
    }
    if num_classes >= 5:
        top_scores, top_idx = scores.topk(5, dim=1)  # [M, 5]
        hit = ((top_idx == target) & (top_scores > 0)).any(1)
        metrics["knn_top5"] = hit.double().mean().item()
    metrics.update(
        knn_k=k,
        knn_temperature=temperature,
        knn_n_train=train_features.shape[0],
        knn_n_test=test_features.shape[0],
    )
    return metrics
