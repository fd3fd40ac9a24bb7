"""Labelled data: the evaluation splits (`load_eval_split`, for k-NN, linear probe and the
pictures) and the labelled training batches of the supervised method (fine-tuning),
`{"images": [B, C, S, S], "labels": [B]}` from the eval dataset's train split.

Fine-tuning augmentation follows MAE (He et al., 2022, §A.1; facebookresearch/mae
`util/datasets.py`) and ConvNeXt V2 (Woo et al., 2023; facebookresearch/ConvNeXt-V2
`datasets.py`). In-memory images (Fashion-MNIST) are augmented batched on the device with
the library's RandomResizedCrop + flip (`augment.py`), the optional corruption-like ops of
`method.photometric` (`photometric.py`: noise, blur, contrast, AugMix), then timm's
RandomErasing on the batch; folders of images go through timm's `create_transform` per sample
(RandomResizedCrop, flip, RandAugment, RandomErasing, bicubic). RandAugment is
PIL-per-sample, so it is not applied to in-memory tensors. As in pre-training
(`sampling.py`), batch `step` of process `rank` is a function of (seed, step, rank) only,
so a resumed run replays it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from timm.data import create_transform
from timm.data.random_erasing import RandomErasing
from torch import Tensor
from torch.utils.data import DataLoader

from visrep.config import DataConfig, EvalConfig, TrainConfig
from visrep.data.augment import BatchedRandomResizedCrop, normalize
from visrep.data.clip_augment import posterize_zero_bits_as_black
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import (
    ImageFolder,
    collate_skip_none,
    decode_all,
    folder_eval_transform,
    scan_folder,
)
from visrep.data.moving_fmnist import MovingSpec
from visrep.data.photometric import Photometric
from visrep.data.preprocess import eval_preprocess, match_channels, mean_std
from visrep.data.sampling import (
    StepBatchSampler,
    epoch_permutation,
    holdout_split,
    mix_seed,
    stratified_subset,
)
from visrep.data.video import find_videos
from visrep.data.video_source import (
    check_family,
    labelled_clips,
    no_family_message,
    table_labels,
)

Batch = dict[str, Tensor]


def _check_resolved(ev: EvalConfig) -> None:
    if ev.dataset == "auto":
        raise ValueError("eval.dataset='auto' is decided from the training data when a run "
                         "starts (visrep.data.resolve.resolve_data, or configs.resolved_recipe)")  # fmt: skip


def eval_folder(
    ev: EvalConfig, split: str, channels: int, transform: Callable | None = None
) -> ImageFolder:
    """The files of a labelled folder split ("train": the k-NN memory bank / probe training
    set; "test"): `train/` and `val/` (or `test/`) class folders, or with `eval.holdout` the
    seeded stratified hold-out of one folder of class folders; `eval.limit_*` is a seeded
    stratified subset. Test labels are indices into the train split's classes."""
    limit = ev.limit_train if split == "train" else ev.limit_test
    _check_resolved(ev)
    if ev.holdout:
        folder = ImageFolder(ev.dataset, channels, transform)
        train_idx, test_idx = holdout_split(folder.labels, ev.holdout)
        folder.select(train_idx if split == "train" else test_idx)
    else:
        folder = ImageFolder(_folder_split(ev.dataset, split), channels, transform)
        if split == "test":  # the same class ids as train/, whatever classes val/ lacks
            names = scan_folder(_folder_split(ev.dataset, "train"))[2]
            missing = sorted(set(folder.classes) - set(names))
            if missing:
                raise ValueError(f"{folder.root} has classes that {ev.dataset}/train lacks: "
                                 f"{missing[:5]}; every test class needs training images")  # fmt: skip
            folder.labels = torch.tensor(
                [names.index(folder.classes[k]) for k in folder.labels.tolist()]
            )
            folder.classes = names
    if not folder.classes:
        raise ValueError(f"{folder.root} has no class sub-folders; k-NN/linear need labels "
                         "(eval.dataset='' evaluates nothing)")  # fmt: skip
    return folder.select(stratified_subset(folder.labels, limit))


def load_eval_split(
    ev: EvalConfig, split: str, channels: int, img_size: int
) -> tuple[Tensor, Tensor]:
    """uint8 images [N, C, H, W] and labels [N] of a labelled evaluation split ("train" or
    "test"; `eval_folder` for folders), `eval.limit_*` a seeded stratified subset."""
    _check_resolved(ev)
    if is_fashion_mnist(ev.dataset):
        limit = ev.limit_train if split == "train" else ev.limit_test
        images, labels = load_fashion_mnist(ev.root, split)
        idx = stratified_subset(labels, limit)
        return match_channels(images[idx], channels), labels[idx]
    return decode_all(eval_folder(ev, split, channels, folder_eval_transform(img_size)))


