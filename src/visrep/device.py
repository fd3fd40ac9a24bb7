"""Which device and precision a run computes on (no visrep imports: the lowest layer)."""

from __future__ import annotations

import ctypes
import gc
import sys

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


def release_memory() -> None:
    """Hands memory freed by Python and torch back to the operating system, between the
    phases of a long job (training, then each evaluation step), so the process's resident
    size follows what it holds rather than its high-water mark: a garbage collection, then
    glibc's `malloc_trim(0)` (glibc keeps freed heap pages mapped, and after torch frees a
    large tensor it raises its mmap threshold so later tensors come from that heap), and
    the CUDA cache. A no-op where there is no glibc."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (musl and macOS have none)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc() if sys.platform.startswith("linux") else None
