"""Fine-tuning a pre-trained video encoder (`visrep eval finetune --ckpt VIDEO_RUN`; MAE-ST,
facebookresearch/mae_st `main_finetune.py` / `models_vit.py`): the supervised method on a
video ViT or Slow-only ResNet, trained by the one loop on labelled Moving Fashion-MNIST clips;
the backbone starts from the pre-training run's weights, the head has one output per class,
the loss falls, multi-view testing averages per-view softmax scores, resume is exact, the
layer-decay ids are mae_st's; and the Slow-only ResNet export round trip. On Moving
Fashion-MNIST's motion-direction labels (`--labels direction`): one output per direction,
batches and score on the directions, clear errors for a set without them, a flip, an image
run."""

import json

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from conftest import requires_fmnist, smoke_run

from visrep import cli
from visrep.backbones import SlowResNet, VideoMViT, VideoViT
from visrep.backbones.video_export import (
    load_slow_resnet,
    load_video_backbone,
    load_video_mvit,
    load_video_vit,
    video_mvit_config,
)
from visrep.checkpoint import load_checkpoint
from visrep.config import ConfigError, EvalConfig, apply_overrides, replace
from visrep.data.build_video import build_moving_fmnist
from visrep.data.video_eval import preview_clips, video_eval_sets
from visrep.data.video_source import labelled_clips
from visrep.evals.video import video_classifier_accuracy, video_scores
from visrep.export import export_backbone
from visrep.finetune import finetune, finetune_config, resolve
from visrep.loop import build_optimizer
from visrep.methods.supervised import Supervised, SupervisedConfig
from visrep.runs import build_model, load_run, load_run_config
from visrep.schedules import cosine_lr

pytestmark = requires_fmnist
# a few labelled Moving Fashion-MNIST videos, 4 clips a step, one thread
TINY = ["eval.dataset=fashion_mnist", "eval.limit_train=80", "eval.limit_test=20",
        "optim.batch_size=4", "run.threads=1", "run.progress=false", "run.log_every=1",
        "run.ckpt_every_minutes=0"]  # fmt: skip


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    """A 2-step MAE-ST smoke run (video ViT, 2 blocks, 8 frames at 32 px), no eval dataset."""
    return smoke_run(tmp_path_factory.mktemp("mae_st") / "run", "mae_st_mfmnist", 2)


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """A 1-step ρBYOL smoke run on the Slow-only ResNet (slow_r26, 8 frames at 32 px)."""
    return smoke_run(tmp_path_factory.mktemp("slow") / "run", "rho_byol_k400", 1,
                           **{"optim.batch_size": 4})  # fmt: skip


@pytest.fixture(scope="module")
def mvit_run(tmp_path_factory):
    """A 1-step video MaskFeat smoke run on MViTv2 (`maskfeat_video_mvit_mfmnist`: the 5-block
    mvitv2_tiny, pre-training variant without the last query pooling, 8 frames at 32 px)."""
    return smoke_run(tmp_path_factory.mktemp("mvit") / "run", "maskfeat_video_mvit_mfmnist", 1)


def _ft(source, *overrides):
    return resolve(apply_overrides(finetune_config(source), [*TINY, *overrides]))


def test_a_run_without_labels_is_a_clear_error(pre):
    assert load_run_config(pre).eval.dataset == ""  # the smoke run evaluates nothing
    with pytest.raises(ConfigError, match="no labels to fine-tune on.*Moving Fashion-MNIST"):
        resolve(finetune_config(pre))
    with pytest.raises(ValueError, match="holds no labelled videos"):  # no train/ + val/
        labelled_clips(replace(_ft(pre), **{"eval.dataset": str(pre)}))


