"""Fashion-MNIST idx loader: real packaged data (skipped when absent) and hand-made files."""

import gzip
import struct
from pathlib import Path

import pytest
import torch
from conftest import FMNIST
from conftest import requires_fmnist as needs_data

from visrep.data.augment import FMNIST_MEAN, FMNIST_STD
from visrep.data.fashion_mnist import CLASSES, load_fashion_mnist


def write_idx(root: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor, gz: bool):
    """Write an idx3 images / idx1 labels pair the way the original files are laid out."""
    n, rows, cols = images.shape
    img_bytes = struct.pack(">IIII", 2051, n, rows, cols) + images.numpy().tobytes()
    lbl_bytes = struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes()
    for name, data in [
        (f"{prefix}-images-idx3-ubyte", img_bytes),
        (f"{prefix}-labels-idx1-ubyte", lbl_bytes),
    ]:
        if gz:
            with gzip.open(root / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (root / name).write_bytes(data)


@pytest.fixture(scope="module")
def train():
    return load_fashion_mnist(FMNIST, "train")


@needs_data
def test_train_split_shapes_and_class_balance(train):
    images, labels = train
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert images.is_contiguous()
    counts = torch.bincount(labels, minlength=10)
    assert len(counts) == len(CLASSES) == 10
    assert torch.equal(counts, torch.full((10,), 6000))  # Fashion-MNIST is exactly balanced
    assert int(images.max()) == 255 and int(images.min()) == 0


@needs_data
def test_test_split():
    images, labels = load_fashion_mnist(FMNIST, split="test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert int(labels.min()) == 0 and int(labels.max()) == 9


@needs_data
def test_normalisation_constants_match_train_set(train):
    images, _ = train
    # Exact moments from the 256-bin histogram (no float32 accumulation error).
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert round(float(mean), 3) == round(FMNIST_MEAN[0], 3)
    assert round(float(std), 3) == round(FMNIST_STD[0], 3)


@pytest.mark.parametrize("gz", [True, False])
def test_hand_made_files_roundtrip(tmp_path, gz):
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 9, 3, 3, 1])
    write_idx(tmp_path, "t10k", images, labels, gz=gz)
    got_images, got_labels = load_fashion_mnist(tmp_path, "test")
    assert torch.equal(got_images, images[:, None])
    assert torch.equal(got_labels, labels) and got_labels.dtype == torch.int64


def test_wrong_magic_names_the_file(tmp_path):
    write_idx(
        tmp_path, "train", torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2), gz=False
    )
    bad = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(bad.read_bytes())
    data[:4] = struct.pack(">I", 2049)  # a labels magic on an images file
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic"):
        load_fashion_mnist(tmp_path, "train")


def test_truncated_file_is_rejected(tmp_path):
    write_idx(
        tmp_path, "train", torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3), gz=False
    )
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist(tmp_path, "train")


def test_image_label_count_mismatch(tmp_path):
    write_idx(tmp_path, "train", torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3), gz=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:
        f.write(struct.pack(">II", 2049, 2) + bytes([1, 2]))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        load_fashion_mnist(tmp_path, "train")


def test_label_out_of_range_and_bad_gzip(tmp_path):
    write_idx(
        tmp_path,
        "train",
        torch.zeros(2, 28, 28, dtype=torch.uint8),
        torch.tensor([0, 10]),
        gz=False,
    )
    with pytest.raises(ValueError, match="label 10"):
        load_fashion_mnist(tmp_path, "train")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path, "test")


def test_missing_root_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path)  # exists but empty


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, "val")
