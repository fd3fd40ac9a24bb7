"""Evaluate a backbone's frozen features: k-NN and linear probe on a labelled dataset.

One function serves the periodic k-NN during training, the final evaluation of a
run and `visrep eval`. Every protocol setting is recorded in the returned metrics.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.config import DataConfig, EvalConfig
from visrep.data.labelled import load_eval_split
from visrep.data.preprocess import eval_preprocess
from visrep.data.sampling import stratified_subset
from visrep.evals.features import extract_features
from visrep.evals.knn import knn
from visrep.evals.linear import linear_probe


@functools.lru_cache(maxsize=4)
def _cached_split(
    ev: EvalConfig, split: str, channels: int, img_size: int
) -> tuple[Tensor, Tensor]:
    return load_eval_split(ev, split, channels, img_size)


def subset(images: Tensor, labels: Tensor, limit: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded stratified subset of `limit` rows (`visrep.data.sampling.stratified_subset`)."""
    idx = stratified_subset(labels, limit, seed)
    return images[idx], labels[idx]


def evaluate(
    backbone: nn.Module,
    data: DataConfig,
    ev: EvalConfig,
    *,
    protocols: Sequence[str] = ("knn", "linear"),
    limit: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, float | int | str]:
    """Extract features of the eval train/test splits and run the requested protocols.

    Args:
        backbone: maps normalized images [B, C, H, W] to pooled features [B, D].
        data: the pre-training data config (image size, channels, normalization).
        ev: evaluation settings (dataset, k, temperature, probe epochs, ...).
        protocols: any of "knn", "linear".
        limit: use a fixed random subset of this many images per split (0 = all).
    """
    unknown = set(protocols) - {"knn", "linear"}
    if unknown:
        raise ValueError(f"unknown evaluation protocol(s) {sorted(unknown)}; use knn or linear")
    t0 = time.perf_counter()
    preprocess = eval_preprocess(data)
    feats = {}
    for split in ("train", "test"):
        images, labels = _cached_split(ev, split, data.channels, data.img_size)
        images, labels = subset(images, labels, limit)
        f = extract_features(
            backbone, images, batch_size=ev.batch_size, preprocess=preprocess,
            device=device, progress=progress, desc=f"features ({split})",
        )  # fmt: skip
        feats[split] = (f, labels)
    (ftr, ytr), (fte, yte) = feats["train"], feats["test"]
    num_classes = int(max(ytr.max(), yte.max())) + 1
    out: dict[str, float | int | str] = {"eval_dataset": ev.dataset}
    if "knn" in protocols:
        out |= knn(ftr, ytr, fte, yte, k=min(ev.knn_k, len(ftr)),  # a tiny set: all neighbours temperature=ev.knn_temperature,
                   num_classes=num_classes, device=device)  # fmt: skip
    if "linear" in protocols:
        out |= linear_probe(
            ftr, ytr, fte, yte, num_classes=num_classes, epochs=ev.linear_epochs,
            batch_size=ev.linear_batch_size, blr=ev.linear_blr, device=device, progress=progress,
        )  # fmt: skip
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out


class RawPixels(nn.Module):
    """The raw-pixel baseline: preprocessed images average-pooled to at most 32×32, then
    flattened ([B, C·h·w], at most 3,072 values for RGB), so k-NN and the linear probe of
    raw pixels stay cheap at any image size."""

    def forward(self, x: Tensor) -> Tensor:
        side = min(32, x.shape[-1])
        return F.adaptive_avg_pool2d(x, side).flatten(1)


def evaluate_with_baselines(
    backbone: nn.Module,
    init_backbone: nn.Module | None,
    data: DataConfig,
    ev: EvalConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    baselines: bool = True,
) -> dict[str, float | int | str]:
    """`evaluate` of the trained backbone, and (with `baselines`) under `raw_*` / `init_*` the same protocols on
    the same splits for raw pixels (`RawPixels`) and for the untrained encoder (the run's
    architecture at its initialisation): did pre-training help?"""
    out = evaluate(backbone, data, ev, device=device, progress=progress)
    keep = ("knn_top1", "knn_top5", "linear_top1", "linear_top5")
    if not baselines:
        return out
    encoders = {"raw": RawPixels()} | ({"init": init_backbone} if init_backbone else {})
    for name, encoder in encoders.items():
        m = evaluate(encoder.to(device), data, ev, device=device, progress=progress)
        out |= {f"{name}_{k}": v for k, v in m.items() if k in keep}
    return out