def test_the_video_defaults_and_the_head_on_the_pretrained_backbone(pre):
    """The backbone starts as the run's (every tensor equal), the head is [K, D] at
    trunc_normal(2e-5) with bias 0, the MAE-ST settings are the defaults."""
    cfg = _ft(pre)
    m = cfg.method
    assert (m.dropout, m.layer_decay, m.drop_path, m.reprob, m.auto_augment) == (0.5, 0.75, 0.1,
                                                                               0.0, "")  # fmt: skip
    assert m.num_classes == 10 and cfg.data.frames == 8 and cfg.data.clips == 0
    assert not cfg.data.hflip  # the run's choice (Moving Fashion-MNIST: no flip)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.backbone, VideoViT) and model.head.weight.shape == (10, 192)
    assert model.head.weight.std().item() == pytest.approx(2e-5, rel=0.2)
    assert torch.equal(model.head.bias, torch.zeros(10))
    src = {k.removeprefix("backbone."): v for k, v in load_checkpoint(pre)["model"].items()
           if k.startswith("backbone.")}  # fmt: skip
    got = model.backbone.state_dict()
    assert set(got) == set(src)
    for k, v in src.items():
        assert torch.equal(got[k], v), k
    # drop path rebuilt into the blocks (linear over depth, as mae_st models_vit.py)
    assert [b.drop_path1.drop_prob for b in model.backbone.blocks[1:]] == [pytest.approx(0.1)]
    # init=random: the same architecture at the pre-training init, not the run's weights
    torch.manual_seed(0)
    rand = build_model(replace(cfg, **{"method.init": "random"}))
    assert not torch.equal(rand.backbone.blocks[0].attn.qkv.weight, got["blocks.0.attn.qkv.weight"])


def test_video_vit_layer_decay_ids_are_mae_sts(pre):
    """mae_st util/lr_decay.py: patch_embed, cls_token, pos_embed_* -> id 0; block i -> i + 1;
    norm and head -> depth + 1; scale = d^(depth + 1 - id); no weight decay on the
    position tables and the cls token (models_vit.py `no_weight_decay`) nor 1-D tensors."""
    d = 0.5
    model = build_model(_ft(pre, f"method.layer_decay={d}"))
    assert len(model.backbone.blocks) == 2
    want = {"backbone.patch_embed.proj.weight": d**3, "backbone.cls_token": d**3,
            "backbone.pos_embed_spatial": d**3, "backbone.pos_embed_temporal": d**3,
            "backbone.pos_embed_class": d**3, "backbone.blocks.0.attn.qkv.weight": d**2,
            "backbone.blocks.1.mlp.fc2.bias": d, "backbone.norm.weight": 1.0,
            "head.weight": 1.0, "head.bias": 1.0}  # fmt: skip
    for name, scale in want.items():
        assert model.lr_scale(name) == scale, name
    opt = build_optimizer(model, _ft(pre).optim, 1e-3)
    group = {id(p): g for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    no_wd = {n for n, p in params.items() if group[id(p)]["weight_decay"] == 0}
    assert no_wd == {n for n, p in params.items() if p.ndim == 1} | {
        "backbone.cls_token", "backbone.pos_embed_spatial", "backbone.pos_embed_temporal",
        "backbone.pos_embed_class"}  # fmt: skip
    assert group[id(params["backbone.blocks.0.attn.qkv.weight"])]["lr_scale"] == d**2


def test_loss_falls_on_a_fixed_batch(pre):
    """Eight labelled clips, the loop's optimizer (AdamW, layer decay), 12 steps: the
    cross-entropy of that batch falls well below its start."""
    cfg = _ft(pre, "method.dropout=0", "method.drop_path=0", "method.smoothing=0")
    torch.manual_seed(0)
    model = build_model(cfg)
    data, k = labelled_clips(replace(cfg, **{"optim.batch_size": 8}))
    batch = data.batch(0)
    assert batch["images"].shape == (8, 3, 8, 32, 32) and k == 10
    assert batch["labels"].tolist() == [int(v.label) for v in
                                        map(data.videos.video, data.indices(0).tolist())]  # fmt: skip
    opt = build_optimizer(model, replace(cfg.optim, weight_decay=0.0), 1e-3)
    for g in opt.param_groups:
        g["lr"] = 1e-3 * g["lr_scale"]
    losses = []
    for _ in range(12):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2.3026, abs=0.01)  # head at ~0: uniform over 10 classes
    assert losses[-1] < 0.5 * losses[0], losses


