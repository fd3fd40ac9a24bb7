"""The training data a run's config names: `build_train_data` dispatches to the source.

- image-text pairs (WebDataset shards, CSV/JSONL, captioned Fashion-MNIST):
  `visrep.data.pairs`;
- Fashion-MNIST images in memory, or a folder of the user's own images: `visrep.data.images`;
- video clips (`data.frames` > 0): a folder or list of videos, or Moving Fashion-MNIST made
  on the fly: `visrep.data.video_source`.

Every source yields batches as a function of (seed, step, rank) (`visrep.data.sampling`), so
a resumed run replays exactly what an uninterrupted one would have seen.
"""

from __future__ import annotations

import torch

from visrep.config import DataConfig
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.images import FolderTrainData, TensorTrainData
from visrep.data.pairs import build_pair_data, is_pair_data
from visrep.data.video_source import MovingTrainData, VideoTrainData


def build_train_data(
    data: DataConfig,
    batch_size: int,
    *,
    seed: int,
    rank: int,
    world_size: int,
    device: torch.device,
    holdout: float = 0.0,
    text: bool = True,
):
    """The data source of `data`: an object with `steps_per_epoch`, `n_skipped` and
    `batches(start_step, end_step)`. `holdout`: the fraction of each class of a folder that
    evaluation tests on, left out (`visrep.data.resolve.holds_out`). `text=False`: the method
    reads images only (WebDataset shards need no captions)."""
    kwargs = dict(seed=seed, rank=rank, world_size=world_size, device=device)
    if data.subset and (data.frames or not is_pair_data(data)):  # visrep.data.subset
        raise ValueError(
            f"data.subset={data.subset} needs data.dataset to be the caption pool "
            f"it was curated from (WebDataset shards, CSV/JSONL), not {data.dataset}"
        )
    if data.frames:  # video clips
        if is_fashion_mnist(data.dataset):
            return MovingTrainData(data, batch_size, **kwargs)
        return VideoTrainData(data, batch_size, holdout=holdout, **kwargs)
    if is_pair_data(data):  # image-text pairs for CLIP/SLIP/FLIP
        return build_pair_data(data, batch_size, text=text, **kwargs)
    if is_fashion_mnist(data.dataset):
        images, _ = load_fashion_mnist(data.root, "train")
        if data.limit:
            images = images[: data.limit]
        return TensorTrainData(images, data, batch_size, **kwargs)
    return FolderTrainData(data, batch_size, holdout=holdout, **kwargs)
