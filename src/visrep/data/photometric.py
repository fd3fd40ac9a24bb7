"""Corruption-like training augmentations on batched image tensors: Gaussian noise, Gaussian
blur, contrast reduction and AugMix, each drawn per sample from an injectable generator.

They are the augmentation schemes of the MSD experiment (Mintun, Kirillov and Xie, "On
Interaction Between Augmentations and Corruptions in Natural Corruption Robustness", NeurIPS
2021, §4; facebookresearch/augmentation-corruption `experiments/overlap/augmentations/`):
schemes that sit near some ImageNet-C corruptions in the transform feature space (noise near
the noise corruptions, blur near the blurs, contrast near contrast and fog) and far from
others. The operations are torchvision's (`transforms.v2.functional.gaussian_noise`,
`gaussian_blur`, `adjust_contrast`, `transforms.v2.AugMix`); this module only draws their
parameters.

Levels follow the reference's convention (`augmentations/utils/severity.py`): an op of
severity s draws a level ℓ ~ U(0.1, s) on a 0-10 scale and uses the parameter ℓ·max/10;
here s = 10 (the whole range, so many draws are mild). AugMix keeps the reference's
AugMix settings (severity 3, width 3, random depth 1-3, α = 1, the nine ops that do not
overlap ImageNet-C, `compositions.py`); torchvision rounds its output back to uint8, which
the reference does not (a ≤ 0.5-level difference).

A draw is a dict of per-sample tensors `{op: {"level": [n], "seed": [n]}}` (`sample`), so
one draw can be expanded to a whole image set — the MSD transform, one parameter draw and one
noise field for every image — and a test can inject any draw (`apply`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

OPS = ("noise", "blur", "contrast", "augmix")
# parameter at level 10: noise σ in [0, 1] pixel units (CIFAR-10-C gaussian_noise: 0.04-0.10),
# blur σ in pixels (CIFAR-10-C gaussian_blur: 0.4-1.0), contrast reduction 1 - c
# (CIFAR-10-C contrast keeps c = 0.75-0.15 of the deviation from the mean)
MAX = {"noise": 0.12, "blur": 1.5, "contrast": 0.8}
BLUR_KERNEL = 2 * math.ceil(3 * MAX["blur"]) + 1  # covers ±3σ at the largest σ
Draw = dict[str, dict[str, Tensor]]


def parse_ops(spec: str) -> tuple[str, ...]:
    """ "noise,blur" -> ("noise", "blur") ("" = none); unknown names are an error."""
    ops = tuple(s for s in spec.replace(" ", "").split(",") if s)
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ValueError(f"photometric augmentation {bad} unknown: use a comma list of {OPS} "
                         "(or '' for none)")  # fmt: skip
    return ops


class Photometric:
    """Apply `ops` in order to float images [B, C, H, W] in 0..255, one draw per sample."""

    def __init__(self, ops: Sequence[str] | str) -> None:
        self.ops = parse_ops(ops) if isinstance(ops, str) else parse_ops(",".join(ops))
        self.augmix = v2.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0,
                                all_ops=False)  # fmt: skip

    def sample(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """Per op: levels ℓ ~ U(0.1, 10) [n] and a noise/AugMix seed [n] (fixed draw order)."""
        draw = {}
        for op in self.ops:
            level = torch.empty(n, dtype=torch.float64).uniform_(0.1, 10.0, generator=generator)
            seed = torch.randint(0, 2**62, (n,), generator=generator)
            draw[op] = {"level": level, "seed": seed}
        return draw

    def apply(self, images: Tensor, draw: Draw) -> Tensor:
        """The ops of `draw` (each tensor [B], or [1] to share one draw over the batch)."""
        x = images.float()
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG
            for op in self.ops:
                level = draw[op]["level"].expand(len(x))
                seed = draw[op]["seed"].expand(len(x))
                x = torch.stack([self._one(op, img, float(lv), int(s))
                                 for img, lv, s in zip(x, level, seed)])  # fmt: skip
        return x

    def _one(self, op: str, img: Tensor, level: float, seed: int) -> Tensor:
        """One op on one image [C, H, W] (0..255 float) at `level`, noise from `seed`."""
        if op == "augmix":
            torch.manual_seed(seed)
            return self.augmix(img.round().clamp(0, 255).to(torch.uint8)).float()
        x = img / 255.0
        p = level * MAX[op] / 10.0
        if op == "noise":
            torch.manual_seed(seed)
            x = TF.gaussian_noise(x, mean=0.0, sigma=p, clip=True)
        elif op == "blur":
            x = TF.gaussian_blur(x, kernel_size=[BLUR_KERNEL] * 2, sigma=[p, p])
        else:  # contrast: blend with the image's (grey) mean, ImageNet-C's (x - m)·c + m
            x = TF.adjust_contrast(x, 1.0 - p)
        return x * 255.0

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Independent draws for the B samples of `images` (a training batch)."""
        return self.apply(images, self.sample(len(images), generator)) if self.ops else images

    def __repr__(self) -> str:
        return f"{type(self).__name__}({','.join(self.ops)})"
