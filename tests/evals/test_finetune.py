"""Fine-tuning (mae `main_finetune.py`, ConvNeXt-V2 `main_finetune.py`), the `supervised`
method run by the one training loop: layer decay, weight-decay groups, head/fc_norm init,
pos-embed resize, and short end-to-end runs from smoke checkpoints through `visrep eval
finetune`'s config."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist, visrep

from visrep.backbones import CNN, ViT
from visrep.backbones.pretrained import Pretrained, build_classifier
from visrep.config import ConfigError, apply_overrides, replace
from visrep.configs import get_recipe, smoke
from visrep.export import export_backbone
from visrep.finetune import FINETUNE_OPTIM, finetune, finetune_config, resolve
from visrep.loop import build_optimizer, param_groups, train
from visrep.methods.supervised import Supervised, SupervisedConfig
from visrep.parts.layer_decay import convnext_layer_id, layer_decay_scale
from visrep.parts.pos_embed import interpolate_pos_embed
from visrep.runs import load_pretrained

DEPTH = 3


def _pretrained(backbone) -> Pretrained:
    state = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    return Pretrained(backbone.timm_name, dict(backbone.timm_kwargs), dict(backbone.timm_fixups),
                      state, "test")  # fmt: skip


@pytest.fixture(scope="module")
def vit_backbone():
    torch.manual_seed(0)
    return ViT("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=DEPTH)


@pytest.fixture(scope="module")
def tiny_vit(vit_backbone):
    return _pretrained(vit_backbone)


def _method(backbone, **kw) -> Supervised:
    """The supervised method starting from `backbone` (method.source = "")."""
    return Supervised(SupervisedConfig(num_classes=10, **kw), backbone)


def _groups(method: Supervised, weight_decay: float = 0.05) -> dict[str, dict]:
    """timm parameter name -> its group in the loop's optimizer (`train.build_optimizer`)."""
    opt = build_optimizer(method, replace(FINETUNE_OPTIM, weight_decay=weight_decay), 1e-3)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    return {
        name.removeprefix("backbone.model."): by_id[id(p)] for name, p in method.named_parameters()
    }


def test_vit_layer_decay_scales_are_maes_formula(vit_backbone):
    """lr_scale = decay^(num_layers - id), num_layers = depth + 1 (mae util/lr_decay.py),
    as the loop's optimizer groups carry them."""
    d = 0.65
    groups = _groups(_method(vit_backbone, layer_decay=d))
    for name in ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]:
        assert groups[name]["lr_scale"] == pytest.approx(d ** (DEPTH + 1)), name
    for i in range(DEPTH):
        assert groups[f"blocks.{i}.attn.qkv.weight"]["lr_scale"] == pytest.approx(d ** (DEPTH - i))
    assert groups[f"blocks.{DEPTH - 1}.mlp.fc2.bias"]["lr_scale"] == pytest.approx(d)
    for name in ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]:
        assert groups[name]["lr_scale"] == 1.0, name


def test_vit_no_weight_decay_set(vit_backbone):
    """No wd on ndim == 1 and on pos_embed / cls_token (MAE no_weight_decay())."""
    method = _method(vit_backbone)
    groups = _groups(method, weight_decay=0.05)
    no_wd = {n for n, g in groups.items() if g["weight_decay"] == 0.0}
    expected = {n.removeprefix("backbone.model.") for n, p in method.named_parameters()
                if p.ndim == 1} | {"pos_embed", "cls_token"}  # fmt: skip
    assert no_wd == expected
    assert groups["head.weight"]["weight_decay"] == 0.05
    assert method.backbone.model.pos_embed.requires_grad  # trained in fine-tuning (MAE)


def test_param_groups_without_lr_scale_are_unchanged():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    groups = param_groups(model, 0.1)
    assert [len(g["params"]) for g in groups] == [3, 1] and all("lr_scale" not in g for g in groups)


