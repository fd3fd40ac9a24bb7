"""Labelled videos for frozen evaluation (the clip-level protocol of SlowFast's `tools/test_net.py`): the memory bank / probe set
and the test set, each video given as its multi-view clips.

- `fashion_mnist`: Moving Fashion-MNIST (seed 0) made on the fly: the first
  `eval.limit_train` train-split videos (train images) and `eval.limit_test` test-split
  videos (t10k images); multiples of 80 are exactly balanced in class × direction. Labels:
  "class" (appearance) and "direction" (motion).
- a folder with `train/` and `val/` (or `test/`) of videos: class labels from the class
  sub-folders; "direction" (or any other integer column) too when the folder holds the
  `labels.csv` of `visrep data build-video`. Seeded stratified subsets of the limits.

Views: N_t = `eval.temporal_views` temporal clips by the offset rule × N_s =
`eval.spatial_crops` uniform crops (1: centre; 3: left/centre/right, or top/centre/bottom,
along the long side: SlowFast `datasets/transform.py` `uniform_crop`, mae_st
`util/kinetics.py` test mode) after scaling the short side to `data.img_size`
(`visrep.data.video.multiview_clips`), normalised as in training; view v is temporal clip
v // N_s at crop v % N_s.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from visrep.config import DataConfig, EvalConfig, replace
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.moving_fmnist import MovingFashionMNIST, MovingSpec
from visrep.data.resolve import split_dirs
from visrep.data.sampling import stratified_subset
from visrep.data.video import check_video_backend, decode_video, find_videos, multiview_clips
from visrep.data.video_source import normalize_clips, table_labels, video_mean_std

MOVING_EVAL = (800, 400)  # default train / test videos of Moving Fashion-MNIST


class VideoEvalSet:
    """Videos with labels; `views(i)` -> normalised float [V, C, T, S, S], V = `views`
    temporal clips × `crops` spatial crops."""

    def __init__(self, get, n: int, labels: dict[str, Tensor], data: DataConfig, views: int,
                 crops: int = 1):  # fmt: skip
        self._get, self.n, self.labels, self.data, self.num_views = get, n, labels, data, views
        self.crops = crops
        self.mean, self.std = video_mean_std(data, moving=is_fashion_mnist(data.dataset))
        self.n_skipped = 0

    def __len__(self) -> int:
        return self.n

    def views(self, i: int) -> Tensor | None:
        """The views of video i, or None if it cannot be decoded (counted in n_skipped)."""
        try:
            video, fps = self._get(i)
        except Exception:
            self.n_skipped += 1
            return None
        d = self.data
        clips = multiview_clips(video, fps, frames=d.frames, stride=d.frame_stride,
                                size=d.img_size, temporal_views=self.num_views,
                                spatial_views=self.crops, channels=d.channels or 3)  # fmt: skip
        return normalize_clips(clips, self.mean, self.std)


def _moving_set(data: DataConfig, split: str, n: int, views: int, crops: int = 1) -> VideoEvalSet:
    images, labels = load_fashion_mnist(data.root, split)
    gen = MovingFashionMNIST(images.numpy(), labels.numpy(), MovingSpec(), seed=0, split=split)
    spec = gen.spec

    def get(i: int):
        return torch.from_numpy(gen.video(i).frames).unsqueeze(-1).expand(-1, -1, -1, 3), None

    idx = torch.arange(n)
    labels = {"class": idx % 10, "direction": (idx // 10) % spec.directions}
    return VideoEvalSet(get, n, labels, data, views, crops)


def _folder_set(root: Path, split: Path, data: DataConfig, limit: int, views: int,
                crops: int = 1, names: list[str] | None = None):  # fmt: skip
    """`names`: the train split's classes, whose indices the test labels take (a test split
    may lack some classes)."""
    paths, classes, found = find_videos(split)
    if names is not None and found:
        missing = sorted(set(found) - set(names))
        if missing:
            raise ValueError(f"{split} has classes that {root / 'train'} lacks: {missing[:5]}; "
                             "every test class needs training videos")  # fmt: skip
        classes = [names.index(found[c]) for c in classes]
    # `visrep data build-video`: the motion labels too
    labels = {"class": torch.tensor(classes)} | table_labels(root, paths)
    keep = stratified_subset(labels["class"], limit).tolist()
    paths = [paths[i] for i in keep]
    labels = {k: v[keep] for k, v in labels.items()}
    return _decoded_set(paths, labels, data, views, crops)


def _decoded_set(paths: list[Path], labels: dict[str, Tensor], data: DataConfig, views: int,
                 crops: int = 1):  # fmt: skip
    """Video files decoded with `data.video_backend` when a view is asked for."""
    check_video_backend(data.video_backend)
    short, backend = data.short_side, data.video_backend
    return VideoEvalSet(lambda i: decode_video(paths[i], short, backend), len(paths), labels,
                        data, views, crops)  # fmt: skip


def video_eval_sets(
    data: DataConfig, ev: EvalConfig, views: int = 0, crops: int = 0
) -> tuple[VideoEvalSet, VideoEvalSet] | None:
    """(train, test) sets of `eval.dataset`, or None when it has no labelled split; each
    video as `views` temporal clips × `crops` spatial crops (0: `eval.temporal_views` ×
    `eval.spatial_crops`)."""
    views, crops = views or ev.temporal_views, crops or ev.spatial_crops
    if is_fashion_mnist(ev.dataset):
        n_train, n_test = ev.limit_train or MOVING_EVAL[0], ev.limit_test or MOVING_EVAL[1]
        return (_moving_set(data, "train", n_train, views, crops),
                _moving_set(data, "test", n_test, views, crops))  # fmt: skip
    split = split_dirs(ev.dataset) if ev.dataset else None
    if split is None:
        return None
    root = Path(ev.dataset)
    names = find_videos(split[0])[2]  # test labels index the train split's classes
    return (_folder_set(root, split[0], data, ev.limit_train, views, crops),
            _folder_set(root, split[1], data, ev.limit_test, views, crops, names))  # fmt: skip


def preview_clips(data: DataConfig, ev: EvalConfig, n: int) -> Tensor:
    """Up to n normalised clips [n, C, T, S, S] for pictures (the first temporal view, spread
    over `eval.dataset`'s test videos, else the training videos); videos that cannot be
    decoded are passed over."""
    sets = video_eval_sets(data, replace(ev, limit_test=max(ev.limit_test, n)), views=1, crops=1)
    if sets is not None:
        videos = sets[1]
    elif is_fashion_mnist(data.dataset):
        videos = _moving_set(data, "train", n, 1)
    else:
        videos = _decoded_set(find_videos(data.dataset)[0], {}, data, 1)
    clips = []
    for i in torch.linspace(0, len(videos) - 1, min(n, len(videos))).long().tolist():
        views = videos.views(i)
        if views is not None:
            clips.append(views[0])
    if not clips:
        raise ValueError(f"no video of {ev.dataset or data.dataset} could be decoded")
    return torch.stack(clips)
