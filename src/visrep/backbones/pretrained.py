"""A pre-trained backbone as the start of fine-tuning (facebookresearch/mae `main_finetune.py`,
facebookresearch/ConvNeXt-V2 `main_finetune.py`).

`visrep.runs.load_pretrained` reads a run folder (`visrep train`) or an exported backbone
folder (`visrep export`) into a `Pretrained`; `build_classifier` rebuilds it as a timm
classifier with the weights loaded and a fresh head; `TimmFeatures` is that classifier
without its head, the `backbone` the supervised method evaluates and exports.

* **ViT** (mae `models_vit.py`): with `pool="avg"` the features are the mean of the patch
  tokens (cls excluded) through a *new* `fc_norm` LayerNorm starting at (1, 0); the
  pre-trained final `norm` is dropped, not copied into `fc_norm` **[PITFALL]** (mae
  `models_vit.py` deletes `norm` under `global_pool`: the encoder output was normalised for
  the decoder, the pooled mean is not). timm's ViT built with `global_pool="avg",
  fc_norm=True` has exactly that structure (its `norm` is an Identity), so the checkpoint's
  `norm.*` keys are the only unexpected ones and `fc_norm.*` + `head.*` the only missing
  ones; anything else is an error. `pool="token"` (MAE `--cls_token`) keeps `norm` and
  classifies the cls token. The position embedding, fixed sin-cos in pre-training, is
  *trained* in fine-tuning (MAE's `models_vit` holds it as a parameter) and bicubically
  resized when the image size changes the grid.
* **Head**: `trunc_normal(std=2e-5)`, bias 0 (MAE and ConvNeXt V2 `main_finetune.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
from torch import Tensor, nn

from visrep.backbones.cnn import apply_fixups
from visrep.parts.pos_embed import interpolate_pos_embed


@dataclass
class Pretrained:
    """A backbone as timm sees it: architecture and weights (`source`: where they came from)."""

    timm_name: str
    timm_kwargs: dict[str, Any]
    timm_fixups: dict[str, Any]
    state: dict[str, Tensor]
    source: str


def from_backbone(backbone: nn.Module, source: str = "backbone") -> Pretrained:
    """A visrep backbone (`ViT`, `CNN`) with its current weights."""
    if not hasattr(backbone, "timm_name"):
        raise ValueError(f"{source} holds no timm image backbone to fine-tune")
    state = {k: v.detach().cpu() for k, v in backbone.model.state_dict().items()}
    return Pretrained(
        backbone.timm_name,
        dict(backbone.timm_kwargs),
        dict(backbone.timm_fixups),
        state,
        source,
    )


def create_timm(name: str, kwargs: dict[str, Any], fixups: dict[str, Any]) -> nn.Module:
    """`timm.create_model(name, **kwargs)` (no weights) with visrep's fixups applied."""
    return apply_fixups(timm.create_model(name, pretrained=False, **kwargs), fixups)


def classifier_kwargs(pre: Pretrained, ft: Any, num_classes: int) -> dict[str, Any]:
    """timm arguments of the classifier: the backbone's, a head, drop path, the ViT pooling.
    `ft` holds the fine-tuning settings `pool`, `drop_path`, `img_size` (and, for
    `build_classifier`, `head_init_std`): the supervised method's config."""
    kw = dict(pre.timm_kwargs, num_classes=num_classes, drop_path_rate=ft.drop_path)
    if pre.timm_name.startswith("vit_"):
        if ft.pool not in ("avg", "token"):
            raise ValueError(f"method.pool must be 'avg' or 'token', got {ft.pool!r}")
        # fc_norm=True replaces the final norm by a new LayerNorm on the pooled tokens (mae
        # `models_vit.py`)
        kw |= dict(
            img_size=ft.img_size or kw["img_size"], global_pool=ft.pool, fc_norm=ft.pool == "avg"
        )
    return kw


def build_classifier(
    pre: Pretrained, ft: Any, num_classes: int
) -> tuple[nn.Module, dict[str, Any]]:
    """timm classifier with the pre-trained weights loaded and a freshly initialised head.

    Returns the model and a loading report (missing / dropped keys, pos-embed resize).
    """
    vit = pre.timm_name.startswith("vit_")
    model = create_timm(pre.timm_name, classifier_kwargs(pre, ft, num_classes), pre.timm_fixups)
    state = dict(pre.state)
    report: dict[str, Any] = {}
    if vit:
        report["dropped"] = [
            k for k in ("norm.weight", "norm.bias") if ft.pool == "avg" and k in state
        ]
        for k in report["dropped"]:
            del state[k]  # the [PITFALL] above: fc_norm starts at (1, 0), not from norm
        grid = tuple(model.patch_embed.grid_size)
        if state["pos_embed"].shape != model.pos_embed.shape:
            report["pos_embed_resized"] = [list(state["pos_embed"].shape), list(grid)]
            state["pos_embed"] = interpolate_pos_embed(
                state["pos_embed"], grid, model.num_prefix_tokens
            )
    head = model.get_classifier()
    head_keys = {
        f"{n}.{p}" for n, m in model.named_modules() if m is head for p in ("weight", "bias")
    }
    expected = head_keys | (
        {"fc_norm.weight", "fc_norm.bias"} if vit and ft.pool == "avg" else set()
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != expected or unexpected:
        raise ValueError(
            f"pre-trained weights from {pre.source} do not fit {pre.timm_name}: missing "
            f"{sorted(missing)} (expected exactly {sorted(expected)}), unexpected {sorted(unexpected)}"
        )
    report["missing"] = sorted(missing)
    nn.init.trunc_normal_(head.weight, std=ft.head_init_std)
    nn.init.zeros_(head.bias)
    if vit:
        model.pos_embed.requires_grad_(True)  # learned in fine-tuning (MAE models_vit)
    return model, report


class TimmFeatures(nn.Module):
    """A timm classifier whose head was taken out (`reset_classifier(0)`): images -> pooled
    features [B, D], exactly what `timm.create_model(timm_name, **timm_kwargs)` computes, so
    `visrep export` writes it like any pre-trained backbone."""

    def __init__(self, model: nn.Module, pre: Pretrained, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.timm_name, self.timm_fixups = pre.timm_name, dict(pre.timm_fixups)
        self.timm_kwargs = dict(kwargs, num_classes=0)
        self.feature_dim: int = model.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)  # [B, D]
