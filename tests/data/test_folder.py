"""Image folders: layout detection, decoding of many formats, skipping corrupt files."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from visrep.data.folder import (
    ImageFolder,
    collate_skip_none,
    folder_eval_transform,
    folder_train_transform,
    load_folder_tensors,
    scan_folder,
)

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec (not a dependency yet).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def save(path: Path, size=(20, 16), mode="RGB", fmt=None, seed=0) -> np.ndarray:
    """Write a random image with PIL and return its pixels."""
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path, format=fmt)
    return pixels


def truncated_jpeg(path: Path) -> None:
    save(path, size=(64, 48))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def labelled(tmp_path) -> Path:
    """Two classes, mixed formats/modes/sizes, one truncated JPEG and one fake PNG."""
    root = tmp_path / "labelled"
    save(root / "cat" / "a.png", (20, 16))
    save(root / "cat" / "b.JPG", (33, 21), fmt="JPEG")
    save(root / "cat" / "nested" / "c.png", (8, 8), mode="L")
    save(root / "dog" / "d.bmp", (12, 30))
    truncated_jpeg(root / "dog" / "broken.jpg")
    (root / "dog" / "notes.png").write_text("this is not a png")
    (root / "dog" / "readme.txt").write_text("not an image extension: ignored")
    (root / "empty_class").mkdir()
    return root


@pytest.fixture
def unlabeled(tmp_path) -> Path:
    root = tmp_path / "unlabeled"
    save(root / "x.png")
    save(root / "2019" / "07" / "y.jpeg", fmt="JPEG")
    save(root / "2019" / "z.gif", mode="L", fmt="GIF")
    return root


def test_scan_labelled(labelled):
    paths, labels, classes = scan_folder(labelled)
    names = [p.relative_to(labelled).as_posix() for p in paths]
    assert names == [
        "cat/a.png",
        "cat/b.JPG",  # extension matching ignores case
        "cat/nested/c.png",  # images below a class folder belong to it
        "dog/broken.jpg",
        "dog/d.bmp",
        "dog/notes.png",
    ]
    assert classes == ["cat", "dog"]  # empty folders are not classes
    assert labels == [0, 0, 0, 1, 1, 1]


def test_scan_unlabeled_when_images_in_root(unlabeled):
    paths, labels, classes = scan_folder(unlabeled)
    assert [p.relative_to(unlabeled).as_posix() for p in paths] == [
        "2019/07/y.jpeg",
        "2019/z.gif",
        "x.png",
    ]
    assert labels == [-1, -1, -1] and classes == []


def test_scan_is_deterministic_and_skips_hidden(unlabeled):
    save(unlabeled / ".thumbs" / "t.png")
    (unlabeled / "._x.png").write_bytes(b"AppleDouble junk")
    first = scan_folder(unlabeled)
    assert first == scan_folder(unlabeled)
    assert not any(
        part.startswith(".") for p in first[0] for part in p.relative_to(unlabeled).parts
    )


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.jpg.*\.png"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")


def test_items_decode_exactly(labelled):
    ds = ImageFolder(labelled, channels=3)
    assert len(ds) == 6 and ds.classes == ["cat", "dog"] and ds.channels == 3
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    pixels = np.array(Image.open(labelled / "cat" / "a.png"))
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 20) and label == 0
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))
    gray, _ = ds[2]  # grayscale PNG expanded to 3 identical channels
    assert gray.shape == (3, 8, 8) and torch.equal(gray[0], gray[2])
    bmp, label = ds[4]  # BMP is decoded through the PIL fallback
    assert bmp.shape == (3, 30, 12) and label == 1
    assert torch.equal(bmp, torch.from_numpy(np.array(Image.open(ds.paths[4]))).permute(2, 0, 1))


def test_one_channel(labelled, unlabeled):
    ds = ImageFolder(labelled, channels=1)
    for i in (0, 1, 2, 4):
        image, _ = ds[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 1
    expected = np.array(Image.open(labelled / "cat" / "nested" / "c.png"))
    assert torch.equal(ds[2][0][0], torch.from_numpy(expected))
    gif, label = ImageFolder(unlabeled, channels=1)[1]  # decode_image ignores GRAY for GIF
    assert gif.shape == (1, 16, 20) and label == -1
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(labelled, channels=2)


def test_other_formats(tmp_path):
    root = tmp_path / "formats"
    save(root / "a.tiff", (10, 6), fmt="TIFF")
    save(root / "b.webp", (10, 6), fmt="WEBP")
    Image.fromarray(np.full((6, 10, 4), 200, np.uint8), "RGBA").save(root / "c.png")
    Image.fromarray(np.full((6, 10), 4000, np.uint16)).save(root / "d.png")  # 16-bit
    for channels in (1, 3):
        ds = ImageFolder(root, channels=channels)
        for i in range(len(ds)):
            image, _ = ds[i]
            assert image.dtype == torch.uint8 and image.shape == (channels, 6, 10), ds.paths[i]
    assert int(ImageFolder(root)[3][0].max()) == 4000 >> 8


def test_corrupt_files_return_none_and_warn_once(labelled, caplog):
    ds = ImageFolder(labelled)
    with caplog.at_level(logging.WARNING, logger="visrep.data.folder"):
        assert ds[3] is None  # truncated JPEG
        assert ds[5] is None  # text named .png
        assert ds[3] is None
    assert ds.bad_paths == {labelled / "dog" / "broken.jpg", labelled / "dog" / "notes.png"}
    assert ds.n_bad == 2
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and "broken.jpg" in warned[0] and "notes.png" in warned[1]


def test_dataloader_skips_and_counts(labelled):
    ds = ImageFolder(labelled, transform=folder_eval_transform(8))
    batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_skip_none))
    assert [b["n_skipped"] for b in batches] == [
        1,
        1,
    ]  # broken.jpg in the first, notes.png in the second
    images = torch.cat([b["images"] for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1] and labels.dtype == torch.int64


def test_collate_edge_cases():
    assert collate_skip_none([None, None]) == {"images": None, "labels": None, "n_skipped": 2}
    with pytest.raises(ValueError, match="transform that resizes"):
        collate_skip_none(
            [
                (torch.zeros(3, 4, 4, dtype=torch.uint8), 0),
                (torch.zeros(3, 5, 4, dtype=torch.uint8), 0),
            ]
        )


def test_transforms_keep_uint8():
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    torch.manual_seed(0)
    out = folder_train_transform(24)(image)
    assert out.shape == (3, 24, 24) and out.dtype == torch.uint8
    # Eval: short side 40 -> int(16 / 0.875) = 18, so 18 x 27, then the central 16 x 16.
    out = folder_eval_transform(16)(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    flat = torch.full((1, 40, 60), 7, dtype=torch.uint8)
    assert torch.equal(
        folder_eval_transform(16)(flat), torch.full((1, 16, 16), 7, dtype=torch.uint8)
    )
    # No flip and the full image as the only crop: the train transform is a plain resize.
    same = folder_train_transform(40, scale=(1.0, 1.0), hflip=False)(flat[:, :, :40])
    assert torch.equal(same, flat[:, :, :40])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_load_folder_tensors(labelled, caplog, num_workers):
    with caplog.at_level(logging.WARNING, logger="visrep.data.folder"):
        images, labels, classes = load_folder_tensors(
            labelled, channels=1, size=8, num_workers=num_workers, batch_size=2
        )
    assert images.shape == (4, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1] and classes == ["cat", "dog"]
    assert any("Skipped 2 unreadable" in r.getMessage() for r in caplog.records)


def test_load_folder_tensors_all_corrupt(tmp_path):
    (tmp_path / "a.png").write_text("nope")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="could be decoded"):
        load_folder_tensors(tmp_path, channels=3, size=8)
