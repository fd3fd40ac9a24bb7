"""Image-only training data: in-memory tensors (Fashion-MNIST) and folders of the user's
own images.

In-memory data is augmented batched on tensors, on the training device (per-sample PIL is
about 10x slower at 32 px). Folders stream through a DataLoader with per-sample torchvision
v2 transforms on uint8 tensors; corrupt files are skipped and counted. Batch `step` of
process `rank` is a function of (seed, step, rank) only (`visrep.data.sampling`).

With `data.views` set to a preset of `visrep.data.views.VIEW_PRESETS`, both sources yield
`{"views": [v1, v2, ...]}` (each normalized like "images") instead of `{"images": ...}`;
the preset then decides the crop scale and flip (data.crop_scale and data.hflip are the
one-crop settings). In-memory data draws every view's parameters from the step's
generator, folders from the per-item seed, so resume replays the same views.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from visrep.config import DataConfig
from visrep.data.augment import BatchedRandomResizedCrop, normalize
from visrep.data.folder import (
    ImageFolder,
    collate_skip_none,
    decode_all,
    folder_eval_transform,
    folder_train_transform,
    readable_batches,
)
from visrep.data.preprocess import match_channels, mean_std
from visrep.data.sampling import (
    StepBatchSampler,
    epoch_permutation,
    holdout_split,
    ignore_sigint,
    mix_seed,
    stratified_subset,
)
from visrep.data.views import BatchedViews, folder_views_transform, view_preset
from visrep.device import CPU


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

    def indices(self, step: int) -> Tensor:
        """Rows of `images` in batch `step` of this process [B] (epoch permutation, rank slice)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch = epoch
            self._perm = epoch_permutation(len(self.images), self.seed, epoch)
        start = (i * self.world + self.rank) * self.batch_size
        return self._perm[start : start + self.batch_size]

    def batch(self, step: int) -> dict[str, Tensor | list[Tensor]]:
        idx = self.indices(step)
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
    """A folder of the user's images (class sub-folders optional), streamed by a DataLoader.
    `holdout` > 0 leaves out the stratified hold-out that evaluation tests on."""

    def __init__(
        self,
        data: DataConfig,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device = CPU,
        holdout: float = 0.0,
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
        if holdout:  # the evaluation's test split stays out of training
            self.folder.select(holdout_split(self.folder.labels, holdout)[0])
        self.folder.select(stratified_subset(self.folder.labels, data.limit))
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
            worker_init_fn=ignore_sigint,
        )
        for b in readable_batches(loader, self, "images"):
            if "views" in b:
                yield {"views": [self._normalized(v) for v in b["views"]]}
            else:
                yield {"images": self._normalized(b["images"])}

    def _normalized(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True).float()
        return normalize(x, self.mean, self.std)


def sample_folder(
    root: str, channels: int, size: int, n: int, seed: int = 0, holdout: float = 0.0
) -> tuple[Tensor, Tensor]:
    """uint8 images [≤n, C, size, size] (resized short side, centre crop) and labels of a
    seeded stratified sample of a folder's training files: pictures and label-free
    diagnostics decode only these, never the whole folder."""
    folder = ImageFolder(root, channels=channels, transform=folder_eval_transform(size))
    if holdout:
        folder.select(holdout_split(folder.labels, holdout)[0])
    return decode_all(folder.select(stratified_subset(folder.labels, n, seed)))
