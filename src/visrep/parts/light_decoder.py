"""SparK's light UNet decoder (SparK paper; keyu-tian/SparK `pretrain/decoder.py`).

log2(up-sample ratio) blocks, each doubling the resolution and halving the width
(768, 384, 192, 96, 48, 24 for the paper's ratio 32 and width 768). Before block j the
densified encoder feature of block j's input resolution is added (smallest first); a
final 1×1 conv predicts the image's channels. BatchNorm here is dense (all positions).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class UNetBlock(nn.Sequential):
    """×2 up-sampling: ConvTranspose2d(c_in, c_in, 4, 2, 1) → Conv3×3(c_in, c_in, no bias) →
    BN → ReLU6 → Conv3×3(c_in, c_out, no bias) → BN (no activation at the end)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(c_in, c_in, kernel_size=4, stride=2, padding=1, bias=True),
            nn.Conv2d(c_in, c_in, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU6(inplace=True),
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class LightDecoder(nn.Module):
    """Args:
    up_sample_ratio: the encoder's total stride (a power of 2): log2 of it blocks.
    width: input width W_0 of the first block; block j works at W_0 / 2^j.
    out_chans: image channels predicted by the final 1×1 conv.
    """

    def __init__(self, up_sample_ratio: int, width: int = 768, out_chans: int = 3) -> None:
        super().__init__()
        n = round(math.log2(up_sample_ratio))
        if 2**n != up_sample_ratio or n < 1:
            raise ValueError(
                f"the decoder's up-sample ratio must be a power of 2, got {up_sample_ratio}"
            )
        if width % 2**n:
            raise ValueError(f"decoder width {width} must be divisible by 2^{n} (it halves {n}×)")
        self.width = width
        self.channels = [width // 2**i for i in range(n + 1)]
        self.dec = nn.ModuleList(
            UNetBlock(c_in, c_out) for c_in, c_out in zip(self.channels[:-1], self.channels[1:])
        )
        self.proj = nn.Conv2d(self.channels[-1], out_chans, kernel_size=1, bias=True)
        self._init_weights()

    def _init_weights(self) -> None:
        """SparK's `LightDecoder.initialize`: Conv2d/Linear trunc_normal(0.02) (cut at ±2,
        timm's default) bias 0; ConvTranspose2d kaiming_normal(fan_out, relu) bias 0; norms
        weight 1 bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, to_dec: list[Tensor]) -> Tensor:
        """to_dec: densified features, smallest first ([N, W_j, h·2^j, w·2^j]); more blocks
        than features is fine (the last blocks then get none) -> [N, out_chans, H, W]."""
        x: Tensor | float = 0.0
        for j, block in enumerate(self.dec):
            if j < len(to_dec):
                x = x + to_dec[j]
            x = block(x)
        assert isinstance(x, torch.Tensor)
        return self.proj(x)
