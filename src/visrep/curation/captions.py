"""Streaming caption readers for the shards of a caption pool.

A shard is one file: JSON lines (`.jsonl`, `.jsonl.gz`), CSV with a header (`.csv`),
Parquet (`.parquet`, read in record batches) or a WebDataset tar (`.tar`, the caption of
sample `KEY` is the member `KEY.txt`). Every reader streams: memory stays constant however
large the shard. Each yields `(row, key, text)`; `text` is None for a malformed record
(bad JSON, missing or non-string field, undecodable bytes), which the caller counts and
skips: one bad line never stops a long run.

Fields are bounded: a key longer than `CaptionFields.max_key_chars` or a caption longer than
`max_text_chars` yields `TOO_LONG` instead of its text, and is skipped and counted too. An
unbounded field read from a pool found on the web is how one 100,000-character key became a
200 MB output; a caption is cut at 77 tokens by CLIP's tokenizer anyway (CLIP paper Sec. 2.4).
"""

from __future__ import annotations

import csv
import gzip
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMATS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".csv": "csv", ".parquet": "parquet"}
FORMATS |= {".tar": "tar"}
MAX_KEY_CHARS = 4096  # a sample id (a uid, a URL, a file path) is far shorter
MAX_TEXT_CHARS = 65_536  # ~100 times an alt-text; CLIP reads the first 77 tokens


class _TooLong:
    """The text of a record whose key or caption is over its bound (skipped, counted)."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()
Record = tuple[int, str, "str | None | _TooLong"]


@dataclass(frozen=True)
class CaptionFields:
    """Where the caption and its identifier are in a record.

    Attributes:
        text_field: JSONL key / CSV or Parquet column holding the caption.
        key_field: JSONL key / column holding a sample identifier; None = row number.
        text_ext: extension of the caption member in WebDataset tars ("txt" -> KEY.txt).
        max_key_chars: a record whose key is longer is skipped and counted.
        max_text_chars: a record whose caption is longer is skipped and counted.
    """

    text_field: str = "text"
    key_field: str | None = None
    text_ext: str = "txt"
    max_key_chars: int = MAX_KEY_CHARS
    max_text_chars: int = MAX_TEXT_CHARS

    def __post_init__(self) -> None:
        for name in ("max_key_chars", "max_text_chars"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} (--{name.replace('_', '-')}) must be >= 1, got {getattr(self, name)}"
                )


def shard_format(path: str | Path) -> str | None:
    """The reader for a file name ("jsonl", "csv", "parquet", "tar"), None if unsupported."""
    name = Path(path).name
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def read_captions(path: str | Path, fields: CaptionFields = CaptionFields()) -> Iterator[Record]:
    """Stream `(row, key, text)` from one shard of any supported format; `text` is None for a
    malformed record and `TOO_LONG` for one whose key or caption is over its bound."""
    path = Path(path)
    kind = shard_format(path)
    if kind is None:
        raise ValueError(f"{path}: unsupported shard type; expected one of {sorted(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} does not exist")
    reader = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "tar": _tar}[kind]
    return _bounded(reader(path, fields), fields)


def _bounded(records: Iterator[Record], fields: CaptionFields) -> Iterator[Record]:
    for row, key, text in records:
        long_text = isinstance(text, str) and len(text) > fields.max_text_chars
        if long_text or len(key) > fields.max_key_chars:
            yield row, str(row), TOO_LONG
        else:
            yield row, key, text


def _key(value: object, row: int) -> str:
    return str(row) if value is None else str(value)


def _jsonl(path: Path, fields: CaptionFields) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for row, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                yield row, str(row), None
                continue
            if not isinstance(obj, dict):
                yield row, str(row), None
                continue
            text = obj.get(fields.text_field)
            key = _key(obj.get(fields.key_field) if fields.key_field else None, row)
            yield row, key, text if isinstance(text, str) else None


def _csv(path: Path, fields: CaptionFields) -> Iterator[Record]:
    csv.field_size_limit(1 << 26)
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for name in (fields.text_field, fields.key_field):
            if name is not None and name not in header:
                raise ValueError(f"{path}: no column {name!r} in the CSV header {header}")
        row = 0
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield row, str(row), None
                row += 1
                continue
            text = rec.get(fields.text_field)
            key = _key(rec.get(fields.key_field) if fields.key_field else None, row)
            yield row, key, text if isinstance(text, str) else None
            row += 1


def _parquet(path: Path, fields: CaptionFields) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet shards needs pyarrow: pip install pyarrow") from None
    pf = pq.ParquetFile(path)
    columns = [c for c in (fields.text_field, fields.key_field) if c is not None]
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} in {pf.schema_arrow.names}")
    row = 0
    for batch in pf.iter_batches(batch_size=8192, columns=columns):
        texts = batch.column(fields.text_field).to_pylist()
        keys = batch.column(fields.key_field).to_pylist() if fields.key_field else None
        for i, text in enumerate(texts):
            key = _key(keys[i] if keys is not None else None, row)
            yield row, key, text if isinstance(text, str) else None
            row += 1


def _tar(path: Path, fields: CaptionFields) -> Iterator[Record]:
    row = 0
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")  # WebDataset: key ends at the first dot
                if ext != fields.text_ext:
                    continue
                key = f"{folder}/{stem}" if folder else stem
                if member.size > 4 * fields.max_text_chars:  # UTF-8: at most 4 bytes a char
                    yield row, key, TOO_LONG  # never read into memory
                    row += 1
                    continue
                data = tf.extractfile(member).read()  # type: ignore[union-attr]
                try:
                    yield row, key, data.decode("utf-8")
                except UnicodeDecodeError:
                    yield row, key, None
                row += 1
    except tarfile.TarError as err:
        raise ValueError(f"{path}: not a readable tar shard ({err})") from None
