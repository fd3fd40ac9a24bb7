"""Helpers of benchmarks/maskfeat_video_target.py (the context checks' pixel target, clips and
copy oracles), benchmarks/rho_claim.py (its table is what the committed outputs give) and
benchmarks/video_finetune.py (the MViTv2 summary), imported by path."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import rho_claim  # noqa: E402
from maskfeat_video_target import (  # noqa: E402
    PositionAttention,
    context_clips,
    neighbour_oracles,
    pixel_target,
)


def test_pixel_target_token_layout():
    model = SimpleNamespace(backbone=SimpleNamespace(patch_size=4, t_patch_size=2))
    video = torch.randn(2, 3, 4, 8, 12)  # [N, C, T, H, W]: T' = 2, grid 2 × 3
    t = pixel_target(model, video)
    assert t.shape == (2, 2 * 2 * 3, 3 * 4 * 4)
    # token (t'=1, h=1, w=2) reads frame 2 (frames 0, u, …), channel-major, row-major pixels
    token = 1 * 6 + 1 * 3 + 2
    for c, y, x in [(0, 0, 0), (1, 3, 2), (2, 1, 3)]:
        assert t[1, token, c * 16 + y * 4 + x] == video[1, c, 2, 4 + y, 8 + x]


def test_neighbour_oracles_by_hand():
    grid = (3, 1, 2)
    static = torch.randn(5, 1, 2, 4).expand(5, 3, 2, 4).reshape(5, 6, 4)
    assert neighbour_oracles(static, grid) == pytest.approx({"previous": 0.0,
                                                             "mean of previous and next": 0.0})  # fmt: skip
    # a target linear in time: the mean of the neighbours is exact, the previous one is not
    base, slope = torch.randn(5, 1, 2, 4), torch.randn(5, 1, 2, 4)
    ramp = (base + slope * torch.arange(3.0).view(1, 3, 1, 1)).reshape(5, 6, 4)
    o = neighbour_oracles(ramp, grid)
    assert o["mean of previous and next"] == pytest.approx(0.0, abs=1e-6)
    x = ramp.reshape(5, 3, 2, 4)
    mid = x[:, 1]
    expected = slope[:, 0].pow(2).mean() / (mid - mid.mean(0)).pow(2).mean()
    assert o["previous"] == pytest.approx(expected.item(), rel=1e-5)


def test_context_clips():
    clips = torch.randn(3, 3, 4, 8, 8)
    assert context_clips("moving", clips, 0) is clips
    static = context_clips("static", clips, 0)
    assert torch.equal(static[:, :, 3], clips[:, :, 0]) and torch.equal(
        static[:, :, 0], clips[:, :, 0]
    )
    noise = context_clips("noise", clips, 0)
    assert noise.shape == clips.shape
    assert torch.equal(noise[:, 0, 0], noise[:, 2, 3])  # static, channels replicated
    assert torch.equal(noise, context_clips("noise", clips, 0))  # seeded
    assert not torch.equal(noise, context_clips("noise", clips, 1))


def test_position_attention_copies_by_position_from_visible_tokens_only():
    net = PositionAttention(tokens=4, dim=3, width=3)
    with torch.no_grad():
        for lin in (net.embed, net.out):
            lin.weight.copy_(torch.eye(3))
            lin.bias.zero_()
        net.logits.zero_()
        net.logits[0, 2] = 50.0  # token 0 looks at token 2 (same place, next time)
    target = torch.randn(2, 4, 3)
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 1, 0]])
    pred = net(target, mask)
    assert torch.allclose(pred[0, 0], target[0, 2], atol=1e-5)  # copied
    # token 2 masked in clip 1: token 0 falls back to the mean of the other visible ones
    assert torch.allclose(pred[1, 0], (target[1, 1] + target[1, 3]) / 2, atol=1e-5)
    # never itself: token 1 (visible) averages tokens 2 and 3 of clip 0 and excludes token 0 (masked)
    assert torch.allclose(pred[0, 1], (target[0, 2] + target[0, 3]) / 2, atol=1e-5)


def test_rho_claim_table_is_the_committed_one():
    """Every figure of results/rho_claim.md comes from the per-seed outputs it names."""
    committed = (rho_claim.OUT.with_suffix(".md")).read_text()
    assert rho_claim.render(rho_claim.summarise()) == committed
    out = rho_claim.summarise()
    for method, r in out.items():
        d = r["rho2_minus_rho1"]["knn_direction_top1"]["per_seed"]
        assert len(d) == len(r["seeds"]) >= 3, method


def test_video_finetune_mvit_summary_keeps_each_random_init_apart():
    """benchmarks/video_finetune.py: the MViTv2's random-init rows are its own baseline and never
    replace the video ViT's, and the lead is paired by fine-tuning seed over both pre-training
    seeds."""
    import video_finetune as vf

    def row(name, source, init, seed, top1):
        return {"name": name, "source": source, "init": init, "seed": seed,
                "metrics": {"finetune_top1": top1}}  # fmt: skip

    a, b = vf.MVIT_STARTS["625", "4e-3"][:2]
    out = {"rows": [row("random_init_direction_1ep", "mae_st_625", "random", 0, 0.9),
                    row("random_init_direction_1ep_seed1", "mae_st_625", "random", 1, 0.7),
                    row("random_init_mvit_direction_1ep", a, "random", 0, 0.2),
                    row("random_init_mvit_direction_1ep_seed1", a, "random", 1, 0.4),
                    row(f"{a}_direction_1ep", a, "pretrained", 0, 0.5),
                    row(f"{a}_direction_1ep_seed1", a, "pretrained", 1, 0.3),
                    row(f"{b}_direction_1ep", b, "pretrained", 0, 0.6),
                    row(f"{b}_direction_1ep_seed1", b, "pretrained", 1, 0.6)]}  # fmt: skip
    assert vf.seed_top1(out, "direction", [])["random init"] == {0: 0.9, 1: 0.7}
    mvit = vf.seed_top1(out, "direction", vf.MVIT_RUNS, random="random_init_mvit")
    assert mvit["random init"] == {0: 0.2, 1: 0.4}
    # pairs: 0.5-0.2, 0.3-0.4, 0.6-0.2, 0.6-0.4 -> +0.3, -0.1, +0.4, +0.2: mean +0.200,
    # SE sqrt(0.14 / 3 / 4) = 0.108, 3 of 4 ahead (the missing seed-2 run and blr 1e-3 skipped)
    text = vf.mvit_summary(out)
    assert (
        "| direction | 625 | 4e-3 | 0.400 / 0.600 | +0.200 (SE 0.108, 3 of 4 ahead) | 0.300 | 0.800 |"
        in text
    )
    assert "| 1e-3 |" not in text and "| 2,500 |" not in text  # no rows: no table row
    assert "class labels" not in text


def test_video_finetune_md_is_what_its_json_gives():
    """Every figure of results/video_finetune.md (the rows and the summaries docs/results.md
    quotes) is `render` of the committed JSON."""
    import json

    import video_finetune as vf

    out = json.loads((vf.RESULTS / "video_finetune.json").read_text())
    assert vf.render(out) == (vf.RESULTS / "video_finetune.md").read_text()
    assert "random_init_mvit_direction_1ep" in {r["name"] for r in out["rows"]}