def test_global_pool_drops_the_pretrained_norm_and_inits_fc_norm_and_head(tiny_vit):
    state = dict(tiny_vit.state, **{"norm.weight": torch.full((192,), 3.0)})
    pre = Pretrained(**{**tiny_vit.__dict__, "state": state})
    torch.manual_seed(0)
    model, report = build_classifier(pre, SupervisedConfig(pool="avg"), num_classes=1000)
    assert report["dropped"] == ["norm.weight", "norm.bias"]
    assert isinstance(model.norm, torch.nn.Identity)
    assert torch.equal(model.fc_norm.weight, torch.ones(192))
    assert torch.equal(model.fc_norm.bias, torch.zeros(192)) and model.fc_norm.eps == 1e-6
    assert model.head.weight.std().item() == pytest.approx(2e-5, rel=0.03)
    assert torch.equal(model.head.bias, torch.zeros(1000))
    torch.testing.assert_close(
        model.blocks[0].attn.qkv.weight, pre.state["blocks.0.attn.qkv.weight"]
    )
    # global pool = LayerNorm(mean of patch tokens, cls excluded)
    x = torch.randn(2, 1, 16, 16)
    tokens = model.forward_features(x)  # [2, 1 + 16, 192], no final norm
    pooled = F.layer_norm(tokens[:, 1:].mean(1), (192,), eps=1e-6)
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), pooled)


def test_cls_token_pool_keeps_the_pretrained_norm(tiny_vit):
    state = dict(tiny_vit.state, **{"norm.weight": torch.full((192,), 3.0)})
    pre = Pretrained(**{**tiny_vit.__dict__, "state": state})
    model, report = build_classifier(pre, SupervisedConfig(pool="token"), num_classes=10)
    assert report["dropped"] == [] and report["missing"] == ["head.bias", "head.weight"]
    assert torch.equal(model.norm.weight, torch.full((192,), 3.0))


def test_unexpected_keys_are_an_error(tiny_vit):
    pre = Pretrained(**{**tiny_vit.__dict__, "state": dict(tiny_vit.state, extra=torch.ones(1))})
    with pytest.raises(ValueError, match="unexpected"):
        build_classifier(pre, SupervisedConfig(), num_classes=10)


def test_pos_embed_interpolation_keeps_cls_and_resizes_the_grid(tiny_vit):
    table = tiny_vit.state["pos_embed"] + torch.randn(1, 17, 192)  # [1, 1 + 4x4, D]
    out = interpolate_pos_embed(table, 8)
    assert out.shape == (1, 1 + 64, 192)
    assert torch.equal(out[:, :1], table[:, :1])
    grid = table[:, 1:].reshape(1, 4, 4, 192).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 64, 192))
    assert interpolate_pos_embed(table, 4) is table
    model, report = build_classifier(tiny_vit, SupervisedConfig(img_size=32), num_classes=10)
    assert model.pos_embed.shape == (1, 65, 192) and report["pos_embed_resized"] == [
        [1, 17, 192],
        [8, 8],
    ]
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_convnext_single_layer_decay_is_the_official_rule():
    """ConvNeXt V2 optim_factory 'single' (Atto..Tiny): num_layers = sum(depths) = 12 for Atto,
    scale = decay^(num_layers + 1 - id); stem id 1, block (i, b) id sum(depths[:i]) + b + 1."""
    cnn = CNN("convnextv2_atto", img_size=32, patch_size=4, in_chans=1)
    model, report = build_classifier(_pretrained(cnn), SupervisedConfig(), num_classes=10)
    assert report["missing"] == ["head.fc.bias", "head.fc.weight"]
    d = 0.9
    scale = layer_decay_scale(model, d, "auto")  # depths [2, 2, 6, 2] -> single
    expected = {"stem.0.weight": 12, "stages.0.blocks.0.conv_dw.weight": 12,
                "stages.0.blocks.1.mlp.grn.weight": 11, "stages.1.downsample.1.weight": 10,
                "stages.1.blocks.0.mlp.fc1.weight": 10, "stages.2.blocks.5.norm.bias": 3,
                "stages.3.downsample.0.bias": 2, "stages.3.blocks.1.mlp.fc2.weight": 1,
                "head.norm.weight": 0, "head.fc.weight": 0}  # fmt: skip
    for name, power in expected.items():
        assert scale(name) == pytest.approx(d**power), name
    groups = _groups(_method(cnn, layer_decay=d))
    assert groups["stages.1.blocks.0.mlp.fc1.weight"]["lr_scale"] == pytest.approx(d**10)
    assert groups["head.weight"]["lr_scale"] == 1.0  # the head (head.fc in timm) is on top
    assert groups["stages.0.blocks.0.mlp.grn.weight"]["weight_decay"] == 0.0  # GRN gamma
    assert groups["stages.0.blocks.0.mlp.fc1.weight"]["weight_decay"] == 0.05


