"""Issue 5 acceptance: CLIP loss with 2 gloo processes × B equals one process with 2B."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from conftest import torchrun_worker

from visrep.parts.losses import clip_loss

HERE = Path(__file__).resolve().parent


def _reference_grads(full: dict, world: int) -> dict:
    """The gradient DDP applies under the gather-without-gradient rule, computed on one
    process: rank r's loss with the other ranks' columns detached, averaged over ranks."""
    img = full["image"].clone().requires_grad_(True)
    txt = full["text"].clone().requires_grad_(True)
    scale = full["scale"].clone().requires_grad_(True)
    n = img.shape[0] // world
    total = 0
    for r in range(world):
        own = torch.zeros(img.shape[0], 1, dtype=img.dtype)
        own[r * n : (r + 1) * n] = 1
        cols_i = F.normalize(img, dim=1) * own + F.normalize(img, dim=1).detach() * (1 - own)
        cols_t = F.normalize(txt, dim=1) * own + F.normalize(txt, dim=1).detach() * (1 - own)
        rows = slice(r * n, (r + 1) * n)
        labels = torch.arange(n) + r * n
        s = scale.exp()
        li = F.cross_entropy(s * F.normalize(img[rows], dim=1) @ cols_t.T, labels)
        lt = F.cross_entropy(s * F.normalize(txt[rows], dim=1) @ cols_i.T, labels)
        total = total + (li + lt) / 2 / world
    g = torch.autograd.grad(total, [img, txt, scale])
    return {"grad_image": g[0], "grad_text": g[1], "grad_scale": g[2]}


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    sys.path.insert(0, str(HERE))
    from dist_clip_worker import global_batch

    got = torchrun_worker(HERE / "dist_clip_worker.py", tmp_path / "dist.pt")
    full = global_batch()
    # the loss value: identical to one process holding the global batch of 2B
    one = clip_loss(full["image"], full["text"], full["scale"])
    torch.testing.assert_close(got["loss"], one, rtol=1e-12, atol=1e-12)
    # the logit-scale gradient too (it sees every logit on every process)
    scale = full["scale"].clone().requires_grad_(True)
    (g_scale,) = torch.autograd.grad(clip_loss(full["image"], full["text"], scale), [scale])
    torch.testing.assert_close(got["grad_scale"], g_scale, rtol=1e-10, atol=1e-12)
    # embedding gradients follow SLIP's `CLIPLoss`: other processes' columns carry none
    for k, v in _reference_grads(full, 2).items():
        torch.testing.assert_close(got[k], v, rtol=1e-10, atol=1e-12)
