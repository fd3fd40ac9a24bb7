"""Defaults that fit the user's data, decided once before a run starts and saved in its
`config.json` (a resumed or reloaded run reads the same values back).

- `data.channels=0`: 1 for Fashion-MNIST, 3 for image-text pairs; for a folder, colour
  unless every image of a seeded sample of its files is grayscale.
- `data.num_workers=-1`: loader processes for folders and pairs (half the cores, at most 8),
  none for in-memory Fashion-MNIST.
- video data (`data.frames` > 0): `data.channels=0` is 3 (PyAV decodes RGB), a folder with
  `train/` and `val/` trains on `train/`; `eval.dataset="auto"` is that folder (or Moving
  Fashion-MNIST), evaluated by the final video k-NN (`visrep.evals.video`; no periodic one).
- `eval.dataset="auto"`: the user's own labels, never Fashion-MNIST unless training on it:
  - a folder with `train/` and `val/` (or `test/`) class folders: training reads `train/`,
    k-NN and the linear probe use `train/` as memory bank and `val/` as test;
  - a folder of class folders without a split: a seeded stratified hold-out of
    `eval.holdout` (default 10%) of each class is the test split and is left out of training;
  - an unlabeled folder, or image-text pairs: no accuracy ("" : the report shows
    reconstructions, nearest neighbours and collapse diagnostics of the user's images).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

from PIL import Image

from visrep.config import ConfigError, TrainConfig, replace
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.folder import scan_folder
from visrep.data.pairs import is_pair_data

log = logging.getLogger("visrep")

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
CHANNEL_SAMPLE = 200  # files whose header decides a folder's channels
DEFAULT_HOLDOUT = 0.1


def split_dirs(root: str | Path) -> tuple[Path, Path] | None:
    """(train, test) sub-folders of a split dataset folder (`train/` + `val/` or `test/`)."""
    root = Path(root)
    test = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    return (root / "train", test) if (root / "train").is_dir() and test is not None else None


def detect_channels(paths: list[Path], seed: int = 0) -> int:
    """3 unless every image of a seeded sample of `paths` is grayscale (read from headers)."""
    sample = random.Random(seed).sample(paths, min(len(paths), CHANNEL_SAMPLE))
    for p in sample:
        try:
            with Image.open(p) as im:
                gray = im.mode in GRAY_MODES or (
                    im.mode == "P" and _gray_palette(im.getpalette() or [])
                )
        except Exception:  # unreadable: the loader skips and counts it
            continue
        if not gray:
            return 3
    return 1


def _gray_palette(palette: list[int]) -> bool:
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), 3))


def default_workers() -> int:
    return min(8, max(1, (os.cpu_count() or 1) // 2))


def resolve_data(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with its automatic data settings (module docstring) made explicit."""
    d, ev = cfg.data, cfg.eval
    if d.frames:
        return _resolve_video(cfg)
    changes: dict = {}
    pairs = is_pair_data(d)
    folder = not pairs and not is_fashion_mnist(d.dataset)
    split = split_dirs(d.dataset) if folder else None
    if split is not None:  # DIR/train + DIR/val: train on train/, evaluate on the split
        changes["data.dataset"] = str(split[0])
    if d.num_workers < 0:
        changes["data.num_workers"] = default_workers() if folder or pairs else 0
    if d.channels == 0:
        if is_fashion_mnist(d.dataset):
            changes["data.channels"] = 1
        elif pairs:
            changes["data.channels"] = 3
        else:
            paths = scan_folder(changes.get("data.dataset", d.dataset))[0]
            changes["data.channels"] = detect_channels(paths, cfg.run.seed)
            log.info("data.channels=%d (%s images in %s)", changes["data.channels"],
                     "colour" if changes["data.channels"] == 3 else "only grayscale", d.dataset)  # fmt: skip
    if ev.dataset == "auto":
        if is_fashion_mnist(d.dataset):
            changes["eval.dataset"] = "fashion_mnist"
        elif split is not None:
            changes["eval.dataset"] = d.dataset
        elif folder and scan_folder(d.dataset)[2]:  # class folders without a split
            changes["eval.dataset"] = d.dataset
            changes["eval.holdout"] = ev.holdout or DEFAULT_HOLDOUT
            log.info("evaluating on a stratified %.0f%% hold-out of %s's classes, left out of "
                     "training", 100 * changes["eval.holdout"], d.dataset)  # fmt: skip
        else:
            changes["eval.dataset"] = ""
            log.info("%s has no class folders: no accuracy; the report shows nearest "
                     "neighbours and feature statistics instead", d.dataset)  # fmt: skip
    return replace(cfg, **changes) if changes else cfg


def _resolve_video(cfg: TrainConfig) -> TrainConfig:
    d, changes = cfg.data, {}
    fmnist = is_fashion_mnist(d.dataset)  # Moving Fashion-MNIST made on the fly
    split = None if fmnist or Path(d.dataset).is_file() else split_dirs(d.dataset)
    if split is not None:
        changes["data.dataset"] = str(split[0])
    if d.num_workers < 0:
        changes["data.num_workers"] = 0 if fmnist else default_workers()
    if d.channels == 0:
        changes["data.channels"] = 3
    if cfg.eval.dataset == "auto":  # video k-NN on the data's own labelled split
        changes["eval.dataset"] = d.dataset if fmnist or split is not None else ""
    if cfg.eval.every_epochs and not changes.get("eval.dataset", cfg.eval.dataset):
        # the periodic clip-level k-NN (the ρ study's online monitor) needs labelled videos
        raise ConfigError("eval.every_epochs on a video run needs a labelled eval.dataset (a "
                          "folder with train/ and val/ of videos, or fashion_mnist); set "
                          "eval.every_epochs=0")  # fmt: skip
    return replace(cfg, **changes) if changes else cfg


def holds_out(cfg: TrainConfig) -> float:
    """The fraction of the training folder held out for evaluation (0 = none)."""
    same = cfg.eval.dataset and Path(cfg.eval.dataset) == Path(cfg.data.dataset)
    return cfg.eval.holdout if same else 0.0
