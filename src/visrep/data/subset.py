"""Train on a curated subset of a caption pool: `data.subset=PATH` (a `subset.tsv` written by
`visrep curate balance`, or the balance output folder that holds one).

`subset.tsv` lists `shard, row, key` of every kept caption (docs/curation.md §4): `shard` is
the pool file `curate match` read (an absolute path), `row` the record's place in it as the
curation readers count (`visrep.curation.captions`: a JSONL line number, blank lines
included; a CSV data row; in a tar the n-th `.txt` member) and `key` the sample id (a tar's
sample key, a `--key-field` value, or the row number).

The image-text sources of `visrep.data.pairs` keep only the listed records:

- **WebDataset shards**: the samples whose (shard, key) is listed; shards without one are not
  read. Sampling is the pool's (seeded shard order and shuffle buffer, rank r takes every
  W-th kept sample), so exact resume and multi-process training are unchanged.
- **CSV / JSONL**: the listed rows, read through the same step sampler as the whole file.

The subset is checked against the pool before training: a shard it names that is not in the
pool, a row or key the pool does not hold, or a row that holds another key (the pool was
rebuilt or reordered after curation) is an error naming the subset file, the record and what
to do. Shards are matched by absolute path, else by file name (a pool that was moved).
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SUBSET_FILE = "subset.tsv"
HEADER = ["shard", "row", "key"]
FIX = ("curate this pool (`visrep curate match POOL ...` then `visrep curate balance`) or set "
       "data.dataset to the pool the subset was curated from")  # fmt: skip


@dataclass(frozen=True)
class Subset:
    """The records of a `subset.tsv`: `rows[shard] = {row: key}`."""

    path: Path
    rows: dict[str, dict[int, str]]

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def error(self, what: str) -> ValueError:
        return ValueError(f"data.subset={self.path}: {what}; {FIX}")


def read_subset(path: str | Path) -> Subset:
    """Parse a `subset.tsv` (or the folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / SUBSET_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"data.subset={path}: no {SUBSET_FILE} there; pass the file `visrep curate balance "
            "--out DIR` wrote (DIR/subset.tsv) or its folder"
        )
    rows: dict[str, dict[int, str]] = defaultdict(dict)
    with open(p, encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != HEADER:
            raise ValueError(f"data.subset={p}: the header is {header}, not {HEADER}: not a "
                             "subset.tsv of `visrep curate balance`")  # fmt: skip
        for n, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[1].isdigit():
                raise ValueError(f"{p}:{n} is not `shard<TAB>row<TAB>key`: {line[:200]!r}")
            rows[parts[0]][int(parts[1])] = parts[2]
    if not rows:
        raise ValueError(f"data.subset={p} lists no caption: balance kept nothing (raise --t)")
    return Subset(p, dict(rows))


def match_shards(subset: Subset, pool: list[str], dataset: str) -> dict[str, dict[int, str]]:
    """The subset's records per pool file (`pool`: the files of `data.dataset`). A subset shard
    matches a pool file with the same absolute path, else the one with the same file name."""
    by_path = {str(Path(s).resolve()): s for s in pool}
    by_name: dict[str, list[str]] = defaultdict(list)
    for s in pool:
        by_name[Path(s).name].append(s)
    out: dict[str, dict[int, str]] = {}
    for shard, rows in subset.rows.items():
        hit = by_path.get(str(Path(shard).resolve()))
        if hit is None and len(by_name.get(Path(shard).name, [])) == 1:
            hit = by_name[Path(shard).name][0]
        if hit is None:
            names = ", ".join(Path(s).name for s in pool[:5]) + (", ..." if len(pool) > 5 else "")
            raise subset.error(f"it lists {len(rows)} captions of {shard}, which is not a file "
                               f"of data.dataset={dataset} ({len(pool)} files: {names})")  # fmt: skip
        out[hit] = rows
    return out


def _tsv(value: str) -> str:
    """A key as `subset.tsv` stores it (`visrep.curation.balance`)."""
    return str(value).replace("\t", " ").replace("\n", " ")


def _mismatch(subset: Subset, shard: str, row: int, want: str, held: str) -> ValueError:
    return subset.error(f"row {row} of {shard} {held}, the subset says key {want!r}: the pool "
                        "was rebuilt, reordered or is another pool since it was curated")  # fmt: skip


def tar_keys(subset: Subset, shard: str, rows: dict[int, str], text_ext: str = "txt") -> set[str]:
    """The sample keys of `shard` (a WebDataset tar) the subset keeps, checked against the tar's
    headers: the n-th `.txt` member (the curation reader's row n) must carry the listed key."""
    want = {row: key for row, key in rows.items()}
    found: dict[int, str] = {}
    try:
        with tarfile.open(shard) as tf:
            row = 0
            for member in tf:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                if ext != text_ext:
                    continue
                if row in want:
                    found[row] = _tsv(f"{folder}/{stem}" if folder else stem)
                row += 1
    except tarfile.TarError as e:
        raise ValueError(f"{shard} is not a readable tar file: {e}") from None
    for row, key in sorted(want.items()):
        got = found.get(row)
        if got != key:
            held = "does not exist" if got is None else f"holds key {got!r}"
            raise _mismatch(subset, shard, row, key, held)
    return set(want.values())


def table_rows(subset: Subset, path: Path, rows: dict[int, str]) -> list[tuple[str, str]]:
    """The listed records of a CSV (with a header) or JSONL pair file as (image_path, caption),
    in file order. Rows are numbered as the curation readers number them; a row's key must be
    its row number or the value of one of its fields."""
    records: dict[int, dict] = {}
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for row, raw in enumerate(f):
                if row in rows and raw.strip():
                    try:
                        obj = json.loads(raw.decode("utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        obj = None
                    records[row] = obj if isinstance(obj, dict) else {}
    else:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row, rec in enumerate(csv.DictReader(f)):
                if row in rows:
                    records[row] = rec
    out = []
    for row, key in sorted(rows.items()):
        rec = records.get(row)
        if rec is None:
            raise _mismatch(subset, str(path), row, key, "does not exist (or is blank)")
        if key != str(row) and key not in {_tsv(v) for v in rec.values() if v is not None}:
            raise _mismatch(subset, str(path), row, key, "has no field of that value")
        image, caption = rec.get("image_path", ""), rec.get("caption", "")
        ok = isinstance(image, str) and isinstance(caption, str)
        out.append((image, caption) if ok else ("", ""))
    return out
