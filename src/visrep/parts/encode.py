"""One batched pass of an encoder over many inputs, L2-normalised: the embedding step shared
by zero-shot, retrieval, pseudo-BoW captions and CiT's curation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm


@torch.no_grad()
def encode_normalized(
    encode: Callable[[Any], Tensor],
    items: Sequence[Any] | Tensor,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str = "encode",
) -> Tensor:
    """L2-normalised float32 embeddings [N, D] on the CPU of `encode(items[i : i + b])`,
    `batch_size` items at a time, so only one batch of activations is alive at once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    out = []
    for i in tqdm(range(0, len(items), batch_size), desc=desc, unit="batch",
                  disable=not progress, leave=False):  # fmt: skip
        out.append(F.normalize(encode(items[i : i + batch_size]).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, 0)
