"""Caption readers, the shard-parallel map -> reduce, failures and resume."""

import csv
import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from visrep.curation.captions import CaptionFields, read_captions
from visrep.curation.counts import count_entries
from visrep.curation.match import match_texts
from visrep.curation.metadata import save_metadata
from visrep.curation.pipeline import SHARDS_DIR, load_match_output, match_pool
from visrep.curation.shard_matches import ShardMatches

REPO = Path(__file__).resolve().parents[2]
WORDS = ["cat", "dog", "new", "york", "red", "car", "a", "the", "U.S.", "Cat", "sky", "blue"]
ENTRIES = ["cat", "dog", "new york", "york", "red car", "blue", "sky", "U.S.", "Cat", "zebra"]


def _captions(rng: random.Random, n: int) -> list[str]:
    return [
        " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + rng.choice(["", ".", "!"])
        for _ in range(n)
    ]


def _write_jsonl(path: Path, texts: list[str], junk: bool = False) -> None:
    with open(path, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"text": t, "id": f"j{i}"}) + "\n")
            if junk and i == 1:
                f.write("{not json\n\n[1, 2]\n" + json.dumps({"text": 3}) + "\n")


def _write_tar(path: Path, texts: list[str]) -> None:
    with tarfile.open(path, "w") as tf:
        for i, t in enumerate(texts):
            for ext, data in (("jpg", b"\xff\xd8 not an image"), ("txt", t.encode())):
                info = tarfile.TarInfo(f"sub/{i:05d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def _write_csv(path: Path, texts: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "text"])
        w.writerows([[f"c{i}", t] for i, t in enumerate(texts)])


def test_jsonl_reader_skips_and_counts_malformed_lines(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", ["x", "y", "z"], junk=True)
    recs = list(read_captions(tmp_path / "a.jsonl", CaptionFields(key_field="id")))
    good = [(row, key, t) for row, key, t in recs if t is not None]
    assert good == [(0, "j0", "x"), (1, "j1", "y"), (6, "j2", "z")]  # row = line number
    assert sum(t is None for _, _, t in recs) == 3  # bad JSON, a list, a non-string text
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"caption": "hello"}) + "\n")
    assert list(read_captions(tmp_path / "b.jsonl.gz", CaptionFields("caption"))) == [
        (0, "0", "hello")
    ]


def test_tar_and_csv_readers(tmp_path):
    _write_tar(tmp_path / "w.tar", ["first caption", "second"])
    assert list(read_captions(tmp_path / "w.tar")) == [
        (0, "sub/00000", "first caption"),
        (1, "sub/00001", "second"),
    ]
    _write_csv(tmp_path / "c.csv", ["a, with comma", 'quoted "x"'])
    recs = list(read_captions(tmp_path / "c.csv", CaptionFields(key_field="uid")))
    assert recs == [(0, "c0", "a, with comma"), (1, "c1", 'quoted "x"')]
    with pytest.raises(ValueError, match="no column 'caption'"):
        list(read_captions(tmp_path / "c.csv", CaptionFields("caption")))


def test_parquet_reader(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet shards need pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["p0", None, "p2"], "k": [5, 6, 7]}), tmp_path / "p.parquet")
    recs = list(read_captions(tmp_path / "p.parquet", CaptionFields(key_field="k")))
    assert recs == [(0, "5", "p0"), (1, "6", None), (2, "7", "p2")]


def _pool(tmp_path: Path, n_shards: int = 4, per_shard: int = 300) -> tuple[Path, list[str]]:
    rng = random.Random(0)
    pool = tmp_path / "pool"
    (pool / "more").mkdir(parents=True)
    texts: list[str] = []
    writers = [_write_jsonl, _write_tar, _write_csv]
    suffixes = [".jsonl", ".tar", ".csv"]
    for s in range(n_shards):
        shard_texts = _captions(rng, per_shard)
        k = s % 3
        folder = pool / "more" if s % 2 else pool
        writers[k](folder / f"shard{s:02d}{suffixes[k]}", shard_texts)
        texts += shard_texts
    save_metadata(ENTRIES, tmp_path / "meta.json")
    return pool, texts


