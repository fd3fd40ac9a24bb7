"""Bad input never corrupts, loses or silently shrinks anything: damaged shards are reported,
killed shard builds leave no partial shard, odd pair tables are read or skipped and counted,
a half-written log line does not block resume, and finished metrics are never lost."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from visrep.config import DataConfig
from visrep.data import caption_shards
from visrep.data.pairs import ShardPairData, TablePairs, count_samples, read_pair_table
from visrep.logger import read_log


def _png(seed: int) -> bytes:
    x = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return buf.getvalue()


def _shards(root, n=40, per=20):
    root.mkdir(parents=True)
    sizes = {}
    for s in range(0, n, per):
        name = f"pairs-{s // per:04d}.tar"
        with wds.TarWriter(str(root / name)) as w:
            for i in range(s, s + per):
                w.write({"__key__": f"k{i:04d}", "png": _png(i), "txt": f"caption {i}"})
        sizes[name] = per
    (root / "sizes.json").write_text(json.dumps(sizes))
    return root


def _truncate(path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _drain(data: ShardPairData):
    return sum(len(b["images"]) for b in data.batches(0, data.steps_per_epoch))


@pytest.mark.parametrize("workers", [0, 2])  # read in the training process / loader processes
@pytest.mark.parametrize("keep, fails", [(0.95, False), (0.3, True)])
def test_a_truncated_shard_is_reported_and_a_large_loss_fails(
    tmp_path, caplog, keep, fails, workers
):
    root = _shards(tmp_path / "shards", n=200, per=100)
    _truncate(root / "pairs-0001.tar", keep)
    cfg = DataConfig(dataset=str(root), img_size=8, channels=3, num_workers=workers)
    data = ShardPairData(cfg, 4, seed=0)
    if fails:
        with pytest.raises(ValueError, match="truncated or damaged shard"):
            _drain(data)
    else:
        with caplog.at_level(logging.WARNING, logger="visrep"):
            _drain(data)
        assert "yielded 19" in caplog.text and "of 200 samples" in caplog.text


def test_a_garbage_tar_is_a_clear_error(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 20)
    with pytest.raises(ValueError, match="not a readable tar file"):
        count_samples([str(tmp_path / "junk.tar")])


def test_a_killed_shard_build_leaves_no_partial_shard(tmp_path, monkeypatch):
    def pairs(*args, **kwargs):
        for i in range(7):
            yield f"k{i}", Image.new("RGB", (8, 8)), "a caption"
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(caption_shards, "fmnist_pairs", pairs)
    with pytest.raises(KeyboardInterrupt):
        caption_shards.build_captions(tmp_path, ("fmnist",), shard_size=5)
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["fmnist-000000.tar"]  # complete
    assert not (tmp_path / "sizes.json").exists()
    with pytest.raises(ValueError, match="shard-size"):
        caption_shards.build_captions(tmp_path / "x", ("fmnist",), shard_size=0)


def test_pair_tables_in_any_column_order_and_with_bad_rows(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(0))
    (tmp_path / "rev.csv").write_text("caption,image_path\na red square,a.png\n")
    assert read_pair_table(tmp_path / "rev.csv") == [("a.png", "a red square")]
    lines = ['{"image_path": "a.png", "caption": "fine"}', "[1, 2]", '"text"',
             '{"image_path": "a.png", "caption": 7}']  # fmt: skip
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    table = TablePairs(str(tmp_path / "p.jsonl"), DataConfig(img_size=8, channels=3))
    assert len(table) == 1 and table.n_empty == 3  # skipped and counted, no traceback
    (tmp_path / "bad.jsonl").write_text('{"image_path": "a.png"\n')
    with pytest.raises(ValueError, match="bad.jsonl:1 is not a JSON line"):
        read_pair_table(tmp_path / "bad.jsonl")


def test_a_half_written_last_log_line_is_dropped(tmp_path):
    rows = [json.dumps({"step": s, "train/loss": 1.0}) for s in (20, 40)]
    (tmp_path / "log.jsonl").write_text("\n".join(rows) + '\n{"step": 60, "train/lo')
    assert [r["step"] for r in read_log(tmp_path)] == [20, 40]
    (tmp_path / "log.jsonl").write_text('{"step": 1\n' + rows[0] + "\n")
    with pytest.raises(ValueError, match="log.jsonl:1"):
        read_log(tmp_path)


@pytest.mark.parametrize("keep, fails", [(0.9, False), (0.3, True)])
def test_retrieval_pairs_from_a_truncated_shard_are_counted_or_refused(tmp_path, caplog, keep,
                                                                        fails):  # fmt: skip
    """The retrieval reader checks its pass with the training reader's `check_complete`."""
    from visrep.evals.retrieval import load_pairs

    root = _shards(tmp_path / "shards", n=100, per=50)
    _truncate(root / "pairs-0001.tar", keep)
    if fails:
        with pytest.raises(ValueError, match="yielded .* of 100 samples.*more than 10%"):
            load_pairs(str(root), channels=3, img_size=8)
        return
    with caplog.at_level(logging.WARNING, logger="visrep"):
        ds = load_pairs(str(root), channels=3, img_size=8)
    assert 0 < ds.lost <= 10 and len(ds.images) + ds.skipped + ds.lost == 100
    assert f"{ds.lost} lost to a truncated or damaged shard" in caplog.text
    assert "retrieval goes on without them" in caplog.text


def test_retrieval_pair_tables_with_rows_that_are_not_pairs(tmp_path):
    from visrep.evals.retrieval import load_pairs

    (tmp_path / "a.png").write_bytes(_png(0))
    lines = ['{"image_path": "a.png", "caption": ["one", "two"]}', "[1, 2]", '"text"',
             '{"image_path": "a.png", "caption": 7}', '{"image_path": 3, "caption": "x"}']  # fmt: skip
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_pairs(str(tmp_path / "p.jsonl"), channels=3, img_size=8)
    assert ds.captions == ["one", "two"] and ds.skipped == 1  # the ("", "") group of bad rows
