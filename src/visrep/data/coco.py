"""COCO-format detection data: write instance annotations, read them back as Mask R-CNN
targets, and serve seeded training batches.

Layout (as COCO 2017 lays out its folders; `visrep data build-detection` writes it, and any
COCO-format set laid out the same way is read):

    DIR/annotations/instances_{train,val}.json   # images, annotations (RLE masks), categories
    DIR/{train,val}/NAME.jpg                     # `file_name` is relative to the split folder

Masks are run-length encoded by `pycocotools.mask` (the COCO API's own encoder), so the
files load in `pycocotools.coco.COCO` and `COCOeval` scores them unchanged. Targets follow
torchvision's detection convention (`torchvision.models.detection.MaskRCNN`): `boxes`
[N, 4] float (x1, y1, x2, y2) in pixels, `labels` [N] int64 in 1..K (0 is background),
`masks` [N, H, W] uint8; contiguous label k is the k-th category id in ascending order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor

from visrep.data.sampling import epoch_permutation, mix_seed
from visrep.io import atomic_write_text

SPLITS = ("train", "val")


def annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def mask_annotation(mask: np.ndarray, image_id: int, ann_id: int, category_id: int) -> dict:
    """One COCO instance annotation from a binary mask [H, W]: RLE `segmentation` (counts as
    text, as COCO's crowd RLEs are stored), `bbox` [x, y, w, h] and `area` from the RLE
    (`pycocotools.mask.toBbox` / `area`), `iscrowd` 0."""
    if mask.ndim != 2 or not mask.any():
        raise ValueError("an instance mask must be a non-empty 2-D array")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    area = float(mask_utils.area(rle))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "segmentation": rle, "bbox": bbox, "area": area, "iscrowd": 0}  # fmt: skip


def write_coco(
    path: str | Path, images: list[dict], annotations: list[dict], categories: list[dict]
) -> None:
    """Write a COCO instances file atomically (`info` records nothing machine-specific)."""
    doc = {"info": {"description": "visrep detection set"}, "images": images,
           "annotations": annotations, "categories": categories}  # fmt: skip
    atomic_write_text(path, json.dumps(doc) + "\n")


class CocoSet:
    """One split of a COCO-format folder: images as uint8 tensors and Mask R-CNN targets.

    Args:
        root: the folder (module docstring).
        split: "train" or "val".
        channels: 1 (grayscale) or 3 (RGB): images are converted to the backbone's input.
    """

    def __init__(self, root: str | Path, split: str, channels: int = 3) -> None:
        path = annotation_file(root, split)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: --data must be a COCO-format folder with "
                "annotations/instances_{train,val}.json and {train,val}/ images, e.g. made by "
                "`visrep data build-detection --out DIR`"
            )
        try:
            doc = json.loads(path.read_text())
            self.images: list[dict] = sorted(doc["images"], key=lambda im: im["id"])
            anns, cats = doc["annotations"], doc["categories"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a COCO instances file ({e})") from e
        self.root, self.split, self.channels, self.path = Path(root), split, channels, path
        self.categories = sorted(cats, key=lambda c: c["id"])
        self.cat_ids = [c["id"] for c in self.categories]
        self._label = {cid: k + 1 for k, cid in enumerate(self.cat_ids)}
        self.by_image: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for a in anns:
            if a.get("iscrowd", 0) == 0 and a["image_id"] in self.by_image:
                self.by_image[a["image_id"]].append(a)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Categories, not counting the background."""
        return len(self.categories)

    def category_id(self, label: int) -> int:
        """COCO category id of contiguous label `label` (1..K)."""
        return self.cat_ids[label - 1]

    def image(self, i: int) -> Tensor:
        """uint8 [C, H, W] of image `i` (in id order)."""
        info = self.images[i]
        file = self.root / self.split / info["file_name"]
        try:
            with Image.open(file) as im:
                arr = np.asarray(im.convert("L" if self.channels == 1 else "RGB"))
        except OSError as e:
            raise OSError(f"{file} (listed in {self.path}) cannot be read: {e}") from e
        t = torch.from_numpy(arr.copy())
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)

    def target(self, i: int) -> dict[str, Tensor]:
        """torchvision detection target of image `i` (module docstring)."""
        info = self.images[i]
        h, w = info["height"], info["width"]
        anns = [a for a in self.by_image[info["id"]] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # [x, y, w, h] -> [x1, y1, x2, y2]
        masks = np.zeros((len(anns), h, w), dtype=np.uint8)
        for k, a in enumerate(anns):
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg["counts"], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            masks[k] = mask_utils.decode(rle)
        labels = torch.tensor([self._label[a["category_id"]] for a in anns], dtype=torch.int64)
        return {"boxes": boxes, "labels": labels, "masks": torch.from_numpy(masks),
                "image_id": torch.tensor(info["id"])}  # fmt: skip


def hflip_sample(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Horizontal flip of an image [C, H, W] and its boxes and masks."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), target | {"boxes": boxes, "masks": target["masks"].flip(-1)}


class DetectionBatches:
    """Training batches of a `CocoSet` for the one loop (`visrep.capabilities.DataSource`).

    Step `s` of epoch `e` takes rows of the seeded permutation `epoch_permutation(n, seed, e)`
    (the rank's share of the global batch) and flips each image with probability `hflip`
    from a generator seeded by (seed, step, rank): a resumed run replays the same batches.
    A batch is {"images": [B, C, H, W] float in [0, 1], "targets": [dict, ...]}; images of
    different sizes (and their masks) are zero-padded right and bottom to the largest.
    """

    def __init__(self, data: CocoSet, batch_size: int, *, seed: int, hflip: float = 0.5,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> None:  # fmt: skip
        self.data, self.batch_size, self.seed, self.hflip = data, batch_size, seed, hflip
        self.rank, self.world, self.device = rank, world_size, torch.device(device)
        self.steps_per_epoch = len(data) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(data)} training images < one global batch of "
                             f"{batch_size * world_size}: lower optim.batch_size")  # fmt: skip
        self.n_skipped = 0
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> dict[str, Any]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(len(self.data), self.seed, epoch)
        first = (i * self.world + self.rank) * self.batch_size
        g = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank, 5))
        flips = torch.rand(self.batch_size, generator=g) < self.hflip
        images, targets = [], []
        for j, flip in zip(self._perm[first : first + self.batch_size].tolist(), flips.tolist()):
            image, target = self.data.image(j), self.data.target(j)
            if flip:
                image, target = hflip_sample(image, target)
            images.append(image.to(self.device, torch.float32) / 255)
            targets.append({k: v.to(self.device) for k, v in target.items()})
        h = max(im.shape[1] for im in images)
        w = max(im.shape[2] for im in images)
        for k, (im, t) in enumerate(zip(images, targets)):  # pad right/bottom: boxes stay put
            if im.shape[1:] != (h, w):
                pad = (0, w - im.shape[2], 0, h - im.shape[1])
                images[k] = torch.nn.functional.pad(im, pad)
                t["masks"] = torch.nn.functional.pad(t["masks"], pad)
        return {"images": torch.stack(images), "targets": targets}

    def batches(self, start: int, end: int) -> Iterator[dict[str, Any]]:
        for step in range(start, end):
            yield self.batch(step)
