"""Exact resume through `visrep.loop.train` for one recipe of every method family (issue 16,
part 3): N steps straight and N/2 + `--resume` + N/2 end at bitwise-identical weights and
optimizer state. MAE (`test_train.py`, kill -9 and SIGTERM), fine-tuning
(`methods/test_supervised.py`) and CiT (`curation/test_cit.py`) have their own tests.

Why equality and not closeness: a batch, its augmentation and every draw inside the method
(masks, views) are functions of (seed, step, rank) (`data/sampling.py`, the loop's per-step
`torch.manual_seed`), and everything else that a step reads is in the checkpoint (weights,
BatchNorm statistics, momentum encoders, optimizer moments, the step), so the resumed run
repeats the same float operations in the same order on the same CPU.
"""

import pytest
import torch
from conftest import requires_fmnist

from visrep.checkpoint import load_checkpoint
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.data.resolve import resolve_data
from visrep.loop import train
from visrep.runs import build_model

pytestmark = requires_fmnist

QUIET = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1, "run.progress": False}

# one recipe per family not covered elsewhere: joint embedding (SimSiam: SGD, fixed-lr
# predictor, per-epoch lr; MoCo v3: LARS, momentum encoder; SimCLR), MaskFeat (HOG targets),
# convolutional masked image modelling (FCMAE: sparse ConvNeXt V2; SparK: LAMB, rising weight
# decay), image-text on Fashion-MNIST's templated captions (CLIP, SLIP, FLIP: masked CLIP)
FAMILIES = ["simsiam_fmnist", "mocov3_fmnist", "simclr_fmnist", "maskfeat_fmnist",
            "fcmae_fmnist", "spark_fmnist", "clip_fmnist", "slip_fmnist", "flip_fmnist"]  # fmt: skip

# 32 images in batches of 8: 4 steps per epoch, 2 epochs (warmup, then the cosine). The run
# stops at step 6 of 8 (the schedule is the 8-step one in both runs); the resume starts at
# step 3, mid-epoch and mid-warmup, and crosses into the second epoch's permutation.
STEPS, HALF = 6, 3
SIZE = {"optim.batch_size": 8, "data.limit": 32}


def _tensors(x, path=""):
    """(path, tensor) for every tensor in a nested state (model and optimizer state dicts)."""
    if torch.is_tensor(x):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _tensors(v, f"{path}/{k}")
    elif isinstance(x, list | tuple):
        for i, v in enumerate(x):
            yield from _tensors(v, f"{path}/{i}")


@pytest.mark.parametrize("recipe", FAMILIES)
def test_resume_halfway_equals_the_straight_run(recipe, tmp_path):
    cfg = replace(smoke(get_recipe(recipe)), **QUIET, **SIZE)
    straight, part = tmp_path / "straight", tmp_path / "part"
    train(replace(cfg, **{"run.out_dir": str(straight), "run.max_steps": STEPS}))
    train(replace(cfg, **{"run.out_dir": str(part), "run.max_steps": HALF}))
    assert load_checkpoint(part)["step"] == HALF
    train(replace(cfg, **{"run.out_dir": str(part), "run.max_steps": STEPS}), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(part)
    assert a["step"] == b["step"] == STEPS
    ta = dict(_tensors({"model": a["model"], "optimizer": a["optimizer"]["state"]}))
    tb = dict(_tensors({"model": b["model"], "optimizer": b["optimizer"]["state"]}))
    assert ta.keys() == tb.keys() and a["optimizer"]["state"]
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, differ
    # the last step's lr and weight decay per group (the schedule resumed where it was)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    # the run moved from its initialisation (a run that does not train resumes "exactly" too)
    torch.manual_seed(cfg.run.seed)  # as `loop.train` does before building the model
    start = build_model(resolve_data(cfg)).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in a["model"].items()), "nothing trained"
