"""MAE-ST (facebookresearch/mae_st): token order, separable position table added after masking, keep
count, target frames, norm-pix loss by hand, loss on masked tokens only; `visrep train
mae_st_mfmnist` on a built video folder through the CLI, with exact resume."""

import json

import pytest
import torch
from conftest import requires_fmnist
from torch import nn

from visrep import cli
from visrep.backbones import VideoViT, build_backbone
from visrep.checkpoint import load_checkpoint
from visrep.config import BackboneConfig, DataConfig
from visrep.data.build_video import build_moving_fmnist
from visrep.methods.mae_st import MAEST, MAESTConfig, patchify_video, target_frames
from visrep.parts.masking import random_masking

CFG = MAESTConfig(decoder_dim=16, decoder_depth=1, decoder_heads=2, pred_t_dim=4)


def _model(frames=8, size=16, patch=4, cfg=CFG) -> MAEST:
    torch.manual_seed(0)
    bb = build_backbone(
        BackboneConfig("vit_tiny", patch_size=patch, depth=1, pos_embed="learn", t_patch_size=2),
        DataConfig(img_size=size, channels=3, frames=frames),
    )
    return MAEST(cfg, bb)


def test_target_frames_keep_the_last_frame():
    assert target_frames(16, 8).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]  # not 14 [PITFALL]
    assert target_frames(8, 4).tolist() == [0, 2, 4, 7]
    assert _model().target_index.tolist() == [0, 2, 4, 7]


def test_keep_count_is_floor_of_l_times_one_minus_ratio():
    assert random_masking(2, 1568, 0.9).ids_keep.shape == (2, 156)  # 8 x 14 x 14 tokens
    m = _model()  # 4 x 4 x 4 = 64 tokens
    masking = m.mask(3, torch.device("cpu"))
    assert masking.ids_keep.shape == (3, 6) and masking.mask.sum(1).tolist() == [58.0] * 3


def test_tokens_are_in_t_h_w_order_and_the_position_table_is_separable():
    m = _model()
    bb: VideoViT = m.backbone
    assert bb.grid == (4, 4, 4) and bb.num_patches == 64
    video = torch.randn(2, 3, 8, 16, 16)
    # a patch projection that reads pixel (u=0, row 0, col 0, channel 0) of each patch
    with torch.no_grad():
        bb.patch_embed.proj.weight.zero_()
        bb.patch_embed.proj.bias.zero_()
        bb.patch_embed.proj.weight[0, 0, 0, 0, 0] = 1
    tokens = bb.patch_embed(video)[..., 0]  # [2, 64]
    assert torch.equal(tokens, patchify_video(video, 4, 2)[..., 0])
    t, h, w = 3, 1, 2  # token index (t·4 + h)·4 + w
    assert tokens[0, (t * 4 + h) * 4 + w] == video[0, 0, 2 * t, 4 * h, 4 * w]
    table = bb.pos_table()[0]
    assert table.shape == (64, bb.embed_dim)
    torch.testing.assert_close(
        table[(t * 4 + h) * 4 + w], bb.pos_embed_spatial[0, h * 4 + w] + bb.pos_embed_temporal[0, t]
    )
    # position added after masking: the kept tokens carry their own positions
    bb.blocks = nn.Identity()
    ids = torch.tensor([[5, 63, 0], [17, 2, 40]])
    full, kept = bb.encode(video), bb.encode(video, ids)
    torch.testing.assert_close(kept[:, 1:], torch.gather(full[:, 1:], 1, ids[..., None].expand(-1, -1, full.shape[-1])))  # fmt: skip


