"""Evaluate a backbone's frozen features: k-NN and linear probe on a labelled dataset.

One function serves the periodic k-NN during training, the final evaluation of a
run and `visrep eval`. Every protocol setting is recorded in the returned metrics.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visrep.config import DataConfig, EvalConfig
from visrep.data.labelled import load_eval_split
from visrep.data.preprocess import eval_preprocess
from visrep.evals.features import extract_features
from visrep.evals.knn import knn
from visrep.evals.linear import linear_probe


@functools.lru_cache(maxsize=4)
def _cached_split(
    ev: EvalConfig, split: str, channels: int, img_size: int
) -> tuple[Tensor, Tensor]:
    return load_eval_split(ev, split, channels, img_size)


def subset(images: Tensor, labels: Tensor, limit: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed random subset (same for every call with the same seed)."""
    if not limit or limit >= len(images):
        return images, labels
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
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
        out |= knn(ftr, ytr, fte, yte, k=ev.knn_k, temperature=ev.knn_temperature,
                   num_classes=num_classes, device=device)  # fmt: skip
    if "linear" in protocols:
        out |= linear_probe(
            ftr, ytr, fte, yte, num_classes=num_classes, epochs=ev.linear_epochs,
            batch_size=ev.linear_batch_size, blr=ev.linear_blr, device=device, progress=progress,
        )  # fmt: skip
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out
