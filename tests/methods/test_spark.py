"""SparK (Tian et al. 2023; keyu-tian/SparK `pretrain/`) against its formulas, on
spark_fmnist's geometry and a few others."""

import math

import pytest
import torch
from torch import nn

from visrep.backbones import CNN
from visrep.config import OptimConfig
from visrep.loop import build_optimizer, param_groups
from visrep.methods.spark import SparK, SparKConfig, num_visible
from visrep.parts.light_decoder import LightDecoder
from visrep.parts.masking import num_keep
from visrep.parts.patches import normalize_patches, patchify
from visrep.parts.sparse import sparse_batch_norm, upsample_mask
from visrep.schedules import cosine_weight_decay

# (arch, patch_size, img_size): spark_fmnist's ResNet-18 with the stride-1 stem (4×4 grid of
# 8 px cells), a standard ResNet stem (7×7 s2 conv + max-pool; 2×2 grid of 32 px cells), and
# a ConvNeXt V1 (LayerScale) with a stride-1 stem (4×4 grid of 8 px cells)
GEOMETRIES = [("resnet18", 1, 32), ("resnet18", 4, 64), ("convnext_atto", 1, 32)]


def tiny(arch="resnet18", patch=1, size=32, **kw) -> SparK:
    torch.manual_seed(0)
    cfg = SparKConfig(**{"decoder_dim": 64, **kw})
    return SparK(cfg, CNN(arch, img_size=size, patch_size=patch, in_chans=1))


def features(model: SparK, images: torch.Tensor, active: torch.Tensor) -> list[torch.Tensor]:
    """The four encoder stage outputs of the method's own forward."""
    seen = []
    original = model.encoder.features
    model.encoder.features = lambda *a: seen.extend(original(*a)) or seen
    try:
        model({"images": images}, active=active)
    finally:
        del model.encoder.features
    return seen


def test_visible_count_is_round_not_floor():
    assert num_visible(49, 0.6) == 20 and num_keep(49, 0.6) == 19  # SparK rounds, MAE floors
    assert num_visible(16, 0.6) == 6 and num_visible(49, 0.75) == 12
    assert num_visible(2, 0.6) == 1  # round(0.8), where MAE's floor keeps none
    with pytest.raises(ValueError, match="leaves no visible"):
        num_visible(1, 0.6)  # a stride-32 encoder on 32 px images: its one cell masked
    model = tiny()
    assert model.grid == 4 and model.patch_size == 8
    assert torch.all(model.mask(5).flatten(1).sum(1) == 6)


def test_active_map_is_argsort_of_uniform_noise_from_the_generator():
    model = tiny()
    active = model.mask(3, generator=torch.Generator().manual_seed(0))
    idx = torch.rand(3, 16, generator=torch.Generator().manual_seed(0)).argsort(1)[:, :6]
    ref = torch.zeros(3, 16, dtype=torch.bool)
    ref[torch.arange(3)[:, None], idx] = True
    assert active.dtype == torch.bool and torch.equal(active, ref.view(3, 1, 4, 4))
    torch.manual_seed(1)  # no generator: the CPU default one, as the official draw
    drawn = model.mask(3)
    torch.manual_seed(1)
    assert torch.equal(drawn, model.mask(3, noise=torch.rand(3, 16)))


@pytest.mark.parametrize(("arch", "patch", "size"), GEOMETRIES)
def test_masked_positions_are_exactly_zero_in_all_four_stages(arch, patch, size):
    model = tiny(arch, patch, size)
    active = model.mask(3, generator=torch.Generator().manual_seed(1))
    feats = features(model, torch.randn(3, 1, size, size) + 2.0, active)
    assert len(feats) == 4
    strides = [
        model.patch_size // 8,
        model.patch_size // 4,
        model.patch_size // 2,
        model.patch_size,
    ]
    for f, s in zip(feats, strides):
        assert f.shape[-1] == size // s
        vis = upsample_mask(active, f.shape[-2:])  # [B, 1, h, w]
        assert torch.all(f[~vis.expand_as(f)] == 0)  # masked positions: zero in every channel
        # every visible position carries a feature (some channel non-zero): a sparse stage that
        # zeroed visible cells, or a mask upsampled off the grid, fails here
        assert vis.any() and torch.all(f.abs().sum(1, keepdim=True)[vis] > 0)


@pytest.mark.parametrize(("arch", "patch", "size"), GEOMETRIES)
def test_masked_conv_invariance(arch, patch, size):
    """Sparse-conv invariance: perturbing pixels inside masked cells changes no
    visible-position feature (train mode: BN statistics come from visible positions only)."""
    model = tiny(arch, patch, size)
    x = torch.randn(2, 1, size, size)
    active = model.mask(2, generator=torch.Generator().manual_seed(2))
    masked_px = ~upsample_mask(active, (size, size)).expand_as(x)
    x2 = torch.where(masked_px, 100 * torch.randn_like(x), x)
    with torch.no_grad():
        for f1, f2 in zip(features(model, x, active), features(model, x2, active)):
            torch.testing.assert_close(f1, f2, rtol=0, atol=0)
    if arch.startswith("convnext"):  # its stem never crosses a cell: no input masking needed
        with torch.no_grad():
            raw = model.encoder.features(x2, ~active[:, 0])
            for f1, f2 in zip(features(model, x, active), raw):
                torch.testing.assert_close(f1, f2, rtol=1e-5, atol=1e-5)


