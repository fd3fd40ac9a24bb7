"""The method contract: every registered method is a `Method`, its optional capabilities are
the protocols of `visrep.capabilities` and the guide (docs/adding_a_method.md) lists them
all; a toy method added the way the guide says trains, evaluates and exports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import REPO, requires_fmnist
from torch import nn

import visrep.capabilities as caps
from visrep.backbones import build_backbone
from visrep.cli import main
from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.configs import RECIPES, get_recipe
from visrep.methods import METHODS, MethodEntry
from visrep.methods.rcg import EncoderInput

GUIDE = (REPO / "docs" / "adding_a_method.md").read_text()

# what each shipped method is expected to offer beyond `Method`
EXPECTED = {
    "mae": {caps.Reconstructs},
    "fcmae": {caps.Reconstructs},
    "spark": {caps.Reconstructs, caps.NoDecayKeywords},
    "mae_st": {caps.Reconstructs},  # the report's frames strip
    "simsiam": {caps.FixedLR},
    "mocov3": {caps.StepHook},
    # momentum encoders; ρSwAV and ρMoCo count steps for their frozen windows
    "rho_moco": {caps.StepHook},
    "rho_byol": {caps.StepHook},
    "rho_swav": {caps.StepHook},
    "clip": {caps.ImageText, caps.StepHook},  # the logit scale is clamped after each step
    "slip": {caps.ImageText, caps.StepHook},
    "flip": {caps.ImageText, caps.StepHook},
    "cit": {caps.ImageText, caps.OwnData, caps.StepHook},
    "supervised": {caps.Classifier, caps.LayerDecay, caps.OwnData, caps.StepHook},
    "dit": {caps.Generates, caps.OwnData, caps.StepHook},  # labelled batches; model EMA
    "detect": {caps.Detects, caps.LayerDecay, caps.OwnData},  # COCO batches; COCO AP
    # RDM at its own lr and weight decay, generator without; stage counter and EMAs
    "rcg": {caps.Generates, caps.LayerDecay, caps.StepHook},
}


def _model(name: str) -> nn.Module:
    if name == "detect":  # no recipe: `visrep eval detect` builds its config
        backbone = build_backbone(BackboneConfig("vit_tiny", depth=1), DataConfig(img_size=64))
        cfg = METHODS[name].config(num_classes=3, img_size=64, window_size=2, fpn_dim=16)
        return METHODS[name].model(cfg, backbone)
    if name == "supervised":  # no recipe: `visrep eval finetune` builds its config
        backbone = build_backbone(BackboneConfig("vit_tiny", depth=1), DataConfig(img_size=64))
        return METHODS[name].model(METHODS[name].config(num_classes=3), backbone)
    recipe = next(r for r in sorted(RECIPES) if type(get_recipe(r).method) is METHODS[name].config)
    cfg = get_recipe(recipe)
    depth = 1 if cfg.backbone.name.startswith("vit") else 0
    bb = BackboneConfig(cfg.backbone.name, patch_size=cfg.backbone.patch_size, depth=depth,
                        pos_embed=cfg.backbone.pos_embed)  # fmt: skip
    # video recipes (data.frames > 0) get their video backbone
    data = DataConfig(img_size=64, channels=cfg.data.channels or 1, frames=cfg.data.frames)
    if name == "rcg":  # a toy frozen encoder in place of a trained run's
        to_enc = EncoderInput((0.5,), (0.5,), 64, 1, (0.0,), (1.0,))
        enc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 8))
        return METHODS[name].model(cfg.method, build_backbone(bb, data), encoder=enc,
                                   encoder_input=to_enc, rep_dim=8)  # fmt: skip
    return METHODS[name].model(cfg.method, build_backbone(bb, data))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_has_the_capabilities_it_should(name):
    model = _model(name)
    assert isinstance(model, caps.Method)
    have = {p for p in caps.OPTIONAL if isinstance(model, p)}
    assert have == EXPECTED.get(name, set()), sorted(p.__name__ for p in have)


def test_the_guide_lists_every_capability_and_its_members():
    for proto in caps.OPTIONAL:
        assert f"`{proto.__name__}`" in GUIDE, proto.__name__
        members = [m for m in vars(proto) if not m.startswith("_")]
        members += list(getattr(proto, "__annotations__", {}))
        for m in members:
            assert f"`{m}" in GUIDE, f"{proto.__name__}.{m} is not in the guide"


def test_no_module_probes_a_method_by_attribute_name():
    """Optional capabilities are checked with isinstance on a protocol, not hasattr/getattr."""
    names = {m for p in caps.OPTIONAL for m in [*vars(p), *getattr(p, "__annotations__", {})]}
    names = {n for n in names if not n.startswith("_")}
    probe = re.compile(r"(?:hasattr|getattr)\([^,]+,\s*\"(\w+)\"")
    for path in (REPO / "src" / "visrep").rglob("*.py"):
        found = set(probe.findall(path.read_text())) & names
        assert not found, f"{path.relative_to(REPO)} probes {sorted(found)}"


# --- the toy method, written as the guide says: a file in methods/, a line in METHODS, a
# --- recipe and a line in RECIPES (here: monkeypatched into the two dicts)


@dataclass(frozen=True)
class ToyConfig:
    """Regress each image's mean intensity from the pooled features."""

    target_scale: float = 1.0


