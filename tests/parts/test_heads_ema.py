import pytest
import torch
from torch import nn

from visrep.parts.ema import cosine_momentum, ema_update, frozen_copy
from visrep.parts.heads import freeze_last_bias, mlp


def _kinds(head):
    out = []
    for m in head:
        if isinstance(m, nn.Linear):
            out.append(("L", m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("BN", m.affine))
        else:
            out.append((type(m).__name__,))
    return out


def test_mocov3_vit_projector_layout():
    """No biases; BN+ReLU on hidden layers; last BN affine-free (moco-v3 `moco/builder.py`)."""
    head = mlp([384, 64, 64, 32], bias=False, last_bn=True)
    assert _kinds(head) == [("L", False), ("BN", True), ("ReLU",), ("L", False), ("BN", True),
                            ("ReLU",), ("L", False), ("BN", False)]  # fmt: skip


def test_simsiam_heads():
    proj = mlp([16, 32, 32, 32], bias=False, last_bn=True, last_bias=True)
    freeze_last_bias(proj)
    assert _kinds(proj)[-2:] == [("L", True), ("BN", False)]
    assert not proj[-2].bias.requires_grad and proj[-2].weight.requires_grad
    pred = mlp([32, 8, 32], bias=False, last_bn=False, last_bias=True)
    assert _kinds(pred) == [("L", False), ("BN", True), ("ReLU",), ("L", True)]
    assert pred(torch.randn(4, 32)).shape == (4, 32)


def test_slip_simclr_head_has_biases_and_no_output_bn():
    assert _kinds(mlp([8, 16, 16, 4], bias=True, last_bn=False))[-1] == ("L", True)
    with pytest.raises(ValueError):
        mlp([8], bias=True, last_bn=False)


def test_ema_update_formula_and_frozen_copy():
    online = nn.Linear(3, 2)
    target = frozen_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    torch.testing.assert_close(target.weight, online.weight)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = target.weight.clone()
    ema_update(target, online, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight)


def test_cosine_momentum_schedule():
    """m(e) = 1 − ½(1 + cos(π e/E))(1 − m0): m0 at the start, 1 at the end (moco-v3
    `main_moco.py`)."""
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.99, 0.25) < cosine_momentum(0.99, 0.75)
