"""The ρ-spatiotemporal study (SlowFast `contrastive.py`): each ρ loss against a hand
computation, Sinkhorn, the ρ-clip sampler's frame indices, the methods' step structure
(queue, momentum, frozen windows), and 2 gloo processes × B = 1 process × 2B for the
ρSimCLR and ρMoCo losses."""

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, requires_fmnist

from visrep.backbones import VideoViT
from visrep.config import DataConfig
from visrep.data.video import clip_indices, rho_clip_starts, train_clips
from visrep.methods.rho import (
    RhoBYOL,
    RhoBYOLConfig,
    RhoMoCo,
    RhoMoCoConfig,
    RhoSimCLR,
    RhoSimCLRConfig,
    RhoSwAV,
    RhoSwAVConfig,
)
from visrep.parts.losses import nt_xent
from visrep.parts.rho_losses import (
    l2_normalize,
    rho_byol_loss,
    rho_moco_loss,
    rho_swav_loss,
    sinkhorn,
)

sys.path.insert(0, str(Path(__file__).parent))
from rho_dist_worker import global_batch, losses  # noqa: E402


def unit(n, d, seed):
    return l2_normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed),
                                    dtype=torch.float64))  # fmt: skip


def test_rho_moco_loss_by_hand():
    q, k1, k2, queue = unit(3, 4, 0), unit(3, 4, 1), unit(3, 4, 2), unit(5, 4, 3)
    tau, rows = 0.1, []
    for k in (k1, k2):  # ρ = 3: the query's two other clips, stacked
        for i in range(3):
            logits = [float(q[i] @ k[i]) / tau] + [float(q[i] @ queue[j]) / tau for j in range(5)]
            rows.append(-logits[0] + math.log(sum(math.exp(v) for v in logits)))
    expected = sum(rows) / len(rows)
    assert rho_moco_loss(q, [k1, k2], queue, tau).item() == pytest.approx(expected, rel=1e-12)


def test_rho_byol_loss_by_hand():
    p, k1, k2 = unit(3, 4, 0), unit(3, 4, 1), unit(3, 4, 2)
    expected = sum(-sum(float(p[i] @ k[i]) for i in range(3)) / 3 / 0.5 for k in (k1, k2)) / 2
    assert rho_byol_loss(p, [k1, k2], 0.5).item() == pytest.approx(expected, rel=1e-12)


def test_l2_normalize_has_no_epsilon():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    out = l2_normalize(x)
    assert out[0].tolist() == [0.6, 0.8] and torch.isnan(out[1]).all()  # 0/0, as `Normalize`


def sinkhorn_by_hand(s: np.ndarray, eps: float, iters: int) -> np.ndarray:
    q = np.exp(s / eps).T
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        for r in range(k):
            q[r] *= (1 / k) / q[r].sum()
        for c in range(n):
            q[:, c] *= (1 / n) / q[:, c].sum()
    for c in range(n):
        q[:, c] /= q[:, c].sum()
    return q.T


def test_sinkhorn_and_rho_swav_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.3 for _ in range(3)]
    codes = [sinkhorn_by_hand(s.numpy(), 0.05, 3) for s in scores[:2]]
    np.testing.assert_allclose(sinkhorn(scores[0], 0.05, 3).numpy(), codes[0], rtol=1e-6)
    assert torch.allclose(sinkhorn(scores[1], 0.05, 3).sum(1), torch.ones(4, dtype=torch.float32))

    def ce(code, s):  # −mean_n Σ_k q log softmax(s / τ)
        logp = s / 0.1 - np.log(np.exp(s / 0.1).sum(1, keepdims=True))
        return -(code * logp).sum(1).mean()

    s = [x.numpy() for x in scores]
    expected = (ce(codes[0], s[1]) + ce(codes[0], s[2])) / 2  # clip 0 assigns, ρ − 1 = 2
    expected = (
        expected + (ce(codes[1], s[0]) + ce(codes[1], s[2])) / 2
    ) / 2  # clip 2 only predicts
    assert rho_swav_loss(scores, 0.05, 0.1).item() == pytest.approx(expected, rel=1e-5)


def test_rho_simclr_pair_is_the_official_2b_row_nt_xent():
    a, b, tau = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64), 0.1
    out = torch.cat([l2_normalize(a), l2_normalize(b)])  # [2B, d]
    sim = torch.exp(out @ out.T / tau)
    denom = sim.sum(1) - sim.diagonal()  # every other row, the positive included
    pos = torch.exp((l2_normalize(a) * l2_normalize(b)).sum(1) / tau).repeat(2)
    expected = (-torch.log(pos / denom)).mean()  # SlowFast simclr branch
    torch.testing.assert_close(nt_xent(a, b, tau), expected)


