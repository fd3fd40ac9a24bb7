"""Distributed helpers. All are no-ops on a single process, so no code path only runs
distributed. Launch with `torchrun --nproc_per_node=N -m visrep.cli train ...`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group torchrun describes (env RANK/WORLD_SIZE); gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistEnv()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def any_true(*flags: bool, device: torch.device) -> list[bool]:
    """For each flag: true on every process if it is true on any. Decisions such as
    "save now" (a signal or a timer on one rank) must be collective under DDP."""
    if not is_distributed():
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_object(obj: object, src: int = 0) -> object:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def param_spread(module: torch.nn.Module) -> float:
    """Largest difference of per-parameter sums between this process and rank 0 (0.0 when
    the replicas are in sync, as DDP guarantees: every rank applies the same averaged
    gradients). Checked at every checkpoint; 0.0 on one process."""
    if not is_distributed():
        return 0.0
    sums = torch.stack([p.detach().double().sum() for p in module.parameters()])
    gathered = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) on a single process."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [n, ...] from every process along dim 0 -> [n·W, ...], without a
    gradient path (MoCo v3 keys: moco-v3 `moco/builder.py` `concat_all_gather`; CLIP
    features: SLIP `utils.py` `all_gather_batch`). Identity on one process (a detached
    view)."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all_gather. Backward: all-reduce (sum) the gradients of every slice and
    return this process's own (facebookresearch/SLIP `utils.py` `GatherLayer`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        g = torch.stack([gr.contiguous() for gr in grads])
        dist.all_reduce(g)
        return g[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every process keeping the gradient: backward sums the gradients
    that every process computed for this process's slice (SLIP `utils.py` `GatherLayer`,
    `all_gather_batch_with_grad`). Identity on one process."""
    if not is_distributed():
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)
