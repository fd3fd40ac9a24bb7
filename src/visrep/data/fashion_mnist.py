"""Fashion-MNIST (Xiao et al., 2017) read straight from its idx files.

The data comes from the Debian package ``dataset-fashion-mnist``, which installs
``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` under :data:`DEFAULT_ROOT`.
Debian recompressed the files, so the md5 sums that
``torchvision.datasets.FashionMNIST`` checks do not match; we parse the idx
format ourselves instead (it is two tiny big-endian headers in front of raw
bytes). Uncompressed files (the same names without ``.gz``) are read as well.

The images stay grayscale with one channel, ``[N, 1, 28, 28]`` uint8: visrep
models built for Fashion-MNIST use ``in_chans=1`` rather than repeating the
channel three times (three identical channels would triple the patch-embedding
input and the pixel-reconstruction targets for no information).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# idx magic numbers: 0x0000 08 03 (unsigned byte, 3 dims) and 0x0000 08 01 (1 dim).
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

_HOW_TO_GET = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (files go to "
    f"{DEFAULT_ROOT}), or pass a root holding the four idx files "
    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]."
)


def _find(root: Path, name: str) -> Path:
    """Return ``root/name.gz`` or ``root/name``, preferring the packaged gzip file."""
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    if not root.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST root {root} does not exist. {_HOW_TO_GET}")
    raise FileNotFoundError(f"Fashion-MNIST file {name}[.gz] not found in {root}. {_HOW_TO_GET}")


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError; truncation is EOFError
        raise ValueError(f"{path} is not a readable gzip file ({e}).") from e


def _read_idx_images(path: Path) -> torch.Tensor:
    """Parse an idx3-ubyte file: header ``>IIII`` = (magic 2051, n, rows, cols)."""
    data = _read_bytes(path)
    if len(data) < 16:
        raise ValueError(f"{path} is too short ({len(data)} bytes) for an idx3 images header.")
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != _IMAGES_MAGIC:
        raise ValueError(
            f"{path}: bad magic number {magic}, expected {_IMAGES_MAGIC} (idx3 images)."
        )
    if len(data) != 16 + n * rows * cols:
        raise ValueError(
            f"{path}: header says {n} images of {rows}x{cols} ({16 + n * rows * cols} bytes) "
            f"but the file holds {len(data)} bytes; it is truncated or corrupt."
        )
    # bytearray copies the payload, so the tensor owns writable memory.
    return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, 1, rows, cols)


def _read_idx_labels(path: Path) -> torch.Tensor:
    """Parse an idx1-ubyte file: header ``>II`` = (magic 2049, n)."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise ValueError(f"{path} is too short ({len(data)} bytes) for an idx1 labels header.")
    magic, n = struct.unpack(">II", data[:8])
    if magic != _LABELS_MAGIC:
        raise ValueError(
            f"{path}: bad magic number {magic}, expected {_LABELS_MAGIC} (idx1 labels)."
        )
    if len(data) != 8 + n:
        raise ValueError(
            f"{path}: header says {n} labels but the file holds {len(data) - 8}; "
            "it is truncated or corrupt."
        )
    labels = torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()
    if n and int(labels.max()) >= len(CLASSES):
        raise ValueError(f"{path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}.")
    return labels


def is_fashion_mnist(dataset: str) -> bool:
    """`data.dataset` / `eval.dataset` names the packaged Fashion-MNIST (not a folder)."""
    return dataset.lower().replace("-", "_") in ("fashion_mnist", "fmnist")


def load_fashion_mnist(
    root: str | Path = DEFAULT_ROOT, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of Fashion-MNIST into memory.

    Args:
        root: folder holding the idx files (gzip or uncompressed).
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).

    Returns:
        ``(images, labels)``: uint8 ``[N, 1, 28, 28]`` (one grayscale channel, for
        ``in_chans=1`` models) and int64 ``[N]`` with values in ``0..9`` indexing
        :data:`CLASSES`.

    Raises:
        FileNotFoundError: the root or a file is missing (the message says how to
            install the data).
        ValueError: unknown split, or a file with a bad header, bad size or bad labels.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; use 'train' or 'test'.")
    root = Path(root)
    prefix = _SPLIT_PREFIX[split]
    images = _read_idx_images(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx_labels(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} split in {root}: {len(images)} images but {len(labels)} labels."
        )
    return images, labels
