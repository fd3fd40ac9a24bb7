"""`visrep data build-detection`: a COCO-format detection and instance-segmentation set made
offline with a fixed seed (layout and targets: `visrep.data.coco`).

Source `emoji` (the default): real cut-outs with an alpha channel, Google's Noto emoji of the
npm package `emoji-datasource-google@16.0.0` (64 px RGBA; the classes of `build-folder`: one
category per Unicode emoji group, no skin-tone variants), pasted at random scales and
positions onto random crops of real photographs. The photographs are the JPEGs of the Debian
package `mate-backgrounds` (`/usr/share/backgrounds/mate/nature`: 12 nature photos) when it
is installed, and always scikit-image's test photographs (`skimage.data`: astronaut, coffee,
chelsea, rocket, motorcycle, ...). Source `tuxpaint`: the same with the stamps of the Debian
package `tuxpaint-stamps-default` (`/usr/share/tuxpaint/stamps/CATEGORY/**/NAME.png`: mostly
photographs cut out with transparency, some drawings), one category per top-level folder
that holds at least `min_per_class` usable stamps (12 of the package's 17 folders: animals,
food, household, plants, seasonal, symbols, town, vehicles, ...: 762 stamps); a stamp
without transparent pixels (no cut-out) or that cannot be read is skipped and counted in the
report. A stamp is cropped to its alpha box and pasted with its aspect ratio (its longer
side drawn from `scale`). A mask is the pasted object's alpha > 127 minus what later objects
cover; an object left with under `min_visible` of its own pixels is dropped. Box and area
come from the mask.

Split by source: an emoji (a stamp) is a train object or a val object, never both (the same
seeded stratified hold-out by category as `build-folder --seed S`, so the folder's val/ emoji
are the val objects here; the report lists the val stamps), and every `val_every`-th
photograph (in name order) is a val-only background.

Source `fmnist`: the light variant for tests and quick runs, several 28-px Fashion-MNIST
items (resized to a random side) on a black canvas, one grayscale channel, masks from the
item pixels (> 0.1 of full scale), 10 categories; train items from the Fashion-MNIST train
split, val items from its test split.

Every canvas draws from its own generator seeded by (seed, split, index), so the same
command writes the same files everywhere.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from visrep.data.build_folder import emoji_items, emoji_split
from visrep.data.caption_shards import EMOJI_ROOT, TUXPAINT_ROOT, tuxpaint_dir
from visrep.data.coco import annotation_file, mask_annotation, write_coco
from visrep.data.fashion_mnist import CLASSES as FMNIST_CLASSES
from visrep.data.fashion_mnist import DEFAULT_ROOT as FMNIST_ROOT
from visrep.data.fashion_mnist import load_fashion_mnist
from visrep.data.sampling import mix_seed
from visrep.io import atomic_write

PHOTO_DIRS = ("/usr/share/backgrounds/mate/nature",)
MIN_PER_CLASS = 12  # a Tux Paint folder with fewer usable stamps is no category
MIN_TRANSPARENT = 0.05  # a stamp is a cut-out when at least this share of it is transparent
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat")
SPLIT_ID = {"train": 0, "val": 1}
# a pasted object (one source image) and its category index
Obj = tuple[Image.Image, int]


def photographs(dirs: tuple[str, ...] = PHOTO_DIRS) -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of the background photographs: JPEGs under `dirs` that exist (name
    order), then scikit-image's test photographs."""
    from skimage import data as skdata

    out = []
    for d in dirs:
        for f in sorted(Path(d).glob("*.jp*g")) if Path(d).is_dir() else []:
            with Image.open(f) as im:
                im.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale, quickly
                out.append((f.name, im.convert("RGB")))
    out += [(n, Image.fromarray(getattr(skdata, n)()).convert("RGB")) for n in SKIMAGE_PHOTOS]
    out.append(("stereo_motorcycle", Image.fromarray(skdata.stereo_motorcycle()[0])))
    return out


