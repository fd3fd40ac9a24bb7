"""`visrep data build-video`: Moving Fashion-MNIST (`visrep.data.moving_fmnist`) written as real encoded
video files, laid out as users lay out their own videos::

    OUT/train/<k>_<class>/train_00000.mp4 ...   train images only (split id 0)
    OUT/val/<k>_<class>/test_00000.mp4 ...      t10k images only (split id 1)
    OUT/labels.csv      path, split, index, class, class_name, direction, source, speed, angle
    OUT/train.csv, OUT/val.csv   path, class, direction (video lists: `data.dataset=OUT/train.csv`)
    OUT/build_report.json        settings and counts, written last (its presence = complete)

Class folders are prefixed with the class index so that sorting them keeps Fashion-MNIST's
order. Frames are encoded with libx264 (crf 0, 4:4:4, one thread: the same seed writes the
same bytes and decodes to the same frames) at 30 fps, so clip sampling uses W = τ·T source
frames. Direction labels are defined for `wrap` motion only.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from visrep.config import FMNIST_ROOT
from visrep.data.fashion_mnist import CLASSES, load_fashion_mnist
from visrep.data.moving_fmnist import MovingFashionMNIST, MovingSpec
from visrep.data.video import write_video
from visrep.io import atomic_write_text

SPLITS = (("train", "train"), ("val", "test"))  # folder, Fashion-MNIST split


def class_folder(c: int) -> str:
    slug = "_".join("".join(ch if ch.isalnum() else " " for ch in CLASSES[c].lower()).split())
    return f"{c}_{slug}"


def build_moving_fmnist(
    out: str | Path,
    n: int = 4000,
    n_val: int = -1,
    frames: int = 32,
    size: int = 64,
    seed: int = 0,
    motion: str = "wrap",
    root: str = FMNIST_ROOT,
    codec: str = "libx264",
) -> dict:
    """Write `n` train and `n_val` (default n / 5) val videos; returns the build report."""
    if n_val < 0:
        n_val = n // 5
    spec = MovingSpec(frames=frames, size=size, motion=motion)
    out, ext = Path(out), ".mkv" if codec == "ffv1" else ".mp4"
    rows, counts = [], Counter()
    for folder, split in SPLITS:
        images, labels = load_fashion_mnist(root, split)
        gen = MovingFashionMNIST(images.numpy(), labels.numpy(), spec, seed=seed, split=split)
        for i in range(n if folder == "train" else n_val):
            v = gen.video(i)
            rel = Path(folder, class_folder(v.label), f"{split}_{i:05d}{ext}")
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp{ext}")
            write_video(tmp, v.frames, fps=30, codec=codec)
            os.replace(tmp, path)
            rows.append((rel.as_posix(), folder, i, v.label, CLASSES[v.label],
                         v.direction if motion == "wrap" else -1, v.sources[0],
                         round(v.speeds[0], 6), round(v.angles[0], 6)))  # fmt: skip
            counts[f"{folder}/{class_folder(v.label)}"] += 1
    header = "path,split,index,class,class_name,direction,source,speed,angle\n"
    atomic_write_text(out / "labels.csv", header + "".join(
        ",".join(f'"{x}"' if isinstance(x, str) and "," in x else str(x) for x in r) + "\n"
        for r in rows))  # fmt: skip
    for folder, _ in SPLITS:
        lines = [f"{r[0]},{r[3]},{r[5]}\n" for r in rows if r[1] == folder]
        atomic_write_text(out / f"{folder}.csv", "path,class,direction\n" + "".join(lines))
    report = {"source": "moving_fashion_mnist", "spec": "visrep.data.moving_fmnist", "seed": seed,
              "train": n, "val": n_val, "frames": frames, "size": size, "motion": motion,
              "directions": spec.directions, "codec": codec, "fps": 30,
              "classes": [class_folder(c) for c in range(10)],
              "labels": "labels.csv (class = appearance, direction = motion; -1 for bounce)",
              "per_class": dict(sorted(counts.items()))}  # fmt: skip
    atomic_write_text(out / "build_report.json", json.dumps(report, indent=1) + "\n")
    return report


def run(args) -> int:
    """`visrep data build-video ARGS`: build the set, print its report."""
    report = build_moving_fmnist(args.out, args.n, args.n_val, args.frames, args.size,
                                 args.seed, args.motion, args.data_root or FMNIST_ROOT, args.codec)  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "per_class"}, indent=2))
    return 0