def test_convnext_group_layer_ids_are_the_official_rule():
    """'group' (Base/Large, [3, 3, 27, 3] in 12 groups): scale = decay^(13 - id)."""
    depths = [3, 3, 27, 3]
    ids = {"stem.0.weight": 0, "stages.0.blocks.2.norm.weight": 1, "stages.1.downsample.1.weight": 2,
           "stages.1.blocks.2.mlp.fc1.weight": 2, "stages.2.downsample.0.bias": 3,
           "stages.2.blocks.0.conv_dw.weight": 3, "stages.2.blocks.5.conv_dw.weight": 4,
           "stages.2.blocks.26.mlp.fc2.weight": 11, "stages.3.downsample.1.weight": 12,
           "stages.3.blocks.2.mlp.fc1.bias": 12, "head.fc.weight": 13, "head.norm.bias": 13}  # fmt: skip
    for name, i in ids.items():
        assert convnext_layer_id(name, depths, "group") == i, name
    assert convnext_layer_id("stages.2.blocks.3.norm.weight", depths, "single") == 3 + 3 + 3 + 1


def test_resnet_has_no_layer_decay():
    cnn = CNN("resnet18", img_size=32, patch_size=2, in_chans=1)
    model, report = build_classifier(_pretrained(cnn), SupervisedConfig(), num_classes=10)
    assert report["missing"] == ["fc.bias", "fc.weight"]
    groups = _groups(_method(cnn, layer_decay=0.5))
    assert {g["lr_scale"] for g in groups.values()} == {1.0}


# --------------------------------------------------------------------------- end to end

FAST = {"run.max_steps": 2, "optim.batch_size": 16, "run.progress": False, "run.threads": 1,
        "eval.limit_train": 64, "eval.limit_test": 40}  # fmt: skip


def _job(source, preset: str = "", **changes):
    """`visrep eval finetune`'s config for `source` with `changes`, into a fresh out dir."""
    cfg = replace(finetune_config(source, preset), **changes)
    return resolve(cfg)


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mae")
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{"run.out_dir": str(d), "run.threads": 1,
                  "eval.final": False, "eval.every_epochs": 0, "optim.epochs": 1,
                  "data.limit": 64})  # fmt: skip
    train(cfg)
    return d


@requires_fmnist
def test_train_and_eval_batches_are_normalized_alike(mae_run):
    from visrep.data.labelled import eval_batches, train_batches

    cfg = replace(finetune_config(mae_run), **{"method.reprob": 0.0, "data.crop_scale": (1.0, 1.0),
                  "data.hflip": False, "eval.limit_train": 256, "eval.limit_test": 256})  # fmt: skip
    assert cfg.data.img_size == 28 and cfg.data.channels == 1
    train_data, k = train_batches(cfg, device=torch.device("cpu"))
    b, (xe, ye) = train_data.batch(0), next(eval_batches(cfg.data, cfg.eval)[0])
    x, y = b["images"], b["labels"]
    assert k == 10 and x.shape == (128, 1, 28, 28) and xe.shape == (256, 1, 28, 28)
    assert y.dtype == ye.dtype == torch.long
    for t in (x, xe):  # dataset mean/std normalization, same scale in both (0..1 input)
        assert abs(t.mean().item()) < 0.2 and 0.8 < t.std().item() < 1.2


