"""Normalisation and the evaluation-time preprocessing shared by every consumer of images:
the statistics a run trains with, channel matching, and resize + normalise of float
batches for evaluation, export and pictures (the pre-training statistics, always)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from visrep.config import DataConfig
from visrep.data.augment import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, normalize
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.folder import folder_eval_transform


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


def model_preprocess(data: DataConfig) -> Callable[[Tensor], Tensor]:
    """`make_preprocess` with the run's own statistics (`mean_std(data)`): float [B, C, H, W]
    in 0..255 -> what the model was trained on."""
    mean, std = mean_std(data)
    return make_preprocess(data.img_size, data.channels, mean, std)


def eval_preprocess(data: DataConfig) -> Callable[[Tensor], Tensor]:
    """`model_preprocess` for images in [0, 1] (what `evals.features.extract_features`
    hands over)."""
    to_model = model_preprocess(data)

    def preprocess(x: Tensor) -> Tensor:
        return to_model(x * 255.0)

    return preprocess


def image_transform(data: DataConfig, crop_pct: float = 0.875) -> Callable[[Any], Tensor]:
    """One image (PIL, or uint8 tensor [C, H, W]) -> the normalised float tensor [C, S, S] a
    model trained on `data` takes: short side resized to S / crop_pct (bicubic), centre crop
    S, channels matched, the run's mean/std (`visrep.load`'s transform)."""
    resize = folder_eval_transform(data.img_size, crop_pct)
    to_model = model_preprocess(data)

    def apply(image: Any) -> Tensor:
        if isinstance(image, Image.Image):
            image = TF.pil_to_tensor(image.convert("L" if data.channels == 1 else "RGB"))
        return to_model(resize(image).float().unsqueeze(0))[0]  # [C, S, S]

    return apply
