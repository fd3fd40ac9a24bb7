"""CLIP's BPE tokenizer (OpenAI CLIP's, as in facebookresearch/SLIP `tokenizer.py`), reused
from open_clip rather than rewritten.

open_clip ships OpenAI's `bpe_simple_vocab_16e6.txt.gz` inside the package, so this works
offline: vocab 49408, <|startoftext|> = 49406, <|endoftext|> = 49407, zero padding, context
77. Text cleaning (ftfy, HTML unescape, whitespace collapse, lower case) is open_clip's.

Truncation of captions longer than 75 BPE tokens (the two reference tokenizers differ):

- ``truncate="eot"`` (default, open_clip's behaviour): keep the first ``context - 1`` ids and
  put EOT in the last position, so the text tower's argmax pooling always lands on EOT.
- ``truncate="slice"`` (SLIP's ``tokenizer.py``, for parity only): [SOT] + ids + [EOT] sliced
  to ``context``: a long caption loses its EOT and argmax pooling then picks the position of
  the largest remaining token id.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
SOT, EOT = 49406, 49407


@functools.lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def encode(text: str) -> list[int]:
    """BPE ids of one string, without SOT/EOT."""
    return _bpe().encode(text)


def decode(ids: Sequence[int]) -> str:
    """The text of one row of `tokenize`: the ids between SOT and EOT (id 0 inside a caption
    is a real token, the "!" of "wow!/"; the zeros after EOT are padding)."""
    ids = [int(i) for i in ids]
    if EOT in ids:
        ids = ids[: ids.index(EOT)]
    return _bpe().decode([i for i in ids if i != SOT])


def tokenize(
    texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH, truncate: str = "eot"
) -> Tensor:
    """Token ids ``[N, context_length]`` (int64): [SOT] + BPE + [EOT], zero padded.

    A single string gives one row (``[1, context_length]``; SLIP returns 1-D there).
    """
    if truncate not in ("eot", "slice"):
        raise ValueError(f"truncate must be 'eot' or 'slice', got {truncate!r}")
    if isinstance(texts, str):
        texts = [texts]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [SOT, *encode(text), EOT]
        if len(ids) > context_length:
            ids = ids[:context_length]
            if truncate == "eot":
                ids[-1] = EOT
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@functools.lru_cache(maxsize=65536)
def _token_row(caption: str) -> Tensor:
    return tokenize(caption)[0]  # [77]


def tokenize_cached(captions: Sequence[str]) -> Tensor:
    """`tokenize` with a bounded per-caption cache: a pool repeats captions, and every round
    re-reads the pool (BPE with ftfy costs milliseconds per caption on a busy CPU)."""
    return torch.stack([_token_row(c) for c in captions]) if captions else tokenize([])


def trim_padding(tokens: Tensor) -> Tensor:
    """`tokens` [N, T] cut after the last column any caption needs: its end-of-text token,
    the largest id (49407), found by argmax as the pooling finds it. With the causal mask no
    position attends to later ones, so the pooled features are unchanged (exact) and short
    captions are cheap. (Counting non-zero ids would be wrong: id 0 is a real BPE token, the
    "!" of "wow!/".)"""
    return tokens[:, : int(tokens.argmax(1).max()) + 1] if tokens.numel() else tokens
