"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save`
and read back with `torch.load(weights_only=True)`, which refuses anything that
would need arbitrary code (pickled classes). The resolved config sits beside it
as `config.json`; exported backbones use safetensors.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import torch

from visrep.io import LOW_SPACE, MiB, atomic_write, free_bytes

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOCK = ".lock"
FORMAT_VERSION = 1


class RunDirLock:
    """Exclusive ownership of a run folder by one process, for the length of a run.

    An advisory `flock` on `run_dir/.lock`: the kernel releases it when the process ends in
    any way (kill -9 included), so a lock is never stale. A second writer is refused with the
    owner's pid instead of interleaving logs and checkpoints. Once the lock is held, the
    temporary files of writes that a kill interrupted (`.NAME.*.tmp`) are removed."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._file = None

    def __enter__(self) -> RunDirLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file of that name, a file above it, a read-only disk
            raise OSError(e.errno, f"cannot make the run folder {self.run_dir} ({e.strerror}): "
                          "choose another run.out_dir") from e  # fmt: skip
        f = open(self.run_dir / LOCK, "a+")  # noqa: SIM115 (held open for the run)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise OSError(
                errno.EBUSY,
                f"{self.run_dir} is in use by {owner}, which is training into it; wait for it to "
                "end, or give this run another run.out_dir",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f
        for tmp in self.run_dir.glob(".*.tmp"):  # debris of a write killed midway
            tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `run_dir/checkpoint.pt` (temp file + fsync + rename)."""
    path = Path(run_dir) / CHECKPOINT
    atomic_write(path, lambda tmp: torch.save({"format_version": FORMAT_VERSION, **state}, tmp))
    return path


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About how many bytes `save_checkpoint` will write for `model`: its state dict plus
    two optimizer slots per trainable parameter (AdamW's moments; an upper bound for LARS
    and SGD, one slot). Pickle and metadata overhead is small beside them."""
    storages: dict[int, int] = {}  # torch.save writes a storage shared by entries once

    def visit(v: Any) -> None:  # extra states (e.g. CiT's) may nest tensors in containers
        if isinstance(v, torch.Tensor):
            storages[v.untyped_storage().data_ptr()] = v.untyped_storage().nbytes()
        elif isinstance(v, dict | list | tuple):
            for x in v.values() if isinstance(v, dict) else v:
                visit(x)

    visit(model.state_dict())
    state = sum(storages.values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state + 2 * trainable


def space_warning(run_dir: str | Path, model: torch.nn.Module) -> str | None:
    """A message when `run_dir`'s file system cannot hold one more checkpoint of `model`
    (checked at the start of a run, so it does not learn this after hours, at its first save)."""
    need, free = checkpoint_bytes(model), free_bytes(run_dir)
    if free >= need + LOW_SPACE:  # the margin below which a failed write means a full disk
        return None
    return (
        f"{run_dir} has {free / MiB:,.0f} MiB free but a checkpoint of this run needs about "
        f"{need / MiB:,.0f} MiB (weights and optimizer state): the first save will fail; free "
        f"some space or choose another run.out_dir"
    )


def checkpoint_path(ckpt: str | Path) -> Path:
    """Accept a run folder or a checkpoint file; explain what is missing."""
    p = Path(ckpt)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {p}: pass a run folder written by `visrep train` "
            f"(it holds {CHECKPOINT} and {CONFIG})"
        )
    return p


def load_checkpoint(ckpt: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = checkpoint_path(ckpt)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # a pickle that needs code: hostile, or not visrep's
        lines = [x.strip() for x in str(e).splitlines()]
        what = next((x for x in lines if "GLOBAL" in x or "Unsupported" in x), "not tensors")
        raise ValueError(f"{path} holds objects that only running code could rebuild ({what}); "
                         "visrep loads checkpoints without running code: use one written by "
                         "`visrep train`") from e  # fmt: skip
    except Exception as e:  # truncated or foreign file; torch's text runs to several lines
        why = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not a readable visrep checkpoint ({why}): a file cut short "
                         "or of another kind; copy it again from its run folder") from e  # fmt: skip
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise ValueError(f"{path} is not a visrep checkpoint (missing 'model'/'step')")
    return state


DIFFERENT_RUNS = (
    f"{CONFIG} and {CHECKPOINT} come from different runs; put the {CONFIG} saved with this "
    f"{CHECKPOINT} beside it (or start a new run)"
)


def load_model_weights(
    model: torch.nn.Module, state: dict[str, Any], method: str, *, what: str, target: str, fix: str
) -> None:
    """Load a checkpoint's model weights into `model` (strict), or raise one ValueError that
    says what differs and what to do: the checkpoint holds another method, or its tensors do
    not fit (missing, unexpected, another shape). The one check for every path that puts a
    checkpoint into a model built from a config: `visrep eval` and `export` (`runs.load_run`),
    `train --resume` and `run.init_from`.

    Args:
        model: built from the config (`method` is its method's name).
        state: a `load_checkpoint` dict.
        what: the checkpoint, as the message names it ("runs/a/checkpoint.pt").
        target: what describes the model ("runs/a/config.json describes").
        fix: what the user should do.
    """
    if state.get("method") != method:
        raise ValueError(
            f"{what} holds a {state.get('method')!r} run, but {target} a {method!r} run: {fix}"
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        diff = weights_mismatch(model.state_dict(), state["model"]) or str(e).splitlines()[0]
        raise ValueError(f"{what} does not fit the model {target} ({diff}): {fix}") from e


def weights_mismatch(model: dict[str, Any], ckpt: dict[str, Any]) -> str:
    """A one-line summary of how two state dicts differ ("" when they fit)."""
    shape = lambda v: list(getattr(v, "shape", ()))  # noqa: E731
    other = [f"{k} {shape(ckpt[k])} in the checkpoint, {shape(v)} in the model"
             for k, v in model.items() if k in ckpt and shape(ckpt[k]) != shape(v)]  # fmt: skip
    missing = [k for k in model if k not in ckpt]
    extra = [k for k in ckpt if k not in model]
    parts = [f"{len(other)} tensor(s) of another shape, e.g. {other[0]}"] if other else []
    parts += [f"{len(missing)} missing from the checkpoint, e.g. {missing[0]}"] if missing else []
    parts += [f"{len(extra)} not in the model, e.g. {extra[0]}"] if extra else []
    return "; ".join(parts)


def load_run_config_dict(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a visrep run folder?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        data = e
    if not isinstance(data, dict):
        why = f" ({data})" if isinstance(data, Exception) else ""
        raise ValueError(f"{path} is not a visrep run config{why}: put back the {CONFIG} "
                         f"saved with this run's {CHECKPOINT}")  # fmt: skip
    return data