@requires_fmnist
def test_finetune_vit_smoke_run_and_random_init(mae_run, tmp_path):
    cfg = _job(mae_run, **FAST, **{"run.out_dir": str(tmp_path / "ft")})
    m = finetune(cfg)
    assert 0 <= m["finetune_top1"] <= m["finetune_top5"] <= 1 and m["finetune_n_test"] == 40
    assert m["finetune_steps"] == 2 and math.isfinite(m["finetune_train_loss"])
    assert m["config"]["method"]["layer_decay"] == 0.75
    assert "knn_top1" not in m  # a classifier's final evaluation is its own top-1/top-5
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())  # the run's metrics
    assert saved["finetune_top1"] == m["finetune_top1"]
    for f in ["checkpoint.pt", "config.json", "log.jsonl", "report.md"]:
        assert (tmp_path / "ft" / f).is_file(), f
    pre, rnd = load_pretrained(mae_run), load_pretrained(mae_run, "random")
    assert not torch.equal(
        pre.state["blocks.0.attn.qkv.weight"], rnd.state["blocks.0.attn.qkv.weight"]
    )
    torch.testing.assert_close(pre.state["pos_embed"], rnd.state["pos_embed"])  # sin-cos table
    rand = replace(cfg, **{"method.init": "random", "run.out_dir": str(tmp_path / "rnd")})
    assert finetune(rand)["finetune_init"] == "random"


@requires_fmnist
def test_finetune_convnextv2_from_a_run_and_from_its_export(tmp_path):
    cfg = replace(smoke(get_recipe("fcmae_fmnist")), **{"run.out_dir": str(tmp_path / "run"),
                  "run.threads": 1, "eval.final": False, "eval.every_epochs": 0,
                  "optim.epochs": 1, "data.limit": 64})  # fmt: skip
    train(cfg)
    job = _job(tmp_path / "run", **FAST, **{"method.mixup": 0.8, "method.cutmix": 1.0,
                                            "method.ema_decay": 0.9})  # fmt: skip
    m = finetune(job)
    assert m["finetune_arch"] == "convnextv2_atto" and m["finetune_load"]["missing"] == [
        "head.fc.bias", "head.fc.weight"]  # fmt: skip
    # the model EMA is evaluated beside the model (ConvNeXt V2's --model_ema_eval)
    assert m["finetune_ema_decay"] == 0.9 and 0 <= m["finetune_ema_top1"] <= 1
    assert m["finetune_ema_test_loss"] != m["finetune_test_loss"]
    export_backbone(tmp_path / "run", tmp_path / "export")
    job2 = _job(tmp_path / "export", **FAST)
    assert job2.data.img_size == cfg.data.img_size and job2.data.channels == 1
    assert job2.run.out_dir == str(tmp_path / "export" / "finetune")
    assert 0 <= finetune(job2)["finetune_top1"] <= 1


@requires_fmnist
def test_cli_writes_metrics_into_the_run_folder(mae_run):
    args = [f"{k}={v}" for k, v in FAST.items()]
    out = visrep("eval", "finetune", "--ckpt", str(mae_run), *args, "method.layer_decay=0.65",
                 f"run.out_dir={mae_run / 'ft_cli'}")  # fmt: skip
    metrics = json.loads((mae_run / "eval_finetune.json").read_text())
    assert metrics["config"]["method"]["layer_decay"] == 0.65 and '"finetune_top1"' in out.stdout
    assert metrics["finetune_steps"] == 2
    # --resume continues the fine-tuning run to the end of its schedule (2 epochs of 4 steps)
    visrep("eval", "finetune", "--ckpt", str(mae_run), "--resume",
           f"run.out_dir={mae_run / 'ft_cli'}", "run.max_steps=0")  # fmt: skip
    assert json.loads((mae_run / "eval_finetune.json").read_text())["finetune_steps"] == 8


@requires_fmnist
def test_unknown_keys_and_presets_are_clear_errors(mae_run):
    with pytest.raises(ConfigError, match="unknown config key 'method.lr_decay'"):
        apply_overrides(finetune_config(mae_run), ["method.lr_decay=1"])
    with pytest.raises(ValueError, match="mae_vit_base"):
        finetune_config(mae_run, "nope")
    job = apply_overrides(finetune_config(mae_run, "mae_vit_base"), ["optim.epochs=3"])
    assert (job.optim.epochs, job.method.layer_decay, job.data.img_size) == (3, 0.65, 224)
    job = apply_overrides(finetune_config(mae_run), ["optim.epochs=3"])
    assert (job.optim.epochs, job.data.img_size) == (3, 28)  # the pre-training size
    with pytest.raises(ConfigError, match="--resume"):
        from visrep.finetune import run_finetune_cli

        run_finetune_cli(str(mae_run), ["optim.epochs=3"], resume=True)
    # data.limit would be silently ignored: the labelled split is eval.dataset's
    job = apply_overrides(finetune_config(mae_run), ["data.limit=64"])
    with pytest.raises(ValueError, match="eval.limit_train=64 instead"):
        Supervised(
            replace(job.method, num_classes=10),
            CNN("resnet18", img_size=28, patch_size=2, in_chans=1),
        ).train_data(job, rank=0, world_size=1, device=torch.device("cpu"))


