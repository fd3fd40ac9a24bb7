"""Run by test_loop_dist.py under `torchrun --nproc_per_node=2` (gloo): `visrep.loop.train` on
the smoke version of a recipe; each process writes to OUT/rank{r}.pt (argv[1]) its own final
weights (its replica, not rank 0's checkpoint) and the sample indices its data source drew
per step. argv[2] is a JSON spec: {"recipe", "changes", "global_batch"} (see `run`).

The same functions run the 1-process reference in the test's own process, so the two runs
differ only in the process count and the per-process batch."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from pathlib import Path

import torch

import visrep.loop as loop_module
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.methods.mae import MAE

QUIET = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1, "run.progress": False,
         "run.ckpt_every_minutes": 0}  # fmt: skip


def image_noise(images: torch.Tensor, num_patches: int) -> torch.Tensor:
    """MAE's per-patch masking noise [B, L] as a function of each image alone (a fixed random
    projection of its pixels, float64 so no two patches tie): an image gets the same mask
    whichever process and batch it is in (the loop seeds draws by (seed, step, rank))."""
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(images[0].numel(), num_patches, generator=g, dtype=torch.float64)
    return images.flatten(1).double() @ proj


def global_batch_draws(setattr_) -> None:
    """Make every random draw of an MAE step a function of the images, not of (step, rank):
    no crop/flip (`data.augment` is the identity: smoke images are already 28 px) and the mask
    noise from `image_noise`. `setattr_` is `setattr` or pytest's `monkeypatch.setattr`."""
    identity = lambda images, generator=None: images.float()  # noqa: E731
    build = loop_module.build_train_data

    def unaugmented(*args, **kwargs):
        data = build(*args, **kwargs)
        data.augment = identity
        return data

    setattr_(loop_module, "build_train_data", unaugmented)
    forward = MAE.forward

    def per_image_masks(self, batch, noise=None, masking=None):
        if noise is None and masking is None:
            noise = image_noise(batch["images"], self.backbone.num_patches)
        return forward(self, batch, noise=noise, masking=masking)

    setattr_(MAE, "forward", per_image_masks)


def record(setattr_) -> dict:
    """Spy on the next `train` call: fills and returns {"initial": the model's state when the
    loop starts, "final": its state when the loop returns, "indices": [(step, [rows of the
    images tensor])] as the data source drew them}."""
    seen: dict = {"indices": []}
    loop = loop_module._loop
    signature = inspect.signature(loop)

    @functools.wraps(loop)
    def spy(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        model, data = given["model"], given["data"]
        seen["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        draw = data.indices  # TensorTrainData.batch(step) takes its rows from indices(step)

        def indices(step: int) -> torch.Tensor:
            rows = draw(step)
            seen["indices"].append((step, rows.tolist()))
            return rows

        data.indices = indices
        state = loop(*args, **kwargs)
        seen["final"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return state

    setattr_(loop_module, "_loop", spy)
    return seen


def run(spec: dict, out_dir: str, setattr_=setattr) -> dict:
    """Train the smoke version of spec["recipe"] with spec["changes"] into `out_dir`; with
    spec["global_batch"], every draw is a function of the images (`global_batch_draws`)."""
    if spec.get("global_batch"):
        global_batch_draws(setattr_)
    seen = record(setattr_)
    cfg = replace(smoke(get_recipe(spec["recipe"])),
                  **{**QUIET, "run.out_dir": out_dir, **spec.get("changes", {})})  # fmt: skip
    loop_module.train(cfg)
    return seen


def main() -> None:
    out, spec = Path(sys.argv[1]), json.loads(sys.argv[2])
    seen = run(spec, str(out / "run"))
    torch.save(seen, out / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    main()
