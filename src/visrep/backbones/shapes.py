"""Input checks shared by the backbones."""

from __future__ import annotations

from torch import Tensor


def check_image_shape(images: Tensor, in_chans: int, img_size: int) -> None:
    """A user-facing error (not a shape traceback) when images do not fit the backbone."""
    expected = (in_chans, img_size, img_size)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"backbone expects images of shape [B, {', '.join(map(str, expected))}], got "
            f"{list(images.shape)}; set data.img_size / data.channels to match the backbone"
        )
