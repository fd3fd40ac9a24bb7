"""`visrep.loop.train` on 2 processes (torchrun, gloo, CPU) against what must hold without
trusting the numbers the loop reports about itself (its checkpoint's `param_spread`): each
process's own final weights, and the sample rows each process's data source drew.

- MAE: 2 processes with batch B end at the weights of 1 process with batch 2B (issue 16,
  part 3), and the processes see disjoint images whose union is the 1-process batch;
- MoCo v3 (momentum encoder, LARS, BatchNorm in the heads): the replicas stay bitwise
  identical and see disjoint images. It cannot equal a 1-process run of batch 2B by
  design: on CPU/gloo there is no SyncBatchNorm (`loop.train` converts only on CUDA), so the
  heads' BatchNorm normalises each process's half-batch with its own statistics (MoCo v3
  `main_moco.py` uses SyncBN on GPUs, which the loop does there; untested here: no GPU).
"""

import json
import os
import subprocess
import sys

import torch
from conftest import REPO, requires_fmnist
from loop_dist_worker import run

from visrep.checkpoint import load_checkpoint

pytestmark = requires_fmnist

WORKER = REPO / "tests" / "loop_dist_worker.py"

# the largest weight difference between the 2-process and the 1-process run over the largest
# change from the initialisation, after 8 SGD steps of MAE smoke (2 epochs of 256 images,
# global batch 64). Measured 2.4e-7 / 0.41 = 6e-7: the two runs sum the same per-image
# gradients in another order (DDP averages the two halves' gradients, one process averages
# the whole batch), i.e. float32 rounding; the bound leaves 17x room. A process that trained
# on the other's images, or gradients left unsynchronised, differ by the order of the change
# itself (~1). SGD, not the recipe's AdamW: Adam divides by sqrt(v), which magnifies the
# rounding of near-zero gradients to a fraction of the lr (measured 7.6e-5 / 4.1e-3 = 0.019),
# so a bound for it would be ~3000x looser and the same check slower by another torchrun.
DIST_REL = 1e-5

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _torchrun(out, spec: dict, timeout: float = 240) -> list[dict]:
    """Run the worker on 2 processes; return what each rank saved."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(out), json.dumps(spec)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _check_disjoint(ranks: list[dict], steps: int, per_rank: int) -> None:
    """Each step, the processes drew `per_rank` distinct rows each, none shared; every step
    of the run was drawn once per process."""
    for seen in ranks:
        assert [s for s, _ in seen["indices"]] == list(range(steps))
    for (s, a), (_, b) in zip(ranks[0]["indices"], ranks[1]["indices"]):
        assert len(set(a)) == len(set(b)) == per_rank, s
        assert not set(a) & set(b), f"step {s}: both processes trained on {set(a) & set(b)}"


def _check_replicas_identical(ranks: list[dict], run_dir) -> None:
    """Every parameter and buffer of the two processes' final models is bitwise equal, but
    BatchNorm running statistics: DDP broadcasts rank 0's buffers before each forward, and the
    last forward then updates each process's copy from its own half-batch (by design; rank 0's,
    which the checkpoint holds, are what a resume loads on every process)."""
    a, b = ranks[0]["final"], ranks[1]["final"]
    assert a.keys() == b.keys()
    for k in a:
        if not k.endswith(BN_STATS[:2]):
            assert torch.equal(a[k], b[k]), f"the processes' {k} differ"
    saved = load_checkpoint(run_dir)["model"]  # rank 0's checkpoint is its replica
    for k in a:
        assert torch.equal(saved[k], a[k]), k


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path, monkeypatch):
    """MAE smoke with SGD for 8 optimizer steps (2 epochs, a new permutation in the second): 2
    processes × 32 images vs 1 process × 64, same seed and lr (blr × 64 / 256 in both).

    What makes them comparable: batch s of an epoch is rows [(2i + r)·32, (2i + r + 1)·32) of
    the epoch's permutation on process r (`TensorTrainData.indices`) and [i·64, (i+1)·64) on
    one process, so the two halves are exactly the global batch. The loop seeds the crop and
    the mask noise by (seed, step, rank); the worker turns the crop off and makes the noise a
    function of the image (`loop_dist_worker.global_batch_draws`) in both runs. MAE's loss is
    a mean over equally many masked patches per image and its ViT has no BatchNorm, so DDP's
    average of the two halves' gradients is the gradient of the whole batch."""
    changes = {"optim.optimizer": "sgd", "optim.lr": 0.1}
    spec = {"recipe": "mae_fmnist", "global_batch": True, "changes": changes}
    ranks = _torchrun(tmp_path, {**spec, "changes": {**changes, "optim.batch_size": 32}})
    one = run({**spec, "changes": {**changes, "optim.batch_size": 64}}, str(tmp_path / "one"),
              monkeypatch.setattr)  # fmt: skip
    assert (
        load_checkpoint(tmp_path / "run")["step"] == load_checkpoint(tmp_path / "one")["step"] == 8
    )
    _check_disjoint(ranks, steps=8, per_rank=32)
    for (s, a), (_, b), (_, g) in zip(ranks[0]["indices"], ranks[1]["indices"], one["indices"]):
        assert a + b == g, f"step {s}: the two halves are not the 1-process batch"
    _check_replicas_identical(ranks, tmp_path / "run")
    for k, v in one["initial"].items():  # the same initialisation (run.seed)
        assert torch.equal(v, ranks[0]["initial"][k]), k
    two, start = ranks[0]["final"], one["initial"]
    differ = max((two[k] - one["final"][k]).abs().max().item() for k in two)
    moved = max((one["final"][k] - start[k]).abs().max().item() for k in two)
    assert differ <= DIST_REL * moved, (differ, moved)


def test_two_processes_of_mocov3_stay_identical_and_see_disjoint_images(tmp_path):
    """MoCo v3 smoke (ResNet-18, LARS, momentum encoder updated by the step hook, keys
    gathered across processes): after 8 DDP steps each process's own replica, momentum
    encoder included, equals the other's bitwise, and the processes drew disjoint images."""
    ranks = _torchrun(tmp_path, {"recipe": "mocov3_fmnist"})
    state = load_checkpoint(tmp_path / "run")
    assert state["world_size"] == 2 and state["step"] == 8  # 256 / (32 × 2) = 4 steps × 2 epochs
    _check_disjoint(ranks, steps=8, per_rank=32)
    _check_replicas_identical(ranks, tmp_path / "run")
    # the momentum encoder's weights moved (the step hook's EMA); not its BatchNorm statistics,
    # which every forward pass updates even when the hook never runs
    moved = [k for k, v in ranks[0]["final"].items()
             if k.startswith("momentum_") and not k.endswith(BN_STATS)
             and not torch.equal(v, ranks[0]["initial"][k])]  # fmt: skip
    assert moved, "the momentum encoder's weights never moved"
