"""The output of matching one shard: matched entry ids per caption, stored as one `.npz`.

Layout (CSR): caption i of the shard is record `rows[i]` (its row in the source file),
identified by `keys[i]`, and matched the entry ids `entry_ids[offsets[i]:offsets[i+1]]`
(each id once, sorted). Malformed records are absent and only counted. The file is
written atomically (temporary file + rename), so it either exists complete or not at all:
its presence is what marks a shard as done when a run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from visrep.io import atomic_write


@dataclass
class ShardMatches:
    """Matched entry ids of every caption of one shard (the sub-string matching output)."""

    source: str  # the shard file it came from
    rows: np.ndarray  # int64 [n] record index in the source file
    keys: np.ndarray  # str [n] sample key (the row number when the pool has no key)
    offsets: np.ndarray  # int64 [n + 1]
    entry_ids: np.ndarray  # uint32 [nnz]
    n_malformed: int = 0

    @classmethod
    def from_lists(
        cls,
        source: str,
        rows: list[int],
        keys: list[str],
        matches: list[list[int]],
        n_malformed: int = 0,
    ) -> ShardMatches:
        lengths = np.fromiter((len(m) for m in matches), dtype=np.int64, count=len(matches))
        offsets = np.zeros(len(matches) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(chain.from_iterable(matches), dtype=np.uint32, count=offsets[-1])
        return cls(
            source=source,
            rows=np.asarray(rows, dtype=np.int64),
            keys=np.asarray(keys, dtype=str),
            offsets=offsets,
            entry_ids=flat,
            n_malformed=n_malformed,
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_matched(self) -> int:
        """Captions with at least one matched entry."""
        return int(np.count_nonzero(np.diff(self.offsets)))

    def text_index(self) -> np.ndarray:
        """int64 [nnz]: the caption each (caption, entry) row of `entry_ids` belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))

    def match_lists(self) -> list[list[int]]:
        return [self.entry_ids[a:b].tolist() for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def save(self, path: str | Path) -> None:
        """Write atomically: a kill mid-write leaves only a stray `.*.tmp`, never `path`."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
                np.savez(
                    f,
                    source=np.asarray(self.source),
                    rows=self.rows,
                    keys=self.keys,
                    offsets=self.offsets,
                    entry_ids=self.entry_ids,
                    n_malformed=np.asarray(self.n_malformed, dtype=np.int64),
                )

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> ShardMatches:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                source=str(z["source"]),
                rows=z["rows"],
                keys=z["keys"],
                offsets=z["offsets"],
                entry_ids=z["entry_ids"],
                n_malformed=int(z["n_malformed"]),
            )
