"""Which device and precision a run computes on (no visrep imports: the lowest layer)."""

from __future__ import annotations

import torch

CPU = torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """`run.device`: "auto" (a GPU when one is visible), "cpu", "cuda" or "cuda:N"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(f"run.device={name!r} is not a device: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("run.device=cuda but no GPU is visible; use run.device=cpu (or auto)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs by default; fp32 on CPU, where bf16 runs at half speed without AMX."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"run.precision must be auto, fp32 or bf16, got {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None
