"""Training and evaluation data for the one training loop.

Batches are a pure function of (seed, step, rank): the sample order of epoch e is
`randperm(N)` seeded by (seed, e) and every augmentation draw is seeded by
(seed, step, rank). Resuming at step s therefore replays exactly what an
uninterrupted run would have seen, without saving any RNG state.

In-memory data (Fashion-MNIST) is augmented batched on tensors, on the training
device (ENVIRONMENT.md: per-sample PIL is ~10x slower at 32 px). Folders of the
user's own images stream through a DataLoader with per-sample torchvision v2
transforms on uint8 tensors; corrupt files are skipped and counted.

With `data.views` set to a preset of `visrep.parts.views.VIEW_PRESETS`, both
sources yield `{"views": [v1, v2, ...]}` (each normalized like "images") instead of
`{"images": ...}`; the preset then decides the crop scale and flip (data.crop_scale
and data.hflip are the one-crop settings). In-memory data draws every view's
parameters from the step's generator, folders from the per-item seed, so resume
replays the same views.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from visrep.config import DataConfig, EvalConfig
from visrep.data.augment import (
    FMNIST_MEAN,
    FMNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchedRandomResizedCrop,
    normalize,
)
from visrep.data.fashion_mnist import load_fashion_mnist
from visrep.data.folder import (
    ImageFolder,
    collate_skip_none,
    folder_train_transform,
    load_folder_tensors,
)
from visrep.parts.views import BatchedViews, folder_views_transform, view_preset

CPU = torch.device("cpu")


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (distinct tuples -> distinct streams)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))


def is_fashion_mnist(dataset: str) -> bool:
    return dataset.lower().replace("-", "_") in ("fashion_mnist", "fmnist")


def mean_std(data: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization statistics: explicit values, else the dataset's own defaults."""
    if data.mean and data.std:
        mean, std = tuple(data.mean), tuple(data.std)
    elif is_fashion_mnist(data.dataset):
        mean, std = FMNIST_MEAN * data.channels, FMNIST_STD * data.channels
    elif data.channels == 1:  # grayscale folder: ImageNet statistics averaged over RGB
        mean, std = (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
    else:
        mean, std = tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    if len(mean) != data.channels or len(std) != data.channels:
        raise ValueError(
            f"data.mean/std need {data.channels} values (data.channels), got {mean} / {std}"
        )
    return mean, std


def match_channels(images: Tensor, channels: int) -> Tensor:
    """Grayscale -> RGB by replication, RGB -> grayscale by ITU-R 601 luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).to(images.dtype)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def make_preprocess(
    img_size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[Tensor], Tensor]:
    """Evaluation preprocessing on float [B, C, H, W] in 0..255: resize if needed,
    match channels, normalize. Same statistics as pre-training."""

    def preprocess(x: Tensor) -> Tensor:
        if x.shape[-1] != img_size or x.shape[-2] != img_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="bicubic", antialias=True)
            x = x.clamp(0, 255)
        return normalize(match_channels(x, channels), mean, std)

    return preprocess


class TensorTrainData:
    """In-memory uint8 images, augmented batched on the training device."""

    def __init__(
        self,
        images: Tensor,
        data: DataConfig,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device = CPU,
    ) -> None:
        self.images = match_channels(images, data.channels).contiguous()
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world_size
        self.device = device
        self.mean, self.std = mean_std(data)
        self.augment = BatchedRandomResizedCrop(
            data.img_size, scale=data.crop_scale, hflip=data.hflip
        )
        self.views = (
            BatchedViews(data.img_size, view_preset(data.views), data.channels)
            if data.views
            else None
        )
        self.steps_per_epoch = len(images) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(images)} images are fewer than one global batch "
                f"({batch_size} x {world_size} processes); lower optim.batch_size"
            )
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)
        self.n_skipped = 0

    def batch(self, step: int) -> dict[str, Tensor | list[Tensor]]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch, self._perm = (
                epoch,
                epoch_permutation(len(self.images), self.seed, epoch),
            )
        start = (i * self.world + self.rank) * self.batch_size
        idx = self._perm[start : start + self.batch_size]
        images = self.images[idx].to(self.device, non_blocking=True)
        g = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank))
        if self.views is not None:
            views = self.views(images, generator=g)  # float [B, C, S, S] in 0..255 each
            return {"views": [normalize(v, self.mean, self.std) for v in views]}
        x = self.augment(images, generator=g)  # float [B, C, S, S] in 0..255
        return {"images": normalize(x, self.mean, self.std)}

    def batches(self, start_step: int, end_step: int) -> Iterator[dict[str, Tensor | list[Tensor]]]:
        for step in range(start_step, end_step):
            yield self.batch(step)


class StepBatchSampler(Sampler):
    """Yields, for steps [start, end), this rank's (index, augmentation seed) pairs."""

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int, world: int, start: int, end: int
    ):
        self.n, self.b, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.start, self.end = start, end
        self.steps_per_epoch = n // (batch_size * world)

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm_epoch, perm = -1, None
        for step in range(self.start, self.end):
            epoch, i = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                perm_epoch, perm = epoch, epoch_permutation(self.n, self.seed, epoch)
            first = (i * self.world + self.rank) * self.b
            idx = perm[first : first + self.b].tolist()
            yield [(j, mix_seed(self.seed, step, self.rank, k)) for k, j in enumerate(idx)]


