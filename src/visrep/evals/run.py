"""Evaluate a backbone's frozen features: k-NN and linear probe on a labelled dataset.

One function serves the periodic k-NN during training, the final evaluation of a
run and `visrep eval`. Every protocol setting is recorded in the returned metrics.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from visrep.config import DataConfig, EvalConfig, replace
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.folder import collate_skip_none, folder_eval_transform
from visrep.data.labelled import eval_folder, load_eval_split
from visrep.data.preprocess import eval_preprocess
from visrep.data.sampling import stratified_subset
from visrep.device import release_memory
from visrep.evals.features import extract_features_many
from visrep.evals.knn import knn
from visrep.evals.linear import linear_probe

log = logging.getLogger("visrep")
# eval.budget_minutes: the share of the budget spent encoding images (the rest: k-NN, probe)
EXTRACT_SHARE = 0.75
MIN_BUDGET_IMAGES = 500


@functools.lru_cache(maxsize=4)
def _cached_split(
    ev: EvalConfig, split: str, channels: int, img_size: int
) -> tuple[Tensor, Tensor]:
    return load_eval_split(ev, split, channels, img_size)


def subset(images: Tensor, labels: Tensor, limit: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded stratified subset of `limit` rows (`visrep.data.sampling.stratified_subset`)."""
    idx = stratified_subset(labels, limit, seed)
    return images[idx], labels[idx]


def split_batches(
    data: DataConfig, ev: EvalConfig, split: str, limit: int = 0
) -> tuple[Iterator[tuple[Tensor, Tensor]], int]:
    """(uint8 images [B, C, S, S], labels [B]) batches of an eval split and their number.

    Fashion-MNIST is held in memory (cached across periodic evaluations); a folder streams
    through a DataLoader (`data.num_workers`) with the evaluation transform, so memory never
    holds the decoded split. `limit` (0 = all) is a seeded stratified subset."""
    bs = ev.batch_size
    if is_fashion_mnist(ev.dataset):
        images, labels = subset(*_cached_split(ev, split, data.channels, data.img_size), limit)
        it = ((images[i : i + bs], labels[i : i + bs]) for i in range(0, len(images), bs))
        return it, len(images)
    key = "limit_train" if split == "train" else "limit_test"
    lim = min(x for x in (limit, getattr(ev, key)) if x) if limit or getattr(ev, key) else 0
    folder = eval_folder(replace(ev, **{key: lim}), split, data.channels,
                         folder_eval_transform(data.img_size))  # fmt: skip
    loader = DataLoader(folder, batch_size=bs, num_workers=max(data.num_workers, 0),
                        collate_fn=collate_skip_none)  # fmt: skip
    return ((b["images"], b["labels"]) for b in loader if b["labels"] is not None), len(folder)