def tuxpaint_items(
    root: str = TUXPAINT_ROOT, max_side: int = 256, min_per_class: int = MIN_PER_CLASS
) -> tuple[list[tuple[str, str, Image.Image]], dict]:
    """(category, stamp path under `root`, RGBA cut-out) of every usable Tux Paint stamp, in
    path order, and the counts of what was skipped. A cut-out is cropped to its alpha box and
    shrunk to at most `max_side` px (aspect kept); the category is the top-level folder."""
    base = tuxpaint_dir(root)
    found: list[tuple[str, str, Image.Image]] = []
    skipped = Counter()
    for png in sorted(base.rglob("*.png")):
        rel = png.relative_to(base)
        if len(rel.parts) < 2:  # a stamp at the top holds no category
            skipped["outside_a_category"] += 1
            continue
        try:
            with Image.open(png) as im:
                im = im.convert("RGBA")
        except Exception:  # noqa: BLE001 - a damaged file is skipped and counted
            skipped["unreadable"] += 1
            continue
        alpha = np.asarray(im.getchannel("A")) > 127
        if alpha.mean() > 1 - MIN_TRANSPARENT or not alpha.any():
            skipped["no_cut_out"] += 1
            continue
        im = im.crop(im.getchannel("A").point(lambda v: 255 if v > 127 else 0).getbbox())
        im.thumbnail((max_side, max_side), Image.LANCZOS)
        found.append((rel.parts[0], str(rel.with_suffix("")), im))
    per_class = Counter(c for c, _, _ in found)
    items = [it for it in found if per_class[it[0]] >= min_per_class]
    skipped["in_a_small_folder"] = len(found) - len(items)
    if not items:
        raise ValueError(f"no Tux Paint folder under {root} holds {min_per_class} stamps with "
                         "transparency")  # fmt: skip
    return items, dict(skipped)