def test_shapes_and_injected_noise():
    m = _model()
    video = torch.randn(2, 3, 8, 16, 16)
    noise = torch.rand(2, 64)
    a, b = m({"images": video}, noise=noise), m({"images": video}, noise=noise)
    assert a["pred"].shape == (2, 64, 1 * 4 * 4 * 3)  # t_pred = 2·4/8 = 1 frame per token
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["mask"], b["mask"])
    kept = noise.argsort(1)[:, :6]  # small noise is kept, as MAE
    assert (a["mask"].gather(1, kept) == 0).all() and a["mask"].sum() == 2 * 58
    with pytest.raises(ValueError, match="pred_t_dim"):
        _model(cfg=MAESTConfig(pred_t_dim=3))


def test_norm_pix_loss_by_hand_on_masked_tokens_only():
    m = _model(frames=4, size=8, patch=4, cfg=MAESTConfig(decoder_dim=8, decoder_depth=1,
                                                          decoder_heads=2, pred_t_dim=2))  # fmt: skip
    assert m.target_index.tolist() == [0, 3] and m.t_pred == 1  # grid 2 x 2 x 2
    video = torch.randn(1, 3, 4, 8, 8, dtype=torch.float64)
    pred = torch.randn(1, 8, 4 * 4 * 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 0, 0, 1, 1, 0, 0, 0]], dtype=torch.float64)
    total, count = 0.0, 0
    for t, frame in enumerate([0, 3]):
        for i in range(2):
            for j in range(2):
                k = (t * 2 + i) * 2 + j
                # pixels of the token: (row, col, channel), channel fastest
                x = video[0, :, frame, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].permute(1, 2, 0)
                x = x.reshape(-1)
                mean = x.sum() / x.numel()
                var = ((x - mean) ** 2).sum() / (x.numel() - 1)  # unbiased
                target = (x - mean) / (var + 1e-6) ** 0.5
                if mask[0, k]:
                    total += ((pred[0, k] - target) ** 2).mean()
                    count += 1
    loss = m.loss(video, pred, mask)
    torch.testing.assert_close(loss, total / count)
    loss.backward()
    kept = mask[0] == 0
    assert (pred.grad[0, kept] == 0).all() and (pred.grad[0, ~kept] != 0).any()


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    if requires_fmnist.args[0]:
        pytest.skip(requires_fmnist.kwargs["reason"])
    out = tmp_path_factory.mktemp("mfmnist")
    build_moving_fmnist(out, n=16, n_val=4, frames=16, size=32, seed=0)
    return out


def _train(*args) -> None:
    tiny = ["backbone.depth=1", "backbone.patch_size=8", "method.decoder_dim=16",
            "method.decoder_depth=1", "method.decoder_heads=2", "data.img_size=32",
            "optim.batch_size=4", "data.num_workers=0", "run.progress=false",
            "run.ckpt_every_minutes=0", "run.threads=1", "run.log_every=1",
            "run.budget_minutes=0"]  # fmt: skip
    assert cli.main(["train", *args, *tiny] if args[0] != "--resume" else ["train", *args]) == 0