class _SeededItems(Dataset):
    """Seeds torch's RNG per item so the v2 transform draws are a function of the step."""

    def __init__(self, folder: ImageFolder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        torch.manual_seed(seed)
        return self.folder[index]


class FolderTrainData:
    """A folder of the user's images (class sub-folders optional), streamed by a DataLoader."""

    def __init__(
        self,
        data: DataConfig,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device = CPU,
    ) -> None:
        if data.views:
            transform = folder_views_transform(
                data.img_size, view_preset(data.views), data.channels
            )
        else:
            transform = folder_train_transform(
                data.img_size, scale=data.crop_scale, hflip=data.hflip
            )
        self.folder = ImageFolder(data.dataset, channels=data.channels, transform=transform)
        if data.limit:
            self.folder.paths = self.folder.paths[: data.limit]
            self.folder.labels = self.folder.labels[: data.limit]
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world, self.device = rank, world_size, device
        self.mean, self.std = mean_std(data)
        self.steps_per_epoch = len(self.folder.paths) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.folder.paths)} images in {data.dataset} are fewer than one global "
                f"batch ({batch_size} x {world_size}); lower optim.batch_size"
            )
        self.n_skipped = 0

    def batches(self, start_step: int, end_step: int) -> Iterator[dict[str, Tensor | list[Tensor]]]:
        sampler = StepBatchSampler(
            len(self.folder.paths),
            self.batch_size,
            self.seed,
            self.rank,
            self.world,
            start_step,
            end_step,
        )
        loader = DataLoader(
            _SeededItems(self.folder),
            batch_sampler=sampler,
            collate_fn=collate_skip_none,
            num_workers=self.data.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            worker_init_fn=_ignore_sigint,
        )
        last_good = None
        for b in loader:
            self.n_skipped += b["n_skipped"]
            if b["labels"] is None:  # every image of this batch was unreadable
                if last_good is None:
                    raise RuntimeError("the first batch held only unreadable images")
                b = last_good  # keep all processes stepping together under DDP
            last_good = b
            if "views" in b:
                yield {"views": [self._normalized(v) for v in b["views"]]}
            else:
                yield {"images": self._normalized(b["images"])}

    def _normalized(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True).float()
        return normalize(x, self.mean, self.std)


def _ignore_sigint(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group; workers leave it to the main process,
    which saves a checkpoint at the next step (a dead worker would abort the run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_train_data(
    data: DataConfig,
    batch_size: int,
    *,
    seed: int,
    rank: int,
    world_size: int,
    device: torch.device,
) -> TensorTrainData | FolderTrainData:
    kwargs = dict(seed=seed, rank=rank, world_size=world_size, device=device)
    from visrep.data.pairs import build_pair_data, is_pair_data

    if is_pair_data(data):  # image-text pairs for CLIP/SLIP/FLIP (visrep.data.pairs)
        return build_pair_data(data, batch_size, **kwargs)
    if is_fashion_mnist(data.dataset):
        images, _ = load_fashion_mnist(data.root, "train")
        if data.limit:
            images = images[: data.limit]
        return TensorTrainData(images, data, batch_size, **kwargs)
    return FolderTrainData(data, batch_size, **kwargs)


def load_eval_split(
    ev: EvalConfig, split: str, channels: int, img_size: int
) -> tuple[Tensor, Tensor]:
    """uint8 images [N, C, H, W] and labels [N] of a labelled evaluation split.

    `split` is "train" (the k-NN memory bank / probe training set) or "test".
    Folders must hold `train/` and `val/` (or `test/`) with class sub-folders.
    """
    limit = ev.limit_train if split == "train" else ev.limit_test
    if is_fashion_mnist(ev.dataset):
        images, labels = load_fashion_mnist(ev.root, split)
        images = match_channels(images, channels)
    else:
        root = Path(ev.dataset)
        names = ["train"] if split == "train" else ["val", "test"]
        sub = next((root / n for n in names if (root / n).is_dir()), None)
        if sub is None:
            raise FileNotFoundError(
                f"evaluation folder {root} needs a {' or '.join(names)}/ sub-folder with one "
                "sub-folder per class (e.g. val/cat/*.jpg)"
            )
        images, labels, classes = load_folder_tensors(sub, channels, img_size)
        if not classes:
            raise ValueError(f"{sub} has no class sub-folders; k-NN/linear need labels")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels
