"""Slow-only 3-D ResNet ("Slow" pathway of SlowFast: Feichtenhofer, Fan, Malik, He,
"SlowFast Networks for Video Recognition", ICCV 2019; the backbone of the ρ-spatiotemporal
study, Feichtenhofer et al., CVPR 2021). facebookresearch/SlowFast
`slowfast/models/video_model_builder.py` (ResNet, `_TEMPORAL_KERNEL_BASIS["slow"]`),
`slowfast/models/resnet_helper.py` (BottleneckTransform, ResBlock),
`slowfast/models/stem_helper.py` (ResNetBasicStem), `slowfast/utils/weight_init_helper.py`.

- Stem: Conv3d(C → w, (1, 7, 7), stride (1, 2, 2)) → BN → ReLU → MaxPool3d((1, 3, 3),
  stride (1, 2, 2)).
- Bottleneck stages res2–res5, inner widths w, 2w, 4w, 8w (out ×4), spatial strides 1, 2,
  2, 2 on the 1×3×3 conv; the first 1×1×1 conv has a temporal kernel 1 in res2/res3 and
  **3 in every block of res4/res5** (no temporal stride or pooling anywhere); projection
  shortcut (1×1×1 conv + BN) where the shape changes. `slow_r50` is (3, 4, 6, 3) blocks at
  w = 64 (2048-d features); `slow_r26` is a CPU-size variant, (2, 2, 2, 2) blocks at w = 32
  (1024-d).
- Init: conv weights He-normal fan_out, BN weight 1 / bias 0, the last BN of a block *not*
  zero-initialised (ZERO_INIT_FINAL_BN False).
- Features: global average pool of res5 (the heads' AdaptiveAvgPool3d).

State-dict layout (timm has no 3-D ResNet; an export of this backbone is visrep-native):
`stem.{0: conv, 1: bn}`, `stages.{s}.{b}.{a, a_bn, b, b_bn, c, c_bn}` and
`stages.{s}.{b}.shortcut.{0: conv, 1: bn}`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SLOW_ARCHS = {"slow_r50": ((3, 4, 6, 3), 64), "slow_r26": ((2, 2, 2, 2), 32)}
TEMPORAL_KERNELS = (1, 1, 3, 3)  # res2..res5 (SlowFast "slow")
SPATIAL_STRIDES = (1, 2, 2, 2)


class Bottleneck(nn.Module):
    def __init__(self, d_in: int, inner: int, d_out: int, k_t: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Conv3d(d_in, inner, (k_t, 1, 1), padding=(k_t // 2, 0, 0), bias=False)
        self.a_bn = nn.BatchNorm3d(inner)
        self.b = nn.Conv3d(inner, inner, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.b_bn = nn.BatchNorm3d(inner)
        self.c = nn.Conv3d(inner, d_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(d_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv3d(d_in, d_out, 1, (1, stride, stride), bias=False),
                          nn.BatchNorm3d(d_out))
            if d_in != d_out or stride != 1 else nn.Identity()
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.a_bn(self.a(x)))
        y = self.relu(self.b_bn(self.b(y)))
        return self.relu(self.c_bn(self.c(y)) + self.shortcut(x))


class SlowResNet(nn.Module):
    """Slow-only ResNet on clips [N, C, T, H, W] -> pooled features [N, 32·w]."""

    def __init__(self, arch: str = "slow_r50", *, in_chans: int = 3, frames: int = 8,
                 img_size: int = 224) -> None:  # fmt: skip
        super().__init__()
        if arch not in SLOW_ARCHS:
            raise ValueError(f"unknown Slow ResNet {arch!r}; choose one of {sorted(SLOW_ARCHS)}")
        blocks, w = SLOW_ARCHS[arch]
        self.arch, self.in_chans, self.frames, self.img_size = arch, in_chans, frames, img_size
        self.stem = nn.Sequential(
            nn.Conv3d(in_chans, w, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            nn.BatchNorm3d(w), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )  # fmt: skip
        stages, d_in = [], w
        for s, (n, k_t, stride) in enumerate(zip(blocks, TEMPORAL_KERNELS, SPATIAL_STRIDES)):
            inner = w * 2**s
            stage = [Bottleneck(d_in if i == 0 else 4 * inner, inner, 4 * inner, k_t,
                                stride if i == 0 else 1) for i in range(n)]  # fmt: skip
            stages.append(nn.Sequential(*stage))
            d_in = 4 * inner
        self.stages = nn.Sequential(*stages)
        self.feature_dim = d_in
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, video: Tensor) -> Tensor:
        if video.ndim != 5 or video.shape[1] != self.in_chans:
            raise ValueError(f"a Slow ResNet expects clips [B, {self.in_chans}, T, H, W], got "
                             f"{list(video.shape)}; set data.frames / data.channels")  # fmt: skip
        x = self.stages(self.stem(video))  # [N, 32·w, T, H/32, W/32]
        return torch.flatten(x.mean(dim=(2, 3, 4)), 1)