def test_train_mae_st_mfmnist_on_a_video_folder_and_resume_exactly(video_folder, tmp_path):
    """4 steps straight == 2 steps + --resume + 2 steps (weights), through `visrep train`."""
    data = f"data.dataset={video_folder}"
    straight, half = tmp_path / "straight", tmp_path / "half"
    _train("mae_st_mfmnist", data, f"run.out_dir={straight}", "run.max_steps=4")
    _train("mae_st_mfmnist", data, f"run.out_dir={half}", "run.max_steps=2", "eval.final=false")
    two = load_checkpoint(half)
    assert two["step"] == 2
    _train("--resume", str(half), "run.max_steps=4", "eval.final=false")
    a, b = load_checkpoint(straight), load_checkpoint(half)
    assert a["step"] == b["step"] == 4 and a["n_skipped"] == 0
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert any(not torch.equal(v, two["model"][k]) for k, v in a["model"].items())  # it trained
    assert (straight / "report.md").is_file()
    # the final video k-NN on the folder's val/ videos, class and direction labels
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["knn_n_train"] == 16 and metrics["knn_n_test"] == 4 and metrics["knn_k"] == 16
    for key in ("knn_top1", "knn_direction_top1", "init_knn_top1", "init_knn_direction_top1"):
        assert 0 <= metrics[key] <= 1, key
    # `visrep eval knn --ckpt RUN` gives the same figures
    assert cli.main(["eval", "knn", "--ckpt", str(straight), "--device", "cpu"]) == 0
    again = json.loads((straight / "eval_knn.json").read_text())
    assert again["knn_top1"] == metrics["knn_top1"]
    assert again["knn_direction_top1"] == metrics["knn_direction_top1"]
    # `visrep eval linear --ckpt RUN`: a probe per label family on the same clip features
    assert cli.main(["eval", "linear", "--ckpt", str(straight), "--device", "cpu"]) == 0
    linear = json.loads((straight / "eval_linear.json").read_text())
    assert linear["linear_n_train"] == 16 and linear["linear_aggregation"] == "feature_mean"
    assert linear["linear_blr"] >= 1000 * 256 / (16 * linear["linear_epochs"]) - 1e-3
    for key in ("linear_top1", "linear_direction_top1"):
        assert 0 <= linear[key] <= 1, key
    config = (straight / "config.json").read_text()
    assert '"frames": 8' in config and str(video_folder / "train") in config


def test_encoder_mask_tokens_baseline_encodes_every_token_and_ignores_removed_pixels():
    """The speed baseline (MAE Table 1c "encoder w/ [M]"): all L tokens through the encoder,
    removed ones as a mask token, so their pixels cannot change the prediction."""
    from dataclasses import replace

    m = _model(cfg=replace(CFG, encoder_mask_tokens=True))
    video = torch.randn(2, 3, 8, 16, 16)
    noise = torch.rand(2, 64)
    out = m({"images": video}, noise=noise)
    assert out["pred"].shape == (2, 64, 4 * 4 * 3) and torch.isfinite(out["loss"])
    seen = {}
    m.backbone.blocks[0].register_forward_pre_hook(lambda mod, a: seen.update(n=a[0].shape[1]))
    removed = out["mask"][0].view(4, 4, 4).nonzero()[0].tolist()  # a removed token (t, h, w)
    edited = video.clone()
    t, h, w = removed
    edited[0, :, 2 * t : 2 * t + 2, 4 * h : 4 * h + 4, 4 * w : 4 * w + 4] += 3.0
    again = m({"images": edited}, noise=noise)
    assert seen["n"] == 1 + 64  # cls + every token
    torch.testing.assert_close(again["pred"], out["pred"])


def test_repeated_augmentation_trains_r_clips_of_each_video_through_train(video_folder, tmp_path):
    """`data.repeat_aug=2`: a step of 4 videos trains on 8 clips; the lr scales with the 4
    videos (MAE-ST `main_pretrain.py`: eff_batch_size leaves repeat_aug out)."""
    out, plain = tmp_path / "rep", tmp_path / "plain"
    data = f"data.dataset={video_folder}"
    _train("mae_st_mfmnist", data, f"run.out_dir={out}", "run.max_steps=2", "eval.final=false",
           "data.repeat_aug=2")  # fmt: skip
    _train("mae_st_mfmnist", data, f"run.out_dir={plain}", "run.max_steps=2", "eval.final=false")
    rep = json.loads((out / "metrics.json").read_text())
    base = json.loads((plain / "metrics.json").read_text())
    assert rep["train_images_seen"] == 2 * 4 * 2 and base["train_images_seen"] == 2 * 4
    lrs = [[json.loads(x)["train/lr"] for x in (run / "log.jsonl").read_text().splitlines()
            if "train/lr" in x] for run in (out, plain)]  # fmt: skip
    assert lrs[0] and lrs[0] == lrs[1]
    a, b = load_checkpoint(out), load_checkpoint(plain)
    assert a["step"] == b["step"] == 2
    assert any(not torch.equal(v, b["model"][k]) for k, v in a["model"].items())