def test_rho_clip_starts_and_frame_indices():
    rng = random.Random(5)
    starts = rho_clip_starts(32, 16.0, 3, rng, order=[2, 0, 1])
    ref = random.Random(5)
    draws = sorted(ref.uniform(0, 16) for _ in range(3))  # V − W = 32 − 16
    assert starts == [draws[2], draws[0], draws[1]]  # sorted, then permuted to model order
    assert clip_indices(32, 0.0, 16.0, 8).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]  # 8 × 2
    assert clip_indices(64, 0.0, 64.0, 8).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]  # 8 × 8
    # a drawn order is a permutation; without constraints the draws are the uniforms
    rng = random.Random(1)
    got = rho_clip_starts(300, 64.0, 4, rng)
    assert len(got) == 4 and all(0 <= s <= 236 for s in got)
    # gap constraints: no overlap between the sorted clips (gap >= 0)
    for seed in range(20):
        s = sorted(rho_clip_starts(300, 64.0, 3, random.Random(seed), min_gap=0.0))
        assert all(b - (a + 63) >= 0 for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError, match="permutation"):
        rho_clip_starts(32, 16.0, 2, order=[0, 0])


def test_train_clips_rho1_is_two_crops_of_one_clip_and_rho2_two_times():
    video = torch.arange(32, dtype=torch.uint8).view(32, 1, 1, 1).expand(32, 16, 16, 3).clone()
    kw = dict(frames=8, stride=2, size=16, scale=(1.0, 1.0), hflip=False)
    one = train_clips(video, None, rho=1, rng=random.Random(0), **kw)
    assert len(one) == 2 and torch.equal(one[0], one[1])  # full-frame crops of one clip
    two = train_clips(video, None, rho=2, rng=random.Random(0), **kw)
    frames = [c[0, :, 0, 0].tolist() for c in two]  # pixel value = frame index
    ref = random.Random(0)
    order = [0, 1]
    ref.shuffle(order)
    s = sorted(ref.uniform(0, 16) for _ in range(2))
    assert frames == [clip_indices(32, s[i], 16.0, 8).float().tolist() for i in order]


@requires_fmnist
def test_moving_source_yields_one_view_per_clip():
    from visrep.data.video_source import MovingTrainData

    data = DataConfig(img_size=32, channels=3, frames=8, frame_stride=2, hflip=False, clips=3,
                      limit=8)  # fmt: skip
    batch = MovingTrainData(data, 4, seed=0).batch(0)
    assert len(batch["views"]) == 3 and batch["views"][0].shape == (4, 3, 8, 32, 32)
    assert not torch.equal(batch["views"][0], batch["views"][1])


def tiny_backbone():
    torch.manual_seed(0)
    return VideoViT("vit_tiny", img_size=16, patch_size=8, frames=4, t_patch_size=2, depth=1)


def views(rho=3, n=4):
    g = torch.Generator().manual_seed(1)
    return {"views": [torch.randn(n, 3, 4, 16, 16, generator=g) for _ in range(rho)]}


def test_rho_moco_queue_momentum_and_frozen_window():
    m = RhoMoCo(RhoMoCoConfig(mlp_dim=32, dim=8, queue_len=20, freeze_steps=1), tiny_backbone())
    assert [type(x).__name__ for x in m.projector] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    queue0 = m.queue.clone()
    batch = views()
    keys = m.keys(batch["views"])
    out = m(batch)
    # the optimised loss is the sum over the 3 query clips; zeroed while the queue fills
    q = [l2_normalize(m.projector(m.backbone(v))) for v in batch["views"]]
    expected = sum(rho_moco_loss(q[k], keys[:k] + keys[k + 1 :], queue0, 0.1) for k in range(3))
    torch.testing.assert_close(out["loss_official"], expected.detach() / 6)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    # every clip's keys enqueued at the ring pointer: 3 × 4 = 12 of 20
    assert int(m.queue_ptr) == 12
    torch.testing.assert_close(m.queue[:12], torch.cat(keys))
    assert torch.equal(m.queue[12:], queue0[12:])
    # EMA after the step, on parameters only, with m at the next step's progress
    before = [p.clone() for p in m.momentum_backbone.parameters()]
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    m.on_step_end(0.5)
    mom = 1 - 0.5 * (1 + math.cos(math.pi * 0.5)) * (1 - 0.994)
    assert m.momentum == pytest.approx(mom)
    for b, k, o in zip(before, m.momentum_backbone.parameters(), m.backbone.parameters()):
        torch.testing.assert_close(k, mom * b + (1 - mom) * o)
    assert int(m.steps_done) == 1 and m(batch)["loss"].item() > 0  # the window is over


