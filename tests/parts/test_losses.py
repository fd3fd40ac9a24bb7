import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import torchrun_worker

from visrep.parts.losses import infonce_mocov3, negative_cosine, nt_xent

HERE = Path(__file__).resolve().parent


def test_negative_cosine_formula_and_stop_gradient():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(5, 7, generator=g, requires_grad=True)
    z = torch.randn(5, 7, generator=g, requires_grad=True)
    loss = negative_cosine(p, z)
    want = -torch.stack([p[i] @ z[i] / (p[i].norm() * z[i].norm()) for i in range(5)]).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert z.grad is None  # the target is detached
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert float(negative_cosine(z.detach(), z.detach())) == pytest.approx(-1.0)


def test_infonce_mocov3_formula():
    g = torch.Generator().manual_seed(1)
    q, k, tau = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), 0.2
    qn = q / q.norm(dim=1, keepdim=True)
    kn = k / k.norm(dim=1, keepdim=True)
    # row i: -log softmax(q_i·k_j/τ)_i, averaged, times 2τ (moco-v3 `moco/builder.py`)
    rows = [-(torch.log_softmax(qn[i] @ kn.T / tau, 0)[i]) for i in range(6)]
    torch.testing.assert_close(infonce_mocov3(q, k, tau), torch.stack(rows).mean() * 2 * tau)


def test_infonce_keys_get_no_gradient():
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    infonce_mocov3(q, k, 1.0).backward()
    assert k.grad is None and q.grad is not None


def test_nt_xent_formula_by_enumeration():
    """Each anchor of view a: positive b_i against every b_j and a_j (j != i); same for b."""
    g = torch.Generator().manual_seed(2)
    a, b, tau = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), 0.1
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)

    def anchor_loss(x, y, i):
        cands = [x[i] @ y[j] / tau for j in range(5)] + [
            x[i] @ x[j] / tau for j in range(5) if j != i
        ]  # 2n - 1 candidates; the positive y_i is candidate i
        return -torch.log_softmax(torch.stack(cands), 0)[i]

    want = (
        torch.stack([anchor_loss(an, bn, i) for i in range(5)]).mean()
        + torch.stack([anchor_loss(bn, an, i) for i in range(5)]).mean()
    ) / 2
    torch.testing.assert_close(nt_xent(a, b, tau), want, rtol=1e-5, atol=1e-6)


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    """Issue 3 acceptance: 2 gloo processes × B give the loss and gradients of 1 × 2B."""
    sys.path.insert(0, str(HERE))
    from dist_losses_worker import global_batch, losses

    got = torchrun_worker(HERE / "dist_losses_worker.py", tmp_path / "dist.pt")
    full = {k: v.requires_grad_(True) for k, v in global_batch().items()}
    for name, loss in losses(full).items():
        torch.testing.assert_close(got[name], loss.detach(), rtol=1e-10, atol=1e-12)
        grads = torch.autograd.grad(loss, list(full.values()), allow_unused=True)
        for key, gr in zip(full, grads):
            gr = torch.zeros_like(full[key]) if gr is None else gr
            torch.testing.assert_close(got[f"{name}_grad_{key}"], gr, rtol=1e-10, atol=1e-12)
    assert got["simclr_grad_a"].abs().sum() > 0 and got["mocov3_grad_q"].abs().sum() > 0
