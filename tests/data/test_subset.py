"""Training on a curated subset (`data.subset`, visrep.data.subset): the `subset.tsv` of
`visrep curate balance` selects the records of the pool it was curated from."""

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from visrep.config import DataConfig, replace
from visrep.curation.balance import balance_pool
from visrep.curation.captions import CaptionFields
from visrep.curation.pipeline import match_pool
from visrep.data.pairs import ShardPairData, TablePairData
from visrep.data.pipeline import build_train_data
from visrep.data.tokenizer import decode

KW = dict(seed=0, rank=0, world_size=1, device=torch.device("cpu"))
N = 48  # pool size: "cat" is a head entry (every caption), each "tagN" a tail entry


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (i * 5 % 256, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _caption(i: int) -> str:
    # captions 0-5 also carry a tail entry ("rare"): always kept; the rest only via "cat"
    return f"a cat k{i:03d}" + (" rare" if i < 6 else "")


def _curate(pool: Path, tmp: Path, fields: CaptionFields, t: float = 12) -> Path:
    meta = tmp / "meta.json"
    meta.write_text(json.dumps(["cat", "rare"]))
    match_pool([pool], meta, tmp / "matched", fields=fields, workers=1, progress=False)
    balance_pool(tmp / "matched", tmp / "curated", t=t, seed=0, progress=False)
    return tmp / "curated"


@pytest.fixture
def shard_pool(tmp_path):
    """Two WebDataset shards of N pairs, curated with t=12: about 12 + 6 kept."""
    from webdataset import TarWriter

    pool = tmp_path / "pool"
    pool.mkdir()
    for s in range(2):
        with TarWriter(str(pool / f"p-{s:06d}.tar")) as w:
            for i in range(s, N, 2):
                w.write({"__key__": f"k{i:03d}", "png": _png(i), "txt": _caption(i)})
    return pool, _curate(pool, tmp_path, CaptionFields())


def _data(dataset, **kw) -> DataConfig:
    return DataConfig(dataset=str(dataset), img_size=8, channels=3, crop_scale=(0.5, 1.0),
                      hflip=False, **kw)  # fmt: skip


def _listed(curated: Path) -> set[str]:
    lines = (curated / "subset.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[2] for line in lines}


def _keys(batches) -> list[str]:
    """The sample keys a run saw, read back from its captions (`a cat kNNN`)."""
    texts = [decode(t.tolist()).replace(" ", "") for b in batches for t in b["tokens"]]
    found = [re.search(r"k(\d{3})", text) for text in texts]  # the tokenizer splits digits
    return [f"k{int(m.group(1)):03d}" for m in found]


def test_shards_train_only_on_the_listed_records_and_resume_exactly(shard_pool):
    pool, curated = shard_pool
    listed = _listed(curated)
    assert 12 <= len(listed) < N and {f"k{i:03d}" for i in range(6)} <= listed  # tail kept
    data = _data(pool, subset=str(curated))  # the balance folder
    src = build_train_data(data, 4, **KW)
    assert isinstance(src, ShardPairData) and src.n_total == len(listed)
    assert src.steps_per_epoch == len(listed) // 4
    steps = 3 * src.steps_per_epoch
    a = list(src.batches(0, steps))
    seen = _keys(a)
    assert set(seen) <= listed and len(set(seen)) >= len(listed) - 3  # each epoch drops < 4
    b = list(build_train_data(replace(data, subset=str(curated / "subset.tsv")), 4, **KW)
             .batches(5, steps))  # fmt: skip
    for x, y in zip(a[5:], b, strict=True):  # exact resume, mid-epoch
        torch.testing.assert_close(x["images"], y["images"])
        torch.testing.assert_close(x["tokens"], y["tokens"])
    whole = _keys(build_train_data(_data(pool), 4, **KW).batches(0, 3))
    assert not set(whole) <= listed  # the unfiltered pool has the others


def test_two_processes_split_the_subset(shard_pool):
    pool, curated = shard_pool
    data = _data(pool, subset=str(curated))
    ranks = [build_train_data(data, 2, **(KW | {"rank": r, "world_size": 2})) for r in (0, 1)]
    n = ranks[0].steps_per_epoch
    assert n == len(_listed(curated)) // 4
    seen = [_keys(r.batches(0, n)) for r in ranks]
    assert not set(seen[0]) & set(seen[1])  # disjoint within an epoch
    assert set(seen[0]) | set(seen[1]) <= _listed(curated)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tables_train_only_on_the_listed_rows(tmp_path, fmt):
    for i in range(N):
        (tmp_path / f"{i}.png").write_bytes(_png(i))
    rows = [{"image_path": f"{i}.png", "caption": _caption(i), "uid": f"u{i}"} for i in range(N)]
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "csv":
        path.write_text("image_path,caption,uid\n" + "".join(
            f"{r['image_path']},{r['caption']},{r['uid']}\n" for r in rows))  # fmt: skip
    else:  # a blank line: the curation reader counts it as a row, so must the subset reader
        lines = [json.dumps(r) for r in rows]
        path.write_text("\n".join(lines[:10] + [""] + lines[10:]) + "\n")
    curated = _curate(path, tmp_path, CaptionFields(text_field="caption", key_field="uid"))
    listed = {f"k{int(u[1:]):03d}" for u in _listed(curated)}
    data = _data(path, subset=str(curated / "subset.tsv"))
    src = build_train_data(data, 4, **KW)
    assert isinstance(src, TablePairData) and len(src.table) == len(listed)
    a = list(src.batches(0, 2 * src.steps_per_epoch))
    assert set(_keys(a)) <= listed and len(set(_keys(a))) >= len(listed) - 3
    b = list(build_train_data(data, 4, **KW).batches(3, 2 * src.steps_per_epoch))
    for x, y in zip(a[3:], b, strict=True):
        torch.testing.assert_close(x["images"], y["images"])


def test_a_subset_of_another_pool_fails_clearly(shard_pool, tmp_path):
    pool, curated = shard_pool
    subset = curated / "subset.tsv"
    # a pool whose files have other names
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(pool / "p-000000.tar", other / "q-000000.tar")
    with pytest.raises(ValueError, match=r"data.subset=.*subset.tsv: it lists \d+ captions of "
                       r".*p-00000\d.tar, which is not a file of data.dataset=.*other") as e:  # fmt: skip
        build_train_data(_data(other, subset=str(subset)), 4, **KW)
    assert "visrep curate match" in str(e.value)
    # the same file names, other content (a rebuilt pool): a listed key is not where it was
    moved = tmp_path / "moved"
    moved.mkdir()
    from webdataset import TarWriter

    for s in range(2):
        with TarWriter(str(moved / f"p-{s:06d}.tar")) as w:
            for i in range(s, N, 2):
                w.write({"__key__": f"x{i:03d}", "png": _png(i), "txt": _caption(i)})
    with pytest.raises(ValueError, match=r"row \d+ of .*moved/p-00000\d.tar holds key 'x\d+', "
                       r"the subset says key 'k\d+': the pool was rebuilt"):  # fmt: skip
        build_train_data(_data(moved, subset=str(subset)), 4, **KW)
    # a listed row the pool does not hold
    lines = subset.read_text().splitlines()
    shard = lines[1].split("\t")[0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines + [f"{shard}\t999\tk999"]) + "\n")
    with pytest.raises(ValueError, match=r"row 999 of .* does not exist"):
        build_train_data(_data(pool, subset=str(bad)), 4, **KW)
    # not a subset file; not a caption pool; no file at all
    (tmp_path / "x.tsv").write_text("a\tb\n")
    with pytest.raises(ValueError, match="not a subset.tsv of `visrep curate balance`"):
        build_train_data(_data(pool, subset=str(tmp_path / "x.tsv")), 4, **KW)
    with pytest.raises(ValueError, match="needs data.dataset to be the caption pool"):
        build_train_data(_data(tmp_path, subset=str(subset)), 4, **KW)
    with pytest.raises(FileNotFoundError, match="no subset.tsv there"):
        build_train_data(_data(pool, subset=str(tmp_path / "nowhere")), 4, **KW)
