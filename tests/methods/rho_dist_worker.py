"""Run by test_rho.py under `torchrun --nproc_per_node=2` (gloo): each process computes the
ρSimCLR and ρMoCo losses on its half of a fixed global batch and backpropagates; writes
OUT/rank{r}.pt with the losses and the gradients of its own rows (argv[1] = OUT)."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from visrep.parts.losses import nt_xent
from visrep.parts.rho_losses import l2_normalize, rho_moco_loss


def global_batch(n: int = 8, d: int = 16, rho: int = 3):
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(rho)]
    keys = [l2_normalize(torch.randn(n, d, generator=g, dtype=torch.float64)) for _ in range(rho)]
    queue = l2_normalize(torch.randn(32, d, generator=g, dtype=torch.float64))
    return z, keys, queue


def losses(z, keys, queue, tau=0.1):
    """ρSimCLR (chained pairs) and ρMoCo (every query) summed over the clips."""
    simclr = sum(nt_xent(z[k], z[k + 1], tau) for k in range(len(z) - 1))
    moco = sum(rho_moco_loss(l2_normalize(v), keys[:k] + keys[k + 1 :], queue, tau)
               for k, v in enumerate(z))  # fmt: skip
    return simclr, moco


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    z, keys, queue = global_batch()
    n = len(z[0]) // world
    rows = slice(rank * n, (rank + 1) * n)
    local = [v[rows].clone().requires_grad_(True) for v in z]
    simclr, moco = losses(local, [k[rows] for k in keys], queue)
    simclr_grad = torch.autograd.grad(simclr, local, retain_graph=True)
    moco_grad = torch.autograd.grad(moco, local)
    torch.save({"simclr": simclr.detach(), "moco": moco.detach(), "simclr_grad": simclr_grad,
                "moco_grad": moco_grad}, Path(sys.argv[1]) / f"rank{rank}.pt")  # fmt: skip
    dist.destroy_process_group()
