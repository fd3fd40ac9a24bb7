"""MetaCLIP balancing, the "t = 20k" rule (MetaCLIP paper Sec. 3 and Algorithm 1;
facebookresearch/MetaCLIP `metaclip/balancing.py`).

Each entry gets p[e] = t / max(count[e], t): 1 for tail entries, t / count for head
entries. A text with matched entries E is kept iff at least one independent
Bernoulli(p[e]) trial over e in E succeeds, so P(keep) = 1 - prod_{e in E} (1 - p[e]);
a text without matched entries is never kept. As in the reference numpy implementation
(`balance_sampling.py`), one U[0, 1) draw is made per (text, entry) row, in row order.

Reproducible: each shard draws from `np.random.default_rng([seed, hash(shard name)])`,
so the subset depends only on the seed and the data, not on the order in which shards
are processed (or on which machine).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from visrep.curation.pipeline import load_match_output, save_npy
from visrep.curation.shard_matches import ShardMatches
from visrep.io import atomic_write

DEFAULT_T = 20_000  # MetaCLIP-400M from the ~1.6B-pair pool (configs/metaclip_data.py)


def entry_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """p[e] = t / max(count[e], t) (float64) for every entry."""
    if t <= 0:
        raise ValueError(f"t must be positive, got {t}")
    return t / np.maximum(np.asarray(counts, dtype=np.float64), float(t))


def keep_probability(m: ShardMatches, p: np.ndarray) -> np.ndarray:
    """P(keep) = 1 - prod_{e in E} (1 - p[e]) per text (0 for a text with no match)."""
    with np.errstate(divide="ignore"):  # p = 1 gives log(0) = -inf, i.e. P(keep) = 1
        log_miss = np.log1p(-p[m.entry_ids])
    total = np.bincount(m.text_index(), weights=log_miss, minlength=len(m))
    return -np.expm1(total)


def shard_rng(seed: int, shard: str) -> np.random.Generator:
    """The random stream of one shard: a function of the seed and the shard's name only."""
    digest = int.from_bytes(hashlib.sha256(shard.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def sample_keep(m: ShardMatches, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """bool [n]: which texts of the shard are kept (one Bernoulli draw per matched entry)."""
    success = rng.random(len(m.entry_ids)) < p[m.entry_ids]  # [nnz]
    keep = np.zeros(len(m), dtype=bool)
    keep[m.text_index()[success]] = True
    return keep


def balance_shard(
    m: ShardMatches, p: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balance one shard.

    Returns:
        keep: bool [n] kept texts; after: uint64 [n_entries] kept texts per entry;
        expected: float64 [n_entries] sum of P(keep) over each entry's texts.
    """
    keep = sample_keep(m, p, rng)
    text = m.text_index()  # [nnz]
    after = np.bincount(m.entry_ids[keep[text]], minlength=len(p)).astype(np.uint64)
    expected = np.bincount(m.entry_ids, weights=keep_probability(m, p)[text], minlength=len(p))
    return keep, after, expected


def balance_pool(
    match_dir: str | Path,
    out_dir: str | Path,
    t: float = DEFAULT_T,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Balance a finished `curate match` output; write the subset and the report.

    Writes `subset.tsv` (shard, row, key of every kept text), `counts_after.npy` (uint64
    per-entry counts over kept texts), and via `report.write_report` `report.json`,
    `report.md` and `distribution.png`.

    Returns:
        The report dictionary.
    """
    from visrep.curation.report import balance_report, write_report

    summary, counts = load_match_output(match_dir)
    p = entry_probabilities(counts, t)
    after = np.zeros_like(counts)
    expected = np.zeros(len(counts), dtype=np.float64)
    n_kept = 0
    out_dir = Path(out_dir)

    def write_subset(tmp: Path) -> None:
        nonlocal after, expected, n_kept
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("shard\trow\tkey\n")
            for item in tqdm(summary["outputs"], unit="shard", disable=not progress):
                m = ShardMatches.load(item["output"])
                rng = shard_rng(seed, Path(item["output"]).name)
                keep, shard_after, shard_expected = balance_shard(m, p, rng)
                after += shard_after
                expected += shard_expected
                kept = np.flatnonzero(keep)
                n_kept += len(kept)
                f.writelines(f"{m.source}\t{m.rows[i]}\t{_tsv(m.keys[i])}\n" for i in kept)

    atomic_write(out_dir / "subset.tsv", write_subset)
    atomic_write(out_dir / "counts_after.npy", lambda tmp: save_npy(tmp, after))
    report = balance_report(counts, after, expected, t=t, seed=seed, summary=summary)
    report["texts_kept"] = n_kept
    report["subset"] = str(out_dir / "subset.tsv")
    write_report(report, counts, after, t, out_dir, match_dir)
    return report


def _tsv(value: str) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")
