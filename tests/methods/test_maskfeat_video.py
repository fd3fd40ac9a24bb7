"""Video MaskFeat (SlowFast `masked.py` / `MaskingGenerator3D`) on the video ViT: the cube
generator's call order and statistics, mask upsampling 7 -> 14 style, per-frame HOG targets on
frames 0, u, 2u, ..., mask token before the position table, the loss by hand."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from visrep.backbones import VideoViT
from visrep.methods.maskfeat_video import MaskFeatVideo, MaskFeatVideoConfig
from visrep.parts.hog import hog, hog_token_targets
from visrep.parts.masking import cube_mask


def tiny(**kw) -> MaskFeatVideo:
    """8 frames of 16 px, 2x4x4 tubelets: a 4 x 4 x 4 token grid, 2 px cells (K = 108),
    mask units of 2 x 2 tokens: a (4, 2, 2) window."""
    torch.manual_seed(0)
    cfg = MaskFeatVideoConfig(cell_size=kw.pop("cell_size", 2), **kw)
    bb = VideoViT("vit_tiny", img_size=16, patch_size=4, frames=8, t_patch_size=2, depth=2)
    return MaskFeatVideo(cfg, bb)


class Scripted:
    """A stand-in for `random.Random` that returns queued values and records each call."""

    def __init__(self, values):
        self.values, self.calls = list(values), []

    def uniform(self, a, b):
        self.calls.append(("uniform", a, b))
        return self.values.pop(0)

    def randint(self, a, b):
        self.calls.append(("randint", a, b))
        return self.values.pop(0)


def test_cube_generator_draws_in_the_official_order_with_the_fixed_area_bound():
    # window (8, 7, 7), 157 target, min 9, max 49 (SlowFast `_gen_mask` defaults)
    # try 1: area 49, log-aspect 0 -> 7 x 7: t is drawn anyway, then the shape is rejected
    # (not strictly narrower than 7); try 2: area 4, aspect e^0 -> 2 x 2, t = 3,
    # top 1, left 5, front 2 -> 12 new units: accepted, the round ends
    log_a = math.log(0.3)
    rng = Scripted([49.0, 0.0, 5, 4.0, 0.0, 3, 1, 5, 2] + [9.0, 0.0, 1] * 100)
    m = cube_mask((8, 7, 7), 12, rng, min_patches=9)
    assert rng.calls[:9] == [
        ("uniform", 9, 49), ("uniform", log_a, -log_a), ("randint", 1, 8),
        ("uniform", 9, 49), ("uniform", log_a, -log_a), ("randint", 1, 8),
        ("randint", 0, 5), ("randint", 0, 5), ("randint", 0, 5),
    ]  # fmt: skip
    assert len(rng.calls) == 9  # 12 reached: no further round
    expected = torch.zeros(8, 7, 7, dtype=torch.bool)
    expected[2:5, 1:3, 5:7] = True
    assert torch.equal(m, expected)


def test_cube_mask_statistics_match_the_specification():
    rng = random.Random(0)
    counts = [int(cube_mask((8, 7, 7), 157, rng).sum()) for _ in range(300)]
    assert max(counts) <= 157 and min(counts) >= 135
    assert 153 < sum(counts) / len(counts) < 157.5  # spec re-simulation: mean 155.7
    assert 0.2 < sum(c == 157 for c in counts) / len(counts) < 0.55  # spec: 36%
    small = [int(cube_mask((4, 4, 4), 26, rng).sum()) for _ in range(300)]  # CPU window
    assert max(small) <= 26 and 25.0 < sum(small) / len(small) <= 26  # spec: 25.9


def test_unit_mask_upsamples_to_tokens_in_t_h_w_order():
    model = tiny()
    assert model.window == (4, 2, 2) and model.num_masked == round(16 * 0.4)
    units = torch.zeros(1, 4, 2, 2, dtype=torch.bool)
    units[0, 3, 1, 0] = True  # slot 3, unit row 1, unit col 0 -> token rows 2-3, cols 0-1
    tokens = model.token_mask(units).view(4, 4, 4)
    expected = torch.zeros(4, 4, 4, dtype=torch.bool)
    expected[3, 2:4, 0:2] = True
    assert torch.equal(tokens, expected)
    u = torch.rand(3, 4, 2, 2) > 0.5
    rep = u.repeat_interleave(2, 2).repeat_interleave(2, 3).flatten(1)
    assert torch.equal(model.token_mask(u), rep)


def test_targets_are_the_hog_of_frames_0_u_2u_per_token():
    model = tiny()
    video = torch.randn(2, 3, 8, 16, 16)
    target = model.target(video)  # [2, 64, 108]
    assert target.shape == (2, 64, 108) and not target.requires_grad
    for t in range(4):
        frame = hog_token_targets(hog(video[:, :, 2 * t], 9, 2), (4, 4))  # [2, 16, 108]
        torch.testing.assert_close(target[:, 16 * t : 16 * (t + 1)], frame)
    odd = video.clone()
    odd[:, :, 1::2] = torch.randn_like(odd[:, :, 1::2])  # frames 1, 3, 5, 7: not targets
    torch.testing.assert_close(model.target(odd), target)
    bump = video.clone()
    bump[:, :, 4] += torch.randn_like(bump[:, :, 4])  # frame 4 = slot 2 only
    changed = (model.target(bump) - target).abs().sum(-1).view(2, 4, 16).sum((0, 2)) > 0
    assert changed.tolist() == [False, False, True, False]


def test_mask_token_replaces_masked_tubelets_before_the_position_table():
    model = tiny()
    video = torch.randn(1, 3, 8, 16, 16)
    units = torch.zeros(1, 4, 2, 2, dtype=torch.bool)
    units[0, 1, 0, 0] = units[0, 1, 0, 1] = True  # slot 1 (frames 2-3), top half
    mask = model.token_mask(units).float()
    seen = {}
    model.backbone.blocks[0].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    out = model.backbone.encode(video, mask=mask, mask_token=model.mask_token)
    inputs = seen["x"][0, 1:]  # [64, D] first block's input, cls dropped
    table = model.backbone.pos_table()[0]
    masked = mask[0].bool()
    torch.testing.assert_close(inputs[masked], (model.mask_token[0] + table)[masked])
    edited = video.clone()
    edited[:, :, 2:4, :8] = 5.0  # pixels of masked tubelets only: the encoder never sees them
    torch.testing.assert_close(
        model.backbone.encode(edited, mask=mask, mask_token=model.mask_token), out
    )


def test_loss_is_the_mse_over_masked_tokens_times_k_and_gradient_only_from_them():
    model = tiny()
    video = torch.randn(2, 3, 8, 16, 16)
    units = torch.rand(2, 4, 2, 2) > 0.6
    out = model({"images": video}, mask=units)
    m = model.token_mask(units)
    expected = F.mse_loss(out["pred"][m], model.target(video)[m])
    torch.testing.assert_close(out["loss"], expected)
    assert out["pred"].shape == (2, 64, 108)
    pred_grad = torch.autograd.grad(out["loss"], out["pred"])[0]
    assert (pred_grad[~m] == 0).all() and (pred_grad[m] != 0).any()


def test_drawn_masks_are_cubes_at_the_target_ratio_and_seeded_by_torch():
    model = tiny(mask_unit=1)  # window (4, 4, 4): 26 units
    torch.manual_seed(3)
    a = model.draw_mask(4)
    torch.manual_seed(3)
    assert torch.equal(a, model.draw_mask(4)) and a.shape == (4, 4, 4, 4)
    assert (a.flatten(1).sum(1) <= 26).all() and (a.flatten(1).sum(1) >= 20).all()


def test_init_follows_slowfast():
    model = tiny()
    bb = model.backbone
    assert torch.all(bb.blocks[0].attn.qkv.bias == 0.02) and torch.all(bb.norm.bias == 0.02)
    assert torch.all(model.head.bias == 0) and 0.015 < bb.blocks[0].mlp.fc1.weight.std() < 0.025


def test_bad_configurations_say_what_to_do():
    with pytest.raises(ValueError, match="cell_size"):
        tiny(cell_size=3)
    with pytest.raises(ValueError, match="mask_unit"):
        tiny(mask_unit=3)
    with pytest.raises(ValueError, match=r"mask must be \[N, 4, 2, 2\]"):
        tiny()({"images": torch.randn(1, 3, 8, 16, 16)}, mask=torch.ones(1, 10))
