"""`visrep data build-captions`: real offline image-text pairs as WebDataset shards.

Sources (Debian packages that ship captioned images; nothing is downloaded):

- ``tuxpaint``: Debian `tuxpaint-stamps-default`, `/usr/share/tuxpaint/stamps/**/NAME.png`
  with `NAME.txt` whose first line is the English caption ("A european bear."). Stamps
  without a PNG (SVG only) or with an empty caption are skipped and counted.
- ``openclipart``: Debian `openclipart-png` + `openclipart-svg` (public domain),
  `/usr/share/openclipart/png/CATEGORY/NAME.png` captioned from the metadata of
  `svg/CATEGORY/NAME.svg`: the work's `dc:title` and its `dc:subject` keywords. Titles shared
  by more than `GENERIC_TITLE_COUNT` files are collection names ("gramastar", "Part of the
  Flat Icon Collection (...)", "Lemon SVG theme") and are dropped; keywords are kept when
  they are plain words outside `CLIPART_STOPWORDS` ("hash", "icon", "0x851ce54" go), at most
  `MAX_KEYWORDS`. Caption: "title: kw1, kw2" or "title" or "kw1, kw2". Files with no PNG,
  an unparsable SVG, neither a specific title nor a keyword, or a PNG over `MAX_PIXELS` are
  skipped and counted (Debian 1:0.18: 7,903 pairs, 218 skipped).
- ``emoji``: npm `emoji-datasource-google@16.0.0` (`npm pack emoji-datasource-google@16.0.0`
  gives `emoji-datasource-google-16.0.0.tgz`; pass it, or the folder it untars to, as
  `--emoji-root`): `package/emoji.json` names every emoji ("GRINNING FACE") and its skin-tone
  variants, images `package/img/google/64/IMAGE.png`. Caption: the lower-cased name, with
  ", medium-dark skin tone" for a variant. Entries without a Google image, an empty name, or a
  missing/undecodable PNG are skipped and counted (16.0.0: 3,786 pairs, none skipped).
- ``fmnist``: the Fashion-MNIST **train** split, each image captioned with its class name
  in one template of `--templates` (default `fmnist_train`, disjoint from the ImageNet
  templates used for zero-shot evaluation on the test split; `visrep.data.templates`).

Images are composited on white (cut-out stamps, clip art and emoji have alpha), shrunk to
at most `--max-size` pixels, and written as `key.png` + `key.txt`, `--shard-size` samples per tar,
with `sizes.json` (samples per shard, the open_clip convention) and `build_report.json`.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.io import atomic_write_text

TUXPAINT_ROOT = "/usr/share/tuxpaint/stamps"
OPENCLIPART_ROOT = "/usr/share/openclipart"
EMOJI_ROOT = "emoji-datasource-google-16.0.0.tgz"
SOURCES = ("tuxpaint", "openclipart", "emoji", "fmnist")


def tuxpaint_dir(root: str) -> Path:
    """The Tux Paint stamps folder `root`, or an error that says how to install it."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root} is missing: apt-get install -y tuxpaint-stamps-default")
    return base


def tuxpaint_pairs(root: str, stats: dict) -> Iterator[tuple[str, Image.Image, str]]:
    base = tuxpaint_dir(root)
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


GENERIC_TITLE_COUNT = 5  # a title on more files than this names a collection, not the image
MAX_KEYWORDS = 5
MAX_PIXELS = 4096 * 4096
CLIPART_STOPWORDS = frozenset(
    "hash icon icons theme themes clipart clip art svg png openclipart media image "
    "unsorted remix externalsource".split()
)
_DC = "{http://purl.org/dc/elements/1.1/}"


def _skip(stats: dict, source: str) -> None:
    stats[f"{source}_skipped"] = stats.get(f"{source}_skipped", 0) + 1