def budget_limits(
    encoders: dict[str, nn.Module], data: DataConfig, ev: EvalConfig, limit: int, device
) -> dict[str, int]:
    """Image limits per split (0 = all) that keep an evaluation within `ev.budget_minutes`.

    One probe batch of the test split is loaded and encoded by every encoder to measure the
    seconds per image here (first-batch overheads included, so the estimate errs long);
    EXTRACT_SHARE of the budget goes to feature extraction (the rest to the protocols). The
    test split gets at most a third of those images, the train split (memory bank, probe
    set) the rest, each at least MIN_BUDGET_IMAGES; a smaller split is a seeded stratified
    subset, as every `limit` is."""
    sizes = {split: split_batches(data, ev, split, limit)[1] for split in ("train", "test")}
    t0 = time.perf_counter()
    batches, _ = split_batches(data, ev, "test", min(ev.batch_size, sizes["test"]))
    probe = list(itertools.islice(batches, 1))
    extract_features_many(encoders, probe, preprocess=eval_preprocess(data), device=device)
    per_image = max(time.perf_counter() - t0, 1e-9) / max(len(probe[0][1]) if probe else 1, 1)
    n = int(EXTRACT_SHARE * ev.budget_minutes * 60 / per_image)
    test = min(sizes["test"], max(n // 3, MIN_BUDGET_IMAGES))
    train = min(sizes["train"], max(n - test, MIN_BUDGET_IMAGES))
    if train < sizes["train"] or test < sizes["test"]:
        log.info("eval.budget_minutes=%g: encoding runs at %.0f img/s here, so the evaluation "
                 "uses %d of %d train and %d of %d test images (seeded stratified subsets)",
                 ev.budget_minutes, 1 / per_image, train, sizes["train"], test, sizes["test"])  # fmt: skip
    return {"train": train if train < sizes["train"] else limit,
            "test": test if test < sizes["test"] else limit}  # fmt: skip


def evaluate(
    backbone: nn.Module,
    data: DataConfig,
    ev: EvalConfig,
    *,
    protocols: Sequence[str] = ("knn", "linear"),
    limit: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    baselines: dict[str, nn.Module] | None = None,
) -> dict[str, float | int | str]:
    """Extract features of the eval train/test splits and run the requested protocols.

    Args:
        backbone: maps normalized images [B, C, H, W] to pooled features [B, D].
        data: the pre-training data config (image size, channels, normalization).
        ev: evaluation settings (dataset, k, temperature, probe epochs, ...).
        protocols: any of "knn", "linear".
        limit: use a seeded stratified subset of this many images per split (0 = all);
            `ev.budget_minutes` may make the subsets smaller (`budget_limits`).
        baselines: other encoders evaluated on the same images in the same pass; their
            top-1/top-5 are returned as `NAME_knn_top1`, ... (e.g. raw pixels, random init).
    """
    unknown = set(protocols) - {"knn", "linear"}
    if unknown:
        raise ValueError(f"unknown evaluation protocol(s) {sorted(unknown)}; use knn or linear")
    t0 = time.perf_counter()
    encoders = {"": backbone} | {name: e.to(device) for name, e in (baselines or {}).items()}
    limits = {"train": limit, "test": limit}
    if ev.budget_minutes:
        limits = budget_limits(encoders, data, ev, limit, device)
    feats, labels = {}, {}
    t_extract = time.perf_counter()
    for split in ("train", "test"):
        batches, n = split_batches(data, ev, split, limits[split])
        feats[split], labels[split] = extract_features_many(
            encoders, batches, preprocess=eval_preprocess(data), device=device,
            progress=progress, total=n, desc=f"features ({split})",
            memory_mb=ev.feature_memory_mb,
        )  # fmt: skip
        release_memory()  # the split's decoded batches and activations
    ytr, yte = labels["train"], labels["test"]
    t_extract = time.perf_counter() - t_extract
    num_classes = int(max(ytr.max(), yte.max())) + 1
    out: dict[str, float | int | str] = {"eval_dataset": ev.dataset}
    for name in encoders:
        ftr, fte = feats["train"][name], feats["test"][name]
        m: dict = {}
        if "knn" in protocols:  # k at most the memory bank's size (a tiny set: all of it)
            m |= knn(ftr, ytr, fte, yte, k=min(ev.knn_k, len(ftr)),
                     temperature=ev.knn_temperature, num_classes=num_classes, device=device)  # fmt: skip
        if "linear" in protocols:
            m |= linear_probe(
                ftr, ytr, fte, yte, num_classes=num_classes, epochs=ev.linear_epochs,
                batch_size=ev.linear_batch_size, blr=ev.linear_blr, device=device,
                progress=progress,
            )  # fmt: skip
        release_memory()  # k-NN chunks and probe batches, before the next encoder's
        if name:
            m = {f"{name}_{k}": m[k] for k in ("knn_top1", "knn_top5", "linear_top1", "linear_top5")
                 if k in m}  # fmt: skip
        out |= m
    if ev.budget_minutes:
        out["eval_budget_minutes"] = ev.budget_minutes
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    # images decoded and encoded (by every encoder) per second, loading included
    out["eval_images_per_second"] = round((len(ytr) + len(yte)) / max(t_extract, 1e-9), 1)
    return out


class RawPixels(nn.Module):
    """The raw-pixel baseline (`evaluate(..., baselines={"raw": RawPixels()})`): preprocessed images average-pooled to at most 32×32, then
    flattened ([B, C·h·w], at most 3,072 values for RGB), so k-NN and the linear probe of
    raw pixels stay cheap at any image size."""

    def forward(self, x: Tensor) -> Tensor:
        side = min(32, x.shape[-1])
        return F.adaptive_avg_pool2d(x, side).flatten(1)
