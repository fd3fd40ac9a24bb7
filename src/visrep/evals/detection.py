"""COCO detection and instance-segmentation evaluation with `pycocotools` (the COCO API's
own `COCOeval`), and a picture of predictions.

Metrics are COCO's 12 summary numbers' first six for each of box and mask: AP (IoU 0.50:0.95),
AP50, AP75, APs, APm, APl (small < 32², medium < 96², large above, in pixels of the image as
annotated). COCOeval reports -1 where a size range has no ground truth; kept as is.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid
from tqdm import tqdm

from visrep.data.coco import CocoSet

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
Detector = Callable[[list[Tensor]], list[dict[str, Tensor]]]


def coco_results(pred: dict[str, Tensor], image_id: int, data: CocoSet,
                 mask_threshold: float = 0.5) -> list[dict[str, Any]]:  # fmt: skip
    """One image's detections as COCO result records: bbox [x, y, w, h], score, category id
    and, with masks, the RLE of `mask > mask_threshold` (torchvision's paste of the 28×28
    mask probabilities into the image)."""
    boxes = pred["boxes"].detach().cpu().float()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores, labels = pred["scores"].tolist(), pred["labels"].tolist()
    out = [{"image_id": image_id, "category_id": data.category_id(int(k)), "bbox": b,
            "score": float(s)} for b, s, k in zip(xywh, scores, labels)]  # fmt: skip
    if "masks" in pred and len(out):
        masks = (pred["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for r, rle in zip(out, rles):
            r["segmentation"] = rle | {"counts": rle["counts"].decode("ascii")}
    return out


def coco_scores(gt: str | Path, results: list[dict[str, Any]], iou_types=("bbox", "segm"),
                image_ids: list[int] | None = None, use_cats: bool = True) -> dict[str, float]:  # fmt: skip
    """`COCOeval` of `results` against the instances file `gt`: {box_AP, ..., mask_APl}
    (`box_` for "bbox", `mask_` for "segm"); 0.0 for every stat when there is no result.
    `use_cats=False` is COCOeval's class-agnostic mode (`params.useCats = 0`): a detection
    matches any object, so the scores measure localisation alone (keys `agnostic_box_...`)."""
    out: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the COCO API prints as it goes
        coco = COCO(str(gt))
        for iou in iou_types:
            prefix = ("" if use_cats else "agnostic_") + ("box_" if iou == "bbox" else "mask_")
            rows = [r for r in results if iou == "bbox" or "segmentation" in r]
            if not rows:
                out |= {prefix + s: 0.0 for s in STATS}
                continue
            ev = COCOeval(coco, coco.loadRes(rows), iou)
            if image_ids is not None:
                ev.params.imgIds = image_ids
            ev.params.useCats = int(use_cats)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out |= {prefix + s: float(v) for s, v in zip(STATS, ev.stats[:6])}
    return out


def detection_eval(detect: Detector, data: CocoSet, *, batch_size: int = 8, limit: int = 0,
                   device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run `detect` over the split (`limit` > 0: its first `limit` images) and score box and
    mask AP; also the protocol's settings (split size) and its seconds."""
    start = time.perf_counter()
    n = min(limit, len(data)) if limit else len(data)
    results: list[dict[str, Any]] = []
    for first in tqdm(range(0, n, batch_size), disable=not progress, desc="detect", unit="batch"):
        idx = range(first, min(first + batch_size, n))
        images = [data.image(i).to(device, torch.float32) / 255 for i in idx]
        for i, pred in zip(idx, detect(images)):
            results += coco_results(pred, data.images[i]["id"], data)
    ids = [data.images[i]["id"] for i in range(n)]
    scores = coco_scores(data.path, results, image_ids=ids)
    # localisation alone (any category): informative while the classifier is still weak
    agnostic = coco_scores(data.path, results, image_ids=ids, use_cats=False)
    scores |= {k: v for k, v in agnostic.items() if k.endswith(("_AP", "_AP50"))}
    return scores | {"detect_n_val": n, "detect_n_detections": len(results),
                     "detect_eval_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def draw_detections(detect: Detector, data: CocoSet, path: str | Path, *, n: int = 8,
                    top: int = 3, device: torch.device | str = "cpu") -> str:  # fmt: skip
    """A grid PNG: the first `n` val images with ground truth (top row: masks and boxes in
    white) and their `top` highest-scoring detections (bottom row: masks > 0.5, boxes,
    category name and score; the detector keeps scores >= `method.score_thresh`); returns
    the file name."""
    names = {k + 1: c["name"] for k, c in enumerate(data.categories)}
    images = [data.image(i) for i in range(min(n, len(data)))]
    preds = detect([im.to(device, torch.float32) / 255 for im in images])
    truth, found = [], []
    for i, (im, p) in enumerate(zip(images, preds)):
        k = max(1, 192 // max(im.shape[-2:]))  # small images are enlarged, so labels are legible
        rgb = _zoom(im.expand(3, -1, -1) if im.shape[0] == 1 else im, k)
        t = data.target(i)
        m = _zoom(t["masks"], k).bool()
        gt = draw_segmentation_masks(rgb, m, alpha=0.4) if len(m) else rgb
        truth.append(draw_bounding_boxes(gt, t["boxes"] * k, colors="white"))
        keep = p["scores"].cpu().argsort(descending=True)[:top]
        boxes, masks = p["boxes"].cpu()[keep] * k, _zoom(p["masks"].cpu()[keep, 0], k)
        labels = [
            f"{names[int(k)]} {s:.2f}"
            for k, s in zip(p["labels"].cpu()[keep], p["scores"].cpu()[keep])
        ]
        pr = draw_segmentation_masks(rgb, masks > 0.5, alpha=0.5) if len(masks) else rgb
        found.append(draw_bounding_boxes(pr, boxes, labels=labels, colors="yellow"))
    grid = make_grid(truth + found, nrow=len(images), padding=2, pad_value=255)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return Path(path).name


def _zoom(x: Tensor, k: int) -> Tensor:
    """[N, H, W] (or [C, H, W]) enlarged k times by pixel repetition."""
    return x.repeat_interleave(k, -2).repeat_interleave(k, -1) if k > 1 else x
