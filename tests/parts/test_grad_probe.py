"""GradNormProbe and MoCo v3's opt-in gradient norms (the paper's Sec. 4 stability reading):
the logged value is the norm of the gradient the backward leaves, layer by layer, and a
frozen patch projection has none."""

import pytest
import torch
from torch import nn

from visrep.backbones import BACKBONES
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.logger import read_log
from visrep.loop import train
from visrep.methods.mocov3 import MoCoV3, MoCoV3Config
from visrep.parts.grad_probe import GradNormProbe


def test_probe_equals_the_hand_computed_norm_per_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    net[2].bias.requires_grad_(False)
    probe = GradNormProbe({"first": net[0], "last": net[2], "act": net[1]})
    vals = probe.values()
    assert set(vals) == {"grad_norm_first", "grad_norm_last"}  # ReLU has no parameters
    assert torch.isnan(vals["grad_norm_first"])  # no backward yet
    net(torch.randn(5, 3)).pow(2).sum().backward()
    first = torch.cat([net[0].weight.grad.flatten(), net[0].bias.grad]).norm()
    torch.testing.assert_close(vals["grad_norm_first"], first)
    torch.testing.assert_close(vals["grad_norm_last"], net[2].weight.grad.norm())
    # a second backward (accumulation) reports the accumulated gradient
    net(torch.randn(5, 3)).pow(2).sum().backward()
    torch.testing.assert_close(vals["grad_norm_last"], net[2].weight.grad.norm())


def test_probe_state_follows_the_method_and_stays_out_of_checkpoints():
    """The norms live in non-persistent buffers: `.to()` (a device, here a dtype) moves them
    and the hooks write into the moved ones, so a GPU step never waits for the host."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    holder = nn.Module()
    holder.net, holder.probe = net, GradNormProbe({"first": net[0]})
    assert set(holder.state_dict()) == {f"net.{k}" for k in net.state_dict()}
    holder.double()
    holder.net(torch.randn(5, 3, dtype=torch.float64)).sum().backward()
    norm = holder.probe.values()["grad_norm_first"]
    assert norm.dtype == torch.float64
    torch.testing.assert_close(norm, torch.cat([net[0].weight.grad.flatten(),
                                                net[0].bias.grad]).norm())  # fmt: skip


def vit() -> nn.Module:
    return BACKBONES["vit_tiny"]("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=2)


@pytest.mark.parametrize("frozen", [True, False])
def test_mocov3_reports_the_patch_projection_and_block_gradients(frozen):
    torch.manual_seed(0)
    model = MoCoV3(MoCoV3Config(dim=16, mlp_dim=32, stop_grad_conv1=frozen, log_grad_norms=True),
                   vit())  # fmt: skip
    g = torch.Generator().manual_seed(1)
    out = model({"views": [torch.randn(6, 1, 16, 16, generator=g) for _ in range(2)]})
    out["loss"].backward()
    vit_model = model.backbone.model
    expected = {"block_first": vit_model.blocks[0], "block_last": vit_model.blocks[-1]}
    if not frozen:
        expected["patch_embed"] = vit_model.patch_embed
    assert {k for k in out if k.startswith("grad_norm_")} == {f"grad_norm_{k}" for k in expected}
    for name, module in expected.items():
        hand = torch.cat([p.grad.flatten() for p in module.parameters()]).norm()
        torch.testing.assert_close(
            out[f"grad_norm_{name}"], hand, rtol=1e-4, atol=0
        )  # summation order
        assert float(hand) > 0


def test_mocov3_grad_norms_off_by_default_and_refused_without_a_vit():
    model = MoCoV3(MoCoV3Config(dim=16, mlp_dim=32), vit())
    out = model({"views": [torch.randn(4, 1, 16, 16)] * 2})
    assert not any(k.startswith("grad_norm_") for k in out)
    cnn = BACKBONES["resnet18"]("resnet18", img_size=16, patch_size=2, in_chans=1, pool="avg")
    with pytest.raises(ValueError, match="ViT backbone"):
        MoCoV3(MoCoV3Config(dim=16, mlp_dim=32, log_grad_norms=True), cnn)


def test_train_logs_the_step_gradient_norms(tmp_path):
    """Through the one loop: every logged step carries the norms (finite, > 0), and they
    differ from step to step (a value left over from a stale backward would repeat)."""
    cfg = smoke(get_recipe("mocov3_vit_fmnist"))
    cfg = replace(cfg, **{"method.stop_grad_conv1": False, "method.log_grad_norms": True,
                          "run.log_every": 1, "run.max_steps": 3, "eval.final": False,
                          "eval.every_epochs": 0, "run.out_dir": str(tmp_path / "run")})  # fmt: skip
    train(cfg)
    rows = [r for r in read_log(tmp_path / "run") if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("patch_embed", "block_first", "block_last"):
        vals = [r[f"train/grad_norm_{key}"] for r in rows]
        assert all(v > 0 for v in vals) and len(set(vals)) == 3, (key, vals)
