"""Caption sources of `visrep data build-captions`: OpenClipart (SVG metadata) and emoji
(emoji-datasource-google), on tiny hand-made fixtures in the real formats, then on the real
files when they are installed."""

import io
import itertools
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from visrep.data.caption_shards import (
    GENERIC_TITLE_COUNT,
    OPENCLIPART_ROOT,
    build_captions,
    clipart_caption,
    emoji_pairs,
    openclipart_pairs,
    svg_title_keywords,
)

SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
     xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" width="10" height="10">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        {title}
        <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
        <dc:creator><cc:Agent><dc:title>Some Artist</dc:title></cc:Agent></dc:creator>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <rect width="10" height="10"/>
</svg>
"""


def _png(path: Path, color=(200, 30, 30, 255), size=(12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, color).save(path)


def _svg(path: Path, title: str, keywords: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = f"<dc:title>{title}</dc:title>" if title else ""
    kw = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(SVG.format(title=t, keywords=kw))


@pytest.fixture
def clipart(tmp_path):
    root = tmp_path / "openclipart"
    _svg(root / "svg/animals/frog.svg", "Green frog", ["frog", "hash", "", "0x851ce54", "animal"])
    _png(root / "png/animals/frog.png")
    for i in range(GENERIC_TITLE_COUNT + 1):  # a collection name, not a title
        _svg(root / f"svg/shapes/star{i}.svg", "gramastar", ["stars", "shapes"])
        _png(root / f"png/shapes/star{i}.png", (0, 0, 0, 0))  # fully transparent
    _svg(root / "svg/misc/nopng.svg", "Lonely", ["word"])  # no PNG: skipped
    _svg(root / "svg/misc/empty.svg", "", ["", "icon"])  # nothing specific: skipped
    _png(root / "png/misc/empty.png")
    (root / "svg/misc/broken.svg").write_text("<svg><metadata>")  # unparsable: skipped
    _png(root / "png/misc/broken.png")
    _svg(root / "svg/misc/badpng.svg", "Bad", ["x"])
    (root / "png/misc/badpng.png").write_bytes(b"not a png")  # undecodable: skipped
    return root


def test_svg_metadata_takes_the_works_title_not_the_agents(clipart):
    title, keywords = svg_title_keywords(clipart / "svg/animals/frog.svg")
    assert title == "Green frog"  # not "Some Artist" (dc:creator's agent)
    assert keywords == ["frog", "hash", "0x851ce54", "animal"]
    assert clipart_caption(title, keywords) == "Green frog: frog, animal"
    assert clipart_caption(title, keywords, generic=True) == "frog, animal"
    assert clipart_caption("", ["icon", "hash"]) == ""


def test_openclipart_pairs_caption_and_skip_bad_files(clipart):
    stats = {}
    pairs = {k: (im, c) for k, im, c in openclipart_pairs(str(clipart), stats)}
    assert pairs["clipart_animals_frog"][1] == "Green frog: frog, animal"
    assert pairs["clipart_shapes_star0"][1] == "stars, shapes"  # generic title dropped
    assert len(pairs) == 1 + GENERIC_TITLE_COUNT + 1
    assert stats["openclipart_skipped"] == 4  # no PNG, empty caption, broken SVG, bad PNG
    assert stats["openclipart_generic_titles"] == GENERIC_TITLE_COUNT + 1
    im = pairs["clipart_shapes_star0"][0]
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)  # alpha on white
    with pytest.raises(FileNotFoundError, match="openclipart-png"):
        list(openclipart_pairs(str(clipart / "nowhere"), {}))


def _emoji_package(root: Path) -> Path:
    pkg = root / "package"
    entries = [
        {"name": "GRINNING FACE", "image": "1f600.png", "has_img_google": True, "sort_order": 1},
        {"name": "WAVING HAND SIGN", "image": "1f44b.png", "has_img_google": True,
         "sort_order": 2, "skin_variations": {
             "1F3FD": {"image": "1f44b-1f3fd.png", "has_img_google": True},
             "1F3FB-1F3FF": {"image": "1f44b-1f3fb-1f3ff.png", "has_img_google": True},
             "1F3FE": {"image": "1f44b-1f3fe.png", "has_img_google": False}}},
        {"name": "NO FILE", "image": "1f999.png", "has_img_google": True, "sort_order": 3},
        {"name": "BROKEN", "image": "1f998.png", "has_img_google": True, "sort_order": 4},
        {"name": None, "image": "1f997.png", "has_img_google": True, "sort_order": 5},
    ]  # fmt: skip
    pkg.mkdir(parents=True)
    (pkg / "emoji.json").write_text(json.dumps(entries))
    for name in ["1f600", "1f44b", "1f44b-1f3fd", "1f44b-1f3fb-1f3ff", "1f44b-1f3fe", "1f997"]:
        _png(pkg / f"img/google/64/{name}.png", size=(64, 64))
    (pkg / "img/google/64/1f998.png").write_bytes(b"\x89PNG broken")
    return root


@pytest.mark.parametrize("form", ["folder", "tgz"])
def test_emoji_pairs_from_the_npm_package(tmp_path, form):
    root = _emoji_package(tmp_path / "src")
    if form == "tgz":  # what `npm pack` writes
        arg = tmp_path / "emoji-datasource-google-16.0.0.tgz"
        with tarfile.open(arg, "w:gz") as tar:
            tar.add(root / "package", arcname="package")
    else:
        arg = root
    stats = {}
    pairs = [(k, c) for k, _, c in emoji_pairs(str(arg), stats)]
    assert pairs == [
        ("emoji_1f600", "grinning face"),
        ("emoji_1f44b", "waving hand sign"),
        ("emoji_1f44b-1f3fb-1f3ff", "waving hand sign, light and dark skin tones"),
        ("emoji_1f44b-1f3fd", "waving hand sign, medium skin tone"),
    ]
    assert stats["emoji_skipped"] == 4  # no Google image, missing, undecodable, no name


def test_build_captions_writes_all_sources(tmp_path, clipart):
    root = _emoji_package(tmp_path / "emoji")
    report = build_captions(tmp_path / "shards", ("openclipart", "emoji"),
                            openclipart_root=str(clipart), emoji_root=str(root),
                            max_size=16, shard_size=4)  # fmt: skip
    assert report["openclipart_pairs"] == 7 and report["emoji_pairs"] == 4
    sizes = json.loads((tmp_path / "shards/sizes.json").read_text())
    assert sizes == {"openclipart-000000.tar": 4, "openclipart-000001.tar": 3,
                     "emoji-000000.tar": 4}  # fmt: skip
    with tarfile.open(tmp_path / "shards/emoji-000000.tar") as tar:
        names = tar.getnames()
        assert "emoji_1f600.txt" in names and "emoji_1f600.png" in names
        image = Image.open(io.BytesIO(tar.extractfile("emoji_1f600.png").read()))
        assert max(image.size) == 16
    with pytest.raises(ValueError, match="openclipart, emoji"):
        build_captions(tmp_path / "x", ("clipart",))


REAL_CLIPART = Path(OPENCLIPART_ROOT)
REAL_EMOJI = Path(os.environ.get("VISREP_EMOJI_ROOT", "emoji-datasource-google-16.0.0.tgz"))


@pytest.mark.skipif(not (REAL_CLIPART / "svg").is_dir(), reason="apt-get install openclipart-svg")
def test_real_openclipart_metadata():
    svg = REAL_CLIPART / "svg/animals/2_dead_frogs_lumen_desig_01.svg"
    title, keywords = svg_title_keywords(svg)
    assert title == "2 dead frogs" and "frog" in keywords
    assert clipart_caption(title, keywords).startswith("2 dead frogs: kwaakwaa, squeleton")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_CLIPART / "png").is_dir(), reason="apt-get install openclipart-png")
def test_real_openclipart_pairs():
    stats = {}
    pairs = list(itertools.islice(openclipart_pairs(str(REAL_CLIPART), stats), 50))
    assert len(pairs) == 50 and all(c for _, _, c in pairs)


@pytest.mark.skipif(not REAL_EMOJI.exists(), reason="npm pack emoji-datasource-google@16.0.0")
def test_real_emoji_package():
    stats = {}
    pairs = {k: c for k, _, c in emoji_pairs(str(REAL_EMOJI), stats)}
    assert len(pairs) == 3786 and not stats  # every image of the package, none skipped
    assert pairs["emoji_1f600"] == "grinning face"
