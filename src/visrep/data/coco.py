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
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

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


def mask_boxes(masks: Tensor) -> Tensor:
    """[N, 4] float (x1, y1, x2, y2) bounding boxes of binary masks [N, H, W], x2 / y2 one past
    the last pixel (COCO's `bbox` convention); an empty mask gives (0, 0, 0, 0). As detectron2's
    `BitMasks.get_bounding_boxes` (`structures/masks.py`)."""
    n, h, w = masks.shape
    cols, rows = masks.bool().any(1), masks.bool().any(2)  # [N, W], [N, H]
    xs, ys = torch.arange(w), torch.arange(h)
    boxes = torch.stack([torch.where(cols, xs, w).amin(1), torch.where(rows, ys, h).amin(1),
                         torch.where(cols, xs + 1, 0).amax(1), torch.where(rows, ys + 1, 0).amax(1)],
                        1).float().reshape(n, 4)  # fmt: skip
    return boxes * (cols.any(1) & rows.any(1))[:, None]


def resize_scale_size(height: int, width: int, size: int, scale: float) -> tuple[int, int]:
    """Output (height, width) of detectron2's `ResizeScale` (`data/transforms/
    augmentation_impl.py`) with target `size` × `size` at random scale `scale`: the image
    scaled by min(size·scale / height, size·scale / width), keeping its aspect, sides rounded
    (at least 1 px)."""
    s = min(size * scale / height, size * scale / width)
    return max(1, round(height * s)), max(1, round(width * s))


def lsj_sample(image: Tensor, target: dict[str, Tensor], size: int, scale: float, offset: float,
               fill: tuple[float, ...] = (0.0,)) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """Large-scale jitter of one sample after its flip, as ViTDet trains (Li et al., ECCV 2022;
    detectron2 `projects/ViTDet/configs/common/coco_loader_lsj.py`: `ResizeScale(0.1, 2.0)`,
    `FixedSizeCrop(pad=False)`, `recompute_boxes=True`).

    1. Resize (`ResizeScale`): to `resize_scale_size(H, W, size, scale)`, the image bilinearly
       (antialiased, as PIL's resize that detectron2 uses), the masks by nearest neighbour.
    2. Crop (`FixedSizeCrop`): when a side exceeds `size`, the window [oy, oy + size) ×
       [ox, ox + size) with (oy, ox) = round(`offset` × max(side − size, 0)) (one uniform
       `offset` for both axes, as detectron2 draws it).
    3. Boxes = the bounding boxes of the transformed masks (`recompute_boxes`); instances
       left with an empty box (mask cropped out or vanished) are dropped, as detectron2's
       `filter_empty_instances` (`data/detection_utils.py`).
    4. Pad right and bottom to `size` × `size` with `fill` per channel (pass the input mean:
       after Mask R-CNN's normalisation the padding is 0, as detectron2's `ImageList` pads
       the normalised image), masks with 0.

    `image` is uint8 [C, H, W]; returns a float image [C, size, size] in [0, 1] and the target.
    """
    h, w = image.shape[1:]
    nh, nw = resize_scale_size(h, w, size, scale)
    image = TF.resize(image, [nh, nw], InterpolationMode.BILINEAR, antialias=True)
    masks = target["masks"]
    masks = (TF.resize(masks, [nh, nw], InterpolationMode.NEAREST_EXACT) if len(masks)
             else masks.new_zeros(0, nh, nw))  # fmt: skip
    oy, ox = round(max(nh - size, 0) * offset), round(max(nw - size, 0) * offset)
    crop = (slice(None), slice(oy, oy + size), slice(ox, ox + size))
    image, masks = image[crop], masks[crop]
    boxes = mask_boxes(masks)
    keep = (boxes[:, 2] - boxes[:, 0] > 1e-5) & (boxes[:, 3] - boxes[:, 1] > 1e-5)
    c, ch, cw = image.shape
    pad = (0, size - cw, 0, size - ch)
    if len(fill) not in (1, c):
        raise ValueError(f"fill has {len(fill)} values for a {c}-channel image: give 1 or {c}")
    out = torch.tensor(fill, dtype=torch.float32).reshape(-1, 1, 1).expand(c, size, size).clone()
    out[:, :ch, :cw] = image.float() / 255
    masks = torch.nn.functional.pad(masks[keep], pad)
    return out, target | {"boxes": boxes[keep], "labels": target["labels"][keep], "masks": masks}


class DetectionBatches:
    """Training batches of a `CocoSet` for the one loop (`visrep.capabilities.DataSource`).

    Step `s` of epoch `e` takes rows of the seeded permutation `epoch_permutation(n, seed, e)`
    (the rank's share of the global batch) and flips each image with probability `hflip`
    from a generator seeded by (seed, step, rank): a resumed run replays the same batches.
    With `lsj_size` > 0 each flipped image then gets large-scale jitter to `lsj_size` ×
    `lsj_size` (`lsj_sample`, padded with `fill`), its scale ~ U(`lsj_scale`) and crop offset
    ~ U(0, 1) drawn from the same generator after the flips (B flips, B scales, B offsets).
    A batch is {"images": [B, C, H, W] float in [0, 1], "targets": [dict, ...]}; without LSJ,
    images of different sizes (and their masks) are zero-padded right and bottom to the largest.
    """

    def __init__(self, data: CocoSet, batch_size: int, *, seed: int, hflip: float = 0.5,
                 lsj_size: int = 0, lsj_scale: tuple[float, float] = (0.1, 2.0),
                 fill: tuple[float, ...] = (0.0,), rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu") -> None:  # fmt: skip
        self.data, self.batch_size, self.seed, self.hflip = data, batch_size, seed, hflip
        self.lsj_size, self.lsj_scale, self.fill = lsj_size, lsj_scale, fill
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
        flips = (torch.rand(self.batch_size, generator=g) < self.hflip).tolist()
        lo, hi = self.lsj_scale
        scales = (lo + (hi - lo) * torch.rand(self.batch_size, generator=g)).tolist()
        offsets = torch.rand(self.batch_size, generator=g).tolist()
        images, targets = [], []
        rows = self._perm[first : first + self.batch_size].tolist()
        for j, flip, scale, offset in zip(rows, flips, scales, offsets):
            image, target = self.data.image(j), self.data.target(j)
            if flip:
                image, target = hflip_sample(image, target)
            if self.lsj_size:
                image, target = lsj_sample(image, target, self.lsj_size, scale, offset, self.fill)
            else:
                image = image.float() / 255
            images.append(image.to(self.device))
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
