"""`visrep curate match`: match a caption pool shard by shard, then reduce the counts.

Map (sub-string matching, MetaCLIP paper Sec. 3): `map_shard` reads one shard as a stream,
matches every caption and writes the shard's `ShardMatches` file atomically; it returns a
small `ShardSummary` (sizes and sparse entry counts). Reduce (entry counts): `reduce_counts`
sums the summaries into the global uint64 counts. Locally the map runs in a process pool on
every core; the same `map_shard` runs unchanged on a distributed engine (docs/curation.md).

Resume: a shard whose output file exists is done and is never redone; a killed shard
leaves at most a stray temporary file, removed on the next run, and is redone.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from array import array
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from visrep.curation.captions import TOO_LONG, CaptionFields, read_captions, shard_format
from visrep.curation.counts import reduce_counts, shard_counts
from visrep.curation.match import MATCHERS
from visrep.curation.metadata import load_metadata
from visrep.curation.shard_matches import ShardMatches
from visrep.io import atomic_write, atomic_write_text

SHARDS_DIR = "shards"
MANIFEST = "manifest.json"
COUNTS = "entry_counts.npy"
SUMMARY = "match_summary.json"


@dataclass
class ShardSummary:
    """What the map step returns for one shard (small: safe to gather on one node)."""

    shard: str
    output: str
    n_texts: int = 0
    n_malformed: int = 0
    n_matched: int = 0
    seconds: float = 0.0
    count_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    count_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    error: str | None = None
    n_too_long: int = 0  # records skipped for a key or caption over its bound


def find_shards(inputs: Sequence[str | Path]) -> list[Path]:
    """Shard files named directly or found (recursively) under folders, sorted."""
    shards: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_dir():
            shards |= {p for p in item.rglob("*") if p.is_file() and shard_format(p)}
        elif item.is_file():
            if shard_format(item) is None:
                raise ValueError(f"{item}: not a caption shard (.jsonl[.gz], .csv, .parquet, .tar)")
            shards.add(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    if not shards:
        raise ValueError(f"no caption shards (.jsonl[.gz], .csv, .parquet, .tar) under {inputs}")
    return sorted(p.resolve() for p in shards)


def shard_outputs(shards: Sequence[Path], out_dir: str | Path) -> list[Path]:
    """The output file of each shard: `out_dir/shards/<path below the common folder>.npz`."""
    root = Path(os.path.commonpath([s.parent for s in shards]))
    names = [str(s.relative_to(root)).replace(os.sep, "__") + ".npz" for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("two shards map to the same output name; rename one of them")
    return [Path(out_dir) / SHARDS_DIR / n for n in names]


def match_shard(shard: Path, matcher: Any, fields: CaptionFields) -> ShardMatches:
    """Match every caption of one shard (streamed); malformed records and records over a
    field bound (`CaptionFields.max_key_chars`, `max_text_chars`) are skipped and counted.

    Memory: the shard's ids in compact arrays (4 bytes per match) and its keys.
    """
    rows, lengths, flat, keys, malformed, too_long = array("q"), array("q"), array("I"), [], 0, 0
    for row, key, text in read_captions(shard, fields):
        if text is TOO_LONG:
            too_long += 1
            continue
        if text is None:
            malformed += 1
            continue
        ids = matcher.match(text)
        rows.append(row)
        keys.append(key)
        lengths.append(len(ids))
        flat.extend(ids)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(lengths, dtype=np.int64), out=offsets[1:])
    return ShardMatches(
        source=str(shard),
        rows=np.frombuffer(rows, dtype=np.int64).copy(),
        keys=keys,
        offsets=offsets,
        entry_ids=np.frombuffer(flat, dtype=np.uint32).copy(),
        n_malformed=malformed,
        n_too_long=too_long,
    )


def summarize(
    shard: str | Path, output: str | Path, m: ShardMatches, n_entries: int
) -> ShardSummary:
    """Sizes and sparse entry counts (`counts`) of one matched shard."""
    ids, values = shard_counts(m.entry_ids, n_entries)
    s = ShardSummary(str(shard), str(output), len(m), m.n_malformed, m.n_matched, 0.0, ids, values)
    s.n_too_long = m.n_too_long
    return s


def load_summary(shard: str | Path, output: str | Path, n_entries: int) -> ShardSummary:
    """The summary of a shard already matched (its output file exists); an unreadable
    output is reported as a failed shard, not raised."""
    try:
        return summarize(shard, output, ShardMatches.load(output), n_entries)
    except (OSError, ValueError, KeyError) as err:
        msg = f"unreadable output {output} ({type(err).__name__}: {err}); delete it to redo"
        return ShardSummary(str(shard), str(output), error=msg)


def map_shard(
    shard: str | Path, output: str | Path, matcher: Any, fields: CaptionFields
) -> ShardSummary:
    """The map step: match one shard into `output` (atomic); skip it if `output` exists.

    Args:
        shard: caption shard file.
        output: where its `ShardMatches` go.
        matcher: an `AhoCorasickMatcher` or `NaiveMatcher` (has `match` and `n_entries`).
        fields: where captions and keys are in the records.

    Errors in the shard (unreadable file, missing column) are returned in
    `ShardSummary.error` instead of raised, so one bad shard never stops the others.
    """
    start = time.perf_counter()
    try:
        if Path(output).exists():
            m = ShardMatches.load(output)
        else:
            m = match_shard(Path(shard), matcher, fields)
            m.save(output)
        s = summarize(shard, output, m, matcher.n_entries)
    except (OSError, ValueError, ImportError) as err:
        return ShardSummary(str(shard), str(output), error=f"{type(err).__name__}: {err}")
    s.seconds = time.perf_counter() - start
    return s


_MATCHERS_BY_METADATA: dict[tuple[str, str], Any] = {}


def map_shard_from_metadata(
    shard: str | Path,
    output: str | Path,
    metadata: str | Path,
    fields: CaptionFields | None = None,
    matcher: str = "ahocorasick",
) -> ShardSummary:
    """`map_shard` for a distributed engine: takes only paths (cheap to ship to a task).

    The matcher is built once per worker process and metadata file, then reused by every
    shard that process maps. See docs/curation.md.
    """
    key = (str(Path(metadata).resolve()), matcher)
    if key not in _MATCHERS_BY_METADATA:
        _MATCHERS_BY_METADATA[key] = MATCHERS[matcher](load_metadata(metadata))
    return map_shard(shard, output, _MATCHERS_BY_METADATA[key], fields or CaptionFields())


_WORKER_MATCHER: Any = None


def _init_worker(entries: list[str], kind: str) -> None:
    global _WORKER_MATCHER
    if _WORKER_MATCHER is None:  # inherited from the parent under fork
        _WORKER_MATCHER = MATCHERS[kind](entries)


def _map_in_worker(shard: str, output: str, fields: CaptionFields) -> ShardSummary:
    return map_shard(shard, output, _WORKER_MATCHER, fields)


def metadata_digest(entries: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def _prepare_out_dir(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Check that a resumed output folder was made with the same metadata and fields,
    write the manifest, and remove temporary files left by a killed run."""
    path = out_dir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("metadata_sha256", "fields"):
            if old.get(key) != manifest[key]:
                raise ValueError(
                    f"{out_dir} holds matches made with other {key.split('_')[0]} "
                    f"({old.get(key)} != {manifest[key]}): use a new --out folder"
                )
    (out_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    for stray in (out_dir / SHARDS_DIR).glob(".*.tmp"):
        stray.unlink()
    for stale in (out_dir / SUMMARY, out_dir / COUNTS):  # rewritten when this run completes
        stale.unlink(missing_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


def match_pool(
    inputs: Sequence[str | Path],
    metadata: str | Path,
    out_dir: str | Path,
    fields: CaptionFields | None = None,
    workers: int | None = None,
    matcher: str = "ahocorasick",
    progress: bool = True,
) -> dict[str, Any]:
    """Match every shard of a caption pool (map), then sum the entry counts (reduce).

    Args:
        inputs: shard files and/or folders searched recursively.
        metadata: metadata file (`visrep curate build-metadata`).
        out_dir: receives `shards/*.npz`, `entry_counts.npy`, `match_summary.json`.
        fields: where captions and keys are in the records (default: "text", row number).
        workers: processes (default: every core); 1 runs in this process.
        matcher: "ahocorasick" or "naive" (same output, naive is for checking only).
        progress: show a progress bar over shards.

    Returns:
        The summary written to `match_summary.json`. Counts are written only when every
        shard succeeded; failed shards are listed and are retried by a re-run.
    """
    fields = fields or CaptionFields()
    entries = load_metadata(metadata)
    shards = find_shards(inputs)
    out_dir = Path(out_dir)
    outputs = shard_outputs(shards, out_dir)
    manifest = {
        "metadata": str(Path(metadata).resolve()),
        "metadata_sha256": metadata_digest(entries),
        "n_entries": len(entries),
        "fields": asdict(fields),
    }
    _prepare_out_dir(out_dir, manifest)
    pending = [(s, o) for s, o in zip(shards, outputs) if not o.exists()]
    start = time.perf_counter()
    new = _run_map(pending, entries, fields, workers or os.cpu_count() or 1, matcher, progress)
    # reduce over the current shard list only (stale outputs of other inputs are ignored)
    done = {s.shard: s for s in new}
    summaries = [
        done.get(str(s)) or load_summary(s, o, len(entries)) for s, o in zip(shards, outputs)
    ]
    return _reduce(out_dir, summaries, len(entries), len(pending), time.perf_counter() - start)


def _run_map(
    pending: list[tuple[Path, Path]],
    entries: list[str],
    fields: CaptionFields,
    workers: int,
    kind: str,
    progress: bool,
) -> list[ShardSummary]:
    global _WORKER_MATCHER
    if not pending:
        return []
    bar = tqdm(total=len(pending), unit="shard", disable=not progress, desc="curate match")
    results: list[ShardSummary] = []

    def record(s: ShardSummary) -> None:
        results.append(s)
        bar.update()
        texts = sum(r.n_texts for r in results)
        bar.set_postfix(
            captions=texts, per_s=f"{texts / max(bar.format_dict['elapsed'], 1e-9):.0f}"
        )
        if s.error:
            bar.write(f"shard failed: {s.shard}: {s.error}")

    workers = min(workers, len(pending))
    _WORKER_MATCHER = MATCHERS[kind](entries)  # built once; forked workers share it
    try:
        if workers == 1:
            for s, o in pending:
                record(map_shard(s, o, _WORKER_MATCHER, fields))
            return results
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(entries, kind)
        ) as pool:
            futures = [pool.submit(_map_in_worker, str(s), str(o), fields) for s, o in pending]
            try:
                for fut in as_completed(futures):
                    record(fut.result())
            except BrokenProcessPool:
                raise OSError(  # the machine's fault, not the code's: one line, not a traceback
                    "a matching worker died (out of memory?); finished shards are kept: "
                    "re-run the same command to resume"
                ) from None
            except BaseException:  # Ctrl-C: running shards finish or die, both atomically
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return results
    finally:
        bar.close()
        _WORKER_MATCHER = None


def _reduce(
    out_dir: Path, summaries: list[ShardSummary], n_entries: int, n_new: int, seconds: float
) -> dict[str, Any]:
    failed = [s for s in summaries if s.error]
    ok = [s for s in summaries if not s.error]
    summary: dict[str, Any] = {
        "shards": len(summaries),
        "shards_matched_this_run": n_new - len(failed),
        "shards_failed": [{"shard": s.shard, "error": s.error} for s in failed],
        "texts": sum(s.n_texts for s in ok),
        "texts_matched": sum(s.n_matched for s in ok),
        "malformed_records_skipped": sum(s.n_malformed for s in ok),
        "too_long_records_skipped": sum(s.n_too_long for s in ok),
        "seconds": round(seconds, 2),
        "outputs": [{"shard": s.shard, "output": s.output, "texts": s.n_texts} for s in ok],
    }
    if failed:
        summary["complete"] = False
        return summary
    counts = reduce_counts(((s.count_ids, s.count_values) for s in ok), n_entries)
    atomic_write(out_dir / COUNTS, lambda tmp: save_npy(tmp, counts))
    summary["complete"] = True
    summary["entries_matched"] = int(np.count_nonzero(counts))
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy"
        np.save(f, array)


def load_match_output(match_dir: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    """The summary and global counts of a finished `curate match` folder."""
    match_dir = Path(match_dir)
    if not (match_dir / SUMMARY).is_file() or not (match_dir / COUNTS).is_file():
        raise FileNotFoundError(
            f"{match_dir} holds no finished match output ({SUMMARY}, {COUNTS}): "
            "run (or re-run, to resume) `visrep curate match` first"
        )
    summary = json.loads((match_dir / SUMMARY).read_text())
    return summary, np.load(match_dir / COUNTS)