class Toy(nn.Module):
    def __init__(self, cfg: ToyConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg, self.backbone = cfg, backbone
        self.head = nn.Linear(backbone.feature_dim, 1)

    def forward(self, batch: dict) -> dict:
        x = batch["images"]  # [B, C, H, W]
        pred = self.head(self.backbone(x)).squeeze(1)  # [B]
        target = self.cfg.target_scale * x.mean((1, 2, 3))  # [B]
        return {"loss": F.mse_loss(pred, target), "target_mean": target.mean()}


def toy_fmnist() -> TrainConfig:
    """Toy: mean-intensity regression on Fashion-MNIST (the guide's example)."""
    return TrainConfig(
        recipe="toy_fmnist",
        method=ToyConfig(),
        backbone=BackboneConfig(name="vit_tiny", patch_size=4, depth=1),
        data=DataConfig(dataset="fashion_mnist", img_size=28, channels=1, limit=128),
        optim=OptimConfig(epochs=1, batch_size=32, warmup_epochs=0.5),
        eval=EvalConfig(limit_train=200, limit_test=100, linear_epochs=2),
        run=RunConfig(out_dir="runs/toy", threads=1),
    )


@requires_fmnist
def test_a_toy_method_added_as_the_guide_says_trains_evaluates_and_exports(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(METHODS, "toy", MethodEntry(ToyConfig, Toy))
    monkeypatch.setitem(RECIPES, "toy_fmnist", toy_fmnist)
    run, out = tmp_path / "run", tmp_path / "export"
    assert main(["train", "toy_fmnist", f"run.out_dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.1 < metrics["knn_top1"] <= 1 and "linear_top1" in metrics
    log = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines()]
    assert any("train/target_mean" in r for r in log)  # other 0-d outputs are logged
    assert main(["train", "--resume", str(run)]) == 0  # a finished run resumes to the end
    assert main(["export", "--ckpt", str(run), "--out", str(out)]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["visrep"]["method"] == "ToyConfig"
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    from visrep.runs import load_run

    _, toy = load_run(run)
    x = torch.randn(2, *meta["pretrained_cfg"]["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(model(x), toy.backbone(x), rtol=0, atol=0)


# the papers' position tables: learned in CLIP/SLIP's timm ViT and SLIP's SimCLR, a fixed
# sin-cos table in MAE, MoCo v3 and FLIP
LEARNED_POS = {"clip_fmnist", "slip_fmnist", "clip_bow_fmnist", "cit_fmnist", "lit_fmnist",
               "clip_vit_base_yfcc", "slip_vit_base_yfcc", "simclr_vit_base",
               "mae_st_mfmnist", "mae_st_vit_large_k400",  # MAE-ST: separable, learned
               # the video ViT (MAE-ST's separable learned table): video MaskFeat, ρ study
               "maskfeat_video_mfmnist", "maskfeat_video_vit_base_k400", "rho_moco_mfmnist",
               "rho_byol_mfmnist", "rho_simclr_mfmnist", "rho_swav_mfmnist"}  # fmt: skip


@pytest.mark.parametrize(
    "name", sorted(r for r in RECIPES if get_recipe(r).backbone.name.startswith("vit"))
)
def test_each_vit_recipe_has_its_papers_position_table(name):
    cfg = get_recipe(name)
    bb = BackboneConfig(cfg.backbone.name, patch_size=8, depth=1, pos_embed=cfg.backbone.pos_embed)
    vit = build_backbone(bb, DataConfig(img_size=16, channels=cfg.data.channels or 1))
    assert vit.model.pos_embed.requires_grad == (name in LEARNED_POS), cfg.backbone.pos_embed
    if name in LEARNED_POS:  # timm's init, and the table is trained
        out = vit(torch.randn(2, vit.in_chans, 16, 16))  # [2, D] (normed: its sum is constant)
        (out * torch.randn_like(out)).sum().backward()
        assert vit.model.pos_embed.grad.abs().sum() > 0


def test_a_cnn_has_no_position_table_to_learn():
    with pytest.raises(ValueError, match="ViTs only"):
        build_backbone(BackboneConfig("resnet18", pos_embed="learn"), DataConfig())