def test_sparse_batch_norm_is_batchnorm1d_on_the_visible_vectors():
    torch.manual_seed(0)
    x, vis = torch.randn(3, 5, 4, 4), torch.rand(3, 1, 4, 4) > 0.5
    bn, ref = nn.BatchNorm2d(5), nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.normal_(), bn.bias.normal_()
    ref.load_state_dict(bn.state_dict())
    out = sparse_batch_norm(bn, x, vis)
    gathered = x.permute(0, 2, 3, 1)[vis[:, 0]]  # [K, C]
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[vis[:, 0]], ref(gathered))
    assert torch.all(out.permute(0, 2, 3, 1)[~vis[:, 0]] == 0)
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, k), getattr(ref, k))
    none = sparse_batch_norm(bn, x, torch.zeros_like(vis))  # nothing visible: zeros, no update
    assert torch.all(none == 0) and bn.num_batches_tracked == 1


def test_encoder_batchnorms_are_sparse_only_while_masking():
    model = tiny()
    enc, bn = model.encoder, model.backbone.model.layer2[0].bn1
    x, mask = torch.randn(2, 128, 16, 16), torch.rand(2, 4, 4) > 0.5
    with enc.masking(mask):
        vis = upsample_mask(~mask[:, None], (16, 16))
        torch.testing.assert_close(bn(x), sparse_batch_norm(nn.BatchNorm2d(128), x, vis))
    ref = nn.BatchNorm2d(128)
    ref.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), ref(x))  # plain timm again
    assert "forward" not in vars(bn)
    # DDP converts BN to SyncBatchNorm after the method is built (train.py): still sparse,
    # in the encoder and in the densify norms (one process: SyncBatchNorm = BatchNorm)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(tiny())
    assert isinstance(sync.densify_norms[0], nn.SyncBatchNorm)
    assert isinstance(sync.backbone.model.bn1, nn.SyncBatchNorm)
    active = model.mask(2, generator=torch.Generator().manual_seed(0))
    images = torch.randn(2, 1, 32, 32)
    for a, b in zip(features(tiny(), images, active), features(sync, images, active)):
        torch.testing.assert_close(a, b)
    ref = tiny()({"images": images}, active=active)["loss"]
    torch.testing.assert_close(sync({"images": images}, active=active)["loss"], ref)


@pytest.mark.parametrize(("arch", "norm"), [("resnet18", "bn"), ("convnext_atto", "ln")])
def test_densify_fills_mask_tokens_exactly_at_masked_positions(arch, norm):
    model = tiny(arch, decoder_dim=320)  # = convnext_atto's last width: first proj is Identity
    assert model.cfg.densify_norm == "auto" and len(model.mask_tokens) == 3  # 3 decoder blocks
    active = model.mask(2, generator=torch.Generator().manual_seed(3))
    chans = [64, 128, 256, 512] if arch == "resnet18" else [40, 80, 160, 320]
    feats = [torch.randn(2, c, 32 >> i, 32 >> i) for i, c in enumerate(chans)]
    seen = []
    for proj in model.densify_projs:
        proj.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    out = model.densify(feats, active)
    for i, (x, tok) in enumerate(zip(seen, model.mask_tokens)):
        f = feats[3 - i]
        vis = upsample_mask(active, f.shape[-2:]).expand_as(f)
        assert torch.equal(x[~vis], tok.expand_as(f)[~vis])  # mask token, encoder channels
        normed = model.densify_norms[i](f) if norm == "ln" else None
        if norm == "bn":  # statistics over visible positions only
            normed = sparse_batch_norm(nn.BatchNorm2d(f.shape[1]), f, vis[:, :1])
        torch.testing.assert_close(x[vis], normed[vis])
        assert out[i].shape == (2, model.decoder.channels[i], 4 << i, 4 << i)
    projs = model.densify_projs
    if arch == "convnext_atto":
        assert isinstance(projs[0], nn.Identity)
    else:
        assert projs[0].kernel_size == (1, 1)
    assert all(p.kernel_size == (3, 3) and p.padding == (1, 1) for p in projs[1:])
    for t in model.mask_tokens:  # trunc_normal(0, 0.02) cut at ±0.02
        assert t.abs().max() <= 0.02 and t.std() > 0.005


