"""ViTDet backbone (Li et al., ECCV 2022; detectron2 `modeling/backbone/vit.py`): simple
feature pyramid shapes and strides, window attention, global blocks, relative position
option, layer-wise lr decay ids; the ResNet / ConvNeXt FPN."""

import pytest
import torch
from timm.models.vision_transformer_sam import window_partition, window_unpartition
from torch import nn

from visrep.backbones.cnn import CNN
from visrep.backbones.pretrained import from_backbone
from visrep.backbones.vit import ViT
from visrep.backbones.vitdet import (
    SimpleFeaturePyramid,
    ViTDetTrunk,
    default_global_blocks,
    detection_backbone,
)


@pytest.fixture(scope="module")
def vit_b16():
    """ViT-B/16 (D 768, 12 heads) with 4 blocks, so the test stays fast."""
    torch.manual_seed(0)
    return ViT("vit_base", img_size=224, patch_size=16, depth=4, pos_embed="learn")


@pytest.fixture(scope="module")
def vit_t():
    """ViT-Ti/16 (D 192, 3 heads), 4 blocks: the block-level tests."""
    torch.manual_seed(0)
    return ViT("vit_tiny", img_size=224, patch_size=16, depth=4, pos_embed="learn")


def test_simple_feature_pyramid_of_a_vit_b16_map_has_strides_4_to_64(vit_b16):
    bb = detection_backbone(from_backbone(vit_b16), 128, window_size=4, out_channels=64)
    assert bb.strides == (4, 8, 16, 32, 64)
    feats = bb(torch.randn(1, 3, 128, 128))
    assert list(feats) == ["p2", "p3", "p4", "p5", "p6"]
    for (name, f), s in zip(feats.items(), bb.strides):
        assert f.shape == (1, 64, 128 // s, 128 // s), name
    # the pyramid alone on a ViT-B/16 map (768 channels, stride 16) of a 384 px image
    fp = SimpleFeaturePyramid(768, 256)
    out = fp(torch.randn(1, 768, 24, 24))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(96, 96), (48, 48), (24, 24),
                                                          (12, 12), (6, 6)]  # fmt: skip


def test_pyramid_layers_are_vitdets():
    fp = SimpleFeaturePyramid(768, 256)
    p2 = list(fp.stages["p2"])
    kinds = [type(m).__name__ for m in p2]
    assert kinds == ["ConvTranspose2d", "LayerNorm2d", "GELU", "ConvTranspose2d",
                     "Conv2d", "LayerNorm2d", "Conv2d", "LayerNorm2d"]  # fmt: skip
    assert (p2[0].in_channels, p2[0].out_channels, p2[3].out_channels) == (768, 384, 192)
    assert [type(m).__name__ for m in fp.stages["p4"]][:1] == ["Conv2d"]  # scale 1: identity
    assert type(fp.stages["p5"][0]).__name__ == "MaxPool2d"
    convs = [m for m in fp.modules() if type(m) is nn.Conv2d]
    assert all(c.bias is None for c in convs)  # biases only without a norm
    assert {c.kernel_size for c in convs} == {(1, 1), (3, 3)}


