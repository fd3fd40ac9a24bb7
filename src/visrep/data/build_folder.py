"""`visrep data build-folder`: a labelled colour image folder from offline packages, laid
out as users lay out their own data (`OUT/train/<class>/*.png`, `OUT/val/<class>/*.png`).

Source `emoji`: Google's Noto emoji from the npm package `emoji-datasource-google` (`npm pack
emoji-datasource-google@16.0.0`), 64 px PNGs, one class per Unicode emoji category (people &
body, animals & nature, food & drink, ...; the 5 skin-tone "Component" swatches are left
out). Skin-tone variants are left out too: they are near copies of their base emoji and would
put almost the same picture in train and val. Transparent pixels are composited on white.
The split is a seeded stratified hold-out (`visrep.data.sampling.holdout_split`), so the same
command builds the same folder everywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from visrep.data.caption_shards import EMOJI_ROOT, emoji_files, open_on_white
from visrep.data.sampling import holdout_split
from visrep.io import atomic_write

SKIP_CATEGORIES = ("Component",)


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def emoji_items(emoji_root: str = EMOJI_ROOT) -> list[tuple[str, str, bytes]]:
    """(class slug, file stem, PNG bytes) of every base emoji with a Google image, in the
    package's sort order (no "Component" swatches, no skin-tone variants)."""
    entries, read = emoji_files(emoji_root)
    items = []
    for e in sorted(entries, key=lambda e: e.get("sort_order", 0)):
        cat, image = str(e.get("category") or ""), str(e.get("image") or "")
        raw = read(image) if e.get("has_img_google") and image else None
        if not cat or cat in SKIP_CATEGORIES or raw is None:
            continue
        items.append((_slug(cat), image.rsplit(".", 1)[0], raw))
    if not items:
        raise ValueError(f"no emoji image found in {emoji_root}")
    return items


def emoji_split(items: list[tuple], val: float, seed: int) -> tuple[list[str], Tensor, Tensor]:
    """(classes, train indices, val indices) of `items` ((class, ...) tuples): the seeded
    stratified hold-out by class that both the emoji folder and the detection set
    (`build_detection.py`, also for Tux Paint stamps) use, so an emoji in the folder's val/
    is also a val-only object of the detection set built with that seed."""
    classes = sorted({c for c, _, _ in items})
    labels = torch.tensor([classes.index(c) for c, _, _ in items])
    return classes, *holdout_split(labels, val, seed)


def build_emoji_folder(
    out: str | Path, emoji_root: str = EMOJI_ROOT, val: float = 0.2, seed: int = 0
) -> dict:
    """Write the emoji folder (module docstring); returns counts per class and split."""
    items = emoji_items(emoji_root)
    classes, train_idx, val_idx = emoji_split(items, val, seed)
    out, counts = Path(out), Counter()
    for split, idx in (("train", train_idx), ("val", val_idx)):
        for i in idx.tolist():
            cls, stem, raw = items[i]
            image = open_on_white(raw).convert("RGB")
            atomic_write(
                out / split / cls / f"{stem}.png", lambda tmp, im=image: im.save(tmp, "PNG")
            )
            counts[f"{split}/{cls}"] += 1
    report = {"source": "emoji", "classes": classes, "val_fraction": val, "seed": seed,
              "train": len(train_idx), "val": len(val_idx), "per_class": dict(sorted(counts.items()))}  # fmt: skip
    atomic_write(out / "build_report.json",
                 lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))  # fmt: skip
    return report


def run(args) -> int:
    """`visrep data build-folder ARGS`: build the folder, print its report."""
    report = build_emoji_folder(args.out, args.emoji_root, args.val, args.seed)
    print(json.dumps({k: v for k, v in report.items() if k != "per_class"}, indent=2))
    return 0