def _outputs(out: Path) -> dict[str, ShardMatches]:
    return {p.name: ShardMatches.load(p) for p in sorted((out / SHARDS_DIR).glob("*.npz"))}


def test_match_pool_equals_direct_matching_on_one_and_two_workers(tmp_path):
    pool, texts = _pool(tmp_path, n_shards=5)
    s1 = match_pool([pool], tmp_path / "meta.json", tmp_path / "o1", workers=1, progress=False)
    s2 = match_pool([pool], tmp_path / "meta.json", tmp_path / "o2", workers=2, progress=False)
    assert s1["complete"] and s2["complete"] and s1["texts"] == len(texts) == 1500
    _, counts = load_match_output(tmp_path / "o1")
    assert counts.dtype == np.uint64
    expected = count_entries(match_texts(texts, ENTRIES), len(ENTRIES))
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(load_match_output(tmp_path / "o2")[1], expected)
    assert counts[ENTRIES.index("U.S.")] == 0 and counts[ENTRIES.index("cat")] > 0
    o1, o2 = _outputs(tmp_path / "o1"), _outputs(tmp_path / "o2")
    assert list(o1) == list(o2) and len(o1) == 5
    assert "more__shard01.tar.npz" in o1  # names keep the sub-folder: no collisions
    for name, m in o1.items():
        assert m.match_lists() == o2[name].match_lists()
        assert np.array_equal(m.keys, o2[name].keys)


def test_resume_skips_finished_shards_and_removes_stray_temp_files(tmp_path):
    pool, _ = _pool(tmp_path, n_shards=4)
    out = tmp_path / "out"
    match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    reference = {k: v.match_lists() for k, v in _outputs(out).items()}
    counts = load_match_output(out)[1]
    files = sorted((out / SHARDS_DIR).glob("*.npz"))
    # simulate a run killed after two shards: two outputs gone, one half-written temp file
    for f in files[2:]:
        f.unlink()
    (out / SHARDS_DIR / f".{files[2].name}.abc123.tmp").write_bytes(b"partial")
    kept = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files[:2]}
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    assert summary["complete"] and summary["shards_matched_this_run"] == 2
    assert not list((out / SHARDS_DIR).glob(".*.tmp"))
    for f in files[:2]:  # finished shards were not redone
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == kept[f.name]
    assert {k: v.match_lists() for k, v in _outputs(out).items()} == reference
    np.testing.assert_array_equal(load_match_output(out)[1], counts)
    again = match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    assert again["shards_matched_this_run"] == 0


def test_resume_after_killing_a_real_run(tmp_path):
    """SIGKILL `visrep curate match` once a shard is done, re-run: finished shards are kept
    as they are, the rest is matched, and the result equals an uninterrupted run."""
    rng = random.Random(1)
    pool = tmp_path / "pool"
    pool.mkdir()
    for s in range(8):
        _write_jsonl(pool / f"s{s}.jsonl", _captions(rng, 15_000))
    save_metadata(ENTRIES, tmp_path / "meta.json")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "visrep.cli", "curate", "match", str(pool), "--metadata"]
    cmd += [str(tmp_path / "meta.json"), "--out", str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list((out / SHARDS_DIR).glob("*.npz")) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
    proc.wait()
    done = {
        f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in (out / SHARDS_DIR).glob("*.npz")
    }
    assert 1 <= len(done) <= 8
    assert not (out / "entry_counts.npy").exists() or len(done) == 8
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    assert summary["complete"] and summary["shards_matched_this_run"] == 8 - len(done)
    for f in (out / SHARDS_DIR).glob("*.npz"):
        if f.name in done:
            assert (f.stat().st_ino, f.stat().st_mtime_ns) == done[f.name]
    fresh = match_pool([pool], tmp_path / "meta.json", tmp_path / "fresh", progress=False)
    assert fresh["texts"] == summary["texts"] == 8 * 15_000
    np.testing.assert_array_equal(
        load_match_output(out)[1], load_match_output(tmp_path / "fresh")[1]
    )


def test_a_bad_shard_fails_alone_and_is_retried(tmp_path):
    pool, _ = _pool(tmp_path, n_shards=3)
    bad = pool / "bad.csv"
    bad.write_text("uid,caption\n1,a cat\n")  # no "text" column
    out = tmp_path / "out"
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    assert not summary["complete"]
    assert [f["shard"] for f in summary["shards_failed"]] == [str(bad.resolve())]
    assert "no column 'text'" in summary["shards_failed"][0]["error"]
    assert len(_outputs(out)) == 3 and not (out / "entry_counts.npy").exists()
    with pytest.raises(FileNotFoundError, match="no finished match output"):
        load_match_output(out)
    bad.write_text("uid,text\n1,a cat\n")
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=2, progress=False)
    assert summary["complete"] and summary["shards_matched_this_run"] == 1