def test_finetune_on_an_image_folder_with_randaugment(tmp_path):
    """Folders go through timm's create_transform (RandAugment, RandomErasing) per sample;
    the source here is an exported backbone folder (backbone.json + safetensors)."""
    import numpy as np
    import safetensors.torch
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (20, 18, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / cls / f"{i}.png")
    vit = ViT("vit_tiny", img_size=16, patch_size=4, in_chans=3, depth=1, pool="avg")
    meta = {"timm_name": vit.timm_name, "timm_kwargs": vit.timm_kwargs, "timm_fixups": {},
            "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [3, 16, 16]}  # fmt: skip
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "backbone.json").write_text(json.dumps(meta))
    safetensors.torch.save_file(
        vit.model.state_dict(), tmp_path / "export" / "backbone.safetensors"
    )
    job = _job(tmp_path / "export", **{
        "run.max_steps": 2, "optim.batch_size": 4, "run.progress": False, "run.threads": 1,
        "method.mixup": 0.8, "method.cutmix": 1.0, "eval.dataset": str(tmp_path / "data")})  # fmt: skip
    assert job.method.num_classes == 2
    m = finetune(job)
    assert m["finetune_n_test"] == 8 and m["finetune_steps"] == 2
    assert m["config"]["method"]["auto_augment"] == "rand-m9-mstd0.5-inc1"


def test_presets_follow_the_papers():
    from visrep.finetune import PRESETS

    b = PRESETS["mae_vit_base"]
    assert [b[f"optim.{k}"] for k in ("epochs", "blr", "warmup_epochs", "min_lr")] == [
        100, 5e-4, 5, 1e-6]  # fmt: skip
    assert [b[f"method.{k}"] for k in ("layer_decay", "drop_path", "mixup", "cutmix")] == [
        0.65, 0.1, 0.8, 1.0]  # fmt: skip
    assert (b["method.smoothing"], b["method.reprob"]) == (0.1, 0.25)
    c = PRESETS["fcmae_convnextv2_base"]
    assert (c["optim.blr"], c["method.layer_decay"], c["method.layer_decay_type"]) == (
        6.25e-4, 0.6, "group")  # fmt: skip
    assert c["optim.warmup_epochs"] == 20
    assert all(PRESETS[f"fcmae_convnextv2_{s}"]["method.ema_decay"] == 0.9999
               for s in ("atto", "tiny", "base"))  # TRAINING.md: --model_ema True  # fmt: skip
    assert "method.ema_decay" not in b  # MAE's fine-tuning has no EMA


def test_randaugment_posterize_at_zero_bits_is_black_not_an_error():
    """timm's inc1 posterize can keep 0 bits; current Pillow raises there (MAE's Pillow
    returned black). Without the fix some of these 3,000 draws raise."""
    import random

    import numpy as np
    from PIL import Image
    from timm.data import create_transform

    from visrep.data.labelled import posterize_zero_bits_as_black

    tf = posterize_zero_bits_as_black(
        create_transform(64, is_training=True, auto_augment="rand-m9-mstd0.5-inc1")
    )
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    for _ in range(3000):
        tf(img)
    ops = [op for t in tf.transforms if hasattr(t, "ops") for op in t.ops]
    posterize = next(op for op in ops if op.name.startswith("Posterize"))
    assert np.asarray(posterize.aug_fn(img, 0)).max() == 0
    assert np.array_equal(np.asarray(posterize.aug_fn(img, 4)), np.asarray(img) & 0xF0)
