"""Run by test_losses.py under `torchrun --nproc_per_node=2` (gloo): each process takes its
half of a fixed global batch, computes the loss and the gradient w.r.t. its own features,
and rank 0 writes everything gathered to OUT (argv[1])."""

import sys

import torch
import torch.distributed as dist

from visrep.parts.losses import infonce_mocov3, nt_xent


def global_batch(n: int = 8, d: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k in ("q", "k", "a", "b")}


def losses(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"mocov3": infonce_mocov3(x["q"], x["k"], 0.2), "simclr": nt_xent(x["a"], x["b"], 0.1)}


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    full = global_batch()
    n = full["q"].shape[0] // world
    local = {k: v[rank * n : (rank + 1) * n].clone().requires_grad_(True) for k, v in full.items()}
    out = {}
    for name, loss in losses(local).items():
        grads = torch.autograd.grad(loss, list(local.values()), allow_unused=True)
        out[name] = loss.detach()
        for key, gr in zip(local, grads):
            gr = torch.zeros_like(local[key]) if gr is None else gr
            parts = [torch.empty_like(gr) for _ in range(world)]
            dist.all_gather(parts, gr.contiguous())
            out[f"{name}_grad_{key}"] = torch.cat(parts) / world  # DDP averages over processes
        values = [torch.empty_like(out[name]) for _ in range(world)]
        dist.all_gather(values, out[name])
        out[name] = torch.stack(values).mean()
    if rank == 0:
        torch.save(out, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
