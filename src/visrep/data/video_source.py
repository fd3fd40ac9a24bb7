"""Video training data (`data.frames` > 0): clips as a function of (seed, step, rank).

Two sources, both yielding `{"images": float [B, C, T, S, S]}` normalised clips (the key
images carry, so the loop counts them the same way; B·r clips, r of each of the B videos,
with `data.repeat_aug` = r):

- `VideoTrainData`: a folder of the user's videos (mp4/mkv/webm/avi/mov; class sub-folders
  optional) or a CSV/JSONL/text list (`visrep.data.video.find_videos`), decoded with PyAV in
  DataLoader workers. The sample order is the image folders' `StepBatchSampler`; every clip's
  draws (start, crop, flip) come from a `random.Random` seeded by (seed, step, rank, slot).
  A video that cannot be decoded is logged once, skipped and counted (`n_skipped`), never
  fatal.
- `MovingTrainData`: Moving Fashion-MNIST (`visrep.data.moving_fmnist`) made on the fly per index from
  the Fashion-MNIST train images (`data.dataset=fashion_mnist`, `data.limit` videos, 4,000 by
  default), so a video recipe runs with no files at all; `visrep data build-video` writes
  the same videos as files for the decoding path.

With `labels=True` both also yield `"labels"` [B]: the class sub-folder or Moving
Fashion-MNIST's class, or with `family="direction"` the motion direction (Moving
Fashion-MNIST's d, or the `direction` column of a `visrep data build-video` folder's
`labels.csv`, `table_labels`): the labelled clips of video fine-tuning (`labelled_clips`: the
train split of `eval.dataset`, as image fine-tuning trains on the labelled train split).
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from visrep.config import DataConfig, TrainConfig, replace
from visrep.data.clip_augment import ClipAugment
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import collate_skip_none, readable_batches
from visrep.data.moving_fmnist import MEAN, STD, MovingFashionMNIST, MovingSpec
from visrep.data.preprocess import mean_std
from visrep.data.resolve import split_dirs
from visrep.data.sampling import (
    StepBatchSampler,
    epoch_permutation,
    holdout_split,
    ignore_sigint,
    mix_seed,
    stratified_subset,
)
from visrep.data.video import (
    KINETICS_MEAN,
    KINETICS_STD,
    check_video_backend,
    decode_video,
    find_videos,
    train_clip,
    train_clips,
)
from visrep.device import CPU

logger = logging.getLogger(__name__)

MOVING_TRAIN_VIDEOS = 4000  # the default train set size of Moving Fashion-MNIST
LABEL_FAMILIES = ("class", "direction")  # appearance, motion (Moving Fashion-MNIST)


def table_labels(root: str | Path, paths: list[Path]) -> dict[str, Tensor]:
    """The motion labels of a `visrep data build-video` folder: {"direction": [N]} for
    `paths` (below `root`) from `root/labels.csv` when every one of them has a direction
    >= 0 (wrap motion), else {}."""
    table = Path(root) / "labels.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    rel = [Path(p).relative_to(root).as_posix() for p in paths]
    if not rel or not all(r in rows for r in rel) or "direction" not in rows[rel[0]]:
        return {}
    direction = torch.tensor([int(rows[r]["direction"]) for r in rel])
    return {"direction": direction} if (direction >= 0).all() else {}


def check_family(family: str) -> None:
    if family not in LABEL_FAMILIES:
        raise ValueError(f"video label family must be one of {LABEL_FAMILIES}, got {family!r}")


def video_mean_std(data: DataConfig, moving: bool) -> tuple[tuple[float, ...], ...]:
    """Normalisation: data.mean/std if set, else Moving Fashion-MNIST's measured constants
    or the Kinetics ones (0.45 / 0.225), per channel, in 0..1 units."""
    if data.mean and data.std:
        return mean_std(data)
    c = data.channels or 3
    m, s = ((MEAN,) * 3, (STD,) * 3) if moving else (KINETICS_MEAN, KINETICS_STD)
    return tuple(m[:c]), tuple(s[:c])


def normalize_clips(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x / 255 − mean) / std per channel of float clips [B, C, T, H, W] in 0..255."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
    return (x / 255 - m) / s


def _clip_kwargs(data: DataConfig) -> dict:
    return dict(frames=data.frames, stride=data.frame_stride, size=data.img_size,
                scale=data.crop_scale, hflip=data.hflip, channels=data.channels or 3)  # fmt: skip


def sample_clips(video: Tensor, fps: float | None, data: DataConfig, rng: random.Random,
                 augment: ClipAugment | None = None):  # fmt: skip
    """One training clip [C, T, S, S] (`augment`: fine-tuning's RandAugment / RandomErasing
    of the clip; `data.color_jitter`, `data.short_side_jitter`: SlowFast's fine-tuning colour
    and spatial sampling, `visrep.data.video.augment_clip`); with `data.repeat_aug` = r > 1,
    r such clips of the one decoded video [r, C, T, S, S], each with its own temporal
    position and augmentation drawn in turn from `rng` (MAE-ST `util/kinetics.py`); or with
    `data.clips` = ρ > 0 the list of ρ-study positives (`visrep.data.video.train_clips`)."""
    if data.clips:
        return train_clips(video, fps, rho=data.clips, rng=rng, colour=data.ssl_color,
                           jitter=data.short_side_jitter, **_clip_kwargs(data))  # fmt: skip
    colour = "finetune" if data.color_jitter else ""
    clips = [train_clip(video, fps, rng=rng, augment=augment, colour=colour,
                        jitter=data.short_side_jitter, **_clip_kwargs(data))
             for _ in range(data.repeat_aug)]  # fmt: skip
    return torch.stack(clips) if data.repeat_aug > 1 else clips[0]


def normalized_batch(b: dict, mean, std, device: torch.device,
                     labels: bool = False) -> dict[str, Tensor]:  # fmt: skip
    """{"images": [B, C, T, S, S]} or {"views": [[B, C, T, S, S], ...]}, normalised on
    `device`; with `labels`, b's "labels" [B] too. Repeated clips [B, r, C, T, S, S]
    (`data.repeat_aug`) become B·r clips, video by video, each with its video's label
    (MAE-ST `engine_pretrain.py` / `engine_finetune.py` reshape b × r)."""
    repeat = 1
    if "views" in b:
        out = {"views": [normalize_clips(v.to(device).float(), mean, std) for v in b["views"]]}
    else:
        images = b["images"]
        if images.dim() == 6:
            repeat, images = images.shape[1], images.flatten(0, 1)
        out = {"images": normalize_clips(images.to(device).float(), mean, std)}
    if not labels:
        return out
    return out | {"labels": b["labels"].to(device).repeat_interleave(repeat)}


class VideoFiles(Dataset):
    """Videos of a folder or list; item (index, seed) -> (clip float [C, T, S, S], label) or
    None for a video that cannot be decoded (logged once per process)."""

    def __init__(self, source: str | Path, data: DataConfig,
                 augment: ClipAugment | None = None) -> None:  # fmt: skip
        check_video_backend(data.video_backend)
        self.paths, labels, self.classes = find_videos(source)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.data, self.bad_paths, self.augment = data, set(), augment

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Tensor) -> VideoFiles:
        self.paths = [self.paths[i] for i in indices.tolist()]
        self.labels = self.labels[indices]
        return self

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        path = self.paths[index]
        try:
            video, fps = decode_video(path, self.data.short_side, self.data.video_backend)
        except Exception as e:  # any decoder error means "skip this video", never a crash
            if path not in self.bad_paths:
                self.bad_paths.add(path)
                logger.warning("Skipping unreadable video %s (%s: %s)", path, type(e).__name__, e)
            return None
        clip = sample_clips(video, fps, self.data, random.Random(seed), self.augment)
        return clip, int(self.labels[index])


class VideoTrainData:
    """A folder or list of the user's videos, streamed by a DataLoader (module docstring)."""

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
        labels: bool = False,
        family: str = "class",
        table_root: str | Path = "",
        augment: ClipAugment | None = None,
    ) -> None:
        check_family(family)
        self.files, self.labels = VideoFiles(data.dataset, data, augment), labels
        if holdout:
            self.files.select(holdout_split(self.files.labels, holdout)[0])
        self.files.select(stratified_subset(self.files.labels, data.limit))
        if family != "class":  # the subset is the class-stratified one; its motion labels
            table = table_labels(table_root, self.files.paths)
            if family not in table:
                raise ValueError(no_family_message(family, table_root))
            self.files.labels = table[family]
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world, self.device = rank, world_size, device
        self.mean, self.std = video_mean_std(data, moving=False)
        self.steps_per_epoch = len(self.files) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.files)} videos in {data.dataset} are fewer than one "
                             f"global batch ({batch_size} x {world_size}); lower "
                             "optim.batch_size")  # fmt: skip
        self.n_skipped = 0

    def batches(self, start_step: int, end_step: int) -> Iterator[dict[str, Tensor]]:
        sampler = StepBatchSampler(len(self.files), self.batch_size, self.seed, self.rank,
                                   self.world, start_step, end_step)  # fmt: skip
        loader = DataLoader(self.files, batch_sampler=sampler, collate_fn=collate_skip_none,
                            num_workers=self.data.num_workers,
                            pin_memory=self.device.type == "cuda", worker_init_fn=ignore_sigint)  # fmt: skip
        for b in readable_batches(loader, self, "videos"):
            yield normalized_batch(b, self.mean, self.std, self.device, self.labels)