class TensorBatches:
    """In-memory labelled images (Fashion-MNIST): batched RandomResizedCrop + flip on the
    device (`data/augment.py`), normalization, then timm RandomErasing on the batch."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        cfg: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device,
    ) -> None:
        self.images, self.labels, self.device = images, labels, device
        self.batch_size, self.seed = cfg.optim.batch_size, cfg.run.seed
        self.rank, self.world = rank, world_size
        self.mean, self.std = mean_std(cfg.data)
        d, m = cfg.data, cfg.method
        self.crop = BatchedRandomResizedCrop(d.img_size, scale=d.crop_scale, hflip=d.hflip)
        self.erase = (
            RandomErasing(m.reprob, mode=m.remode, max_count=m.recount, device=str(device))
            if m.reprob > 0
            else None
        )
        self.photometric = Photometric(getattr(m, "photometric", ""))
        self.steps_per_epoch = len(images) // (self.batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(images)} training images < one global batch; lower batch_size")
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)
        self.n_skipped = 0

    def batch(self, step: int) -> Batch:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(len(self.images), self.seed, epoch)
        first = (i * self.world + self.rank) * self.batch_size
        idx = self._perm[first : first + self.batch_size]
        g = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank, 2))
        x = self.crop(self.images[idx].to(self.device), generator=g)  # [B, C, S, S] in 0..255
        if self.photometric.ops:  # noise / blur / contrast / AugMix on 0..255, before normalising
            gp = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank, 5))
            x = self.photometric(x.cpu(), generator=gp).to(self.device)
        x = normalize(x, self.mean, self.std)
        if self.erase is not None:  # timm draws boxes from `random`, pixels from torch
            random.seed(mix_seed(self.seed, step, self.rank, 3))
            torch.manual_seed(mix_seed(self.seed, step, self.rank, 4))
            x = self.erase(x)
        return {"images": x, "labels": self.labels[idx].to(self.device)}

    def batches(self, start: int, end: int) -> Iterator[Batch]:
        for step in range(start, end):
            yield self.batch(step)


class _PILTransform:
    """uint8 [C, H, W] tensor -> PIL -> a timm transform (picklable for DataLoader workers)."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image: Tensor) -> Tensor:
        from torchvision.transforms.v2.functional import to_pil_image

        return self.transform(to_pil_image(image))


