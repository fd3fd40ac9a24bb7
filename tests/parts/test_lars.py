"""LARS (moco-v3 `moco/optimizer.py`, mae `util/lars.py`): steps checked against hand-computed
values."""

import math

import pytest
import torch

from visrep.parts.lars import LARS

F64 = torch.float64


def _params(weight, bias):
    w = torch.nn.Parameter(torch.tensor(weight, dtype=F64))
    b = torch.nn.Parameter(torch.tensor(bias, dtype=F64))
    return w, b


def _step(opt, params, grads):
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=F64)
    opt.step()


def test_one_step_no_weight_decay_by_hand():
    # ||W|| = 5, ||g|| = 10 -> q = 0.001 * 5 / 10 = 5e-4; first mu = q * g.
    w, b = _params([[3.0, 4.0], [0.0, 0.0]], [1.0, -1.0])
    opt = LARS([w, b], lr=2.0)
    _step(opt, [w, b], [[[0.0, 0.0], [6.0, 8.0]], [0.5, 0.25]])
    expected_w = torch.tensor([[3.0, 4.0], [-2 * 5e-4 * 6, -2 * 5e-4 * 8]], dtype=F64)
    torch.testing.assert_close(w.detach(), expected_w, rtol=0, atol=1e-15)
    # The bias gets plain SGD: b - lr * g, no trust ratio.
    torch.testing.assert_close(b.detach(), torch.tensor([0.0, -1.5], dtype=F64), rtol=0, atol=0)


def test_two_steps_with_weight_decay_by_hand():
    w, b = _params([[3.0, 4.0], [0.0, 0.0]], [1.0, -1.0])
    wd, lr, m, eta = 0.5, 1.0, 0.9, 0.001
    opt = LARS([w, b], lr=lr, weight_decay=wd, momentum=m, trust_coefficient=eta)
    g = [[0.0, 0.0], [6.0, 8.0]]
    _step(opt, [w, b], [g, [0.5, 0.25]])
    # Step 1: g' = g + wd * W = [[1.5, 2], [6, 8]], ||g'||^2 = 106.25, ||W|| = 5.
    q1 = eta * 5 / math.sqrt(106.25)
    mu1 = [[q1 * 1.5, q1 * 2.0], [q1 * 6.0, q1 * 8.0]]
    w1 = [[3.0 - mu1[0][0], 4.0 - mu1[0][1]], [-mu1[1][0], -mu1[1][1]]]
    torch.testing.assert_close(w.detach(), torch.tensor(w1, dtype=F64), rtol=1e-13, atol=0)
    _step(opt, [w, b], [g, [0.5, 0.25]])
    # Step 2: g' = g + wd * W1; q2 = eta ||W1|| / ||g'||; mu2 = m mu1 + q2 g'.
    g2 = [[g[i][j] + wd * w1[i][j] for j in range(2)] for i in range(2)]
    norm = lambda a: math.sqrt(sum(x * x for row in a for x in row))  # noqa: E731
    q2 = eta * norm(w1) / norm(g2)
    w2 = [[w1[i][j] - lr * (m * mu1[i][j] + q2 * g2[i][j]) for j in range(2)] for i in range(2)]
    torch.testing.assert_close(w.detach(), torch.tensor(w2, dtype=F64), rtol=1e-13, atol=0)
    # Bias: no weight decay; mu = [0.5, 0.25] then 0.9 * mu + g = [0.95, 0.475].
    torch.testing.assert_close(b.detach(), torch.tensor([-0.45, -1.725], dtype=F64))


def test_bias_matches_torch_sgd_with_momentum():
    torch.manual_seed(0)
    b1 = torch.nn.Parameter(torch.randn(7, dtype=F64))
    b2 = torch.nn.Parameter(b1.detach().clone())
    lars = LARS([b1], lr=0.3, weight_decay=0.1)  # wd must not touch the 1-D param
    sgd = torch.optim.SGD([b2], lr=0.3, momentum=0.9)
    for _ in range(5):
        g = torch.randn(7, dtype=F64)
        b1.grad, b2.grad = g.clone(), g.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(b1, b2, rtol=0, atol=1e-15)


def test_zero_norms_fall_back_to_trust_ratio_one():
    w = torch.nn.Parameter(torch.zeros(2, 2, dtype=F64))
    opt = LARS([w], lr=0.5)
    w.grad = torch.tensor([[1.0, -2.0], [0.0, 4.0]], dtype=F64)
    opt.step()  # ||W|| = 0 -> q = 1: plain SGD step
    torch.testing.assert_close(w.detach(), torch.tensor([[-0.5, 1.0], [0.0, -2.0]], dtype=F64))
    v = torch.nn.Parameter(torch.ones(3, 3, dtype=F64))
    opt = LARS([v], lr=0.5)
    v.grad = torch.zeros(3, 3, dtype=F64)
    opt.step()  # ||g|| = 0 -> q = 1 and a zero step, never NaN
    torch.testing.assert_close(v.detach(), torch.ones(3, 3, dtype=F64), rtol=0, atol=0)


def test_trust_ratio_makes_step_norm_independent_of_grad_scale():
    # 4-D conv kernels are adapted too; the first step has norm lr * eta * ||W||.
    for scale in (1e-3, 1.0, 1e3):
        torch.manual_seed(0)
        k = torch.nn.Parameter(torch.randn(4, 3, 3, 3, dtype=F64))
        before = k.detach().clone()
        opt = LARS([k], lr=2.0)
        k.grad = scale * torch.randn(4, 3, 3, 3, dtype=F64)
        opt.step()
        step_norm = (k.detach() - before).norm().item()
        assert step_norm == pytest.approx(2.0 * 0.001 * before.norm().item(), rel=1e-12)


def test_param_groups_with_extra_keys_and_missing_grads():
    w = torch.nn.Parameter(torch.ones(2, 2))
    unused = torch.nn.Parameter(torch.ones(2, 2))
    opt = LARS([{"params": [w], "lr_scale": 0.5}, {"params": [unused], "lr": 0.0}], lr=1.0)
    assert opt.param_groups[0]["lr_scale"] == 0.5
    assert opt.param_groups[0]["trust_coefficient"] == 0.001
    w.grad = torch.ones(2, 2)
    opt.step()  # `unused` has no grad: skipped, no state created
    assert unused not in opt.state and torch.equal(unused, torch.ones(2, 2))
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 1 - 0.001))
    restored = LARS([{"params": [w], "lr_scale": 0.5}, {"params": [unused], "lr": 0.0}], lr=1.0)
    restored.load_state_dict(opt.state_dict())
    assert torch.equal(restored.state[w]["mu"], opt.state[w]["mu"])


def test_closure_and_invalid_arguments():
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = LARS([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 4.0
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS([w], trust_coefficient=0.0)
    with pytest.raises(ValueError, match="lr"):
        LARS([w], lr=-1.0)
