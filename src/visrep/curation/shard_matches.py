"""The output of matching one shard: matched entry ids per caption, stored as one `.npz`.

Layout (CSR): caption i of the shard is record `rows[i]` (its row in the source file),
identified by `keys[i]`, and matched the entry ids `entry_ids[offsets[i]:offsets[i+1]]`
(each id once, sorted). Malformed records and records over a field bound are absent and
only counted. Keys are kept as Python strings and stored as UTF-8 bytes with offsets: a
fixed-width string array would make every key as wide as the longest one. The file is
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
    keys: np.ndarray  # object [n] sample key (str; the row number when the pool has no key)
    offsets: np.ndarray  # int64 [n + 1]
    entry_ids: np.ndarray  # uint32 [nnz]
    n_malformed: int = 0
    n_too_long: int = 0  # records skipped for a key or caption over its bound

    def __post_init__(self) -> None:
        self.keys = _str_array(self.keys)

    @classmethod
    def from_lists(
        cls,
        source: str,
        rows: list[int],
        keys: list[str],
        matches: list[list[int]],
        n_malformed: int = 0,
        n_too_long: int = 0,
    ) -> ShardMatches:
        lengths = np.fromiter((len(m) for m in matches), dtype=np.int64, count=len(matches))
        offsets = np.zeros(len(matches) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(chain.from_iterable(matches), dtype=np.uint32, count=offsets[-1])
        return cls(
            source=source,
            rows=np.asarray(rows, dtype=np.int64),
            keys=_str_array(keys),
            offsets=offsets,
            entry_ids=flat,
            n_malformed=n_malformed,
            n_too_long=n_too_long,
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

        encoded = [k.encode("utf-8", "surrogatepass") for k in self.keys]
        key_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(k) for k in encoded], out=key_offsets[1:])

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
                np.savez(
                    f,
                    source=np.asarray(self.source),
                    rows=self.rows,
                    key_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
                    key_offsets=key_offsets,
                    offsets=self.offsets,
                    entry_ids=self.entry_ids,
                    n_malformed=np.asarray(self.n_malformed, dtype=np.int64),
                    n_too_long=np.asarray(self.n_too_long, dtype=np.int64),
                )

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> ShardMatches:
        with np.load(path, allow_pickle=False) as z:
            if "key_bytes" in z.files:
                data, at = z["key_bytes"].tobytes(), z["key_offsets"]
                keys = [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(at[:-1], at[1:])]
            else:  # written before keys were stored as bytes: a fixed-width string array
                keys = z["keys"]
            return cls(
                source=str(z["source"]),
                rows=z["rows"],
                keys=keys,
                offsets=z["offsets"],
                entry_ids=z["entry_ids"],
                n_malformed=int(z["n_malformed"]),
                n_too_long=int(z["n_too_long"]) if "n_too_long" in z.files else 0,
            )


def _str_array(keys) -> np.ndarray:
    """A 1-D object array of Python strings (each key as long as itself)."""
    out = np.empty(len(keys), dtype=object)
    out[:] = [str(k) for k in keys]
    return out
