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


def clip_views(batch: dict, method: str) -> list[Tensor]:
    """Every view of a multi-view batch: the ρ-study positives of each video (ρ ≥ 2 clips at
    independent times, or 2 augmentations of one clip for ρ = 1)."""
    views = batch.get("views")
    if views is None or len(views) < 2:
        raise ValueError(
            f"{method} needs the positives of each video as views: set data.clips to ρ "
            "(1 = two augmentations of one clip, ρ >= 2 = ρ clips at independent times; "
            "its rho_* recipes do) with video data (data.frames > 0)"
        )
    return list(views)