def test_multi_view_scores_are_the_mean_of_per_view_softmax(pre):
    """video_scores == the hand average over each video's views of softmax(logits), with the
    views of two videos batched into one forward (batch_size 5, 3 views each)."""
    data = replace(load_run_config(pre).data, dataset="fashion_mnist")
    _, test = video_eval_sets(data, EvalConfig(dataset="fashion_mnist", limit_test=6), views=3)
    torch.manual_seed(0)
    w = torch.randn(3 * 8, 10)

    def logits(x):  # a classifier on the mean colour of each channel x frame
        return x.mean(dim=(3, 4)).flatten(1) @ w

    scores, kept = video_scores({"m": logits, "twice": lambda x: 2 * logits(x)}, test,
                                batch_size=5)  # fmt: skip
    assert kept.tolist() == list(range(6)) and scores["m"].shape == (6, 10)
    for i in range(6):
        views = test.views(i)
        assert views.shape == (3, 3, 8, 32, 32)
        hand = torch.stack([F.softmax(logits(v[None])[0], dim=0) for v in views]).mean(0)
        torch.testing.assert_close(scores["m"][i], hand)
        hand2 = torch.stack([F.softmax(2 * logits(v[None])[0], dim=0) for v in views]).mean(0)
        torch.testing.assert_close(scores["twice"][i], hand2)
    acc = video_classifier_accuracy({"m": logits}, test, batch_size=5)["m"]
    y = test.labels["class"]
    assert acc["top1"] == pytest.approx((scores["m"].argmax(1) == y).float().mean().item())
    assert acc["loss"] == pytest.approx(-scores["m"][torch.arange(6), y].log().mean().item())
    assert acc["n"] == 6


def test_resume_equals_uninterrupted(pre, tmp_path):
    """4 steps straight == 2 steps + --resume to 4 (weights, optimizer), through the CLI;
    dropout, drop path and the clip draws are functions of (seed, step)."""
    straight, half = tmp_path / "straight", tmp_path / "half"
    base = ["eval", "finetune", "--ckpt", str(pre), *TINY]
    assert cli.main([*base, f"run.out_dir={straight}", "run.max_steps=4", "eval.final=false",
                     "--out", str(tmp_path / "a.json")]) == 0  # fmt: skip
    assert cli.main([*base, f"run.out_dir={half}", "run.max_steps=2", "eval.final=false",
                     "--out", str(tmp_path / "b.json")]) == 0  # fmt: skip
    assert load_checkpoint(half)["step"] == 2
    assert cli.main(["eval", "finetune", "--ckpt", str(pre), "--resume", f"run.out_dir={half}",
                     "run.max_steps=4", "--out", str(tmp_path / "b.json")]) == 0  # fmt: skip
    a, b = load_checkpoint(straight), load_checkpoint(half)
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])


def test_finetune_a_video_folder_end_to_end(pre, tmp_path):
    """`visrep eval finetune` on a built folder of encoded videos (class sub-folders, the
    PyAV decode path): trains, then the clip-level multi-view top-1/top-5 on val/; the
    fine-tuned encoder exports as a video ViT."""
    folder = tmp_path / "mfmnist"
    build_moving_fmnist(folder, n=20, n_val=10, frames=16, size=32, seed=0)
    out = tmp_path / "ft"
    assert cli.main(["eval", "finetune", "--ckpt", str(pre), *TINY, f"eval.dataset={folder}",
                     "eval.limit_train=0", "eval.limit_test=0", "run.max_steps=3",
                     f"run.out_dir={out}", "--out", str(tmp_path / "m.json")]) == 0  # fmt: skip
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["finetune_steps"] == 3 and m["finetune_n_test"] == 10 and m["finetune_views"] == 2
    assert m["finetune_aggregation"] == "softmax_mean" and m["finetune_arch"] == "vit_tiny"
    assert 0 <= m["finetune_top1"] <= m["finetune_top5"] <= 1
    assert m["finetune_load"]["missing"] == ["head.bias", "head.weight"]
    assert m["unreadable_images_skipped"] == 0
    state = load_checkpoint(out)["model"]
    assert state["head.weight"].shape == (10, 192)  # the folder's 10 class sub-folders
    assert (out / "report.md").is_file() and (out / "metrics.json").is_file()
    cfg, model = load_run(out)
    export_backbone(out, tmp_path / "exp")
    loaded, _ = load_video_vit(tmp_path / "exp")
    clips = preview_clips(cfg.data, cfg.eval, 2)
    with torch.no_grad():
        assert torch.equal(loaded(clips), model.backbone(clips))


