"""The user's own images: a folder of files, unlabeled or with class sub-folders.

Layouts understood by :func:`scan_folder`::

    root/cat/001.jpg, root/dog/a/002.png   labelled: class = first sub-folder name
    root/x.jpg, root/2019/07/y.png         unlabeled (labels -1): any image found below root

Decoding uses ``torchvision.io.decode_image`` on the file bytes (libjpeg-turbo/libpng:
JPEG -> 224 px crop at ~350 img/s per core against ~240 for PIL on a 2-core CPU) and the
v2 transforms on uint8 tensors, converting to float only after the resize. Formats that
``decode_image`` does not read (BMP, TIFF) go through PIL. A corrupt file never
stops a training run: :class:`ImageFolder` returns ``None`` for it, logs the path
once, and :func:`collate_skip_none` drops it from the batch and counts it.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# Above this many images, load_folder_tensors shows a progress bar.
_PROGRESS_MIN_IMAGES = 2000


def _is_image(name: str) -> bool:
    # Hidden files are skipped: macOS "._x.jpg" AppleDouble files carry the image
    # extension but are not images.
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(top: Path) -> list[Path]:
    """All image files below ``top`` (following directory links, each real dir once)."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink cycle or a second link to the same folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if _is_image(f)]
    return found


def scan_folder(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """List the images below ``root`` and infer labels from class sub-folders.

    The folder is labelled when every image lies inside a direct sub-directory of
    ``root`` (torchvision ``ImageFolder`` convention): the label is the index of
    that sub-directory's name among the sorted names of the sub-directories that
    hold images (empty sub-directories are not classes, so compare ``classes``
    when pairing a train and a validation folder). If any image lies directly in
    ``root`` the folder is unlabeled: every image found recursively, label -1,
    no classes. Hidden files and folders (name starting with ".") are ignored.

    Returns:
        ``(paths, labels, classes)`` with ``paths`` sorted, so the order is the same
        on every machine.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a directory.
        ValueError: no file with an image extension was found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {root} does not exist or is not a directory; "
            "pass the folder that holds your images (or one sub-folder per class)."
        )
    paths = sorted(_walk_images(root))
    if not paths:
        raise ValueError(
            f"No images found in {root} (looked recursively for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case)."
        )
    top_level = [p.relative_to(root).parts[0] for p in paths]
    labelled = all(len(p.relative_to(root).parts) > 1 for p in paths)
    if not labelled:
        return paths, [-1] * len(paths), []
    classes = sorted(set(top_level))
    index = {c: i for i, c in enumerate(classes)}
    return paths, [index[c] for c in top_level], classes


def _to_uint8_channels(image: Tensor, channels: int) -> Tensor:
    """Coerce a decoded image to uint8 ``[channels, H, W]``.

    ``decode_image`` does not always honour the requested mode: GIF and WebP
    ignore GRAY (and WebP keeps alpha), animated GIFs come back as ``[T, C, H, W]``
    and 16-bit PNGs as uint16.
    """
    if image.ndim == 4:  # animated GIF: keep the first frame
        image = image[0]
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    elif image.dtype != torch.uint8:
        image = TF.to_dtype(image, torch.uint8, scale=True)
    if image.shape[0] in (2, 4):  # drop alpha
        image = image[:-1]
    if image.shape[0] == channels:
        return image
    if channels == 1:
        return TF.rgb_to_grayscale(image, num_output_channels=1)
    return image.expand(3, -1, -1).contiguous()


# PIL's own threshold (Image.MAX_IMAGE_PIXELS): larger images are refused before decoding, so
# a small file that declares a huge image (a decompression bomb) cannot exhaust memory
MAX_PIXELS = 89_478_485


def _decode_with_pil(data: bytes, channels: int) -> Tensor:
    """PIL path: formats torchvision lacks (BMP, TIFF, ...) and images with transparency,
    which are composited on white (cut-out photos and clip art keep a white background)."""
    with Image.open(io.BytesIO(data)) as pil:
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            pil = pil.convert("RGBA")
            pil = Image.alpha_composite(Image.new("RGBA", pil.size, "white"), pil)
        elif pil.mode.startswith("I;16") or pil.mode == "I":  # 16-bit gray: keep the top 8 bits
            pil = Image.fromarray((np.asarray(pil).astype(np.uint32) >> 8).astype(np.uint8))
        pil = pil.convert("L" if channels == 1 else "RGB")  # convert() loads: truncation raises
    return TF.pil_to_tensor(pil)


def decode_bytes(data: bytes, channels: int, max_pixels: int = MAX_PIXELS) -> Tensor:
    """Decode an encoded image to uint8 ``[channels, H, W]``; raise on anything unreadable.

    The one decoder of every path (folders, image-text pairs, retrieval, pseudo-BoW):
    the header is read first and an image over ``max_pixels`` pixels is refused; 16-bit
    images keep their top 8 bits; CMYK and palette images become RGB; transparent pixels
    are composited on white; animated images give their first frame. torchvision's
    decoders run first (faster), PIL for the formats they lack and for transparency.
    """
    with Image.open(io.BytesIO(data)) as head:  # reads the header only
        w, h = head.size
        alpha = head.mode in ("RGBA", "LA", "PA") or "transparency" in head.info
    if w * h > max_pixels:
        raise ValueError(f"{w}x{h} image exceeds the {max_pixels:,}-pixel limit (a "
                         "decompression bomb, or an image far larger than training needs)")  # fmt: skip
    if not alpha:
        try:
            tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
            return _to_uint8_channels(decode_image(tensor, mode=mode), channels)
        except (RuntimeError, ValueError):
            pass  # unsupported format or corrupt bytes: PIL reads the former, raises on the latter
    return _to_uint8_channels(_decode_with_pil(data, channels), channels)


def decode_file(path: str | Path, channels: int) -> Tensor:
    """Decode an image file to uint8 ``[channels, H, W]`` (:func:`decode_bytes`)."""
    return decode_bytes(Path(path).read_bytes(), channels)


class ImageFolder(Dataset):
    """Images from :func:`scan_folder`, decoded to uint8 tensors.

    ``dataset[i]`` is ``(image uint8 [C, H, W] after transform, label int)`` or
    ``None`` when the file cannot be decoded; use :func:`collate_skip_none` as the
    DataLoader's ``collate_fn``. Bad files are logged once each and kept in
    ``bad_paths`` -- per process: with DataLoader workers each worker has its own
    copy, and the count that reaches the main process is the batch's ``n_skipped``.

    Args:
        root: the folder (see :func:`scan_folder` for the layouts).
        channels: 1 (grayscale) or 3 (RGB); every image is converted to it.
        transform: applied to the uint8 tensor, e.g. :func:`folder_train_transform`.
    """

    def __init__(
        self,
        root: str | Path,
        channels: int = 3,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
        self.root = Path(root)
        self.paths, labels, self.classes = scan_folder(root)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.channels = channels
        self.transform = transform
        self.bad_paths: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Tensor) -> ImageFolder:
        """Keep only the files at `indices` (a subset or a split); returns self."""
        keep = indices.tolist()
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[indices]
        return self

    @property
    def n_bad(self) -> int:
        """How many distinct files failed to decode in this process so far."""
        return len(self.bad_paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        path = self.paths[index]
        try:
            image = decode_file(path, self.channels)
        except Exception as e:  # any decoder error means "skip this file", never a crash
            if path not in self.bad_paths:
                self.bad_paths.add(path)
                logger.warning("Skipping unreadable image %s (%s: %s)", path, type(e).__name__, e)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def readable_batches(loader: Iterable[dict], owner: Any, what: str) -> Iterator[dict]:
    """The batches of a loader collated by `collate_skip_none`, counting unreadable samples in
    `owner.n_skipped`. A batch whose every sample was unreadable is replaced by the last good
    one, so all processes keep stepping together under DDP; when it is the first batch, a
    clear error (`what`: "images", "videos")."""
    last_good = None
    for b in loader:
        owner.n_skipped += b["n_skipped"]
        if b["labels"] is None:  # every sample of this batch was unreadable
            if last_good is None:
                raise ValueError(
                    f"the first batch of {owner.data.dataset} held only unreadable {what} "
                    f"({owner.n_skipped} skipped, each named in the log above): check that "
                    f"the files are {what}, or remove the ones that are not"
                )
            b = last_good
        last_good = b
        yield b


def collate_skip_none(batch: Sequence[tuple[Tensor | list[Tensor], int] | None]) -> dict:
    """Stack the readable items of a batch and count the unreadable ones.

    Items are ``(image, label)``, or ``(views, label)`` with ``views`` a list of tensors
    (one per view, :func:`visrep.data.views.folder_views_transform`).

    Returns:
        ``{"images": uint8 [B, C, H, W], "labels": int64 [B], "n_skipped": int}``, or for
        view lists ``{"views": [uint8 [B, C, H, W] per view], "labels", "n_skipped"}``;
        when every item was unreadable, ``images`` and ``labels`` are ``None`` (the
        shape is unknown) and the training loop skips the batch.
    """
    good = [item for item in batch if item is not None]
    n_skipped = len(batch) - len(good)
    if not good:
        return {"images": None, "labels": None, "n_skipped": n_skipped}
    labels = torch.tensor([label for _, label in good], dtype=torch.long)
    first = good[0][0]
    if isinstance(first, list | tuple):
        views = [_stack([item[0][k] for item in good]) for k in range(len(first))]
        return {"views": views, "labels": labels, "n_skipped": n_skipped}
    return {
        "images": _stack([image for image, _ in good]),
        "labels": labels,
        "n_skipped": n_skipped,
    }


def _stack(images: list[Tensor]) -> Tensor:
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Images in one batch have different shapes {sorted(shapes)}; give the dataset "
            "a transform that resizes them (folder_train_transform / folder_eval_transform)."
        )
    return torch.stack(images)


def folder_train_transform(
    size: int, scale: tuple[float, float] = (0.2, 1.0), hflip: bool = True
) -> Callable[[Tensor], Tensor]:
    """Per-image training crop on uint8 tensors: RandomResizedCrop (+ horizontal flip).

    The MAE recipe's minimal augmentation (He et al., 2022, Sec. 4 / A.1: crop scale
    0.2-1, flip). Bicubic with antialias, output stays uint8 ``[C, size, size]``.
    """
    steps: list[Callable] = [
        v2.RandomResizedCrop(
            size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True
        )
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def folder_eval_transform(size: int, resize_ratio: float = 0.875) -> Callable[[Tensor], Tensor]:
    """Evaluation preprocessing on uint8 tensors: resize the short side, centre crop.

    The standard ImageNet protocol (resize to ``size / 0.875``, e.g. 256 for 224, then
    crop ``size``), bicubic with antialias as in timm's eval transform.
    """
    return v2.Compose(
        [
            v2.Resize(
                int(size / resize_ratio),
                interpolation=v2.InterpolationMode.BICUBIC,
                antialias=True,
            ),
            v2.CenterCrop(size),
        ]
    )


def load_folder_tensors(
    root: str | Path,
    channels: int,
    size: int,
    num_workers: int = 0,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor, list[str]]:
    """Decode a whole folder with :func:`folder_eval_transform` into memory (:func:`decode_all`).

    Returns:
        ``(images uint8 [N, C, size, size], labels int64 [N], classes)``; labels are
        -1 and classes empty for an unlabeled folder.
    """
    dataset = ImageFolder(root, channels=channels, transform=folder_eval_transform(size))
    images, labels = decode_all(dataset, num_workers, batch_size)
    return images, labels, dataset.classes


def decode_all(
    dataset: ImageFolder, num_workers: int = 0, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """Every image of `dataset` (its transform applied) as uint8 [N, C, H, W] + labels [N].

    For sets that fit in RAM (``N * channels * size**2`` bytes, e.g. 10,000 RGB images at
    224 px is 1.5 GB). Unreadable files are skipped; their count is logged.

    Raises:
        ValueError: no image could be decoded.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_skip_none
    )
    images, labels, n_skipped = [], [], 0
    with tqdm(
        total=len(dataset),
        desc=f"decoding {dataset.root.name or dataset.root}",
        disable=len(dataset) <= _PROGRESS_MIN_IMAGES,
    ) as bar:
        for batch in loader:
            n_skipped += batch["n_skipped"]
            if batch["images"] is not None:
                images.append(batch["images"])
                labels.append(batch["labels"])
            n_good = 0 if batch["images"] is None else len(batch["images"])
            bar.update(n_good + batch["n_skipped"])
    if n_skipped:
        logger.warning(
            "Skipped %d unreadable image(s) of %d in %s", n_skipped, len(dataset), dataset.root
        )
    if not images:
        raise ValueError(
            f"None of the {len(dataset)} image files in {dataset.root} could be decoded."
        )
    return torch.cat(images), torch.cat(labels)
