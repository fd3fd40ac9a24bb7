"""Video MaskFeat (SlowFast `masked.py` / `MaskingGenerator3D`) on the video ViT and on
MViTv2: the cube generator's call order and statistics, mask upsampling 7 -> 14 style (and,
for MViT, to the output and the patch grid), per-frame HOG targets on frames 0, u, 2u, ...,
mask token before the position table, the loss by hand, and `visrep train` end to end on
MViT."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist

from visrep import cli
from visrep.backbones import VideoMViT, VideoViT
from visrep.checkpoint import load_checkpoint
from visrep.configs import get_recipe
from visrep.methods.maskfeat_video import MaskFeatVideo, MaskFeatVideoConfig
from visrep.parts.hog import hog, hog_token_targets
from visrep.parts.masking import cube_mask
from visrep.schedules import cosine_lr


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


def test_encoder_init_backbone_keeps_the_video_vits_own_weights():
    torch.manual_seed(0)
    built = VideoViT("vit_tiny", img_size=16, patch_size=4, frames=8, t_patch_size=2, depth=2)
    own = {k: v.clone() for k, v in built.state_dict().items()}
    model = MaskFeatVideo(MaskFeatVideoConfig(cell_size=2, encoder_init="backbone"), built)
    assert all(torch.equal(v, own[k]) for k, v in model.backbone.state_dict().items())
    assert torch.all(model.head.bias == 0) and model.mask_token.abs().sum() > 0
    # the default re-initialises it (SlowFast's biases of 0.02)
    assert not torch.equal(tiny().backbone.blocks[0].attn.qkv.bias, own["blocks.0.attn.qkv.bias"])


def test_bad_configurations_say_what_to_do():
    with pytest.raises(ValueError, match="cell_size"):
        tiny(cell_size=3)
    with pytest.raises(ValueError, match="mask_unit"):
        tiny(mask_unit=3)
    with pytest.raises(ValueError, match="encoder_init must be slowfast or backbone"):
        tiny(encoder_init="timm")
    with pytest.raises(ValueError, match=r"mask must be \[N, 4, 2, 2\]"):
        tiny()({"images": torch.randn(1, 3, 8, 16, 16)}, mask=torch.ones(1, 10))


# --- MViTv2 (`backbones.mvit.VideoMViT`; SlowFast `masked.py` `_maskfeat_forward`)


def tiny_mvit(**kw) -> MaskFeatVideo:
    """8 frames of 32 px on mvitv2_tiny's pre-training variant: a 4 x 8 x 8 patch grid, a
    4 x 4 x 4 output grid (stride 8 px), 4 px cells (K = 108), mask units of 2 x 2 output
    tokens = 4 x 4 patches: a (4, 2, 2) window."""
    torch.manual_seed(0)
    bb = VideoMViT("mvitv2_tiny", img_size=32, frames=8, last_pool=kw.pop("last_pool", False))
    return MaskFeatVideo(MaskFeatVideoConfig(cell_size=kw.pop("cell_size", 4), **kw), bb)


def test_mvit_masks_upsample_unitwise_to_the_output_and_the_patch_grid():
    model = tiny_mvit()
    assert model.grid == (4, 8, 8) and model.out_grid == (4, 4, 4) and model.window == (4, 2, 2)
    assert model.mask_token.shape == (1, 1, 32) and model.head.in_features == 128
    units = torch.rand(3, 4, 2, 2) > 0.5
    out, inp = model.token_mask(units), model.input_mask(model.token_mask(units))
    assert torch.equal(out, units.repeat_interleave(2, 2).repeat_interleave(2, 3).flatten(1))
    assert torch.equal(inp, units.repeat_interleave(4, 2).repeat_interleave(4, 3).flatten(1))
    # SlowFast `_get_multiscale_mask` / `_maskfeat_forward`: F.interpolate (nearest) of the
    # (N, T', H', W') mask as N images of T' channels
    near = F.interpolate(units.float(), size=(8, 8)).flatten(1).bool()
    assert torch.equal(inp, near)
    # the official geometry: MViTv2-S pre-training at 16 x 224², window (8, 7, 7): each unit
    # 2 x 2 of the 14 x 14 output tokens and 8 x 8 of the 56 x 56 patches
    with torch.device("meta"):
        s = MaskFeatVideo(MaskFeatVideoConfig(), VideoMViT("mvitv2_s", last_pool=False))
    assert s.window == (8, 7, 7) and s.num_masked == 157 and s.target_dim == 108
    units = torch.rand(2, 8, 7, 7) > 0.6
    out = s.token_mask(units)
    assert out.shape == (2, 1568)
    assert torch.equal(out, F.interpolate(units.float(), size=(14, 14)).flatten(1).bool())
    inp = s.input_mask(out)
    assert inp.shape == (2, 25088)
    assert torch.equal(inp, units.repeat_interleave(8, 2).repeat_interleave(8, 3).flatten(1))


def test_mvit_mask_token_replaces_masked_patch_embeddings_on_the_patch_grid():
    model = tiny_mvit()
    video = torch.randn(2, 3, 8, 32, 32)
    units = torch.zeros(2, 4, 2, 2, dtype=torch.bool)
    units[0, 1, 0, 1] = units[1, 3, 1, 1] = True
    seen = {}
    model.backbone.blocks[0].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    model({"images": video}, mask=units)
    x, masked = seen["x"], model.input_mask(model.token_mask(units))  # [2, 1+256, 32]
    assert masked.sum() == 2 * 16  # one unit = 4 x 4 patches
    embed = model.backbone.patch_embed(video)
    torch.testing.assert_close(x[:, 1:][masked], model.mask_token[0].expand(32, -1))
    torch.testing.assert_close(x[:, 1:][~masked], embed[~masked])
    torch.testing.assert_close(x[:, 0], model.backbone.cls_token[0].expand(2, -1))


def test_mvit_loss_is_the_mse_over_masked_output_tokens_by_hand():
    model = tiny_mvit()
    video = torch.randn(2, 3, 8, 32, 32)
    units = torch.zeros(2, 4, 2, 2, dtype=torch.bool)
    units[0, 0, 1, 0] = units[0, 2, :, 1] = units[1, 1, 0, 0] = True
    out = model({"images": video}, mask=units)
    pred = out["pred"]
    assert pred.shape == (2, 64, 108)  # output tokens only: the cls token is never predicted
    total, count = 0.0, 0
    for n in range(2):
        for t in range(4):
            cells = hog(video[n : n + 1, :, 2 * t], 9, 4)[0]  # [3, 9, 8, 8]; frame 2t
            for i in range(4):
                for j in range(4):
                    if not units[n, t, i // 2, j // 2]:
                        continue
                    block = cells[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # [3, 9, u, v]
                    target = block.reshape(27, 2, 2).flatten()  # (k = c·9 + b, u, v)
                    total = total + ((pred[n, t * 16 + i * 4 + j] - target) ** 2).sum()
                    count += 1
    assert count == 4 * 4  # 4 units x 4 output tokens
    torch.testing.assert_close(out["loss"], total / (count * 108))
    grad = torch.autograd.grad(out["loss"], pred, retain_graph=True)[0]
    m = model.token_mask(units)
    assert (grad[~m] == 0).all() and (grad[m] != 0).any()
    out["loss"].backward()  # every parameter of the model is reached (DDP needs no unused ones)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_mvit_configuration_errors_say_what_to_do():
    with pytest.raises(ValueError, match="mvit_last_pool=false"):
        tiny_mvit(last_pool=True)  # 2 x 2 output tokens: no 2 x 2 window of 2 x 2 units
    with pytest.raises(ValueError, match="cell_size=3 must divide the 8 px"):
        tiny_mvit(cell_size=3)
    with pytest.raises(ValueError, match=r"mask must be \[N, 4, 2, 2\] units or \[N, 64\]"):
        tiny_mvit()({"images": torch.randn(1, 3, 8, 32, 32)}, mask=torch.ones(1, 256))
    model = tiny_mvit(mask_unit=1)  # window (4, 4, 4): 26 units
    torch.manual_seed(1)
    drawn = model.draw_mask(2)
    assert drawn.shape == (2, 4, 4, 4) and (drawn.flatten(1).sum(1) <= 26).all()


def test_mvit_s_recipe_is_the_released_one_and_its_lr_schedule():
    """`k400_MVITv2_S_16x4_MaskFeat_PT.yaml` (SlowFast `config/defaults.py` schedule: check with
    NUM_SHARDS 1: 8 GPUs x 4 clips = 32, lr 1e-4 from 1e-6 over 10 epochs, cosine to 1e-6)."""
    cfg = get_recipe("maskfeat_video_mvit_s_k400")
    assert cfg.backbone.name == "mvitv2_s" and not cfg.backbone.mvit_last_pool
    assert (cfg.data.frames, cfg.data.frame_stride, cfg.data.img_size) == (16, 4, 224)
    assert (cfg.method.mask_ratio, cfg.method.mask_unit, cfg.method.cell_size) == (0.4, 2, 8)
    o = cfg.optim
    assert (o.epochs, o.clip_grad, o.weight_decay, o.betas) == (300, 0.02, 0.05, (0.9, 0.999))
    assert cfg.run.precision == "fp32"
    base = o.blr * o.batch_size * 8 / 256
    lr = [cosine_lr(e, base, o.warmup_epochs, o.epochs, o.min_lr_ratio * base, o.warmup_start)
          for e in (0, 5, 10, 155, 299.99)]  # fmt: skip
    assert lr == pytest.approx([1e-6, 5.05e-5, 1e-4, 5.05e-5, 1e-6], rel=1e-3)


@requires_fmnist
def test_train_maskfeat_video_mvit_mfmnist_through_the_cli_then_finetune(tmp_path):
    """`visrep train maskfeat_video_mvit_mfmnist` for 2 steps (32 px, 4 clips a step), its
    video k-NN, then `visrep eval finetune` of the run (the last pooling restored)."""
    run = tmp_path / "run"
    small = ["data.img_size=32", "optim.batch_size=4", "run.max_steps=2", "run.threads=1",
             "run.progress=false", "run.log_every=1", "run.ckpt_every_minutes=0",
             "run.budget_minutes=0", "eval.limit_train=80", "eval.limit_test=80"]  # fmt: skip
    assert cli.main(["train", "maskfeat_video_mvit_mfmnist", f"run.out_dir={run}", *small]) == 0
    state = load_checkpoint(run)
    assert state["step"] == 2 and state["method"] == "maskfeat_video"
    assert state["model"]["backbone.blocks.4.attn.rel_pos_h"].shape[0] == 7  # 4 x 4 output
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("knn_top1", "knn_direction_top1", "init_knn_top1"):
        assert 0 <= metrics[key] <= 1, key
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert all(0 < r["train/loss"] < 10 for r in rows if "train/loss" in r)
    ft = ["eval.dataset=fashion_mnist", "eval.limit_train=80", "eval.limit_test=20",
          "optim.batch_size=4", "run.threads=1", "run.progress=false", "run.max_steps=2",
          "run.ckpt_every_minutes=0", f"run.out_dir={tmp_path / 'ft'}"]  # fmt: skip
    assert cli.main(["eval", "finetune", "--ckpt", str(run), *ft]) == 0
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["train_steps"] == 2 and m["finetune_arch"] == "mvitv2_tiny"
    assert 0 <= m["finetune_top1"] <= 1
    tuned = load_checkpoint(tmp_path / "ft")["model"]
    assert tuned["backbone.blocks.4.attn.rel_pos_h"].shape[0] == 3  # pooled to 2 x 2 again
