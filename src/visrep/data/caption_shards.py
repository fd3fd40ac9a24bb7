"""`visrep data build-captions`: real offline image-text pairs as WebDataset shards.

Sources (ENVIRONMENT.md):

- ``tuxpaint``: Debian `tuxpaint-stamps-default`, `/usr/share/tuxpaint/stamps/**/NAME.png`
  with `NAME.txt` whose first line is the English caption ("A european bear."). Stamps
  without a PNG (SVG only) or with an empty caption are skipped and counted.
- ``fmnist``: the Fashion-MNIST **train** split, each image captioned with its class name
  in one template of `--templates` (default `fmnist_train`, disjoint from the ImageNet
  templates used for zero-shot evaluation on the test split; `visrep.data.templates`).

Images are composited on white (cut-out stamps have alpha), shrunk to at most
`--max-size` pixels, and written as `key.png` + `key.txt`, `--shard-size` samples per tar,
with `sizes.json` (samples per shard, the open_clip convention) and `build_report.json`.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

TUXPAINT_ROOT = "/usr/share/tuxpaint/stamps"


def tuxpaint_pairs(root: str, stats: dict) -> Iterator[tuple[str, Image.Image, str]]:
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root} is missing: apt-get install -y tuxpaint-stamps-default")
    for txt in sorted(base.rglob("*.txt")):
        png = txt.with_suffix(".png")
        lines = txt.read_text(errors="replace").splitlines()
        caption = lines[0].strip() if lines else ""
        if not png.is_file() or not caption:
            stats["tuxpaint_skipped"] = stats.get("tuxpaint_skipped", 0) + 1
            continue
        try:
            with Image.open(png) as im:
                im = im.convert("RGBA")
        except Exception:
            stats["tuxpaint_skipped"] = stats.get("tuxpaint_skipped", 0) + 1
            continue
        white = Image.new("RGBA", im.size, "white")
        key = "tux_" + "_".join(png.relative_to(base).with_suffix("").parts)
        yield key, Image.alpha_composite(white, im).convert("RGB"), caption


def fmnist_pairs(
    root: str, templates: str, seed: int, limit: int = 0
) -> Iterator[tuple[str, Image.Image, str]]:
    from visrep.data.fashion_mnist import load_fashion_mnist
    from visrep.data.templates import FMNIST_CLASSNAMES, template_set

    images, labels = load_fashion_mnist(root, "train")  # never the test split
    temps, rng = template_set(templates), random.Random(seed)
    for i in range(min(limit, len(images)) if limit else len(images)):
        caption = rng.choice(temps).format(FMNIST_CLASSNAMES[int(labels[i])])
        yield f"fmnist_train_{i:05d}", Image.fromarray(images[i, 0].numpy(), "L"), caption


def build_captions(
    out: str | Path,
    sources: tuple[str, ...] = ("tuxpaint", "fmnist"),
    *,
    fmnist_root: str = "/usr/share/datasets/fashion-mnist",
    templates: str = "fmnist_train",
    fmnist_limit: int = 0,
    max_size: int = 64,
    shard_size: int = 5000,
    seed: int = 0,
) -> dict:
    """Write shards `{source}-{i:06d}.tar` under `out`; returns the build report."""
    from webdataset import TarWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    sizes: dict[str, int] = {}
    for source in sources:
        if source == "tuxpaint":
            pairs = tuxpaint_pairs(TUXPAINT_ROOT, stats)
        elif source == "fmnist":
            pairs = fmnist_pairs(fmnist_root, templates, seed, fmnist_limit)
        else:
            raise ValueError(f"unknown caption source {source!r}; choose tuxpaint or fmnist")
        writer, n = None, 0
        for key, image, caption in pairs:
            if n % shard_size == 0:
                writer.close() if writer else None
                name = f"{source}-{n // shard_size:06d}.tar"
                writer, sizes[name] = TarWriter(str(out / name)), 0
            image.thumbnail((max_size, max_size))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            writer.write({"__key__": key, "png": buf.getvalue(), "txt": caption})
            sizes[name] += 1
            n += 1
        writer.close() if writer else None
        stats[f"{source}_pairs"] = n
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    report = {
        "sources": list(sources),
        "templates": templates,
        "fmnist_limit": fmnist_limit,
        "max_size": max_size,
    } | stats
    (out / "build_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="build training data (image-text shards)")
    dsub = d.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser("build-captions", help="offline caption sources -> WebDataset shards")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--sources", default="tuxpaint,fmnist", help="comma list: tuxpaint,fmnist")
    b.add_argument("--templates", default="fmnist_train", help="Fashion-MNIST caption templates")
    b.add_argument("--fmnist-root", default="/usr/share/datasets/fashion-mnist")
    b.add_argument("--fmnist-limit", type=int, default=0, help="first N train images (0 = all)")
    b.add_argument("--max-size", type=int, default=64)
    b.add_argument("--shard-size", type=int, default=5000)


def run_data(args) -> int:
    report = build_captions(
        args.out,
        tuple(s for s in args.sources.split(",") if s),
        fmnist_root=args.fmnist_root,
        templates=args.templates,
        fmnist_limit=args.fmnist_limit,
        max_size=args.max_size,
        shard_size=args.shard_size,
    )
    print(json.dumps(report, indent=2))
    return 0
