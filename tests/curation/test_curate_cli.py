"""`visrep curate build-metadata | match | balance` end to end on a tiny pool."""

import json
import random

import numpy as np
from conftest import visrep

WORDS = ["cat", "dog", "new", "york", "red", "car", "a", "sky", "U.S.", "Cat", "zebra"]


def test_curate_end_to_end(tmp_path):
    rng = random.Random(0)
    pool = tmp_path / "pool"
    pool.mkdir()
    for s in range(3):
        with open(pool / f"s{s}.jsonl", "w") as f:
            for i in range(400):
                text = " ".join(rng.choices(WORDS, k=rng.randint(2, 9))) + "."
                f.write(json.dumps({"caption": text, "uid": f"{s}-{i}"}) + "\n")
            f.write("{broken\n")
    (tmp_path / "ngrams.txt").write_text("new york\nred car\nU.S.\n,\nzebra\n")
    meta = tmp_path / "meta.json"
    proc = visrep(
        "curate", "build-metadata", "--no-wordnet", "--list", str(tmp_path / "ngrams.txt"),
        "--out", str(meta),
    )  # fmt: skip
    entries = json.loads(meta.read_text())
    assert "new york" in entries and "," not in entries and "0" in entries
    assert "wrote 104 entries" in proc.stdout

    out = tmp_path / "matched"
    args = ["curate", "match", str(pool), "--metadata", str(meta), "--out", str(out)]
    args += ["--text-field", "caption", "--key-field", "uid", "--workers", "2"]
    proc = visrep(*args)
    summary = json.loads((out / "match_summary.json").read_text())
    assert summary["texts"] == 1200 and summary["malformed_records_skipped"] == 3
    counts = np.load(out / "entry_counts.npy")
    assert counts.dtype == np.uint64 and counts[entries.index("U.S.")] == 0
    assert counts[entries.index("new york")] > 0
    assert 'shards_matched_this_run": 0' in visrep(*args).stdout  # resume: nothing to redo

    t = 40
    runs = []
    for name, seed in (("b1", 3), ("b2", 3), ("b3", 4)):
        visrep("curate", "balance", str(out), "--t", str(t), "--seed", str(seed), "--out",
               str(tmp_path / name), "--no-progress")  # fmt: skip
        runs.append((tmp_path / name / "subset.tsv").read_text())
    assert runs[0] == runs[1] != runs[2]  # seeded and reproducible
    lines = runs[0].splitlines()
    assert lines[0] == "shard\trow\tkey" and len(lines) > 10
    assert all(line.split("\t")[2].count("-") == 1 for line in lines[1:])  # uid keys
    b1 = tmp_path / "b1"
    report = json.loads((b1 / "report.json").read_text())
    assert report["texts_kept"] == len(lines) - 1 and report["t"] == t
    assert report["head_entries"] > 0 and report["tail_entries_fully_kept"]
    assert report["top_entries"][0]["entry"] in entries
    assert (b1 / "distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    after = np.load(b1 / "counts_after.npy")
    assert np.all(after <= counts) and after.sum() < counts.sum()
    assert "head (count > t)" in (b1 / "report.md").read_text()


def test_curate_errors_are_clear(tmp_path):
    proc = visrep("curate", "match", str(tmp_path), "--metadata", str(tmp_path / "m.json"),
                  "--out", str(tmp_path / "o"), check=False)  # fmt: skip
    assert proc.returncode == 2 and "build-metadata" in proc.stderr
    proc = visrep("curate", "balance", str(tmp_path), "--out", str(tmp_path / "b"), check=False)
    assert proc.returncode == 2 and "no finished match output" in proc.stderr
    proc = visrep("curate", "balance", str(tmp_path), "--out", "x", "--tt", "3", check=False)
    assert proc.returncode == 2 and "--tt" in proc.stderr
