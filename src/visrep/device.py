"""Which device and precision a run computes on (no visrep imports: the lowest layer)."""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

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
    """bf16 on GPUs by default; fp32 on CPU (exact and reproducible; CPUs without bf16
    instructions run bf16 slower). `run.precision=bf16` on a CPU with AVX512-BF16 or AMX is
    1.1-2.4x faster per step (`benchmarks/speed_peers.py`)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"run.precision must be auto, fp32 or bf16, got {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None


class CompiledOrEager:
    """`run.compile`: calls go through `torch.compile(module)`; when compiling fails (no C
    compiler for inductor on a CPU, Triton missing on a GPU, an operator dynamo cannot trace)
    the run does not stop: the reason is logged once and this call and every later one run
    the module eagerly. The RNG state is restored before the eager retry, so the step that
    fell back draws the same masks as a run without `run.compile`. Compiling is lazy, so
    failures surface at the first call; an error raised by the module itself (a shape
    mismatch, bad data) is not a compile failure and propagates unchanged."""

    def __init__(self, module: nn.Module, backend: str | Callable = "inductor") -> None:
        self.module = module
        self.compiled: Callable[..., Any] | None = torch.compile(module, backend=backend)
        self.fallback_reason = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            cpu, cuda = torch.get_rng_state(), _cuda_rng_state()
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 (re-raised unless torch.compile's own)
                if not _is_compile_error(e):
                    raise
                self.compiled = None
                inner = getattr(e, "inner_exception", None) or e
                lines = str(inner).strip().splitlines() or [""]
                self.fallback_reason = f"{type(inner).__name__}: {lines[0]}"
                logging.getLogger("visrep").warning(
                    "run.compile: torch.compile failed (%s); training goes on without "
                    "compiling (set run.compile=false to skip the attempt)", self.fallback_reason
                )  # fmt: skip
                torch.set_rng_state(cpu)
                if cuda is not None:
                    torch.cuda.set_rng_state_all(cuda)
        return self.module(*args, **kwargs)


def _cuda_rng_state() -> list[torch.Tensor] | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.get_rng_state_all()
    return None


def _is_compile_error(e: BaseException) -> bool:
    # imported here: torch._dynamo takes seconds to import and is needed only on a failure
    from torch._dynamo.exc import TorchDynamoException  # noqa: PLC0415
    from torch._inductor.exc import InductorError  # noqa: PLC0415

    return isinstance(e, (TorchDynamoException, InductorError))


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