@pytest.mark.parametrize("h,w,ws", [(8, 8, 4), (10, 7, 4), (5, 5, 14)])
def test_window_partition_then_unpartition_is_the_identity(h, w, ws):
    x = torch.randn(2, h, w, 6)
    windows, pad_hw = window_partition(x, ws)
    assert windows.shape[1:] == (ws, ws, 6)
    assert windows.shape[0] == 2 * -(-h // ws) * -(-w // ws)
    torch.testing.assert_close(window_unpartition(windows, ws, (h, w), pad_hw), x)


def test_window_blocks_see_their_window_and_global_blocks_every_token(vit_t):
    vit = detection_backbone(from_backbone(vit_t), 128, window_size=4).trunk  # grid 8x8
    assert vit.global_blocks == (0, 1, 2, 3)  # depth < 4: all global
    trunk = ViTDetTrunk(_rebuild(vit_t, 128), window_size=4, global_blocks=(3,))
    x = torch.randn(1, 8, 8, 192)
    x2 = x.clone()
    x2[0, 1, 2] += 10.0  # one token in the window rows 0-3, cols 0-3
    with torch.no_grad():
        d_win = (trunk.blocks[0](x2) - trunk.blocks[0](x)).abs().sum(-1)[0] > 0
        d_glob = (trunk.blocks[3](x2) - trunk.blocks[3](x)).abs().sum(-1)[0] > 0
    expect = torch.zeros(8, 8, dtype=torch.bool)
    expect[:4, :4] = True
    assert torch.equal(d_win, expect)
    assert d_glob.all()


def _rebuild(vit: ViT, img_size: int) -> nn.Module:
    from visrep.backbones.pretrained import create_timm
    from visrep.parts.pos_embed import interpolate_pos_embed

    pre = from_backbone(vit)
    model = create_timm(pre.timm_name, pre.timm_kwargs | {"img_size": img_size}, {})
    state = dict(pre.state)
    state["pos_embed"] = interpolate_pos_embed(state["pos_embed"], model.patch_embed.grid_size, 1)
    model.load_state_dict(state)
    return model


def test_a_global_block_computes_the_pretrained_blocks_function(vit_t):
    """The pre-trained block's weights are loaded unchanged: with global attention and no
    relative positions, a ViTDet block is the timm ViT block on the same tokens."""
    model = _rebuild(vit_t, 128)
    trunk = ViTDetTrunk(model, window_size=4, global_blocks=(0, 1, 2, 3))
    x = torch.randn(2, 8, 8, 192)
    with torch.no_grad():
        for ours, theirs in zip(trunk.blocks, model.blocks):
            torch.testing.assert_close(ours(x), theirs(x.reshape(2, 64, 192)).reshape(2, 8, 8, 192))


def test_relative_positions_start_at_zero_and_change_nothing_at_init(vit_t):
    model = _rebuild(vit_t, 128)
    plain = ViTDetTrunk(model, window_size=4, global_blocks=(3,))
    rel = ViTDetTrunk(model, window_size=4, global_blocks=(3,), rel_pos=True)
    head_dim = 192 // 3
    assert rel.blocks[0].attn.rel_pos_h.shape == (2 * 4 - 1, head_dim)  # window block
    assert rel.blocks[3].attn.rel_pos_w.shape == (2 * 8 - 1, head_dim)  # global: whole grid
    assert all(
        float(p.detach().abs().sum()) == 0 for n, p in rel.named_parameters() if "rel_pos" in n
    )
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(rel(x), plain(x))


def test_default_global_blocks_are_vitdets():
    assert default_global_blocks(12) == (2, 5, 8, 11)  # ViT-B
    assert default_global_blocks(24) == (5, 11, 17, 23)  # ViT-L
    assert default_global_blocks(32) == (7, 15, 23, 31)  # ViT-H


def test_layer_decay_ids_are_detectron2s(vit_t):
    bb = detection_backbone(from_backbone(vit_t), 128, window_size=4)
    d, depth = 0.7, 4
    assert bb.lr_scale("trunk.patch_embed.proj.weight", d) == pytest.approx(d ** (depth + 1))
    assert bb.lr_scale("trunk.pos_embed", d) == pytest.approx(d ** (depth + 1))
    for i in range(depth):  # block i: id i + 1, scale decay^(depth - i)
        assert bb.lr_scale(f"trunk.blocks.{i}.mlp.fc1.weight", d) == pytest.approx(d ** (depth - i))
    assert bb.lr_scale("pyramid.stages.p2.0.weight", d) == 1.0
    assert bb.no_decay_names() == {"trunk.pos_embed"}
    names = {n for n, _ in bb.named_parameters()}
    assert "trunk.pos_embed" in names and not any("cls_token" in n for n in names)


@pytest.mark.parametrize("arch,patch,first", [("resnet18", 4, 4), ("resnet18", 2, 2),
                                              ("convnext_atto", 4, 4)])  # fmt: skip
def test_cnn_stages_go_through_an_fpn(arch, patch, first):
    cnn = CNN(arch, img_size=64, patch_size=patch, in_chans=1)
    bb = detection_backbone(from_backbone(cnn), 64, out_channels=32)
    assert bb.strides == tuple(first * 2**k for k in range(5))
    feats = bb(torch.randn(2, 1, 64, 64))
    for (name, f), s in zip(feats.items(), bb.strides):
        assert f.shape == (2, 32, 64 // s, 64 // s), name
    assert bb.lr_scale("fpn.inner_blocks.0.0.weight", 0.5) == 1.0


def test_a_fine_tuned_vit_source_loads_without_its_pooling_norms():
    """A `visrep eval finetune` run's backbone: timm ViT with global_pool avg + fc_norm (its
    `norm` is an Identity): neither fc_norm nor the missing norm is used by ViTDet."""
    import timm

    from visrep.backbones.pretrained import Pretrained

    kw = dict(img_size=64, patch_size=8, depth=2, num_classes=0, global_pool="avg", fc_norm=True)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw)
    pre = Pretrained("vit_tiny_patch16_224", kw, {}, model.state_dict(), "finetuned")
    bb = detection_backbone(pre, 64, window_size=4)
    torch.testing.assert_close(bb.trunk.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)
    with pytest.raises(ValueError, match="do not fit"):  # a block's weights missing: an error
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1.")}
        detection_backbone(Pretrained(pre.timm_name, kw, {}, state, "broken"), 64)