def test_rho_byol_heads_and_loss_sum_over_queries():
    m = RhoBYOL(RhoBYOLConfig(mlp_dim=32, dim=8), tiny_backbone())
    names = [type(x).__name__ for x in m.projector]
    assert names == ["Linear", "BatchNorm1d", "ReLU", "Linear"] and m.projector[0].bias is None
    assert m.projector[3].bias is not None
    m.eval()  # fixed BN statistics: the per-query forwards are reproducible
    batch = views(rho=2)
    keys = m.keys(batch["views"])
    p = [l2_normalize(m.predictor(m.projector(m.backbone(v)))) for v in batch["views"]]
    expected = rho_byol_loss(p[0], [keys[1]], 0.5) + rho_byol_loss(p[1], [keys[0]], 0.5)
    torch.testing.assert_close(m(batch)["loss"], expected)


def test_rho_simclr_uses_chained_pairs_and_swav_freezes_prototypes():
    m = RhoSimCLR(RhoSimCLRConfig(mlp_dim=32, dim=8), tiny_backbone())
    batch = views(rho=3)
    z = [m.projector(m.backbone(v)) for v in batch["views"]]
    expected = nt_xent(z[0], z[1], 0.1) + nt_xent(z[1], z[2], 0.1)  # not (0, 2)
    torch.testing.assert_close(m(batch)["loss"], expected)
    s = RhoSwAV(RhoSwAVConfig(mlp_dim=32, dim=8, prototypes=5, freeze_prototypes_steps=1),
                tiny_backbone())  # fmt: skip
    s(batch)["loss"].backward()
    assert torch.equal(s.prototypes.weight.grad, torch.zeros(5, 8))
    torch.testing.assert_close(s.prototypes.weight.norm(dim=1), torch.ones(5))  # normalised
    assert s.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    s.zero_grad()
    s.on_step_end(0.1)
    s(batch)["loss"].backward()
    assert s.prototypes.weight.grad.abs().sum() > 0


def test_missing_views_say_what_to_do():
    m = RhoSimCLR(RhoSimCLRConfig(mlp_dim=32, dim=8), tiny_backbone())
    with pytest.raises(ValueError, match="data.clips"):
        m({"images": torch.randn(2, 3, 4, 16, 16)})


def test_two_processes_of_b_equal_one_process_of_2b(tmp_path):
    z, keys, queue = global_batch()
    full = [v.clone().requires_grad_(True) for v in z]
    simclr, moco = losses(full, keys, queue)
    simclr_grad = torch.autograd.grad(simclr, full, retain_graph=True)
    moco_grad = torch.autograd.grad(moco, full)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "rho_dist_worker.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # DDP averages the processes: the mean of the two losses is the 1-process loss
    torch.testing.assert_close((ranks[0]["simclr"] + ranks[1]["simclr"]) / 2, simclr.detach())
    torch.testing.assert_close((ranks[0]["moco"] + ranks[1]["moco"]) / 2, moco.detach())
    for r, rows in enumerate((slice(0, 4), slice(4, 8))):
        for k in range(3):  # gathered with gradient: each process holds W × its rows' share
            torch.testing.assert_close(ranks[r]["simclr_grad"][k] / 2, simclr_grad[k][rows])
            torch.testing.assert_close(ranks[r]["moco_grad"][k] / 2, moco_grad[k][rows])


def test_ssl_colour_is_one_draw_for_the_whole_clip_and_seeded():
    from visrep.data.video import ssl_colour

    g = torch.Generator().manual_seed(0)
    frame = torch.rand(3, 1, 16, 16, generator=g) * 255
    clip = frame.expand(3, 4, 16, 16).clone()  # 4 identical frames
    out = ssl_colour(clip, random.Random(3), p_blur=0.0)  # no blur: frames stay independent
    assert out.shape == clip.shape and not torch.equal(out, clip)
    for t in range(1, 4):  # the same colour parameters for every frame
        torch.testing.assert_close(out[:, t], out[:, 0])
    torch.testing.assert_close(ssl_colour(clip, random.Random(3), p_blur=0.0), out)
    assert 0 <= out.min() and out.max() <= 255
    same = ssl_colour(clip, random.Random(3), p_jitter=0.0, p_gray=0.0, p_blur=0.0)
    torch.testing.assert_close(same, clip)
