"""Evaluate one frozen ViT with two poolings (cls token and mean patch token) for the
price of one feature pass, through visrep's own `evaluate` (same k-NN and linear probe).

`evaluate` extracts features of the 60k train and 10k test images and then runs the
protocols; on 2 CPU cores the extraction dominates (minutes). The first pooling is
evaluated with an encoder that also records the other pooling's features; the others
are then evaluated with an encoder that replays the recorded features chunk by chunk.
Each replayed chunk is checked against a checksum of the images `evaluate` passes in,
so a change in `evaluate`'s order fails loudly instead of mis-pairing features.

Input-scale guard: the figures in benchmarks/results/quality_per_budget.* were measured
when `evaluate` scaled images twice by 1/255 (fixed since: `evals.run.eval_preprocess`);
`input_fix` runs evaluate's own preprocessing (`eval_preprocess`) on a test pattern and,
if the double scaling were ever back, the wrappers here would undo it before the encoder.
With the current library it returns None and nothing is changed. (Until this session it
tested `make_preprocess` directly, which no longer is what `evaluate` uses, and so wrongly
"fixed" correct inputs: figures with `input_scale_fixed: true` measured after the library
fix — none in docs/results.md — are invalid.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visrep.data.augment import normalize
from visrep.data.preprocess import eval_preprocess, mean_std
from visrep.evals.features import extract_features
from visrep.evals.run import evaluate

POOLINGS = ("avg", "token")  # visrep names: mean of the normed patch tokens, cls token


def pool(tokens: Tensor, how: str) -> Tensor:
    """[N, 1+L, D] normed tokens (cls first) -> [N, D], as timm's forward_head (fc_norm off)."""
    return tokens[:, 1:].mean(dim=1) if how == "avg" else tokens[:, 0]


def input_fix(data: Any) -> Callable[[Tensor], Tensor] | None:
    """None if `evaluate`'s preprocessing equals the training normalization; else the map
    that turns what it produces into the training normalization (raises if unknown)."""
    mean, std = mean_std(data)
    c, s = data.channels, data.img_size
    pattern = (torch.arange(c * s * s) % 256).to(torch.uint8).view(1, c, s, s)
    got = extract_features(nn.Flatten(), pattern, preprocess=eval_preprocess(data))
    want = normalize(pattern.float(), mean, std).flatten(1)
    if torch.allclose(got, want, atol=1e-4):
        return None
    m = torch.tensor(mean).view(1, c, 1, 1)
    sd = torch.tensor(std).view(1, c, 1, 1)

    def fix(x: Tensor) -> Tensor:  # x = (p/255 - m)/s with p in [0, 1] -> (p - m)/s
        return ((x * sd + m) * 255 - m) / sd

    if not torch.allclose(fix(got.view(1, c, s, s)).flatten(1), want, atol=1e-3):
        raise RuntimeError("evaluate()'s preprocessing changed in an unknown way; check it")
    return fix


class _Fixed(nn.Module):
    """encoder(fix(x)); `fix` None = identity."""

    def __init__(self, encoder: Callable, fix: Callable | None):
        super().__init__()
        self.encoder, self.fix = encoder, fix

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(self.fix(x) if self.fix is not None else x)


class _Record(nn.Module):
    def __init__(self, encoder: nn.Module, tokens_fn: Callable, first: str, others: Sequence[str],
                 fix: Callable | None):  # fmt: skip
        super().__init__()
        self.encoder, self.tokens_fn, self.first, self.others = encoder, tokens_fn, first, others
        self.fix = fix
        self.store: list[tuple[int, float, dict[str, Tensor]]] = []

    def forward(self, x: Tensor) -> Tensor:
        checksum = float(x.double().sum())
        tokens = self.tokens_fn(self.fix(x) if self.fix is not None else x)  # [B, 1+L, D]
        kept = {k: pool(tokens, k).float().cpu() for k in self.others}
        self.store.append((x.shape[0], checksum, kept))
        return pool(tokens, self.first)


class _Replay(nn.Module):
    def __init__(self, store: list, name: str):
        super().__init__()
        self.store, self.name, self.i = store, name, 0

    def forward(self, x: Tensor) -> Tensor:
        n, checksum, kept = self.store[self.i]
        self.i += 1
        if n != x.shape[0] or abs(checksum - float(x.double().sum())) > 1e-6 * (1 + abs(checksum)):
            raise RuntimeError("evaluate() fed images in a different order on the replay pass")
        return kept[self.name]


def evaluate_encoder(encoder: Callable, data: Any, ev: Any, *, limit: int = 0,
                     fix_inputs: bool = True) -> dict[str, Any]:  # fmt: skip
    """visrep `evaluate` (k-NN + linear) of an encoder images -> [B, D]."""
    fix = input_fix(data) if fix_inputs else None
    m = evaluate(_Fixed(encoder, fix), data, ev, protocols=("knn", "linear"), limit=limit)
    return {**m, "input_scale_fixed": fix is not None}


def evaluate_poolings(
    encoder: nn.Module,
    tokens_fn: Callable[[Tensor], Tensor],
    data: Any,
    ev: Any,
    *,
    poolings: Sequence[str] = POOLINGS,
    limit: int = 0,
    fix_inputs: bool = True,
) -> dict[str, dict[str, Any]]:
    """{pooling: evaluate(...) metrics} for a ViT whose `tokens_fn(images)` returns the
    final-normed tokens [B, 1+L, D]. `encoder` is the module holding the weights (put in
    eval mode by `evaluate` through the wrapper)."""
    fix = input_fix(data) if fix_inputs else None
    first, others = poolings[0], list(poolings[1:])
    rec = _Record(encoder, tokens_fn, first, others, fix)
    out = {first: evaluate(rec, data, ev, protocols=("knn", "linear"), limit=limit)}
    for name in others:
        replay = _Replay(rec.store, name)
        out[name] = evaluate(replay, data, ev, protocols=("knn", "linear"), limit=limit)
        if replay.i != len(rec.store):
            raise RuntimeError("replay pass used a different number of chunks")
    for m in out.values():
        m["input_scale_fixed"] = fix is not None
    return out


@torch.no_grad()
def check_avg_matches(backbone: nn.Module, tokens_fn: Callable, images: Tensor) -> float:
    """Max |pool(tokens, 'avg') - backbone(images)|: our pooling equals the backbone's own."""
    backbone.eval()
    return float((pool(tokens_fn(images), "avg") - backbone(images)).abs().max())