def test_light_decoder_shapes_and_init():
    dec = LightDecoder(32, width=768, out_chans=3)
    assert dec.channels == [768, 384, 192, 96, 48, 24] and len(dec.dec) == 5
    block = dec.dec[0]
    assert [type(m).__name__ for m in block] == [
        "ConvTranspose2d", "Conv2d", "BatchNorm2d", "ReLU6", "Conv2d", "BatchNorm2d"]  # fmt: skip
    assert block[0].bias is not None and block[1].bias is None and block[4].bias is None
    assert 0.015 < block[1].weight.std() < 0.025  # timm's trunc_normal_: cut at ±2 absolute
    fan_out = block[0].weight.shape[1] * 16  # ConvTranspose2d weight [in, out, k, k]
    assert abs(block[0].weight.std() / math.sqrt(2 / fan_out) - 1) < 0.05
    small = LightDecoder(32, width=64, out_chans=3)
    to_dec = [torch.randn(2, 64 >> i, 7 << i, 7 << i) for i in range(4)]
    assert small(to_dec).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="power of 2"):
        LightDecoder(24, 64)


def test_loss_is_the_formula_on_masked_cells():
    model = tiny()
    x = torch.randn(2, 1, 32, 32)
    active = model.mask(2, generator=torch.Generator().manual_seed(4))
    out = model({"images": x}, active=active)
    target = patchify(x, 8)  # [2, 16, 64], (u, v, c) order
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    torch.testing.assert_close(target, normalize_patches(patchify(x, 8)))
    per_patch = ((patchify(out["rec"], 8) - target) ** 2).mean(-1)
    masked = (~active).flatten(1).float()
    torch.testing.assert_close(out["loss"], (per_patch * masked).sum() / (masked.sum() + 1e-8))
    assert out["rec"].shape == x.shape


@pytest.mark.parametrize(("arch", "patch", "size"), GEOMETRIES)
def test_gradients_reach_every_trainable_parameter(arch, patch, size):
    model = tiny(arch, patch, size)
    model({"images": torch.randn(2, 1, size, size)})["loss"].backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
        assert p.requires_grad == (not name.startswith("backbone.model.head")), name
    assert model.mask_tokens[0].grad.abs().sum() > 0


def test_no_decay_group_lamb_and_rising_weight_decay():
    model = tiny("convnext_atto")
    groups = param_groups(model, 0.04)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    named = dict(model.named_parameters())
    for name in ["mask_tokens.0", "backbone.model.stages.0.blocks.0.gamma", "decoder.proj.bias"]:
        assert id(named[name]) in no_decay, name
    assert id(named["densify_projs.1.weight"]) not in no_decay
    opt = build_optimizer(model, OptimConfig(optimizer="lamb", clip_grad=5.0), lr=1e-3)
    assert type(opt).__name__ == "Lamb" and opt.defaults["max_grad_norm"] == 5.0
    assert opt.defaults["eps"] == 1e-6
    assert cosine_weight_decay(0.0, 0.04, 0.2) == pytest.approx(0.04)
    assert cosine_weight_decay(0.5, 0.04, 0.2) == pytest.approx(0.12)
    assert cosine_weight_decay(1.0, 0.04, 0.2) == pytest.approx(0.2)


def test_visualize_keeps_visible_cells():
    model = tiny()
    x, noise = torch.randn(2, 1, 32, 32), torch.rand(2, 16)
    v = model.visualize(x, noise=noise)
    vis = model.mask(2, noise=noise).flatten(1).unsqueeze(-1).float()
    torch.testing.assert_close(patchify(v["reconstruction"], 8) * vis, patchify(x, 8) * vis)
    torch.testing.assert_close(patchify(v["masked"], 8), patchify(x, 8) * vis)


def test_clear_errors():
    with pytest.raises(ValueError, match="densify_norm"):
        tiny(densify_norm="gn")
    with pytest.raises(ValueError, match="active must be"):
        tiny()({"images": torch.randn(2, 1, 32, 32)}, active=torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of the encoder's total stride"):
        SparK(SparKConfig(), CNN("resnet18", img_size=36, patch_size=1, in_chans=1))
    with pytest.raises(ValueError, match="no visible token or cell of 1"):  # stride 32 at 32 px
        SparK(SparKConfig(), CNN("resnet50", img_size=32, patch_size=4, in_chans=1))


def test_imagenet_recipes_follow_sparks_lr_control():
    """SparK `pretrain/utils/lr_control.py`: warmup 40 epochs linearly from 0.005 × peak,
    cosine to 0.001 × peak at 1600."""
    from visrep.configs import get_recipe
    from visrep.schedules import cosine_lr

    for name in ("spark_resnet50_in1k", "spark_convnext_small_in1k"):
        o = get_recipe(name).optim
        peak = o.blr * 4096 / 256
        assert peak == pytest.approx(3.2e-3)
        floor = o.min_lr_ratio * peak
        lr = [cosine_lr(e, peak, o.warmup_epochs, o.epochs, floor, o.warmup_start)
              for e in (0, 20, 40, 820, 1600)]  # fmt: skip
        assert lr == pytest.approx([1.6e-5, (0.005 + 0.995 / 2) * 3.2e-3, 3.2e-3,
                                    (3.2e-3 + 3.2e-6) / 2, 3.2e-6])  # fmt: skip
