"""Linear probing of frozen features: the MAE protocol on cached features.

MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022,
appendix A; facebookresearch/mae ``main_linprobe.py``) trains
``BatchNorm1d(D, affine=False, eps=1e-6) -> Linear(D, C)`` on a frozen encoder
with LARS (momentum 0.9, wd 0), lr = blr * batch / 256, per-iteration linear
warmup then cosine decay to 0, and plain cross-entropy.

This module implements the **cached-features variant**: features are extracted
once (``visrep.evals.features.extract_features``) and the head is trained on
that fixed matrix, so there is no RandomResizedCrop/flip augmentation. MAE
re-encodes augmented crops every epoch; on our CPU budgets re-running the
encoder 90 times over the training set is impossible, while training the head
on a cached ``[N, D]`` tensor takes seconds. Numbers are therefore comparable
between visrep runs but not digit-for-digit with MAE's ImageNet table.

Default base lr: 1.0, not MAE's 0.1. Under LARS the Linear weight moves by
about ``lr * trust * ||w||`` per step whatever the gradient's size, so the total
distance a probe can travel from its std-0.01 init grows with
``blr * N / 256 * epochs``. MAE's blr 0.1 is tuned for ImageNet (N = 1.28M); on a
60k-image set the same value gives 20x less travel and the head under-fits
(train accuracy below a converged logistic regression). Measured with 90
epochs, batch 1024 (test top-1; sklearn ``LogisticRegression`` in brackets):

=============================  =======  =======  =======  =======  ========
features, N train              blr 0.1  blr 0.3  blr 1.0  blr 3.0  logreg
=============================  =======  =======  =======  =======  ========
F-MNIST pixels (784-d), 5k     0.731    0.810    0.825    0.820    (0.811)
F-MNIST pixels (784-d), 20k    0.826    0.840    0.841    0.832    (0.832)
F-MNIST pixels (784-d), 60k    0.843    0.845    0.845    0.840    (0.844)
random ReLU 192-d, 5k          0.639    0.747    0.810             (0.786)
random ReLU 192-d, 60k         0.832    0.834    0.835             (0.835)
=============================  =======  =======  =======  =======  ========

blr 1.0 is best or tied everywhere, so it is the default; pass ``blr=0.1`` for
MAE's exact recipe. With warmup + cosine the mean lr is about half the peak and
momentum 0.9 multiplies a consistent step by 10, so a run can move the weight by
roughly ``0.005 * blr * N * epochs / 256`` (relative, compounding). Below a
"budget" ``blr * N * epochs / 256`` of ~1000 the probe under-fits, down to a
bias-only classifier on tiny sets (MAE on ImageNet: 45,000; the table's 5k
column: 176 / 527 / 1758 for blr 0.1 / 0.3 / 1.0); :func:`linear_probe` warns.

``optimizer="sgd"`` has no trust ratio and wants a much smaller lr: on the 60k
pixels, blr 0.01 gives 0.843, blr 0.1 gives 0.833 and the default 1.0 gives 0.807.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from visrep.evals.features import check_feature_pair, check_labels, topk_hits
from visrep.parts.lars import LARS

# blr * N * epochs / 256 below which a LARS probe is likely to under-fit (module docstring).
MIN_LARS_BUDGET = 1000.0
# float32 bytes of the feature rows scored at a time by `_accuracy` (8,192 rows at most)
ACCURACY_CHUNK_BYTES = 32 * 2**20


def cosine_lr(
    progress_epochs: float,
    base_lr: float,
    warmup_epochs: float,
    total_epochs: float,
    min_lr: float = 0.0,
) -> float:
    """Learning rate at a fractional epoch: linear warmup then half-cosine decay.

    MAE ``util/lr_sched.py`` (``adjust_learning_rate``), evaluated per iteration at
    ``epoch + it / iters_per_epoch``. As in MAE, warmup ramps from 0 to
    ``base_lr`` (it ignores ``min_lr``); after ``total_epochs`` the lr stays at
    ``min_lr``.

    Args:
        progress_epochs: Fractional epochs done so far.
        base_lr: Peak (absolute) learning rate.
        warmup_epochs: Length of the linear warmup.
        total_epochs: Length of the whole schedule.
        min_lr: Final learning rate of the cosine.

    Returns:
        The learning rate.
    """
    if progress_epochs < warmup_epochs:
        return base_lr * progress_epochs / warmup_epochs
    decay_epochs = total_epochs - warmup_epochs
    if decay_epochs <= 0:  # all warmup: the schedule ends at its peak
        return base_lr
    t = min((progress_epochs - warmup_epochs) / decay_epochs, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily sets torch's intra-op CPU threads (None: leave as is)."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _validate(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int | None,
) -> int:
    """Checks shapes; returns the number of classes."""
    check_feature_pair(train_features, test_features)
    named = [("train", train_features, train_labels), ("test", test_features, test_labels)]
    classes = check_labels(named, num_classes, non_empty=True)
    if train_features.shape[0] < 2:
        raise ValueError("need at least 2 training samples (the head's BatchNorm uses batch stats)")
    return classes


def make_head(
    dim: int, num_classes: int, generator: torch.Generator | None = None
) -> nn.Sequential:
    """MAE's linear-probe head: ``BatchNorm1d(D, affine=False, eps=1e-6) -> Linear(D, C)``.

    The parameter-free BN standardises each feature so one lr suits encoders
    whose features have very different scales (MAE §A.2). The Linear weight is
    ``trunc_normal_(std=0.01)`` (MoCo v3 convention; the bounds -2/2 are
    absolute, as in timm, so nothing is actually truncated) and the bias is 0.
    """
    linear = nn.Linear(dim, num_classes)
    nn.init.trunc_normal_(linear.weight, std=0.01, generator=generator)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear)


def _make_optimizer(
    head: nn.Sequential, name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """LARS as in MAE, or SGD with the same momentum for comparison."""
    if name == "lars":
        # LARS itself exempts 1-D params (the bias) from wd and the trust ratio.
        return LARS(head.parameters(), lr=lr, weight_decay=weight_decay, momentum=0.9)
    if name == "sgd":
        # Same exemption as LARS, so "sgd" differs from "lars" only in the trust ratio.
        groups = [
            {"params": [p for p in head.parameters() if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in head.parameters() if p.ndim <= 1], "weight_decay": 0.0},
        ]
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be 'lars' or 'sgd'; got {name!r}")


def _train_head(
    head: nn.Module,
    optimizer: torch.optim.Optimizer,
    features: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    warmup_epochs: float,
    generator: torch.Generator,
    progress: bool,
) -> None:
    """Mini-batch training over a cached feature matrix (no DataLoader: indexing is cheaper);
    each mini-batch is read as float32, the matrix itself may be float16."""
    n = features.shape[0]
    batch_size = min(batch_size, n)
    iters = n // batch_size  # drop_last, as MAE's loader: BN never sees a tiny batch
    head.train()  # BN uses batch statistics and updates its running ones (MAE ``main_linprobe.py``)
    bar = tqdm(range(epochs), desc="linear probe", disable=not progress, unit="epoch")
    for epoch in bar:
        perm = torch.randperm(n, generator=generator).to(labels.device)
        for it in range(iters):
            step_lr = cosine_lr(epoch + it / iters, lr, warmup_epochs, epochs)
            for group in optimizer.param_groups:
                group["lr"] = step_lr * group.get("lr_scale", 1.0)
            idx = perm[it * batch_size : (it + 1) * batch_size]
            loss = F.cross_entropy(head(_rows(features, idx, labels.device)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{step_lr:.3g}")


def _rows(features: Tensor, idx: Tensor, device: torch.device) -> Tensor:
    """Rows `idx` of the feature matrix (CPU or `device`, any float dtype) as float32 on
    `device`."""
    return features[idx.to(features.device)].to(device, torch.float32)


@torch.no_grad()
def _accuracy(head: nn.Module, features: Tensor, labels: Tensor, topk: int) -> tuple[float, float]:
    """Top-1 and top-``topk`` accuracy in eval mode (BN running statistics)."""
    head.eval()
    hits = {1: 0, topk: 0}
    rows = max(1, min(8192, ACCURACY_CHUNK_BYTES // (4 * max(features.shape[1], 1))))
    for start in range(0, features.shape[0], rows):
        logits = head(features[start : start + rows].to(labels.device, torch.float32))  # [B, C]
        for k, h in topk_hits(logits, labels[start : start + rows], (1, topk)).items():
            hits[k] += h
    return hits[1] / features.shape[0], hits[topk] / features.shape[0]


def fit_linear_head(
    train_features: Tensor,
    train_labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 90,
    batch_size: int = 1024,
    blr: float = 1.0,
    weight_decay: float = 0.0,
    warmup_epochs: int = 10,
    optimizer: str = "lars",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    cpu_threads: int | None = 1,
) -> tuple[nn.Sequential, dict[str, float | int | str]]:
    """MAE's linear-probe head (:func:`make_head`) trained on the fixed ``[N, D]`` features
    (the training half of :func:`linear_probe`, whose arguments these are), returned in
    eval mode on ``device``: ``head(features.float())`` gives ``[M, C]`` logits with the
    BN running statistics, as the probe's test accuracy is measured. Also returns the
    settings as :func:`linear_probe` records them (``linear_epochs``, ``linear_lr``, ...)."""
    if (
        epochs < 1
        or batch_size < 1
        or warmup_epochs < 0
        or (cpu_threads is not None and cpu_threads < 1)
    ):
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, warmup_epochs >= 0, cpu_threads >= 1 or None; "
            f"got {epochs}, {batch_size}, {warmup_epochs}, {cpu_threads}"
        )
    budget = blr * train_features.shape[0] * epochs / 256
    if optimizer == "lars" and budget < MIN_LARS_BUDGET:
        warnings.warn(
            f"LARS linear probe will likely under-fit: LARS moves the weight by ~lr * 0.001 of "
            f"its norm per step, and blr * N * epochs / 256 = {budget:.0f} < {MIN_LARS_BUDGET:.0f} "
            f"(blr={blr}, N={train_features.shape[0]}, epochs={epochs}); raise blr or epochs.",
            stacklevel=3,
        )
    generator = torch.Generator().manual_seed(seed)
    head = make_head(train_features.shape[1], num_classes, generator).to(device)
    lr = blr * batch_size / 256
    opt = _make_optimizer(head, optimizer, lr, weight_decay)
    # the features stay as stored (float16, maybe memory-mapped: FeatureStore); each
    # mini-batch is read and converted to float32 on `device` (no whole copy on a GPU)
    y_train = train_labels.to(device, torch.long)
    on_cpu = torch.device(device).type == "cpu"
    with _torch_threads(cpu_threads if on_cpu else None):
        _train_head(
            head, opt, train_features, y_train,
            epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs,
            generator=generator, progress=progress,
        )  # fmt: skip
    settings = {"linear_epochs": epochs, "linear_batch_size": batch_size, "linear_lr": lr,
                "linear_blr": blr, "linear_optimizer": optimizer,
                "linear_weight_decay": weight_decay, "linear_warmup_epochs": warmup_epochs,
                "linear_seed": seed}  # fmt: skip
    return head.eval(), settings


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int | None = None,
    **settings: Any,
) -> dict[str, float | int | str]:
    """Linear-probe accuracy of frozen features (MAE §A.2, cached-features variant).

    Trains MAE's head (:func:`make_head`) on the fixed ``[N, D]`` training
    features with plain cross-entropy; lr = ``blr * batch_size / 256`` with a
    per-iteration warmup + cosine schedule (:func:`cosine_lr`), LARS with
    momentum 0.9 (or SGD with momentum 0.9 when ``optimizer="sgd"``). Shuffling
    and the head's initialisation draw from a ``torch.Generator`` seeded by
    ``seed``, so a run is reproducible. See the module docstring for why there
    is no augmentation. Warns when ``blr * N * epochs / 256`` is too small for
    LARS to fit the head (see the module docstring).

    Args:
        train_features: ``[N, D]`` training features.
        train_labels: ``[N]`` integer labels.
        test_features: ``[M, D]`` evaluation features.
        test_labels: ``[M]`` integer labels.
        num_classes: Number of classes; inferred from the labels if None.
        **settings: keyword arguments of :func:`fit_linear_head`, which trains the head:
        epochs: Training epochs (MAE: 90 for ViT-B).
        batch_size: Mini-batch size (the last incomplete batch of an epoch is
            dropped, as in MAE).
        blr: Base lr; the absolute lr is ``blr * batch_size / 256``. MAE uses
            0.1 on ImageNet; 1.0 suits datasets of 5k-60k images (module docstring).
        weight_decay: Coupled L2 on the Linear weight (MAE: 0).
        warmup_epochs: Linear warmup length in epochs (MAE: 10).
        optimizer: ``"lars"`` (MAE) or ``"sgd"``.
        seed: Seed of the shuffling and initialisation generator.
        device: Where the head is trained.
        progress: Show a tqdm bar over epochs.
        cpu_threads: Torch intra-op threads while training on the CPU (restored
            afterwards; None leaves the setting alone). The probe's ops are tiny
            ([1024, D] x [D, C]), so threading gains little (90 epochs on
            Fashion-MNIST pixels: ~9 s with 2 threads, ~14 s with 1 on an idle
            2-core machine) but OpenMP threads spin when another process holds
            a core: 15 epochs took 54-87 s with 2 threads versus 2.5 s with 1.

    Returns:
        ``linear_top1`` (and ``linear_top5`` if there are >= 5 classes) on the
        test set and ``linear_train_top1``, as fractions in [0, 1], plus the
        settings ``linear_epochs``, ``linear_batch_size``, ``linear_lr``
        (absolute peak lr), ``linear_blr``, ``linear_optimizer``,
        ``linear_weight_decay``, ``linear_warmup_epochs`` and ``linear_seed``.

    Raises:
        ValueError: On mismatched or empty inputs, bad labels, an unknown
            optimizer, or non-positive epochs/batch size.
    """
    num_classes = _validate(train_features, train_labels, test_features, test_labels, num_classes)
    head, recorded = fit_linear_head(train_features, train_labels, num_classes, **settings)
    device = settings.get("device", "cpu")
    y_train = train_labels.to(device, torch.long)
    test_top1, test_top5 = _accuracy(
        head,
        test_features,
        test_labels.to(device, torch.long),
        topk=min(5, num_classes),
    )
    metrics: dict[str, float | int | str] = {"linear_top1": test_top1}
    if num_classes >= 5:
        metrics["linear_top5"] = test_top5
    metrics["linear_train_top1"] = _accuracy(head, train_features, y_train, 1)[0]
    return metrics | recorded