def background(photo: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop (side 1/3 to all of the photo's shorter side) resized to `size`."""
    short = min(photo.size)
    side = int(rng.integers(max(size, short // 3), short + 1)) if short > size else short
    x = int(rng.integers(0, photo.width - side + 1))
    y = int(rng.integers(0, photo.height - side + 1))
    return photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)


def compose(
    canvas: Image.Image, objects: list[Obj], rng: np.random.Generator,
    scale: tuple[float, float], min_visible: float,
) -> list[tuple[np.ndarray, int]]:  # fmt: skip
    """Paste `objects` (RGBA or LA: the alpha channel is the object) onto `canvas` (in place)
    at random sides (the longer side a fraction `scale` of the canvas side, the aspect ratio
    kept) and positions; returns the (mask [H, W] bool, category) of every object that keeps
    at least `min_visible` of its pixels after later ones cover it."""
    size = canvas.width
    placed: list[tuple[np.ndarray, int, int]] = []  # (visible mask, own pixels, category)
    for im, cat in objects:
        side = max(4, int(round(rng.uniform(*scale) * size)))
        if im.width == im.height:  # one size-2 draw: the sets built before stamps, unchanged
            w = h = side
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        else:  # the longer side is `side`, the aspect ratio kept
            long = max(im.width, im.height)
            w, h = (max(1, round(side * d / long)) for d in im.size)
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        obj = im.resize((w, h), Image.BILINEAR)
        alpha = obj.getchannel("A")
        full = np.zeros((size, size), dtype=bool)
        full[y : y + h, x : x + w] = np.asarray(alpha) > 127
        if not full.any():
            continue
        keep = Image.fromarray(full[y : y + h, x : x + w].astype(np.uint8) * 255)
        canvas.paste(obj.convert(canvas.mode), (x, y), keep)
        for m, _, _ in placed:
            m &= ~full
        placed.append((full, int(full.sum()), cat))
    return [(m, c) for m, n, c in placed if m.sum() >= min_visible * n]


def _write_split(out: Path, split: str, n: int, draw: Callable[[np.random.Generator], tuple],
                 seed: int, fmt: str) -> tuple[list[dict], list[dict], Counter]:  # fmt: skip
    images, anns, counts = [], [], Counter()
    for i in range(n):
        rng = np.random.default_rng(mix_seed(seed, SPLIT_ID[split], i))
        canvas, instances = draw(rng)
        name = f"{i:06d}.{fmt}"
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=95) if fmt == "jpg" else canvas.save(buf, "PNG")
        data = buf.getvalue()
        atomic_write(out / split / name, lambda tmp, b=data: tmp.write_bytes(b))
        images.append({"id": i + 1, "file_name": name, "width": canvas.width,
                       "height": canvas.height})  # fmt: skip
        for mask, cat in instances:
            anns.append(mask_annotation(mask, i + 1, len(anns) + 1, cat + 1))
            counts[cat] += 1
    return images, anns, counts


def _objects(pool: list, rng: np.random.Generator, per_image: tuple[int, int]) -> Iterator:
    k = int(rng.integers(per_image[0], per_image[1] + 1))
    for j in rng.choice(len(pool), size=k, replace=len(pool) < k):
        yield pool[int(j)]


def build_detection(
    out: str | Path, source: str = "emoji", *, n_train: int = 2000, n_val: int = 400,
    size: int = 128, per_image: tuple[int, int] = (1, 4), scale: tuple[float, float] | None = None,
    min_visible: float = 0.3, seed: int = 0, val: float = 0.2, val_every: int = 4,
    emoji_root: str = EMOJI_ROOT, photo_dirs: tuple[str, ...] = PHOTO_DIRS,
    fmnist_root: str = FMNIST_ROOT, tuxpaint_root: str = TUXPAINT_ROOT,
    min_per_class: int = MIN_PER_CLASS,
) -> dict:  # fmt: skip
    """Write the set (module docstring) and return its report (also `OUT/build_report.json`)."""
    out = Path(out)
    if any(annotation_file(out, s).exists() for s in SPLIT_ID):
        raise FileExistsError(f"{out} already holds a detection set: choose another --out")
    if not 1 <= per_image[0] <= per_image[1]:
        raise ValueError(f"objects per image must be 1 <= min <= max, got {per_image}")
    # object side as a fraction of the canvas: 10-32 px of a 64-px Fashion-MNIST canvas
    scale = scale or {"emoji": (0.15, 0.5), "fmnist": (0.3, 0.6)}.get(source, (0.15, 0.5))
    report: dict = {"source": source, "seed": seed, "size": size, "per_image": list(per_image),
                    "scale": list(scale), "min_visible": min_visible}  # fmt: skip
    if source in ("emoji", "tuxpaint"):
        if source == "emoji":
            items = [(c, stem, Image.open(io.BytesIO(raw)).convert("RGBA"))
                     for c, stem, raw in emoji_items(emoji_root)]  # fmt: skip
        else:
            items, report["skipped"] = tuxpaint_items(tuxpaint_root, 2 * size, min_per_class)
        classes, train_idx, val_idx = emoji_split(items, val, seed)
        pools = {s: [(items[i][2], classes.index(items[i][0])) for i in idx.tolist()]
                 for s, idx in (("train", train_idx), ("val", val_idx))}  # fmt: skip
        if source == "tuxpaint":
            report["val_stamps"] = [items[i][1] for i in val_idx.tolist()]
        photos = photographs(photo_dirs)
        bgs = {"train": [p for k, p in enumerate(photos) if k % val_every != val_every - 1],
               "val": [p for k, p in enumerate(photos) if k % val_every == val_every - 1]}  # fmt: skip
        report |= {"backgrounds": {s: [n for n, _ in b] for s, b in bgs.items()},
                   "objects": {s: len(p) for s, p in pools.items()}}  # fmt: skip
        mode, fmt, names = "RGB", "jpg", classes
    elif source == "fmnist":
        names = list(FMNIST_CLASSES)
        pools = {}
        for s, fm_split in (("train", "train"), ("val", "test")):
            x, y = load_fashion_mnist(fmnist_root, fm_split)
            arr = x[:, 0].numpy()  # PIL images are made only for the items drawn
            pools[s] = list(zip(arr, y.tolist()))
        bgs, mode, fmt = {}, "L", "png"
        report["objects"] = {s: len(p) for s, p in pools.items()}
    else:
        raise ValueError(f"unknown detection source {source!r}: choose emoji, tuxpaint or fmnist")
    categories = [{"id": k + 1, "name": n, "supercategory": source} for k, n in enumerate(names)]
    for split, n in (("train", n_train), ("val", n_val)):

        def draw(rng, split=split):
            if bgs:
                canvas = background(bgs[split][int(rng.integers(len(bgs[split])))][1], size, rng)
            else:
                canvas = Image.new(mode, (size, size), 0)
            objs = list(_objects(pools[split], rng, per_image))
            if mode == "L":  # item pixels as alpha: masks from the item (> 0.1 of full scale)
                objs = [(Image.fromarray(a).convert("LA"), c) for a, c in objs]
                for im, _ in objs:
                    im.putalpha(im.getchannel("L").point(lambda v: 255 if v > 25 else 0))
            return canvas, compose(canvas, objs, rng, scale, min_visible)

        images, anns, counts = _write_split(out, split, n, draw, seed, fmt)
        write_coco(annotation_file(out, split), images, anns, categories)
        report[split] = {"images": len(images), "instances": len(anns),
                         "per_category": {names[c]: counts[c] for c in sorted(counts)}}  # fmt: skip
    atomic_write(out / "build_report.json",
                 lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))  # fmt: skip
    return report


def run(args) -> int:
    """`visrep data build-detection ARGS`: build the set, print its report."""
    report = build_detection(
        args.out, args.source, n_train=args.n_train, n_val=args.n_val, size=args.size,
        per_image=(args.min_objects, args.max_objects), seed=args.seed,
        emoji_root=args.emoji_root, tuxpaint_root=args.tuxpaint_root,
    )  # fmt: skip
    listed = ("train", "val", "val_stamps")  # the val stamps are in OUT/build_report.json
    print(json.dumps({k: v for k, v in report.items() if k not in listed} |
                     {s: {"images": report[s]["images"], "instances": report[s]["instances"]}
                      for s in ("train", "val")}, indent=1))  # fmt: skip
    return 0
