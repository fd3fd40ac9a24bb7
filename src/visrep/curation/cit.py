"""CiT — Curation in Training (Xu et al., ICCV 2023): the outer loop's selection rule.

Paper §3 (Algorithm 1); reference: facebookresearch/CiT `engine.py` (`iterative_classcurate`,
`max_sim`) and `clipeval/eval_zeroshot.py` (`build_text_features`).

Metadata embedding (§3.1): every metadata entry (a class name) is formatted with every
template (CiT's default is the bare name, template "{}"), encoded by the *current* text
tower, L2-normalised, averaged over templates and renormalised: `M` [K, D].

Selection (§3.2), applied to each scanned chunk of the raw pool (CiT's producer batch,
2 × the training batch): with `x` the L2-normalised caption embeddings [N, D],

    score_i = max_k x_i · M_k;   keep i  iff  score_i > t          (strict, as `max_sim`)
    if (#kept / N) < γ:  keep the ⌊γ·N⌋ highest scores instead     (the min-ratio fallback)

One round (§3.3) scans chunks of the pool stream until `budget` = s × b pairs are kept and
keeps the first `budget` in scan order (the stream position moves past the whole last
chunk, as the reference's producer iterator does); the inner loop then trains s steps on them.
Ties in the fallback go to the earlier position (a stable sort; the reference's `topk` leaves
them unspecified).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from visrep.data.sampling import epoch_permutation
from visrep.data.tokenizer import tokenize_cached
from visrep.parts.encode import encode_normalized

Encode = Callable[[Tensor], Tensor]  # tokens [N, 77] -> text features [N, D]


def select(scores: Tensor, threshold: float, min_ratio: float) -> Tensor:
    """Indices (ascending) of the kept rows of one chunk, given `scores` [N] = max cosine
    to the metadata: those above `threshold`, or the ⌊γ·N⌋ best when fewer than γ·N pass."""
    passed = scores > threshold  # [N]
    if passed.float().mean() >= min_ratio or len(scores) == 0:
        return passed.nonzero().flatten()
    k = int(min_ratio * len(scores))
    order = torch.sort(scores, descending=True, stable=True).indices  # ties: earlier first
    return order[:k].sort().values


def max_similarity(text: Tensor, metadata: Tensor) -> Tensor:
    """score_i = max_k cos(text_i, metadata_k) for normalised rows: [N, D] × [K, D] -> [N]."""
    return (text @ metadata.T).max(dim=1).values


@torch.no_grad()
def embed_captions(
    encode: Encode,
    captions: Sequence[str],
    chunk: int = 1024,
    device: torch.device | str = "cpu",
    progress: bool = False,
    raw: bool = False,
) -> Tensor:
    """L2-normalised text embeddings [N, D] (on the CPU) of `captions`, tokenized and encoded
    `chunk` at a time: only one chunk of tokens and activations is alive at once. `raw`:
    `encode` takes the strings (a pretrained tower with its own tokenizer)."""

    def encode_part(part: Sequence[str]) -> Tensor:
        return encode(list(part) if raw else tokenize_cached(list(part)).to(device))  # [n, D]

    return encode_normalized(encode_part, captions, chunk, progress=progress,
                             desc="embed captions")  # fmt: skip


@torch.no_grad()
def metadata_embedding(
    encode: Encode, entries: Sequence[str], templates: Sequence[str], device="cpu", raw=False
) -> Tensor:
    """[K, D]: per entry, the renormalised mean of its normalised template embeddings."""
    rows = []
    for entry in entries:
        emb = embed_captions(encode, [t.format(entry) for t in templates], device=device, raw=raw)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)


class PoolStream:
    """The raw pool as an endless stream: pass p visits the pool in the permutation drawn from
    (seed, p), like CiT's producer loader re-shuffling each epoch. Position → pool index."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._perms: dict[int, Tensor] = {}

    def take(self, start: int, count: int) -> Tensor:
        """Pool indices at stream positions [start, start + count)."""
        pos = torch.arange(start, start + count)
        out = torch.empty(count, dtype=torch.long)
        for p in pos.div(self.size, rounding_mode="floor").unique().tolist():
            if p not in self._perms:
                self._perms = {p: epoch_permutation(self.size, self.seed, p)}  # keep one pass
            here = pos.div(self.size, rounding_mode="floor") == p
            out[here] = self._perms[p][pos[here] % self.size]
        return out


@dataclass
class Round:
    """What one curation round kept and scanned."""

    indices: Tensor  # [budget] pool indices, in scan order
    cursor: int  # stream position after the round
    scanned: int  # pairs embedded this round
    passed: int  # pairs above the threshold (before the γ fallback and the budget cut)
    fallback_chunks: int  # chunks where the γ fallback replaced the threshold


def curate_round(
    scores_of: Callable[[Tensor], Tensor],
    stream: PoolStream,
    cursor: int,
    budget: int,
    chunk: int,
    threshold: float,
    min_ratio: float,
    progress: bool = False,
) -> Round:
    """Algorithm 1's outer loop body: scan `chunk` pairs at a time from `cursor` until
    `budget` are kept. `scores_of(pool_indices) -> [n]` max similarities to the metadata."""
    kept: list[Tensor] = []
    n_kept = passed = fallback = 0
    start = cursor
    bar = tqdm(total=budget, desc="curate", unit="pair", disable=not progress, leave=False)
    while n_kept < budget:
        idx = stream.take(cursor, chunk)  # [chunk]
        scores = scores_of(idx)  # [chunk]
        above = int((scores > threshold).sum())
        sel = select(scores, threshold, min_ratio)
        passed, fallback = passed + above, fallback + int(above < min_ratio * chunk)
        kept.append(idx[sel])
        n_kept += len(sel)
        cursor += chunk
        bar.update(min(len(sel), budget - (n_kept - len(sel))))
        if n_kept == 0 and cursor - start >= stream.size:
            bar.close()
            raise ValueError(
                f"a whole pass over the pool ({stream.size} pairs) kept nothing: lower "
                f"method.threshold (now {threshold}) or raise method.min_ratio (now {min_ratio})"
            )
    bar.close()
    return Round(torch.cat(kept)[:budget], cursor, cursor - start, passed, fallback)
