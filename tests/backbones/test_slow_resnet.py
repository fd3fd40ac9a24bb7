"""Slow-only ResNet (SlowFast `video_model_builder.py` "slow"): parameter count of Slow
R-50, temporal kernels 1 in res2/res3 and 3 in res4/res5 with no temporal stride, init,
pooled features, clear errors."""

import pytest
import torch
from torch import nn

from visrep.backbones import SlowResNet, build_backbone
from visrep.config import BackboneConfig, DataConfig


def test_slow_r50_layout_and_parameter_count():
    m = SlowResNet("slow_r50")
    # SlowFast's Slow R-50 8x8 has 32.45 M parameters with its 2048 x 400 classifier
    assert sum(p.numel() for p in m.parameters()) == 31_634_496
    assert [len(s) for s in m.stages] == [3, 4, 6, 3] and m.feature_dim == 2048
    for s, k_t in enumerate((1, 1, 3, 3)):
        assert all(b.a.kernel_size == (k_t, 1, 1) for b in m.stages[s])
        assert all(b.b.stride[0] == 1 and b.b.kernel_size == (1, 3, 3) for b in m.stages[s])
    assert m.stem[0].kernel_size == (1, 7, 7) and m.stem[0].stride == (1, 2, 2)
    assert torch.all(m.stages[0][0].c_bn.weight == 1)  # last BN not zero-initialised


def test_temporal_mixing_starts_at_res4_and_time_is_kept():
    torch.manual_seed(0)
    m = SlowResNet("slow_r26", frames=8, img_size=64).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    y = x.clone()
    y[:, :, 3] += 1.0  # frame 3 only
    with torch.no_grad():
        a, b = m.stages[:2](m.stem(x)), m.stages[:2](m.stem(y))
        assert a.shape == (1, 256, 8, 8, 8)
        changed = (a - b).abs().sum((0, 1, 3, 4)) > 0
        assert changed.tolist() == [i == 3 for i in range(8)]  # res2/res3: per frame
        c, d = m.stages[2](a), m.stages[2](b)  # res4, two blocks of temporal kernel 3
        changed = (c - d).abs().sum((0, 1, 3, 4)) > 0
        assert changed.tolist() == [1 <= i <= 5 for i in range(8)]
        assert m(x).shape == (1, 1024)


def test_built_for_video_data_only_with_clear_errors():
    bb = build_backbone(BackboneConfig("slow_r26"), DataConfig(img_size=32, frames=4))
    assert isinstance(bb, SlowResNet) and bb(torch.randn(2, 3, 4, 32, 32)).shape == (2, 1024)
    assert isinstance(bb.stages[0][0].a_bn, nn.BatchNorm3d)
    with pytest.raises(ValueError, match="data.frames"):
        build_backbone(BackboneConfig("slow_r26"), DataConfig(img_size=32))
    with pytest.raises(ValueError, match="expects clips"):
        bb(torch.randn(2, 3, 32, 32))
