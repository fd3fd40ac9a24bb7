"""`visrep viz attention --ckpt RUN [--images DIR]`: the class token's attention in the
last block per head and attention rollout over the input, for ViT runs
(`visrep.evals.attention`), drawn for a few images (a folder, or the eval test split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from visrep.data.preprocess import model_preprocess
from visrep.evals.attention import draw_attention, find_vit
from visrep.evals.run import split_batches
from visrep.runs import load_run

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}


def folder_images(folder: str | Path, n: int, channels: int, size: int) -> Tensor:
    """The first `n` images of `folder` (sorted, recursive) as uint8 [n, C, size, size]."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder; pass a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not paths:
        raise ValueError(f"--images {folder}: no {sorted(IMAGE_SUFFIXES)} files in it")
    out = []
    for p in paths:
        try:
            img = Image.open(p).convert("L" if channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise ValueError(f"--images: cannot read {p} ({e}); remove or replace it") from e
        arr = np.asarray(img.resize((size, size), Image.BICUBIC))
        out.append(torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()))
    return torch.stack(out)


def test_images(cfg, n: int) -> Tensor:
    """The first `n` images of the run's eval test split, uint8."""
    batches, _ = split_batches(cfg.data, cfg.eval, "test", 0)
    x = next(iter(batches))[0][:n]
    return x if x.dtype == torch.uint8 else (x * 255).round().clamp(0, 255).to(torch.uint8)


def run_attention(ckpt: str, *, images: str = "", n: int = 6, out: str = "") -> Path:
    cfg, model = load_run(ckpt)
    find_vit(model)  # a clear error for a non-ViT run before any image is read
    x = (folder_images(images, n, cfg.data.channels, cfg.data.img_size) if images
         else test_images(cfg, n))  # fmt: skip
    path = Path(out) if out else Path(ckpt) / "attention.png"
    return draw_attention(model, x, model_preprocess(cfg.data), path, title=f"{Path(ckpt).name}: class-token attention "
                          "(last block, per head) and rollout")  # fmt: skip
