"""A large labelled JPEG folder for scale benchmarks, generated from the Noto emoji (npm
`emoji-datasource-google`, the source of `visrep data build-folder`).

Each image is one emoji of its class (the 9 Unicode categories) at a random scale, position
and mirror on a random background colour, saved as JPEG (quality 90): every file is
different, decodes like a user's photo and costs what a JPEG of its size costs. Deterministic
from `--seed`. Layout `OUT/train/<class>/NNNNNNN.jpg` and `OUT/val/<class>/...`, so
`visrep train RECIPE data.dataset=OUT` evaluates on val/.

    .venv/bin/python benchmarks/make_jpeg_folder.py --out /tmp/jpeg100k --n 100000 --size 64
    .venv/bin/python benchmarks/make_jpeg_folder.py --out /tmp/jpeg224 --n 2000 \
        --size 320 --size-jitter 0.3                       # variable sizes around 320 px
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from visrep.data.build_folder import SKIP_CATEGORIES, _slug
from visrep.data.caption_shards import EMOJI_ROOT, emoji_files


def emoji_by_class(root: str) -> dict[str, list[Image.Image]]:
    """RGBA emoji images (64 px) grouped by category slug."""
    entries, read = emoji_files(root)
    out: dict[str, list[Image.Image]] = defaultdict(list)
    for e in entries:
        cat, name = str(e.get("category") or ""), str(e.get("image") or "")
        raw = read(name) if e.get("has_img_google") and name else None
        if cat and cat not in SKIP_CATEGORIES and raw is not None:
            out[_slug(cat)].append(Image.open(io.BytesIO(raw)).convert("RGBA"))
    return dict(sorted(out.items()))


def render(emoji: Image.Image, rng: random.Random, w: int, h: int) -> Image.Image:
    """One emoji at a random scale (35-90% of the short side), place and mirror."""
    canvas = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
    side = max(8, int(min(w, h) * rng.uniform(0.35, 0.9)))
    im = emoji.resize((side, side), Image.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    canvas.paste(im, (rng.randrange(w - side + 1), rng.randrange(h - side + 1)), im)
    return canvas


def make_folder(out: str, n: int, size: int, jitter: float, val: float, seed: int,
                emoji_root: str = EMOJI_ROOT) -> dict:  # fmt: skip
    """Writes n images (class i % 9, so classes are balanced); returns the build report."""
    classes = emoji_by_class(emoji_root)
    names, rng = list(classes), random.Random(seed)
    root = Path(out)
    for split in ("train", "val"):
        for c in names:
            (root / split / c).mkdir(parents=True, exist_ok=True)
    t0, counts = time.perf_counter(), defaultdict(int)
    for i in tqdm(range(n), desc="jpeg", unit="img", mininterval=5):
        cls = names[i % len(names)]
        w, h = (round(size * rng.uniform(1 - jitter, 1 + jitter)) for _ in range(2))
        image = render(rng.choice(classes[cls]), rng, w, h)
        split = "val" if rng.random() < val else "train"
        image.save(root / split / cls / f"{i:07d}.jpg", "JPEG", quality=90)
        counts[split] += 1
    report = {"n": n, "size": size, "size_jitter": jitter, "seed": seed, "classes": names,
              "counts": dict(counts), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    (root / "build_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--size-jitter", type=float, default=0.0, help="sides vary by ± this fraction")
    p.add_argument("--val", type=float, default=0.1, help="fraction of images in val/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--emoji-root", default=EMOJI_ROOT)
    args = p.parse_args()
    if (Path(args.out) / "build_report.json").is_file():
        sys.exit(f"{args.out} is already built (build_report.json); remove it to rebuild")
    print(json.dumps(make_folder(args.out, args.n, args.size, args.size_jitter, args.val,
                                 args.seed, args.emoji_root)))  # fmt: skip


if __name__ == "__main__":
    main()
