import os
import subprocess
import sys
from pathlib import Path

import pytest

FMNIST = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]

requires_fmnist = pytest.mark.skipif(
    not (FMNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist",
)


def visrep(
    *args: str, check: bool = True, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess with one torch thread (tests run two at a time)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "visrep.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=kw.pop("cwd", REPO), **kw,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"visrep {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc


def torchrun_worker(script: Path, out: Path, timeout: float = 180) -> dict:
    """Run `script out` under `torchrun --standalone --nproc_per_node=2` (gloo, one thread
    each) and return what rank 0 saved to `out` (loaded with weights_only)."""
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)
