"""Data settings the video recipes share: Moving Fashion-MNIST clips on a CPU
(`visrep.data.moving_fmnist`) and Kinetics-style clips on a GPU machine."""

from __future__ import annotations

from dataclasses import replace

from visrep.config import DataConfig

MOVING_MEAN, MOVING_STD = 0.0553, 0.1920  # visrep.data.moving_fmnist (torch-free here)


def moving_fmnist_clips(**changes) -> DataConfig:
    """T = 8 frames at τ = 2 (W = 16 of 32 frames), 64 px, 3 replicated channels,
    Moving Fashion-MNIST's mean/std (also for its mp4 folders: folders otherwise get the
    Kinetics 0.45 / 0.225), random resized crop (0.5, 1), no flip (a flip would turn
    direction d into its mirror image: the set's direction rules)."""
    data = DataConfig(dataset="fashion_mnist", img_size=64, channels=3,
                      mean=(MOVING_MEAN,) * 3, std=(MOVING_STD,) * 3, frames=8,
                      frame_stride=2, crop_scale=(0.5, 1.0), hflip=False, num_workers=0)  # fmt: skip
    return replace(data, **changes)


def kinetics_clips(frames: int, stride: int, **changes) -> DataConfig:
    """Kinetics-400 clips at 224 px from frames decoded at short side 256 (a folder of class
    folders of videos, or a `path label` list), random resized crop (0.5, 1) with flip."""
    data = DataConfig(dataset="path/to/kinetics400/train", img_size=224, channels=3,
                      frames=frames, frame_stride=stride, short_side=256,
                      crop_scale=(0.5, 1.0), num_workers=8)  # fmt: skip
    return replace(data, **changes)
