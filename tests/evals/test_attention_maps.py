"""visrep.evals.attention: attention weights rebuilt from timm's fused attention, attention
rollout (Abnar and Zuidema, 2020), the class token's per-head maps, and the picture (also
in the run report of ViT runs and through `visrep viz attention`)."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import requires_fmnist, visrep

from visrep.evals.attention import (
    all_attentions,
    attention_maps,
    attention_weights,
    draw_attention,
    find_vit,
    rollout,
)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, in_chans=1,
                             num_classes=0).eval()  # fmt: skip


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)  # [B, heads, N, N]
    torch.testing.assert_close(rollout([eye, eye, eye]), torch.eye(5).expand(2, 5, 5))


def test_rollout_by_hand():
    a1 = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # one head
    a2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    t1 = 0.5 * a1[0, 0] + 0.5 * torch.eye(2)  # rows already sum to 1
    t2 = 0.5 * a2[0, 0] + 0.5 * torch.eye(2)
    torch.testing.assert_close(rollout([a1, a2])[0], t2 @ t1)


def test_weights_reproduce_timms_fused_attention(vit):
    blk = vit.blocks[0]
    x = torch.randn(2, 17, vit.embed_dim)
    xn = blk.norm1(x)
    w = attention_weights(blk.attn, xn)  # [B, h, N, N]
    b, n, _ = xn.shape
    v = blk.attn.qkv(xn).reshape(b, n, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)[2]
    out = blk.attn.proj((w @ v).transpose(1, 2).reshape(b, n, -1))
    assert blk.attn.fused_attn  # the module never materialises the weights itself
    torch.testing.assert_close(out, blk.attn(xn), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, blk.attn.num_heads, n))


def test_maps_shapes_and_normalisation(vit):
    x = torch.randn(3, 1, 32, 32)
    maps = attention_maps(vit, x)
    assert maps["heads"].shape == (3, 3, 4, 4) and maps["rollout"].shape == (3, 4, 4)
    torch.testing.assert_close(maps["heads"].sum((-2, -1)), torch.ones(3, 3))
    torch.testing.assert_close(maps["rollout"].sum((-2, -1)), torch.ones(3))
    atts = all_attentions(vit, x)
    assert len(atts) == len(vit.blocks) and atts[-1].shape == (3, 3, 17, 17)
    # the hook leaves the model as it was: no hooks left behind
    assert all(not blk.attn._forward_hooks for blk in vit.blocks)


def test_picture_and_non_vit_error(vit, tmp_path):
    imgs = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    modes = []
    hook = vit.blocks[0].register_forward_hook(lambda m, i, o: modes.append(m.training))
    vit.train()
    path = draw_attention(vit, imgs, lambda x: x / 255.0, tmp_path / "a.png")
    hook.remove()
    assert path.stat().st_size > 1000
    assert modes and not any(modes) and vit.training  # drawn in eval mode, the mode restored
    with pytest.raises(ValueError, match="ViT run"):
        find_vit(torch.nn.Conv2d(1, 1, 3))


@pytest.mark.slow
@requires_fmnist
def test_vit_run_report_and_cli(tmp_path):
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.loop import train

    cfg = replace(smoke(get_recipe("mae_fmnist")), **{"run.out_dir": str(tmp_path / "r"),
                  "run.threads": 1, "eval.final": False, "optim.epochs": 1, "data.limit": 64})  # fmt: skip
    train(cfg)
    assert (tmp_path / "r" / "attention.png").is_file()
    assert "![attention](attention.png)" in (tmp_path / "r" / "report.md").read_text()
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("L", (40, 40), 128).save(tmp_path / "imgs" / "a.png")
    visrep("viz", "attention", "--ckpt", str(tmp_path / "r"), "--images", str(tmp_path / "imgs"),
           "--out", str(tmp_path / "att.png"))  # fmt: skip
    assert (tmp_path / "att.png").is_file()
    bad = visrep("viz", "attention", "--ckpt", str(tmp_path / "r"), "--images",
                 str(tmp_path / "none"), check=False)  # fmt: skip
    assert bad.returncode == 2 and "no such folder" in bad.stderr
