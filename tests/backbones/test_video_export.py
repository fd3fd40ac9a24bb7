"""Video ViT export (visrep's layout + `load_video_vit`), inflation / deflation of the patch
embedding (I3D's rule, used by the MAE-ST paper for image-initialised video ViTs), a video run
started from an image run, and the MAE-ST frames strip in the run report."""

import json

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from conftest import requires_fmnist, smoke_run

from visrep import cli
from visrep.backbones import VideoViT
from visrep.backbones.inflate import deflate_patch_weight, deflated_timm, inflate_patch_weight
from visrep.backbones.video_export import load_video_vit
from visrep.checkpoint import load_checkpoint
from visrep.config import ConfigError, EvalConfig, replace
from visrep.configs import get_recipe, smoke
from visrep.data.video_eval import preview_clips
from visrep.export import export_backbone
from visrep.loop import train
from visrep.methods.mae_st import patchify_video, unpatchify_video
from visrep.runs import init_video_from_image, load_run, load_run_config

QUIET = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1, "run.progress": False}


def test_inflated_kernel_on_identical_frames_equals_the_2d_kernel_on_the_frame():
    g = torch.Generator().manual_seed(0)
    w2, bias = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, generator=g)
    frame = torch.randn(2, 3, 8, 8, generator=g)
    for t in (1, 2, 4):
        w3 = inflate_patch_weight(w2, t)
        assert w3.shape == (6, 3, t, 4, 4) and torch.equal(w3[:, :, -1], w2 / t)
        clip = frame.unsqueeze(2).expand(-1, -1, t, -1, -1)  # t identical frames
        out3 = F.conv3d(clip, w3, bias, stride=(t, 4, 4))[:, :, 0]
        torch.testing.assert_close(out3, F.conv2d(frame, w2, bias, stride=4), rtol=1e-5, atol=1e-5)


def test_deflation_sums_over_time_and_undoes_inflation():
    g = torch.Generator().manual_seed(1)
    w3 = torch.randn(5, 3, 2, 4, 4, generator=g)
    torch.testing.assert_close(deflate_patch_weight(w3), w3[:, :, 0] + w3[:, :, 1])
    w2 = torch.randn(5, 3, 4, 4, generator=g)
    torch.testing.assert_close(deflate_patch_weight(inflate_patch_weight(w2, 4)), w2)
    with pytest.raises(ValueError, match="t, p, p"):
        deflate_patch_weight(w2)


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_deflated_timm_vit_reads_an_image_as_the_video_vit_reads_a_still_tubelet(pool):
    """One time slot (frames = t_patch): the timm image ViT of `deflated_timm` on an image
    equals the video ViT on the clip of t_patch copies of it, for both poolings."""
    torch.manual_seed(0)
    video = VideoViT("vit_tiny", img_size=16, patch_size=4, frames=2, t_patch_size=2,
                     depth=2, pool=pool).eval()  # fmt: skip
    name, kwargs, state = deflated_timm(video)
    image = timm.create_model(name, pretrained=False, **kwargs).eval()
    image.load_state_dict(state, strict=True)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        want = video(x.unsqueeze(2).expand(-1, -1, 2, -1, -1))
        torch.testing.assert_close(image(x), want, rtol=1e-4, atol=1e-5)


