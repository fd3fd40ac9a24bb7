"""What the loop, the evaluations, the report and export may ask of a method: one
`Protocol` per optional capability (checked with `isinstance`, never by probing names).

Every method is a `Method`. The others are optional; a method has a capability when it
defines the members (no base class to inherit). `docs/adding_a_method.md` says when each is
used; `tests/test_capabilities.py` keeps that list and this module in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Method(Protocol):
    """Every method: a `backbone` (what is evaluated and exported) and `forward(batch)`
    returning a dict with `loss` (other 0-d tensors are logged)."""

    backbone: nn.Module

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]: ...


@runtime_checkable
class StepHook(Protocol):
    """Schedules after each optimizer step (EMA momentum, temperature, freezing, model
    EMA), given the progress e / epochs of the *next* step, in [0, 1]."""

    def on_step_end(self, progress: float) -> None: ...


@runtime_checkable
class FixedLR(Protocol):
    """Parameters whose names start with one of these keep the peak lr (SimSiam's
    `--fix-pred-lr`)."""

    fixed_lr_prefixes: tuple[str, ...]


@runtime_checkable
class NoDecayKeywords(Protocol):
    """Parameters whose names contain one of these get no weight decay (SparK's mask tokens
    and LayerScale `gamma`)."""

    no_decay_keywords: tuple[str, ...]


@runtime_checkable
class LayerDecay(Protocol):
    """A per-parameter lr factor and parameters spared weight decay by full name
    (fine-tuning's layer-wise lr decay; MAE's `pos_embed` / `cls_token`)."""

    no_decay_names: set[str]

    def lr_scale(self, name: str) -> float: ...


class DataSource(Protocol):
    """Training batches as a function of (seed, step, rank): what `build_train_data` returns
    and what a method's own `train_data` must return."""

    steps_per_epoch: int
    n_skipped: int

    def batches(self, start_step: int, end_step: int) -> Iterator[dict[str, Any]]: ...


@runtime_checkable
class OwnData(Protocol):
    """The method brings its own training data (`cfg` is the whole `TrainConfig`): the
    supervised method's labelled batches, CiT's pool re-curated as it trains."""

    def train_data(
        self, cfg: Any, *, rank: int, world_size: int, device: torch.device
    ) -> DataSource: ...


@runtime_checkable
class Reconstructs(Protocol):
    """Masked image modelling with a picture: `visualize(images, noise=)` returns
    {"original", "masked", "prediction", "reconstruction"} [B, C, H, W] in normalised units
    (`prediction`: the model's output as is; `reconstruction`: visible patches pasted back),
    drawn in the report (`noise` [B, backbone.num_patches] fixes the mask). A video method
    (MAE-ST) takes clips and returns clips [B, C, T', H, W] of its target frames: the report
    draws them as a frames strip."""

    def visualize(self, images: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]: ...


@runtime_checkable
class Classifier(Protocol):
    """A classifier (fine-tuning): the final evaluation is its own top-1 / top-5 instead of
    k-NN and the linear probe; with a model EMA (`model_ema` not None) that copy too."""

    model_ema: nn.Module | None

    def logits(self, images: Tensor) -> Tensor: ...

    def ema_logits(self, images: Tensor) -> Tensor: ...


@runtime_checkable
class ImageText(Protocol):
    """An image-text model: zero-shot, retrieval and pseudo-BoW captions use its two
    encoders (their outputs are L2-normalised by the caller)."""

    def encode_image(self, images: Tensor) -> Tensor: ...

    def encode_text(self, tokens: Tensor) -> Tensor: ...


@runtime_checkable
class Generates(Protocol):
    """A generative model (DiT): `sample(n, labels=..., cfg_scale=..., steps=..., ...)` draws n
    images in model space (pixels or latents), `to_pixels` maps them to the data's
    normalised pixels; `num_classes` (0: unconditional) says which labels it takes
    (`visrep sample`)."""

    num_classes: int

    def sample(self, n: int, **kwargs: Any) -> Tensor: ...

    def to_pixels(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Detects(Protocol):
    """A detector (Mask R-CNN, `visrep eval detect`): `detect(images)` returns per image
    {boxes, labels, scores, masks}; the final evaluation is COCO box and mask AP
    (`visrep.evals.detection`) instead of k-NN and the linear probe."""

    def detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]: ...


OPTIONAL = (StepHook, FixedLR, NoDecayKeywords, LayerDecay, OwnData, Reconstructs, Classifier,
            ImageText, Generates, Detects)  # fmt: skip
