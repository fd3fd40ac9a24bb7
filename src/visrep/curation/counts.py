"""Entry counts over the caption pool (MetaCLIP paper Sec. 3, "inverted indexing";
MetaCLIP `metaclip/balancing.py` `entry_count`).

count[e] is the number of texts whose match list contains e: a text adds at most 1 to
an entry however often the entry occurs in it. Counts are uint64 (a 1.6B pool overflows
nothing) and global: each shard's partial counts are summed (map -> reduce) before any
balancing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def shard_counts(entry_ids: np.ndarray, n_entries: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse counts of one shard: (ids uint32, counts uint64) of the entries present.

    Args:
        entry_ids: the concatenated match lists of the shard's texts; each list must hold
            an id at most once (the matchers guarantee it), so a row is one text.
        n_entries: metadata size, to reject ids from other metadata.
    """
    entry_ids = np.asarray(entry_ids)
    if entry_ids.size and int(entry_ids.max()) >= n_entries:
        raise ValueError(
            f"entry id {int(entry_ids.max())} is out of range for metadata of {n_entries} "
            "entries: the match output was made with other metadata"
        )
    ids, counts = np.unique(entry_ids, return_counts=True)
    return ids.astype(np.uint32), counts.astype(np.uint64)


def count_entries(match_lists: Iterable[Sequence[int]], n_entries: int) -> np.ndarray:
    """Dense uint64 counts from per-text match lists (duplicates within a text count once)."""
    counts = np.zeros(n_entries, dtype=np.uint64)
    for ids in match_lists:
        unique = np.unique(np.asarray(ids, dtype=np.int64))
        counts[unique] += np.uint64(1)
    return counts


def reduce_counts(parts: Iterable[tuple[np.ndarray, np.ndarray]], n_entries: int) -> np.ndarray:
    """Sum sparse per-shard counts (from `shard_counts`) into dense uint64 counts."""
    total = np.zeros(n_entries, dtype=np.uint64)
    for ids, counts in parts:
        total[ids.astype(np.int64)] += counts.astype(np.uint64)  # ids are unique per part
    return total
