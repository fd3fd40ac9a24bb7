"""SimSiam, MoCo v3 and SimCLR at tiny sizes: shapes, gradients only where the papers put
them, the EMA branch moved only by the step hook, schedules and parameter groups."""

import math

import pytest
import torch
from torch import nn

from visrep.backbones import BACKBONES
from visrep.config import OptimConfig
from visrep.loop import build_optimizer, param_groups
from visrep.methods.mocov3 import MoCoV3, MoCoV3Config
from visrep.methods.simclr import SimCLR, SimCLRConfig
from visrep.methods.simsiam import SimSiam, SimSiamConfig
from visrep.parts.pos_embed import sincos_2d

METHODS = {
    "simsiam": lambda bb: SimSiam(SimSiamConfig(proj_dim=32, pred_dim=8), bb),
    "mocov3": lambda bb: MoCoV3(MoCoV3Config(dim=16, mlp_dim=32), bb),
    "simclr": lambda bb: SimCLR(SimCLRConfig(mlp_dim=32, dim=16), bb),
}


def backbone(kind: str) -> nn.Module:
    if kind == "vit":
        return BACKBONES["vit_tiny"]("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1)
    return BACKBONES["resnet18"]("resnet18", img_size=16, patch_size=2, in_chans=1, pool="avg")


def views(n: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"views": [torch.randn(n, 1, 16, 16, generator=g) for _ in range(2)]}


@pytest.mark.parametrize("kind", ["resnet", "vit"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_gradients_reach_exactly_the_trainable_parameters(name, kind):
    torch.manual_seed(0)
    model = METHODS[name](backbone(kind))
    out = model(views())
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
        else:
            assert p.grad is None, f"frozen {pname} got a gradient"
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    if name == "simsiam":  # the projector's last bias (simsiam `simsiam/builder.py`)
        assert frozen == {"projector.6.bias"} | _vit_frozen(kind)
    if name == "mocov3":  # the whole momentum branch (+ the random patch projection for ViTs)
        assert {n for n in frozen if not n.startswith("momentum_")} == _vit_frozen(kind) | (
            {"backbone.model.patch_embed.proj.weight", "backbone.model.patch_embed.proj.bias"}
            if kind == "vit"
            else set()
        )
        assert all(not p.requires_grad for p in model.momentum_backbone.parameters())


def _vit_frozen(kind: str) -> set[str]:
    return {"backbone.model.pos_embed"} if kind == "vit" else set()


def test_missing_views_is_a_clear_error():
    model = METHODS["simsiam"](backbone("resnet"))
    with pytest.raises(ValueError, match="data.views"):
        model({"images": torch.randn(4, 1, 16, 16)})


class Const(nn.Module):
    def forward(self, z):
        return torch.ones_like(z).detach()


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam_stop_gradient_is_on_the_target(stop_gradient):
    """SimSiam: with the prediction replaced by a constant, the loss only depends on the encoder
    through the targets z; with stop-gradient no gradient can reach the encoder."""
    cfg = SimSiamConfig(proj_dim=32, pred_dim=8, stop_gradient=stop_gradient)
    model = SimSiam(cfg, backbone("resnet"))
    model.predictor = Const()
    assert model(views())["loss"].requires_grad is not stop_gradient


def test_simsiam_loss_is_the_symmetrised_negative_cosine():
    torch.manual_seed(0)
    model = METHODS["simsiam"](backbone("resnet"))
    b = views()
    loss = model(b)["loss"]
    torch.manual_seed(0)  # same BN batches, recompute by hand
    z1 = model.projector(model.backbone(b["views"][0]))
    z2 = model.projector(model.backbone(b["views"][1]))
    p1, p2 = model.predictor(z1), model.predictor(z2)
    cos = torch.nn.functional.cosine_similarity
    want = -(cos(p1, z2).mean() + cos(p2, z1).mean()) / 2
    torch.testing.assert_close(loss, want)
    assert -1 <= float(loss.detach()) <= 1


def test_mocov3_momentum_branch_moves_only_in_the_hook():
    torch.manual_seed(0)
    model = METHODS["mocov3"](backbone("resnet"))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    target0 = [p.clone() for p in model.momentum_backbone.parameters()]
    model(views())["loss"].backward()
    opt.step()
    for p, p0 in zip(model.momentum_backbone.parameters(), target0):
        assert torch.equal(p, p0)  # the optimizer step leaves the momentum branch alone
    online = [p.detach().clone() for p in model.backbone.parameters()]
    model.on_step_end(0.5)
    m = 1 - 0.5 * (1 + math.cos(math.pi * 0.5)) * (1 - 0.99)
    assert model.momentum == pytest.approx(m)
    for p, p0, q in zip(model.momentum_backbone.parameters(), target0, online):
        torch.testing.assert_close(p, m * p0 + (1 - m) * q)


def test_mocov3_keys_from_identical_branches_and_loss_scale():
    """Before any step both branches are equal (the initial copy), so with BN in eval mode
    k = projector(backbone(x)); the loss is ctr(q1, k2) + ctr(q2, k1), each ≥ 0."""
    torch.manual_seed(0)
    model = METHODS["mocov3"](backbone("resnet")).eval()
    b = views()
    with torch.no_grad():
        out = model(b)
        k = model.projector(model.backbone(b["views"][0]))
        k_m = model.momentum_projector(model.momentum_backbone(b["views"][0]))
    torch.testing.assert_close(k, k_m)
    assert 0 < float(out["loss"]) < 2 * 2 * 0.2 * math.log(6) + 1


def test_mocov3_vit_init_and_frozen_patch_projection():
    bb = backbone("vit")
    MoCoV3(MoCoV3Config(dim=16, mlp_dim=32), bb)
    table = sincos_2d(192, bb.grid_size, cls_token=True, layout="mocov3").unsqueeze(0)
    torch.testing.assert_close(bb.model.pos_embed.detach(), table)
    qkv = bb.model.blocks[0].attn.qkv.weight
    bound = math.sqrt(6 / (192 + 192))  # Q, K, V as three D×D matrices (moco-v3 `vits.py`)
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    assert not bb.model.patch_embed.proj.weight.requires_grad
    assert bb.model.cls_token.abs().max() < 1e-4


def test_simsiam_fixed_predictor_lr_group_and_decay_all():
    model = METHODS["simsiam"](backbone("resnet"))
    groups = param_groups(model, 1e-4, decay_all=True)
    fixed = [g for g in groups if g["fixed_lr"]]
    pred = {id(p) for p in model.predictor.parameters()}
    assert {id(p) for g in fixed for p in g["params"]} == pred
    assert all(g["weight_decay"] == 1e-4 for g in groups)  # SGD decays BN and biases too
    opt = build_optimizer(
        model, OptimConfig(optimizer="sgd", weight_decay=1e-4, decay_all=True), 0.1
    )
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    mae_groups = param_groups(model, 0.05)  # default: no decay on 1-D params and biases
    assert any(g["weight_decay"] == 0 for g in mae_groups)


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="adamw, sgd, lars or lamb"):
        build_optimizer(nn.Linear(2, 2), OptimConfig(optimizer="adam"), 0.1)


@pytest.mark.parametrize(
    ("arch", "patch", "stride"),
    [("resnet18", 1, 8), ("resnet18", 2, 16), ("resnet18", 4, 32), ("convnextv2_atto", 1, 8),
     ("convnextv2_atto", 2, 32), ("convnextv2_atto", 4, 32)],
)  # fmt: skip
def test_cnn_stride_matches_the_feature_map(arch, patch, stride):
    bb = BACKBONES[arch](arch, img_size=64, patch_size=patch, in_chans=1)
    feats = bb.model.forward_features(torch.randn(1, 1, 64, 64))
    assert bb.stride == stride and feats.shape[-1] == 64 // stride
    with pytest.raises(ValueError, match="too small"):
        BACKBONES[arch](arch, img_size=stride - 1, patch_size=patch, in_chans=1)