def test_unpatchify_video_inverts_patchify_video():
    x = torch.randn(2, 3, 4, 8, 8)
    p = patchify_video(x, 4, 2)
    assert torch.equal(unpatchify_video(p, 4, 2, 3, (2, 2, 2)), x)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A 2-step MAE-ST smoke run on Moving Fashion-MNIST (clips of 8 frames at 32 px)."""
    return smoke_run(tmp_path_factory.mktemp("mae_st") / "run", "mae_st_mfmnist", 2)


@requires_fmnist
def test_video_export_loads_back_with_identical_features(video_run, tmp_path):
    cfg, model = load_run(video_run)
    config = export_backbone(video_run, tmp_path / "exp")
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]  # fmt: skip
    v = config["video_vit"]
    assert v["grid"] == list(model.backbone.grid) and v["token_order"] == "t,h,w"
    assert (v["frames"], v["t_patch_size"], v["patch_size"], v["img_size"]) == (
        cfg.data.frames, cfg.backbone.t_patch_size, cfg.backbone.patch_size, cfg.data.img_size)  # fmt: skip
    assert (v["depth"], v["embed_dim"], v["pool"]) == (2, 192, "avg")
    shapes = {k: list(t.shape) for k, t in
              safetensors.torch.load_file(tmp_path / "exp" / "model.safetensors").items()}  # fmt: skip
    t, h, w = v["grid"]
    assert shapes["pos_embed_spatial"] == [1, h * w, 192]
    assert shapes["pos_embed_temporal"] == [1, t, 192]
    assert shapes["patch_embed.proj.weight"] == [192, 3, 2, v["patch_size"], v["patch_size"]]
    loaded, saved = load_video_vit(tmp_path / "exp")
    assert saved == json.loads((tmp_path / "exp" / "config.json").read_text())
    clips = preview_clips(cfg.data, EvalConfig(dataset="fashion_mnist", limit_test=80), 2)
    assert clips.shape == (2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(clips), model.backbone(clips))
    assert "load_video_vit" in (tmp_path / "exp" / "README.md").read_text()
    with pytest.raises(ConfigError, match="exported video backbone"):
        load_run_config(tmp_path / "exp")
    with pytest.raises(ValueError, match="no video ViT export"):
        load_video_vit(video_run)


@requires_fmnist
def test_cli_exports_a_video_run_deflated_for_timm(video_run, tmp_path, capsys):
    out = tmp_path / "img"
    assert cli.main(["export", "--ckpt", str(video_run), "--out", str(out),
                     "--format", "timm_image"]) == 0  # fmt: skip
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()  # strict load
    _, run = load_run(video_run)
    name, kwargs, state = deflated_timm(run.backbone)
    config = json.loads((out / "config.json").read_text())
    assert config["model_args"] == kwargs
    assert config["pretrained_cfg"]["mean"] == [0.0553] * 3  # the video run's normalisation
    assert torch.equal(model.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 192)


@requires_fmnist
def test_report_of_a_video_mae_run_holds_the_frames_strip(video_run):
    report = (video_run / "report.md").read_text()
    assert "## Frames strip" in report and "![frames strip](reconstruction.png)" in report
    assert (video_run / "reconstruction.png").stat().st_size > 5000
    cfg, model = load_run(video_run)
    clips = preview_clips(cfg.data, cfg.eval, 2)
    noise = torch.rand(2, model.backbone.num_patches, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        views = model.visualize(clips, noise=noise)
    target = clips.index_select(2, model.target_index)  # frames [0, 2, 4, 7]
    assert torch.equal(views["original"], target)
    kept = 1 - model.mask(2, clips.device, noise).mask.unsqueeze(-1)  # 1 = visible token
    p, u = model.backbone.patch_size, model.t_pred
    for name, want in (("masked", patchify_video(target, p, u) * kept),
                       ("reconstruction", patchify_video(target, p, u) * kept)):  # fmt: skip
        torch.testing.assert_close(patchify_video(views[name], p, u) * kept, want)
    assert patchify_video(views["masked"], p, u)[kept.squeeze(-1) == 0].abs().max() == 0


@requires_fmnist
def test_a_video_run_starts_from_an_image_run_by_inflation(video_run, tmp_path):
    """run.init_from=IMAGE_RUN: blocks and norm copied, patch embedding inflated, temporal
    table zero (lr 0 keeps them as loaded); an image run of another patch size is refused."""
    image = replace(smoke(get_recipe("mae_fmnist")), **QUIET, **{
        "run.out_dir": str(tmp_path / "img"), "run.max_steps": 1, "data.channels": 3,
        "data.img_size": 32, "backbone.patch_size": 8, "backbone.depth": 2})  # fmt: skip
    train(image)
    video_cfg = load_run_config(video_run)
    tune = replace(video_cfg, **QUIET, **{
        "run.out_dir": str(tmp_path / "vid"), "run.init_from": str(tmp_path / "img"),
        "run.max_steps": 1, "optim.blr": 0.0, "optim.weight_decay": 0.0})  # fmt: skip
    train(tune)
    src = {k.removeprefix("backbone.model."): v for k, v in
           load_checkpoint(tmp_path / "img")["model"].items() if k.startswith("backbone.model.")}  # fmt: skip
    got = {k.removeprefix("backbone."): v for k, v in
           load_checkpoint(tmp_path / "vid")["model"].items() if k.startswith("backbone.")}  # fmt: skip
    assert torch.equal(got["patch_embed.proj.weight"],
                       inflate_patch_weight(src["patch_embed.proj.weight"], 2))  # fmt: skip
    assert torch.equal(got["blocks.1.attn.qkv.weight"], src["blocks.1.attn.qkv.weight"])
    assert torch.equal(got["norm.weight"], src["norm.weight"])
    assert torch.equal(got["pos_embed_spatial"], src["pos_embed"][:, 1:])
    assert got["pos_embed_temporal"].abs().max() == 0
    wrong = replace(tune, **{"run.out_dir": str(tmp_path / "bad"), "backbone.patch_size": 4})
    with pytest.raises(ValueError, match="patch_embed.proj.weight"):
        train(wrong)


def test_only_a_video_vit_starts_from_an_image_run():
    with pytest.raises(ValueError, match="only a video ViT"):
        init_video_from_image(torch.nn.Linear(1, 1), "somewhere")