class _SeededFolder(torch.utils.data.Dataset):
    """Seeds torch and `random` (timm's RandAugment/RandomErasing draw from it) per item."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        random.seed(seed)
        torch.manual_seed(seed)
        return self.folder[index]


def _folder_split(root: str, split: str) -> Path:
    names = ["train"] if split == "train" else ["val", "test"]
    sub = next((Path(root) / n for n in names if (Path(root) / n).is_dir()), None)
    if sub is None:
        raise FileNotFoundError(f"{root} needs a {' or '.join(names)}/ folder with class folders")
    return sub


class FolderBatches:
    """A labelled folder (`eval.dataset/train/<class>/...`) through timm's `create_transform`
    (RandomResizedCrop, flip, RandAugment, RandomErasing; MAE `util/datasets.py`)."""

    def __init__(
        self, cfg: TrainConfig, *, rank: int = 0, world_size: int = 1, device: torch.device
    ) -> None:
        d, m, ev = cfg.data, cfg.method, cfg.eval
        if getattr(m, "photometric", ""):
            raise ValueError(f"method.photometric={m.photometric!r} is implemented for in-memory "
                             "data (Fashion-MNIST) only; for a folder use method.auto_augment "
                             "(timm RandAugment / AugMix policies) or leave it ''")  # fmt: skip
        mean, std = mean_std(d)
        tf = create_transform(
            d.img_size,
            is_training=True,
            scale=d.crop_scale,
            hflip=0.5 if d.hflip else 0.0,
            color_jitter=m.color_jitter or None,
            auto_augment=m.auto_augment or None,
            interpolation="bicubic",
            re_prob=m.reprob,
            re_mode=m.remode,
            re_count=m.recount,
            mean=mean,
            std=std,
        )
        tf = posterize_zero_bits_as_black(tf)
        self.folder = eval_folder(ev, "train", d.channels, _PILTransform(tf))
        self.labels, self.device, self.num_workers = self.folder.labels, device, d.num_workers
        self.batch_size, self.seed = cfg.optim.batch_size, cfg.run.seed
        self.rank, self.world = rank, world_size
        self.steps_per_epoch = len(self.folder.paths) // (self.batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.folder.paths)} training images < one global batch")
        self.n_skipped = 0

    def batches(self, start: int, end: int) -> Iterator[Batch]:
        sampler = StepBatchSampler(
            len(self.folder.paths), self.batch_size, self.seed, self.rank, self.world, start, end
        )
        loader = DataLoader(
            _SeededFolder(self.folder),
            batch_sampler=sampler,
            collate_fn=collate_skip_none,
            num_workers=self.num_workers,
        )
        last = None
        for b in loader:
            self.n_skipped += b["n_skipped"]
            if b["labels"] is not None:
                last = {
                    "images": b["images"].to(self.device),
                    "labels": b["labels"].to(self.device),
                }
            yield last  # a batch of only unreadable files repeats the previous one


def eval_batches(
    data: DataConfig, ev: EvalConfig, num_workers: int = 0
) -> tuple[Iterator[tuple[Tensor, Tensor]], int]:
    """Test split, preprocessed like the k-NN / linear evaluations (Fashion-MNIST: resize +
    normalize) or, for folders, timm's eval transform (Resize(size/0.875) + CenterCrop, MAE)."""
    img_size, bs = data.img_size, ev.batch_size
    if is_fashion_mnist(ev.dataset):
        images, labels = load_eval_split(ev, "test", data.channels, img_size)
        pre = eval_preprocess(data)

        def it() -> Iterator[tuple[Tensor, Tensor]]:
            for s in range(0, len(images), bs):
                yield pre(images[s : s + bs].float() / 255), labels[s : s + bs]  # pre takes 0..1

        return it(), len(images)

    mean, std = mean_std(data)
    tf = create_transform(
        img_size,
        is_training=False,
        interpolation="bicubic",
        mean=mean,
        std=std,
        crop_pct=0.875 if img_size <= 224 else 1.0,
    )
    folder = eval_folder(ev, "test", data.channels, _PILTransform(tf))
    loader = DataLoader(
        folder, batch_size=bs, collate_fn=collate_skip_none, num_workers=num_workers
    )
    return ((b["images"], b["labels"]) for b in loader if b["labels"] is not None), len(folder)


def num_classes(ev: EvalConfig, video: bool = False, family: str = "class") -> int:
    """Classes of the labelled train split (Fashion-MNIST and Moving Fashion-MNIST: 10; a
    folder: its class folders; with `video`, those of its train/ videos). `family`
    "direction" (video only): Moving Fashion-MNIST's 8 directions, or 1 + the largest
    direction of a `visrep data build-video` folder's train videos; a clear error when the
    set has none."""
    if family != "class":
        check_family(family)
        if not video:
            raise ValueError(f"{family!r} labels are for video runs; image runs have classes "
                             "only (method.labels=class)")  # fmt: skip
        if is_fashion_mnist(ev.dataset):
            return MovingSpec().directions
        paths = find_videos(_folder_split(ev.dataset, "train"))[0]
        table = table_labels(ev.dataset, paths)
        if family not in table:
            raise ValueError(no_family_message(family, ev.dataset))
        return int(table[family].max()) + 1
    if is_fashion_mnist(ev.dataset):
        return 10
    if video:
        return len(find_videos(_folder_split(ev.dataset, "train"))[2])
    return len(scan_folder(ev.dataset if ev.holdout else _folder_split(ev.dataset, "train"))[2])


def train_batches(
    cfg: TrainConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device,
    family: str = "class",
) -> tuple[Any, int]:
    """Training batches of the eval dataset's labelled train split and its number of classes
    (labelled clips for a video run, on the `family` labels:
    `visrep.data.video_source.labelled_clips`)."""
    kw: dict[str, Any] = dict(rank=rank, world_size=world_size, device=device)
    if cfg.data.frames:
        return labelled_clips(cfg, family=family, **kw)
    if family != "class":
        raise ValueError(f"{family!r} labels are for video runs; image runs have classes only")
    if is_fashion_mnist(cfg.eval.dataset):
        images, labels = load_eval_split(cfg.eval, "train", cfg.data.channels, cfg.data.img_size)
        return TensorBatches(images, labels, cfg, **kw), int(labels.max()) + 1
    train = FolderBatches(cfg, **kw)
    return train, int(train.labels.max()) + 1