def test_slow_resnet_fine_tunes_with_its_own_head(slow_run, tmp_path):
    """A Slow ResNet: pooled res5 features -> dropout -> Linear(1024 -> 10) at normal-ish
    std 0.01 (SlowFast ResNetBasicHead), no layer decay, BN buffers loaded from the run."""
    cfg = _ft(slow_run, "run.max_steps=2", f"run.out_dir={tmp_path / 'ft'}")
    assert cfg.method.head_init_std == 0.01
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.backbone, SlowResNet) and model.head.weight.shape == (10, 1024)
    assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.1)
    src = load_checkpoint(slow_run)["model"]
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, src[f"backbone.{k}"]), k
    assert {model.lr_scale(n) for n, _ in model.named_parameters()} == {1.0}
    assert model.no_decay_names == set()
    metrics = finetune(cfg)
    assert metrics["finetune_steps"] == 2 and metrics["finetune_arch"] == "slow_r26"


def test_slow_resnet_export_round_trip_and_strict_load(slow_run, tmp_path):
    cfg, model = load_run(slow_run)
    out = tmp_path / "exp"
    assert cli.main(["export", "--ckpt", str(slow_run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "visrep-slow-resnet"
    v = config["slow_resnet"]
    assert (v["arch"], v["blocks"], v["width"], v["feature_dim"]) == ("slow_r26", [2, 2, 2, 2],
                                                                      32, 1024)  # fmt: skip
    assert v["temporal_kernels"] == [1, 1, 3, 3] and config["preprocessing"]["frames"] == 8
    loaded, saved = load_slow_resnet(out)
    assert saved == config and not loaded.training
    state = safetensors.torch.load_file(out / "model.safetensors")
    assert torch.equal(state["stages.3.1.a_bn.running_mean"],
                       model.backbone.stages[3][1].a_bn.running_mean)  # fmt: skip
    clip = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(clip), model.backbone.eval()(clip))
    assert "load_slow_resnet" in (out / "README.md").read_text()
    # a wrong weights file fails loudly, naming the files
    del state["stages.0.0.a.weight"]
    safetensors.torch.save_file(state, out / "model.safetensors")
    with pytest.raises(ValueError, match="does not fit the Slow ResNet.*export the run again"):
        load_slow_resnet(out)
    with pytest.raises(ValueError, match="no Slow-only ResNet export"):
        load_slow_resnet(slow_run)
    with pytest.raises(ValueError, match="no video ViT export"):
        load_video_vit(out)
    with pytest.raises(ConfigError, match="exported video backbone"):
        load_run_config(out)


def test_mvit_export_round_trip_and_strict_load(mvit_run, tmp_path):
    """`visrep export` of an MViTv2 run: the "visrep-video-mvit" layout (SlowFast's names),
    reloaded strictly with bit-equal features in eval mode; the config block round-trips;
    a weights file or a config that does not fit is one clear error."""
    cfg, model = load_run(mvit_run)
    out = tmp_path / "exp"
    assert cli.main(["export", "--ckpt", str(mvit_run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "visrep-video-mvit" and config["preprocessing"]["frames"] == 8
    v = config["video_mvit"]
    assert (v["arch"], v["img_size"], v["frames"], v["in_chans"], v["pool"]) == (
        "mvitv2_tiny", 32, 8, 3, "avg")  # fmt: skip
    assert v["last_pool"] is False  # the MaskFeat pre-training network, as trained
    assert (v["embed_dim"], v["feature_dim"], v["depth"]) == (32, 128, 5)
    assert (v["grid"], v["out_grid"], v["out_stride"]) == ([4, 8, 8], [4, 4, 4], 8)
    assert v["token_order"] == "t,h,w" and len(v["blocks"]) == 5
    assert v["blocks"][1] == {"dim": 64, "dim_out": 64, "heads": 2, "stride_q": [1, 2, 2],
                              "stride_kv": [1, 2, 2], "grid_out": [4, 4, 4]}  # fmt: skip
    loaded, saved = load_video_mvit(out)
    assert saved == config and not loaded.training and isinstance(loaded, VideoMViT)
    assert video_mvit_config(loaded) == v  # the block round-trips
    assert isinstance(load_video_backbone(out)[0], VideoMViT)  # dispatch by format
    state = safetensors.torch.load_file(out / "model.safetensors")
    assert state.keys() == model.backbone.state_dict().keys()
    assert list(state["patch_embed.proj.weight"].shape) == [32, 3, 3, 7, 7]
    for name in ("cls_token", "blocks.0.proj.weight", "blocks.1.attn.pool_q.weight",
                 "blocks.1.attn.norm_k.weight", "blocks.4.attn.rel_pos_t", "norm.bias"):  # fmt: skip
        assert torch.equal(state[name], model.backbone.state_dict()[name]), name
    clip = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(clip), model.backbone.eval()(clip))
    readme = (out / "README.md").read_text()
    assert "load_video_mvit" in readme and "finetuning_trunk" in readme
    with pytest.raises(ConfigError, match="exported video backbone"):
        load_run_config(out)
    with pytest.raises(ValueError, match="no video ViT export"):
        load_video_vit(out)
    with pytest.raises(ValueError, match="no MViTv2 export"):
        load_video_mvit(mvit_run)
    # a config whose schedule is not the network its arch and sizes build
    edited = json.loads(json.dumps(config))
    edited["video_mvit"]["blocks"][2]["heads"] = 4
    (out / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="whose blocks differ.*export the run again"):
        load_video_mvit(out)
    (out / "config.json").write_text(json.dumps(config))
    # a weights file that does not fit the config: a missing tensor, another shape
    del state["blocks.1.attn.pool_q.weight"]
    safetensors.torch.save_file(state, out / "model.safetensors")
    with pytest.raises(ValueError, match="does not fit the MViTv2.*export the run again"):
        load_video_mvit(out)
    # the run's weights under the config of the fine-tuning variant (last_pool true): the
    # relative-position tables of the last blocks have other lengths
    safetensors.torch.save_file(model.backbone.state_dict(), out / "model.safetensors")
    config["video_mvit"] = video_mvit_config(VideoMViT("mvitv2_tiny", img_size=32, frames=8))
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not fit the MViTv2.*rel_pos"):
        load_video_mvit(out)


def test_clips_mix_as_one_image_of_c_times_t_channels():
    """CutMix on clips (mae_st util/decoder/mixup.py): one box per clip, the same in every
    frame and channel; the soft target gives the partner's class the box's area share."""
    vit = VideoViT("vit_tiny", img_size=16, patch_size=8, frames=4, depth=1)
    model = Supervised(SupervisedConfig(num_classes=3, cutmix=1.0, mixup=0.0, smoothing=0.0),
                       vit)  # fmt: skip
    x = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 2, 0])
    np.random.seed(0)
    mixed, target = model.mixup(x.clone().flatten(1, 2), y)
    mixed = mixed.view(x.shape)  # sample i's box holds sample 3 - i (timm flips the batch)
    box = mixed[1, 0, 0] != 1.0
    share = box.float().mean().item()
    assert 0 < share < 1
    for i in range(4):
        for c in range(3):
            for t in range(4):
                assert torch.equal(mixed[i, c, t] != float(i), box), (i, c, t)
        assert torch.equal(mixed[i][:, :, box], torch.full_like(mixed[i][:, :, box], 3.0 - i))
    assert target[1, 2].item() == pytest.approx(share) and target[1, 1] == pytest.approx(1 - share)
    assert target[0, 0].item() == pytest.approx(1.0)  # partner of the same class
    out = model({"images": x, "labels": y}, mix_seed=0)
    assert torch.isfinite(out["loss"])


def test_mae_st_preset_is_for_video_runs_only(pre, tmp_path):
    """--preset mae_st_vit_large: mae_st FINETUNE.md's ViT-L recipe on a video run; an image
    preset on a video run (or the video preset on an image run) is refused."""
    cfg = finetune_config(pre, "mae_st_vit_large")
    assert (cfg.optim.blr, cfg.optim.epochs, cfg.optim.clip_grad) == (2.4e-3, 50, 5.0)
    m = cfg.method
    assert (m.layer_decay, m.drop_path, m.dropout, m.mixup, m.cutmix) == (0.75, 0.2, 0.3, 0.8, 1.0)
    assert (m.auto_augment, m.reprob, m.remode) == ("rand-m7-mstd0.5-inc1", 0.25, "pixel")
    assert cfg.data.frames == 8 and cfg.data.repeat_aug == 2  # the run's clips, 2 a video
    assert finetune_config(pre).data.repeat_aug == 1  # not the pre-training's
    with pytest.raises(ValueError, match="is for image runs"):
        finetune_config(pre, "mae_vit_base")
    image = tmp_path / "img"
    smoke_run(image, "mae_fmnist", 1)
    with pytest.raises(ValueError, match="is for video runs"):
        finetune_config(image, "mae_st_vit_large")


# --- fine-tuning on the motion-direction labels (method.labels=direction, --labels) ---


def test_direction_batches_and_head(pre):
    """8 directions; batch labels are d = ⌊i/10⌋ mod 8 of the sampled videos, not classes."""
    cfg = _ft(pre, "method.labels=direction")
    assert cfg.method.num_classes == 8 and cfg.method.labels == "direction"
    torch.manual_seed(0)
    assert build_model(cfg).head.weight.shape == (8, 192)
    data, k = labelled_clips(cfg, family="direction")
    assert k == 8
    idx = data.indices(0)
    batch = data.batch(0)
    assert batch["labels"].tolist() == [(i // 10) % 8 for i in idx.tolist()]
    assert batch["labels"].tolist() != [i % 10 for i in idx.tolist()]  # not the classes
    cls, _ = labelled_clips(cfg)  # the same clips, class labels
    assert torch.equal(cls.batch(0)["images"], batch["images"])


def test_finetune_on_direction_scores_direction(pre, tmp_path):
    """`--labels direction` end to end: the metrics name the family, and top-1 is the
    multi-view softmax average's argmax against the test videos' directions (by hand)."""
    out, m_json = tmp_path / "ft", tmp_path / "m.json"
    assert cli.main(["eval", "finetune", "--ckpt", str(pre), "--labels", "direction", *TINY,
                     "run.max_steps=2", f"run.out_dir={out}", "--out", str(m_json)]) == 0  # fmt: skip
    m = json.loads(m_json.read_text())
    assert m["finetune_labels"] == "direction" and m["finetune_n_test"] == 20
    assert m["config"]["method"]["num_classes"] == 8
    cfg, model = load_run(out)
    model.eval()
    _, test = video_eval_sets(cfg.data, cfg.eval)
    scores, kept = video_scores({"m": model.logits}, test)
    y = test.labels["direction"][kept]
    assert y.tolist() == [(i // 10) % 8 for i in range(20)]
    hand = (scores["m"].argmax(1) == y).float().mean().item()
    assert m["finetune_top1"] == pytest.approx(hand)
    with pytest.raises(ValueError, match="no 'speed' labels.*class.*direction"):
        video_classifier_accuracy({"m": model.logits}, test, "speed")


def test_direction_errors(pre, tmp_path):
    with pytest.raises(ConfigError, match="data.hflip=true.*mirrors the motion"):
        _ft(pre, "method.labels=direction", "data.hflip=true")
    with pytest.raises(ConfigError, match="is for video runs"):
        _ft(pre, "method.labels=direction", "data.frames=0")
    with pytest.raises(ConfigError, match="label family must be one of"):
        _ft(pre, "method.labels=colour")
    with pytest.raises(ConfigError, match="not video clips"):
        _ft(pre, "method.photometric=noise")
    with pytest.raises(ConfigError, match="--labels is for `visrep eval finetune`"):
        cli.main(["--debug", "eval", "knn", "--ckpt", str(pre), "--labels", "direction"])
    # a built folder: bouncing objects have no direction labels (-1 in labels.csv)
    bounce = tmp_path / "bounce"
    build_moving_fmnist(bounce, n=20, n_val=10, frames=16, size=32, motion="bounce")
    with pytest.raises(ConfigError, match="no 'direction' labels.*build-video --motion wrap"):
        _ft(pre, "method.labels=direction", f"eval.dataset={bounce}")
    _ft(pre, f"eval.dataset={bounce}")  # its classes are fine


def test_direction_labels_of_a_built_folder(pre, tmp_path):
    """A `visrep data build-video` folder (wrap motion): the training clips carry the
    `direction` column of its labels.csv, for the class-stratified subset."""
    folder = tmp_path / "wrap"
    build_moving_fmnist(folder, n=40, n_val=10, frames=16, size=32)
    cfg = _ft(pre, "method.labels=direction", f"eval.dataset={folder}", "eval.limit_train=30")
    assert cfg.method.num_classes == 4  # train videos 0..39: d = ⌊i/10⌋ in 0..3
    data, k = labelled_clips(replace(cfg, **{"optim.batch_size": 30}), family="direction")
    assert k == 4 and len(data.files) == 30
    want = [int(p.stem.split("_")[1]) // 10 for p in data.files.paths]
    assert data.files.labels.tolist() == want
    assert sorted(set(want)) == [0, 1, 2, 3]


def test_clip_rand_augment_and_erasing_in_the_training_batches(pre):
    """method.auto_augment / method.reprob on a video run: accepted (no longer refused), the
    batch keeps its shape, dtype and labels; RandomErasing alone changes one box per clip,
    the same in every frame and channel (the crop draws come first, so they agree)."""
    plain, _ = labelled_clips(_ft(pre))
    erased_cfg = _ft(pre, "method.reprob=1.0")
    erased, _ = labelled_clips(erased_cfg)
    both, _ = labelled_clips(_ft(pre, "method.auto_augment=rand-m7-mstd0.5-inc1",
                                 "method.reprob=0.25"))  # fmt: skip
    b0, b1, b2 = plain.batch(0), erased.batch(0), both.batch(0)
    for b in (b1, b2):
        assert b["images"].shape == b0["images"].shape == (4, 3, 8, 32, 32)
        assert b["images"].dtype == torch.float32 and torch.equal(b["labels"], b0["labels"])
    assert not torch.equal(b2["images"], b0["images"])
    diff = b1["images"] != b0["images"]  # [B, C, T, H, W]; outside the box exactly equal
    for i in range(4):
        box = diff[i, 0, 0]
        assert box.any() and torch.equal(diff[i], box.expand_as(diff[i])), i
    torch.manual_seed(0)
    model = build_model(erased_cfg)
    data = model.train_data(erased_cfg, rank=0, world_size=1, device=torch.device("cpu"))
    assert torch.equal(data.batch(0)["images"], b1["images"])


def test_ucf101_slow_preset_is_nesterov_sgd(slow_run, pre):
    """--preset ucf101_slow_r50 (SlowFast finetune_ucf_Slow_R50_syn0.yaml): the loop builds
    torch SGD with Nesterov momentum 0.9, wd 1e-4 on the convolutions and none on BN, no
    warmup, 10 × 3 test views; only for Slow-only ResNet runs."""
    cfg = resolve(apply_overrides(finetune_config(slow_run, "ucf101_slow_r50"), TINY))
    o, m, ev = cfg.optim, cfg.method, cfg.eval
    assert (o.optimizer, o.nesterov, o.momentum, o.blr, o.epochs) == ("sgd", True, 0.9, 0.02, 200)
    assert (o.warmup_epochs, o.min_lr, o.weight_decay) == (0, 0.0, 1e-4)
    assert (m.dropout, m.head_init_std, m.smoothing, m.mixup) == (0.5, 0.01, 0.0, 0.0)
    assert (ev.temporal_views, ev.spatial_crops) == (10, 3)
    # SlowFast's fine-tuning colour jitter and short-side jitter [256, 320] + random crop
    assert cfg.data.color_jitter and cfg.data.short_side_jitter == (256, 320)
    batch = labelled_clips(cfg)[0].batch(0)["images"]
    assert batch.shape[-2:] == (cfg.data.img_size,) * 2 and torch.isfinite(batch).all()
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, o, 0.005)
    assert type(opt) is torch.optim.SGD
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert wd[id(params["backbone.stages.0.0.a.weight"])] == 1e-4
    assert wd[id(params["backbone.stages.0.0.a_bn.weight"])] == 0.0
    with pytest.raises(ValueError, match="is for Slow-only ResNet runs.*mae_st_vit_large"):
        finetune_config(pre, "ucf101_slow_r50")
    with pytest.raises(ValueError, match="is for video ViT runs.*ucf101_slow_r50"):
        finetune_config(slow_run, "mae_st_vit_large")


def test_maskfeat_mvit_s_preset_is_slowfasts_and_for_mvit_runs_only(mvit_run, pre):
    """--preset maskfeat_mvit_s_k400 carries facebookresearch/SlowFast
    `configs/masked_ssl/k400_MVITv2_S_16x4_FT.yaml` (MaskFeat's MViTv2-S Kinetics-400
    fine-tuning): TRAIN.BATCH_SIZE 16 videos on NUM_GPUS 8, AUG.NUM_SAMPLE 2, BASE_LR 6e-4
    (per 16 videos: blr 9.6e-3), WARMUP_EPOCHS 20 from WARMUP_START_LR 1e-6, cosine to
    COSINE_END_LR 1e-6 at MAX_EPOCH 100, AdamW (SOLVER.BETAS default 0.9, 0.999) wd 0.05,
    LAYER_DECAY 0.75, DROPPATH_RATE 0.1, DROPOUT_RATE 0, HEAD_INIT_SCALE 0.001, Mixup 0.8 /
    CutMix 1.0 / smoothing 0.1, rand-m7-mstd0.5-inc1, RE_PROB 0.25 pixel, crop scale
    (0.08, 1), CLIP_GRAD_L2NORM 5.0, fp32, 10 x 1 test views; the last query pooling back.
    Another family's preset is refused, naming the presets that fit."""
    keep_batch = [o for o in TINY if not o.startswith("optim.batch_size")]
    cfg = resolve(apply_overrides(finetune_config(mvit_run, "maskfeat_mvit_s_k400"), keep_batch))
    o, m, d, ev = cfg.optim, cfg.method, cfg.data, cfg.eval
    assert (o.optimizer, o.epochs, o.batch_size, o.blr, o.warmup_epochs) == (
        "adamw", 100, 2, 9.6e-3, 20)  # fmt: skip
    assert (o.betas, o.weight_decay, o.clip_grad, o.decay_all) == ((0.9, 0.999), 0.05, 5.0, False)
    lr = o.blr * o.batch_size * 8 / 256  # 8 GPUs x 2 videos = the yaml's 16
    assert lr == pytest.approx(6e-4)
    sched = [cosine_lr(e, lr, o.warmup_epochs, o.epochs, o.min_lr_ratio * lr, o.warmup_start)
             for e in (0, 20, 60, 100)]  # fmt: skip
    assert sched == pytest.approx([1e-6, 6e-4, (6e-4 + 1e-6) / 2, 1e-6], rel=1e-6)
    assert (m.layer_decay, m.drop_path, m.dropout, m.head_init_std) == (0.75, 0.1, 0.0, 2e-5)
    assert (m.mixup, m.cutmix, m.mixup_prob, m.mixup_switch_prob, m.smoothing) == (
        0.8, 1.0, 1.0, 0.5, 0.1)  # fmt: skip
    assert (m.auto_augment, m.reprob, m.remode, m.recount) == ("rand-m7-mstd0.5-inc1", 0.25,
                                                               "pixel", 1)  # fmt: skip
    assert (d.crop_scale, d.repeat_aug, d.frames) == ((0.08, 1.0), 2, 8)  # the run's clips
    assert (ev.temporal_views, ev.spatial_crops) == (10, 1) and cfg.run.precision == "fp32"
    assert m.num_classes == 10
    torch.manual_seed(0)
    model = build_model(cfg)  # pre-trained without the last pooling: fine-tuned with it
    assert model.backbone.last_pool and model.backbone.out_grid == (4, 2, 2)
    assert model.backbone.drop_path_rate == 0.1
    wd = {id(p): g["weight_decay"] for g in build_optimizer(model, o, lr).param_groups
          for p in g["params"]}  # fmt: skip
    params = dict(model.named_parameters())
    assert wd[id(params["backbone.cls_token"])] == 0.05  # ZERO_DECAY_POS_CLS False
    assert wd[id(params["backbone.blocks.0.attn.rel_pos_h"])] == 0.05
    assert wd[id(params["backbone.blocks.0.attn.qkv.bias"])] == 0.0  # ZERO_WD_1D_PARAM
    with pytest.raises(ValueError, match=r"is for MViTv2 runs.*\['mae_st_vit_large'\]"):
        finetune_config(pre, "maskfeat_mvit_s_k400")
    with pytest.raises(ValueError, match=r"is for video ViT runs.*\['maskfeat_mvit_s_k400'\]"):
        finetune_config(mvit_run, "mae_st_vit_large")
    with pytest.raises(ValueError, match="is for Slow-only ResNet runs.*maskfeat_mvit_s_k400"):
        finetune_config(mvit_run, "ucf101_slow_r50")
    with pytest.raises(ValueError, match="is for image runs"):
        finetune_config(mvit_run, "mae_vit_base")
