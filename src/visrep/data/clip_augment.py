"""RandAugment and RandomErasing of video clips, one draw per clip (MAE-ST, Feichtenhofer et
al., NeurIPS 2022, fine-tuning recipe; facebookresearch/mae_st `util/kinetics.py`
`_aug_frame`, `util/decoder/rand_augment.py`, `util/decoder/random_erasing.py`; the same
files in facebookresearch/SlowFast `slowfast/datasets/`).

The official video code augments a clip as follows, and so does this module:

1. RandAugment on the sampled frames at their decoded size, before the crop: the policy is
   built per clip from its frame size (`create_random_augment`: translate_const =
   int(0.45 · min(H, W)), bicubic) and called once on the *list* of frames, so the ops, their
   magnitudes, signs and interpolation are drawn once and applied to every frame.
2. Normalisation, random resized crop and flip (`visrep.data.video.augment_clip`).
3. RandomErasing after normalisation with `cube=True`: one box, drawn once, erased in every
   frame; mode "pixel" fills it with per-pixel N(0, 1) values, new ones in each frame.

Both are timm's own classes (`timm.data.auto_augment.rand_augment_transform`,
`timm.data.random_erasing.RandomErasing`), driven per clip:

* timm's RandAugment draws its ops from numpy's global RNG and everything else from Python's
  `random`. Each frame is augmented with both seeded to the same value, one 63-bit draw from
  the clip's `random.Random`, so every frame replays the clip's single draw.
* timm's RandomErasing erases one image [C, H, W] with one box: it is given the clip as one
  image of C·T channels, so the box is shared by all frames and the per-pixel values differ
  by frame and channel, as the official cube mode. It writes on a NaN canvas and the erased
  values z are stored in the 0..255 clip as 255·(mean + std · z), which normalises to z (the
  clip is normalised later, on the batch). timm tries 10 boxes where the official cube
  variant tries 100 (rarely different: only extreme aspect draws fail).

The global RNG states are restored after each call (`visrep.data.sampling.global_rng`), so
every draw comes from the clip's injected `random.Random` and nothing else.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from torch import Tensor

from visrep.data.sampling import global_rng


def posterize_zero_bits_as_black(transform: Any) -> Any:
    """Give timm's RandAugment posterize the Pillow semantics MAE's recipe was tuned with.

    With "inc1" policies (MAE / ConvNeXt fine-tuning: `rand-m9-mstd0.5-inc1`) a magnitude
    drawn at the top of its range keeps 0 bits; Pillow then returned a black image (every
    bit masked), current Pillow raises "bits must be between or equal to 1 and 8" and the
    DataLoader worker dies (about 1 draw in 750). The posterize ops of every RandAugment in
    `transform` (a timm Compose or a RandAugment) return black for 0 bits and call timm's op
    otherwise."""
    for t in getattr(transform, "transforms", [transform]):
        for op in t.ops if isinstance(t, RandAugment) else []:
            if op.name.startswith("Posterize"):
                op.aug_fn = _Posterize(op.aug_fn)
    return transform


class _Posterize:
    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, img: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
        if bits_to_keep <= 0:
            return Image.new(img.mode, img.size)  # all bits masked: zeros
        return self.fn(img, bits_to_keep, **kwargs)


class ClipAugment:
    """RandAugment (`auto_augment`, e.g. mae_st's "rand-m7-mstd0.5-inc1"; "" = off) of the
    frames and RandomErasing (`reprob` > 0, `remode`, `recount`) of the normalised clip
    (module docstring); `mean` / `std` are the normalisation the clip will get (0..1 units)."""

    def __init__(self, auto_augment: str = "", reprob: float = 0.0, remode: str = "pixel",
                 recount: int = 1, mean: tuple[float, ...] = (), std: tuple[float, ...] = ()):  # fmt: skip
        if auto_augment and not auto_augment.startswith("rand"):
            raise ValueError(f"clips take RandAugment policies ('rand-...', as mae_st), got "
                             f"method.auto_augment={auto_augment!r}")  # fmt: skip
        if reprob > 0 and not (mean and std):
            raise ValueError("RandomErasing of clips needs the clips' normalisation mean/std")
        self.auto_augment, self.mean, self.std = auto_augment, mean, std
        self.erase = (RandomErasing(reprob, mode=remode, max_count=recount, device="cpu")
                      if reprob > 0 else None)  # fmt: skip
        self._policies: dict[tuple[int, int], Any] = {}

    def __bool__(self) -> bool:
        return bool(self.auto_augment) or self.erase is not None

    def policy(self, height: int, width: int) -> Any:
        """timm's RandAugment as mae_st's `create_random_augment` builds it for frames of
        this size (posterize at 0 bits gives black, `posterize_zero_bits_as_black`)."""
        key = (height, width)
        if key not in self._policies:
            hparams = {"translate_const": int(min(height, width) * 0.45),
                       "interpolation": Image.BICUBIC}  # fmt: skip
            ra = rand_augment_transform(self.auto_augment, hparams)
            self._policies[key] = posterize_zero_bits_as_black(ra)
        return self._policies[key]

    def frames(self, frames: Tensor, rng: random.Random) -> Tensor:
        """RandAugment of uint8 frames [T, H, W, 3] with one draw for the clip (one value
        from `rng`); a no-op without `auto_augment`."""
        if not self.auto_augment:
            return frames
        ra = self.policy(frames.shape[1], frames.shape[2])
        seed = rng.getrandbits(63)
        out = []
        for frame in frames.numpy():
            with global_rng(seed):  # every frame replays the same op / magnitude draws
                out.append(np.asarray(ra(Image.fromarray(frame))))
        return torch.from_numpy(np.stack(out))

    def clip(self, clip: Tensor, rng: random.Random) -> Tensor:
        """RandomErasing of a float clip [C, T, H, W] in 0..255 (one value from `rng`): one
        box in every frame, filled with values that normalise to N(0, 1) draws; a no-op
        with `reprob` 0."""
        if self.erase is None:
            return clip
        c, t, h, w = clip.shape
        z = torch.full((c * t, h, w), float("nan"))
        with global_rng(rng.getrandbits(63)):
            self.erase(z)  # one image of C·T channels: one box for the clip
        z = z.view(c, t, h, w)
        m = torch.tensor(self.mean, dtype=clip.dtype).view(-1, 1, 1, 1)
        s = torch.tensor(self.std, dtype=clip.dtype).view(-1, 1, 1, 1)
        return torch.where(z.isnan(), clip, 255 * (m + s * z.to(clip.dtype)))
