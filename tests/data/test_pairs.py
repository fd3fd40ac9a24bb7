"""Image-text data: WebDataset shards, CSV/JSONL, Fashion-MNIST class-name captions, builder."""

import io
import json
from pathlib import Path

import pytest
import torch
from conftest import requires_fmnist
from PIL import Image

from visrep.config import DataConfig, replace
from visrep.data.caption_shards import TUXPAINT_ROOT, build_captions
from visrep.data.folder import decode_bytes
from visrep.data.pairs import ShardPairData, TablePairData, is_pair_data
from visrep.data.pipeline import build_train_data
from visrep.data.templates import FMNIST_CLASSNAMES, FMNIST_TRAIN_TEMPLATES, IMAGENET_TEMPLATES
from visrep.data.tokenizer import decode, tokenize

KW = dict(seed=0, rank=0, world_size=1, device=torch.device("cpu"))


def _png(color, size=(20, 12), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def _shards(tmp: Path, n_good: int = 10) -> Path:
    """Two shards: n_good valid pairs plus a missing image, an empty caption, a corrupt PNG."""
    from webdataset import TarWriter

    tmp.mkdir(exist_ok=True)
    rows = [{"__key__": f"k{i:03d}", "png": _png((i * 20, 0, 0)), "txt": f"red box {i}"}
            for i in range(n_good)]  # fmt: skip
    rows += [{"__key__": "noimg", "txt": "a caption without image"},
             {"__key__": "empty", "png": _png("blue"), "txt": "  "},
             {"__key__": "corrupt", "png": b"\x89PNG broken", "txt": "broken file"}]  # fmt: skip
    for s, part in enumerate((rows[::2], rows[1::2])):
        with TarWriter(str(tmp / f"s-{s:06d}.tar")) as w:
            for r in part:
                w.write(r)
    return tmp


def _data(dataset, **kw) -> DataConfig:
    return DataConfig(dataset=str(dataset), img_size=8, channels=3, crop_scale=(0.5, 1.0),
                      hflip=False, **kw)  # fmt: skip


def test_shards_stream_skip_and_count_bad_pairs(tmp_path):
    data = _data(_shards(tmp_path / "sh"))
    assert is_pair_data(data)
    src = build_train_data(data, 4, **KW)
    assert isinstance(src, ShardPairData) and src.steps_per_epoch == 13 // 4
    batches = list(src.batches(0, 3))  # one epoch: 12 of the 10 good pairs, re-drawn to fill
    assert all(b["images"].shape == (4, 3, 8, 8) and b["tokens"].shape == (4, 77) for b in batches)
    caps = {decode(t.tolist()).strip() for b in batches for t in b["tokens"]}
    assert all(c.startswith("red box") for c in caps)
    assert src.n_skipped >= 3  # missing image, empty caption, corrupt file


def test_shards_resume_replays_the_same_batches(tmp_path):
    data = _data(_shards(tmp_path / "sh", n_good=20), views="simclr")
    a = list(build_train_data(data, 4, **KW).batches(0, 8))
    b = list(build_train_data(data, 4, **KW).batches(5, 8))
    for x, y in zip(a[5:], b):
        torch.testing.assert_close(x["images"], y["images"])
        torch.testing.assert_close(x["tokens"], y["tokens"])
        torch.testing.assert_close(x["views"][1], y["views"][1])
    assert len(a[0]["views"]) == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_pairs(tmp_path, fmt):
    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(_png((0, 40 * i, 0)))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [(f"{i}.png", f"green square {i}") for i in range(6)]
    rows += [("missing.png", "no file"), ("bad.png", "corrupt"), ("0.png", "")]
    if fmt == "csv":
        text = "image_path,caption\n" + "".join(f"{p},{c}\n" for p, c in rows)
    else:
        text = "".join(json.dumps({"image_path": p, "caption": c}) + "\n" for p, c in rows)
    (tmp_path / f"pairs.{fmt}").write_text(text)
    src = build_train_data(_data(tmp_path / f"pairs.{fmt}"), 4, **KW)
    assert isinstance(src, TablePairData) and src.n_skipped == 1  # the empty caption
    batches = list(src.batches(0, 4))
    assert all(b["tokens"].shape[1] == 77 for b in batches)
    assert src.n_skipped == 1 + 2 * 2  # missing + corrupt, drawn once per epoch (2 epochs)


def test_alpha_is_composited_on_white():
    x = decode_bytes(_png((255, 0, 0, 0), mode="RGBA"), 3)  # fully transparent red
    assert x.shape == (3, 12, 20) and (x == 255).all()


def test_templates_for_training_and_zero_shot_are_disjoint():
    assert not set(FMNIST_TRAIN_TEMPLATES) & set(IMAGENET_TEMPLATES)
    assert len(IMAGENET_TEMPLATES) == 7 and len(FMNIST_CLASSNAMES) == 10


@requires_fmnist
def test_fmnist_captions_name_the_image_class():
    from visrep.data.fashion_mnist import load_fashion_mnist

    data = DataConfig(dataset="fashion_mnist", img_size=28, channels=1, captions="fmnist_train",
                      limit=512, views="simclr")  # fmt: skip
    src = build_train_data(data, 32, **KW)
    batch = next(iter(src.batches(3, 4)))
    _, labels = load_fashion_mnist(data.root, "train")
    idx = src.images._perm[3 * 32 : 4 * 32]
    allowed = {int(c): tokenize([t.format(FMNIST_CLASSNAMES[c]) for t in FMNIST_TRAIN_TEMPLATES])
               for c in range(10)}  # fmt: skip
    for row, i in zip(batch["tokens"], idx):
        assert any(torch.equal(row, a) for a in allowed[int(labels[i])])
    assert len(batch["views"]) == 2 and batch["images"].shape == (32, 1, 28, 28)
    assert not is_pair_data(replace(data, captions=""))  # plain Fashion-MNIST images


@pytest.mark.skipif(
    not Path(TUXPAINT_ROOT).is_dir(), reason="apt-get install tuxpaint-stamps-default"
)
def test_build_captions_from_tux_paint(tmp_path):
    report = build_captions(tmp_path, ("tuxpaint",), shard_size=300, max_size=32)
    assert report["tuxpaint_pairs"] > 500
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    assert sum(sizes.values()) == report["tuxpaint_pairs"] and len(sizes) >= 2
    src = build_train_data(_data(tmp_path), 64, **KW)
    assert src.steps_per_epoch == report["tuxpaint_pairs"] // 64
    b = next(iter(src.batches(0, 1)))
    assert b["images"].shape == (64, 3, 8, 8)


def test_shards_with_no_readable_pair_fail_clearly(tmp_path):
    from webdataset import TarWriter

    with TarWriter(str(tmp_path / "bad-000000.tar")) as w:
        for i in range(8):
            w.write({"__key__": f"k{i}", "png": b"broken", "txt": "a caption"})
    src = build_train_data(_data(tmp_path), 4, **KW)
    with pytest.raises(ValueError, match="no readable image-text pair"):
        next(iter(src.batches(0, 1)))


def test_shards_are_named_by_folder_braces_or_a_glob(tmp_path):
    from visrep.data.pairs import list_shards

    for name in ("a-0.tar", "a-1.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"")
    names = lambda shards: [Path(s).name for s in shards]  # noqa: E731
    assert names(list_shards(str(tmp_path))) == ["a-0.tar", "a-1.tar", "b.tar"]
    assert names(list_shards(f"{tmp_path}/*.tar")) == ["a-0.tar", "a-1.tar", "b.tar"]
    assert names(list_shards(f"{tmp_path}/a-*.tar")) == ["a-0.tar", "a-1.tar"]
    assert names(list_shards(f"{tmp_path}/a-{{0..1}}.tar")) == ["a-0.tar", "a-1.tar"]
    with pytest.raises(FileNotFoundError, match="no WebDataset shards"):
        list_shards(f"{tmp_path}/c-*.tar")


def test_shards_read_by_loader_processes_give_the_same_batches_and_skips(tmp_path, monkeypatch):
    import visrep.data.pairs as pairs

    monkeypatch.setattr(pairs, "SHARD_BLOCK", 3)  # many blocks, a partial last one
    root = _shards(tmp_path / "sh", n_good=30)
    runs = {}
    for workers in (0, 2):
        src = build_train_data(_data(root, num_workers=workers, views="simclr"), 4, **KW)
        runs[workers] = (list(src.batches(0, 14)), src.n_skipped)  # 2 epochs, re-draws
    (a, skipped_a), (b, skipped_b) = runs[0], runs[2]
    assert len(a) == len(b) == 14 and skipped_a == skipped_b >= 3
    for x, y in zip(a, b):
        assert torch.equal(x["images"], y["images"]) and torch.equal(x["tokens"], y["tokens"])
        assert torch.equal(x["views"][0], y["views"][0])
