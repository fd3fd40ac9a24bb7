"""Run by test_clip_loss_dist.py under `torchrun --nproc_per_node=2` (gloo): each process
takes its half of a fixed global batch, computes `clip_loss` and the gradients w.r.t. its
own embeddings and the logit scale; rank 0 writes the gathered results to OUT (argv[1])."""

import sys

import torch
import torch.distributed as dist

from visrep.parts.losses import clip_loss


def global_batch(n: int = 8, d: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = {k: torch.randn(n, d, generator=g, dtype=torch.float64) for k in ("image", "text")}
    return x | {"scale": torch.tensor(2.5, dtype=torch.float64)}


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    full = global_batch()
    n = full["image"].shape[0] // world
    img = full["image"][rank * n : (rank + 1) * n].clone().requires_grad_(True)
    txt = full["text"][rank * n : (rank + 1) * n].clone().requires_grad_(True)
    scale = full["scale"].clone().requires_grad_(True)
    loss = clip_loss(img, txt, scale)
    g_img, g_txt, g_scale = torch.autograd.grad(loss, [img, txt, scale])
    out = {}
    for name, t in (("loss", loss.detach()), ("grad_scale", g_scale)):
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        out[name] = torch.stack(parts).mean()  # DDP averages over processes
    for name, t in (("grad_image", g_img), ("grad_text", g_txt)):
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        out[name] = torch.cat(parts) / world
    if rank == 0:
        torch.save(out, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
