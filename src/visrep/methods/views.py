"""What the joint-embedding methods share about their input: two augmented views."""

from __future__ import annotations

from torch import Tensor


def two_views(batch: dict, method: str) -> tuple[Tensor, Tensor]:
    """The first two views of a multi-view batch ({"views": [v1, v2, ...]})."""
    views = batch.get("views")
    if views is None or len(views) < 2:
        raise ValueError(
            f"{method} needs two augmented views per image: set data.views to a preset of "
            "visrep.data.views.VIEW_PRESETS (its recipes do, e.g. data.views=simsiam)"
        )
    return views[0], views[1]