class MovingTrainData:
    """Moving Fashion-MNIST clips made on the fly (module docstring)."""

    def __init__(
        self,
        data: DataConfig,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device = CPU,
        labels: bool = False,
        family: str = "class",
        augment: ClipAugment | None = None,
    ) -> None:
        check_family(family)
        self.labels, self.family, self.augment = labels, family, augment
        images, classes = load_fashion_mnist(data.root, "train")
        # the seed-0 set, whatever the run's seed: every run trains on the same videos
        self.videos = MovingFashionMNIST(images.numpy(), classes.numpy(), MovingSpec(), seed=0,
                                         split="train")  # fmt: skip
        self.n = data.limit or MOVING_TRAIN_VIDEOS
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world, self.device = rank, world_size, device
        self.mean, self.std = video_mean_std(data, moving=True)
        self.steps_per_epoch = self.n // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{self.n} videos are fewer than one global batch ({batch_size} x "
                             f"{world_size}); lower optim.batch_size or raise data.limit")  # fmt: skip
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)
        self.n_skipped = 0

    def indices(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch, self._perm = epoch, epoch_permutation(self.n, self.seed, epoch)
        start = (i * self.world + self.rank) * self.batch_size
        return self._perm[start : start + self.batch_size]

    def batch(self, step: int) -> dict[str, Tensor]:
        clips, classes = [], []
        for k, i in enumerate(self.indices(step).tolist()):
            v = self.videos.video(i)
            video = torch.from_numpy(v.frames).unsqueeze(-1).expand(-1, -1, -1, 3)
            rng = random.Random(mix_seed(self.seed, step, self.rank, k))
            clips.append(sample_clips(video, None, self.data, rng, self.augment))
            classes.append(v.direction if self.family == "direction" else v.label)
        if self.data.clips:  # per video a list of positives -> one batch per view
            batch = {"views": [torch.stack(v) for v in zip(*clips)]}
        else:
            batch = {"images": torch.stack(clips)}
        batch["labels"] = torch.tensor(classes, dtype=torch.long)
        return normalized_batch(batch, self.mean, self.std, self.device, self.labels)

    def batches(self, start_step: int, end_step: int) -> Iterator[dict[str, Tensor]]:
        for step in range(start_step, end_step):
            yield self.batch(step)


def no_family_message(family: str, dataset: str | Path) -> str:
    return (f"eval.dataset={str(dataset)!r} has no {family!r} labels: motion-direction labels "
            "come with Moving Fashion-MNIST (eval.dataset=fashion_mnist) and with the "
            "labels.csv of a `visrep data build-video --motion wrap` folder; fine-tune on "
            "method.labels=class instead")  # fmt: skip


def labelled_clips(
    cfg: TrainConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device = CPU,
    family: str = "class",
) -> tuple[MovingTrainData | VideoTrainData, int]:
    """Labelled training clips of `eval.dataset`'s train split (augmented as `cfg.data` says:
    random start, random resized crop, flip) and its number of classes: Moving Fashion-MNIST's
    first `eval.limit_train` train videos (4,000 when 0; the videos the video evaluation's
    memory bank takes its first ones from), or the class sub-folders of a video folder's
    `train/` (`eval.limit_train`: a seeded stratified subset). `family` "direction": the
    motion labels of the same videos (8 directions on Moving Fashion-MNIST). The method's
    `auto_augment` / `reprob` (`remode`, `recount`) add RandAugment / RandomErasing of each
    clip (`visrep.data.clip_augment.ClipAugment`)."""
    ev, m = cfg.eval, cfg.method
    moving = is_fashion_mnist(ev.dataset)
    mean, std = video_mean_std(cfg.data, moving=moving)
    augment = ClipAugment(getattr(m, "auto_augment", ""), getattr(m, "reprob", 0.0),
                          getattr(m, "remode", "pixel"), getattr(m, "recount", 1), mean, std)  # fmt: skip
    kw = dict(seed=cfg.run.seed, rank=rank, world_size=world_size, device=device, labels=True,
              family=family, augment=augment or None)  # fmt: skip
    if moving:
        data = replace(cfg.data, dataset=ev.dataset, root=ev.root, limit=ev.limit_train)
        train = MovingTrainData(data, cfg.optim.batch_size, **kw)
        return train, train.videos.spec.directions if family == "direction" else 10
    split = split_dirs(ev.dataset) if ev.dataset else None
    if split is None:
        raise ValueError(f"eval.dataset={ev.dataset!r} holds no labelled videos: fine-tuning a "
                         "video run needs eval.dataset=fashion_mnist (Moving Fashion-MNIST) or "
                         "a folder with train/ and val/ (or test/) class sub-folders of videos "
                         "(`visrep data build-video` writes one)")  # fmt: skip
    data = replace(cfg.data, dataset=str(split[0]), limit=ev.limit_train)
    train = VideoTrainData(data, cfg.optim.batch_size, table_root=ev.dataset, **kw)
    if not train.files.classes:
        raise ValueError(f"{split[0]} has no class sub-folders: fine-tuning needs labelled "
                         "videos, one sub-folder per class")  # fmt: skip
    if family != "class":
        return train, int(train.files.labels.max()) + 1
    return train, len(train.files.classes)
