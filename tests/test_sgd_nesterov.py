"""optim.nesterov: the loop's SGD gets Nesterov momentum (torch.optim.SGD nesterov=True, as
SlowFast's SOLVER.NESTEROV), checked against the update by hand; refused off SGD."""

import pytest
import torch
from torch import nn

from visrep.config import ConfigError, OptimConfig
from visrep.loop import build_optimizer


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_nesterov_update_by_hand(nesterov):
    """Two steps on a fixed gradient g, momentum μ, lr η, buffer b (b1 = g, b2 = μ·b1 + g):
    Nesterov p -= η·(g + μ·b), plain p -= η·b."""
    lin = nn.Linear(3, 1, bias=False)
    o = OptimConfig(optimizer="sgd", nesterov=nesterov, momentum=0.9, weight_decay=0.0)
    opt = build_optimizer(lin, o, 0.1)
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["nesterov"] is nesterov and g["momentum"] == 0.9 for g in opt.param_groups)
    p0, g = lin.weight.detach().clone(), torch.tensor([[1.0, -2.0, 0.5]])
    for _ in range(2):
        lin.weight.grad = g.clone()
        opt.step()
    mu, lr = 0.9, 0.1
    b1, b2 = g, mu * g + g
    steps = (g + mu * b1) + (g + mu * b2) if nesterov else b1 + b2
    torch.testing.assert_close(lin.weight.detach(), p0 - lr * steps)


def test_nesterov_only_with_sgd():
    with pytest.raises(ConfigError, match="optim.nesterov=true.*optim.optimizer=sgd"):
        OptimConfig(optimizer="adamw", nesterov=True)
    with pytest.raises(ConfigError, match="momentum > 0"):
        OptimConfig(optimizer="sgd", nesterov=True, momentum=0.0)
    assert not OptimConfig().nesterov