def test_resume_with_other_metadata_or_bad_inputs_is_refused(tmp_path):
    pool, _ = _pool(tmp_path, n_shards=1)
    out = tmp_path / "out"
    match_pool([pool], tmp_path / "meta.json", out, workers=1, progress=False)
    save_metadata(["other"], tmp_path / "other.json")
    with pytest.raises(ValueError, match="other metadata"):
        match_pool([pool], tmp_path / "other.json", out, workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        match_pool([tmp_path / "nope"], tmp_path / "meta.json", out, progress=False)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a caption shard"):
        match_pool([tmp_path / "x.txt"], tmp_path / "meta.json", out, progress=False)


def test_empty_or_all_malformed_shards_and_a_corrupt_output(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "empty.jsonl").write_text("")
    (pool / "junk.jsonl").write_text("{oops\n[]\n")
    _write_jsonl(pool / "ok.jsonl", ["a cat", "the U.S. dog"])
    save_metadata(ENTRIES, tmp_path / "meta.json")
    out = tmp_path / "out"
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=1, progress=False)
    assert summary["complete"] and summary["texts"] == 2
    assert summary["malformed_records_skipped"] == 2
    assert len(ShardMatches.load(out / SHARDS_DIR / "empty.jsonl.npz")) == 0
    (out / SHARDS_DIR / "ok.jsonl.npz").write_bytes(b"not a zip")  # damaged by hand
    summary = match_pool([pool], tmp_path / "meta.json", out, workers=1, progress=False)
    assert not summary["complete"] and "delete it to redo" in summary["shards_failed"][0]["error"]


def test_a_huge_key_or_caption_is_skipped_and_counted_and_the_output_stays_small(tmp_path):
    """One 100,000-character key once made every key of its shard that wide (200 MB)."""
    pool = tmp_path / "pool"
    pool.mkdir()
    with open(pool / "a.jsonl", "w") as f:
        for i in range(500):
            key = "k" * 100_000 if i == 3 else f"id{i}"
            text = "a cat " * 20_000 if i == 7 else "a cat"  # 120,000 characters
            f.write(json.dumps({"text": text, "id": key}) + "\n")
    with tarfile.open(pool / "b.tar", "w") as tf:  # a huge caption member is never read
        for name, size in (("x.txt", 5), ("y.txt", 300_000)):
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(b"a cat" + b" " * (size - 5)))
    save_metadata(ENTRIES, tmp_path / "meta.json")
    out = tmp_path / "out"
    fields = CaptionFields(key_field="id")
    summary = match_pool([pool], tmp_path / "meta.json", out, fields, workers=1, progress=False)
    assert summary["complete"] and summary["texts"] == 498 + 1
    assert summary["too_long_records_skipped"] == 3 and summary["malformed_records_skipped"] == 0
    assert sum(p.stat().st_size for p in out.rglob("*")) < 100_000
    m = ShardMatches.load(out / SHARDS_DIR / "a.jsonl.npz")
    assert m.n_too_long == 2 and list(m.keys[:4]) == ["id0", "id1", "id2", "id4"]
    with pytest.raises(ValueError, match="--max-key-chars"):
        CaptionFields(max_key_chars=0)
    # the command line: the bound is an option, the count is in the printed summary
    proc = subprocess.run(
        [sys.executable, "-m", "visrep.cli", "curate", "match", str(pool / "a.jsonl"),
         "--metadata", str(tmp_path / "meta.json"), "--out", str(tmp_path / "cli"),
         "--key-field", "id", "--max-key-chars", "100000", "--no-progress", "--workers", "1"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert '"too_long_records_skipped": 1' in proc.stdout  # the key fits under 100,000