def open_on_white(data: bytes | Path) -> Image.Image:
    """RGB image, transparent pixels composited on white; raises on undecodable files and
    on images over `MAX_PIXELS` (a few OpenClipart PNGs are 13,000 px wide: 0.7 GB as RGBA
    to end as a 64 px thumbnail)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    with im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} image is over {MAX_PIXELS} pixels")
        im = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB")


def svg_title_keywords(path: str | Path) -> tuple[str, list[str]]:
    """`dc:title` and `dc:subject` keywords of the work (`cc:Work`) in an SVG's metadata.

    Parsing stops at the end of `<metadata>`, so the drawing itself is never read. Titles
    of agents (creator, publisher) are not the work's title and are ignored.
    """
    for _, el in ET.iterparse(str(path), events=("end",)):
        if el.tag.rpartition("}")[2] != "metadata":
            continue
        for work in (e for e in el.iter() if e.tag.rpartition("}")[2] == "Work"):
            title, keywords = "", []
            for child in work:
                if child.tag == _DC + "title":
                    title = " ".join((child.text or "").split())
                elif child.tag == _DC + "subject":
                    items = [li.text or "" for li in child.iter() if li.tag.endswith("}li")]
                    keywords = [" ".join(k.split()) for k in items or [child.text or ""]]
            return title, [k for k in keywords if k]
        break
    return "", []


def clipart_caption(title: str, keywords: list[str], generic: bool = False) -> str:
    """ "title: kw1, kw2" from a specific title and plain-word keywords (module docstring)."""
    words: list[str] = []
    for k in keywords:
        k = k.lower()
        if k.replace(" ", "").isalpha() and k not in CLIPART_STOPWORDS and k not in words:
            words.append(k)
    title = "" if generic else title
    kw = ", ".join(words[:MAX_KEYWORDS])
    return f"{title}: {kw}" if title and kw else title or kw


def openclipart_pairs(root: str, stats: dict) -> Iterator[tuple[str, Image.Image, str]]:
    base = Path(root)
    if not (base / "svg").is_dir() or not (base / "png").is_dir():
        raise FileNotFoundError(
            f"{root}/svg or {root}/png is missing: apt-get install -y openclipart-png openclipart-svg"
        )
    meta = []
    for svg in sorted((base / "svg").rglob("*.svg")):
        try:
            title, keywords = svg_title_keywords(svg)
        except ET.ParseError:
            title, keywords = "", []
        meta.append((svg.relative_to(base / "svg").with_suffix(".png"), title, keywords))
    counts = Counter(t.lower() for _, t, _ in meta if t)
    for rel, title, keywords in meta:
        generic = counts[title.lower()] > GENERIC_TITLE_COUNT
        stats["openclipart_generic_titles"] = stats.get("openclipart_generic_titles", 0) + generic
        caption, png = clipart_caption(title, keywords, generic), base / "png" / rel
        if not caption or not png.is_file():
            _skip(stats, "openclipart")
            continue
        try:
            image = open_on_white(png)
        except Exception:
            _skip(stats, "openclipart")
            continue
        yield "clipart_" + "_".join(rel.with_suffix("").parts), image, caption


SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium",
              "1F3FE": "medium-dark", "1F3FF": "dark"}  # fmt: skip


def emoji_files(root: str) -> tuple[list[dict], Callable[[str], bytes | None]]:
    """emoji.json and a reader of `img/google/64/NAME.png` from the npm tarball or its folder."""
    p = Path(root)
    if p.is_file():  # the .tgz from `npm pack`: one sequential pass, 64 px images kept (14 MB)
        files: dict[str, bytes] = {}
        with tarfile.open(p) as tar:
            for m in tar:
                if m.isfile() and (m.name.endswith("/emoji.json") or "/img/google/64/" in m.name):
                    files[m.name.rpartition("/")[2]] = tar.extractfile(m).read()
        if "emoji.json" not in files:
            raise FileNotFoundError(f"{root} holds no package/emoji.json")
        return json.loads(files.pop("emoji.json")), files.get
    pkg = p / "package" if (p / "package" / "emoji.json").is_file() else p
    if not (pkg / "emoji.json").is_file():
        raise FileNotFoundError(
            f"no emoji.json under {root}: run `npm pack emoji-datasource-google@16.0.0` and pass "
            "the .tgz (or the folder it untars to) as --emoji-root"
        )
    images = pkg / "img" / "google" / "64"

    def read(name: str) -> bytes | None:
        f = images / name
        return f.read_bytes() if f.is_file() else None

    return json.loads((pkg / "emoji.json").read_text()), read


def emoji_pairs(root: str, stats: dict) -> Iterator[tuple[str, Image.Image, str]]:
    entries, read = emoji_files(root)
    for e in sorted(entries, key=lambda e: e.get("sort_order", 0)):
        name = " ".join(str(e.get("name") or "").lower().split())
        variants = [(e, name)]
        for tones, v in sorted((e.get("skin_variations") or {}).items()):
            words = [SKIN_TONES.get(t, t.lower()) for t in tones.split("-")]
            tone = f"{words[0]} skin tone" if len(set(words)) == 1 else (
                " and ".join(dict.fromkeys(words)) + " skin tones")  # fmt: skip
            variants.append((v, f"{name}, {tone}"))
        for v, caption in variants:
            image_name = str(v.get("image") or "")
            raw = read(image_name) if v.get("has_img_google") and image_name else None
            if not name or raw is None:
                _skip(stats, "emoji")
                continue
            try:
                image = open_on_white(raw)
            except Exception:
                _skip(stats, "emoji")
                continue
            yield "emoji_" + image_name.rsplit(".", 1)[0], image, caption


def fmnist_pairs(
    root: str, templates: str, seed: int, limit: int = 0
) -> Iterator[tuple[str, Image.Image, str]]:
    from visrep.data.fashion_mnist import load_fashion_mnist  # torch: only for this source

    images, labels = load_fashion_mnist(root, "train")  # never the test split
    temps, rng = template_set(templates), random.Random(seed)
    for i in range(min(limit, len(images)) if limit else len(images)):
        caption = rng.choice(temps).format(FMNIST_CLASSNAMES[int(labels[i])])
        yield f"fmnist_train_{i:05d}", Image.fromarray(images[i, 0].numpy(), "L"), caption


def _close_shard(writer, out: Path, name: str) -> None:
    writer.close()
    os.replace(out / f".{name}.tmp", out / name)


def build_captions(
    out: str | Path,
    sources: tuple[str, ...] = ("tuxpaint", "fmnist"),
    *,
    fmnist_root: str = "/usr/share/datasets/fashion-mnist",
    openclipart_root: str = OPENCLIPART_ROOT,
    emoji_root: str = EMOJI_ROOT,
    templates: str = "fmnist_train",
    fmnist_limit: int = 0,
    max_size: int = 64,
    shard_size: int = 5000,
    seed: int = 0,
) -> dict:
    """Write shards `{source}-{i:06d}.tar` under `out`; returns the build report."""
    from webdataset import TarWriter

    if shard_size < 1 or max_size < 1:
        raise ValueError(
            f"--shard-size and --max-size must be >= 1, got {shard_size} and {max_size}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    sizes: dict[str, int] = {}
    for source in sources:
        if source == "tuxpaint":
            pairs = tuxpaint_pairs(TUXPAINT_ROOT, stats)
        elif source == "openclipart":
            pairs = openclipart_pairs(openclipart_root, stats)
        elif source == "emoji":
            pairs = emoji_pairs(emoji_root, stats)
        elif source == "fmnist":
            pairs = fmnist_pairs(fmnist_root, templates, seed, fmnist_limit)
        else:
            raise ValueError(f"unknown caption source {source!r}; choose from {', '.join(SOURCES)}")
        writer, n, name = None, 0, ""
        for key, image, caption in pairs:
            if n % shard_size == 0:
                _close_shard(writer, out, name) if writer else None
                name = f"{source}-{n // shard_size:06d}.tar"
                # written under a temporary name, renamed when complete: a killed build never
                # leaves a partial shard under a name the readers glob (*.tar)
                writer, sizes[name] = TarWriter(str(out / f".{name}.tmp")), 0
            image.thumbnail((max_size, max_size))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            writer.write({"__key__": key, "png": buf.getvalue(), "txt": caption})
            sizes[name] += 1
            n += 1
        _close_shard(writer, out, name) if writer else None
        stats[f"{source}_pairs"] = n
    # what was written, for readers to check shards against (truncation, lost files)
    atomic_write_text(out / "sizes.json", json.dumps(sizes, indent=1) + "\n")
    report = {
        "sources": list(sources),
        "templates": templates,
        "fmnist_limit": fmnist_limit,
        "max_size": max_size,
    } | stats
    (out / "build_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def add_parser(dsub) -> None:
    """`visrep data build-captions` (registered under `visrep data`)."""
    b = dsub.add_parser("build-captions", help="offline caption sources -> WebDataset shards")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--sources", default="tuxpaint,fmnist",
                   help="comma list of " + ",".join(SOURCES))  # fmt: skip
    b.add_argument("--openclipart-root", default=OPENCLIPART_ROOT)
    b.add_argument("--emoji-root", default=EMOJI_ROOT,
                   help="npm pack emoji-datasource-google@16.0.0 output (.tgz or its folder)")  # fmt: skip
    b.add_argument("--templates", default="fmnist_train", help="Fashion-MNIST caption templates")
    b.add_argument("--fmnist-root", default="/usr/share/datasets/fashion-mnist")
    b.add_argument("--fmnist-limit", type=int, default=0, help="first N train images (0 = all)")
    b.add_argument("--max-size", type=int, default=64)
    b.add_argument("--shard-size", type=int, default=5000)


def run(args) -> int:
    """`visrep data build-captions ARGS`: build the shards, print the build report."""
    report = build_captions(
        args.out,
        tuple(s for s in args.sources.split(",") if s),
        fmnist_root=args.fmnist_root,
        openclipart_root=args.openclipart_root,
        emoji_root=args.emoji_root,
        templates=args.templates,
        fmnist_limit=args.fmnist_limit,
        max_size=args.max_size,
        shard_size=args.shard_size,
    )
    print(json.dumps(report, indent=2))
    return 0
