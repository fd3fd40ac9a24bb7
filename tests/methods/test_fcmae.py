import pytest
import timm
import torch
from torch import nn

from visrep.backbones import CNN, ViT
from visrep.methods.fcmae import FCMAE, FCMAEConfig
from visrep.parts.masking import random_masking
from visrep.parts.patches import normalize_patches, patchify
from visrep.parts.sparse import SparseConvNeXt


def tiny(arch="convnextv2_atto", **kw) -> FCMAE:
    """fcmae_fmnist's geometry: 32 px, 1 channel, stride-1 stem -> 4×4 grid of 8 px cells."""
    torch.manual_seed(0)
    cfg = FCMAEConfig(**{"decoder_dim": 32, **kw})
    return FCMAE(cfg, CNN(arch, img_size=32, patch_size=1, in_chans=1))


def test_mask_is_argsort_of_gaussian_noise_on_the_final_grid():
    model = tiny()
    assert model.patch_size == 8 and model.grid == (4, 4)
    noise = torch.randn(3, 16)
    mask = model.mask(3, torch.device("cpu"), noise)
    assert torch.equal(mask.flatten(1), random_masking(3, 16, 0.6, noise=noise).mask)
    assert torch.all(mask.flatten(1).sum(1) == 16 - int(16 * 0.4))  # 6 visible, 10 removed
    torch.manual_seed(1)
    drawn = model.mask(3, torch.device("cpu"))
    torch.manual_seed(1)  # the official draw: torch.randn(N, L), first RNG call
    assert torch.equal(drawn, model.mask(3, torch.device("cpu"), torch.randn(3, 16)))


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_is_mean_over_removed_cells_only(norm_pix):
    model = tiny(norm_pix_loss=norm_pix)
    x = torch.randn(2, 1, 32, 32)
    noise = torch.randn(2, 16)
    out = model({"images": x}, noise=noise)
    mask = random_masking(2, 16, 0.6, noise=noise).mask
    target = patchify(x, 8)  # [N, 16, 64]
    if norm_pix:
        target = normalize_patches(target)  # unbiased variance, eps 1e-6 (Appendix A #1)
    per_patch = ((out["pred"] - target) ** 2).mean(-1)
    torch.testing.assert_close(out["loss"], (per_patch * mask).sum() / mask.sum())
    assert torch.equal(out["mask"], mask) and out["pred"].shape == (2, 16, 64)
    pred2 = out["pred"].detach().clone()
    pred2[mask == 0] += 5.0  # visible cells do not count
    torch.testing.assert_close(model.loss(x, pred2, mask.view(2, 4, 4)), out["loss"].detach())


def test_encoder_is_the_sparse_equivalent_and_zero_at_removed_cells():
    model = tiny()
    x, noise = torch.randn(2, 1, 32, 32), torch.randn(2, 16)
    seen = {}
    model.proj.register_forward_hook(lambda m, i, o: seen.update(latent=i[0]))
    with torch.no_grad():
        model({"images": x}, noise=noise)
    mask = model.mask(2, x.device, noise)
    assert seen["latent"].shape == (2, 320, 4, 4)
    assert torch.all(seen["latent"].permute(0, 2, 3, 1)[mask > 0] == 0)
    # unchanged when the removed pixels change: the encoder never reads them
    x2 = x.clone()
    x2[:, :, (mask.repeat_interleave(8, 1).repeat_interleave(8, 2) > 0)[0]] = 0
    with torch.no_grad():
        latent2 = model.encoder(x2[:1], mask[:1])
    scale = seen["latent"].abs().max().item()  # ~1e3 with the std-1.0 init (FCMAE `_init_weights`)
    torch.testing.assert_close(latent2, seen["latent"][:1], rtol=1e-5, atol=1e-6 * scale)


def test_decoder_fills_removed_cells_with_the_mask_token():
    model = tiny()
    latent = torch.randn(2, 320, 4, 4)
    mask = model.mask(2, torch.device("cpu"), torch.randn(2, 16))
    pred = model.decode(latent, mask)
    x = model.proj(latent)
    x = torch.where(mask.unsqueeze(1) > 0, model.mask_token.expand_as(x), x)
    ref = model.pred(model.decoder(x)).permute(0, 2, 3, 1).reshape(2, 16, 64)
    torch.testing.assert_close(pred, ref)
    block = model.decoder[0]
    assert block.mlp.grn is not None and block.gamma is None and block.norm.eps == 1e-6


def test_fcmae_init_quirk():
    """ConvNeXt-V2 `models/fcmae.py` `_init_weights`: std 1.0 on dw/pointwise/stem and decoder
    convs, 0.02 on downsamplers."""
    model = tiny(decoder_dim=512)
    enc = model.backbone.model
    std = {
        "stem": enc.stem[0].weight.std(),
        "dw": enc.stages[2].blocks[0].conv_dw.weight.std(),
        "fc1": enc.stages[2].blocks[0].mlp.fc1.weight.std(),
        "proj": model.proj.weight.std(),
        "dec_dw": model.decoder[0].conv_dw.weight.std(),
        "pred": model.pred.weight.std(),
    }
    for name, s in std.items():  # trunc_normal(1.0) cut at ±2 has std 0.88
        assert 0.8 < s < 0.95, name
    assert 0.015 < enc.stages[2].downsample[1].weight.std() < 0.025
    fc1 = model.decoder[0].mlp.fc1.weight  # PyTorch's default Linear init: U(±1/sqrt(fan_in))
    assert fc1.abs().max() <= 512**-0.5 and fc1.std() < 0.05
    assert 0.015 < model.mask_token.std() < 0.025
    assert torch.all(enc.stages[0].blocks[0].mlp.grn.weight == 0)
    assert torch.all(model.proj.bias == 0) and torch.all(enc.stem[0].bias == 0)
    timm_init = tiny(init="timm").backbone.model.stem[0].weight.std()
    assert timm_init < 0.05


def test_gradients_reach_every_trainable_parameter():
    model = tiny()
    model({"images": torch.randn(2, 1, 32, 32)})["loss"].backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
        assert p.requires_grad == (not name.startswith("backbone.model.head")), name  # unused


@pytest.mark.parametrize(
    ("arch", "timm_name", "extra"),
    [("convnextv2_atto", "convnextv2_atto", {}),
     ("convnextv2_atto_nogrn", "convnextv2_atto", {"use_grn": False}),
     ("convnext_atto", "convnext_atto", {})],
)  # fmt: skip
def test_trained_encoder_loads_into_timm_strictly_with_identical_features(arch, timm_name, extra):
    model = tiny(arch, grn_stats="batch")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model({"images": torch.randn(4, 1, 32, 32)})["loss"].backward()
    opt.step()  # GRN γ/β now non-zero
    bb = model.backbone
    assert bb.timm_name == timm_name and bb.timm_kwargs == {
        "in_chans": 1, "num_classes": 0, "patch_size": 1, **extra}  # fmt: skip
    has_grn = any("grn" in k for k in bb.model.state_dict())
    assert has_grn == (arch == "convnextv2_atto")
    ref = timm.create_model(timm_name, **bb.timm_kwargs)
    ref.load_state_dict(bb.model.state_dict(), strict=True)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(x), bb.eval()(x), rtol=0, atol=0)


def test_visualize_keeps_visible_cells():
    model = tiny(norm_pix_loss=True)
    x, noise = torch.randn(2, 1, 32, 32), torch.rand(2, 16)  # the report passes U[0,1) noise
    v = model.visualize(x, noise=noise)
    mask = random_masking(2, 16, 0.6, noise=noise).mask.unsqueeze(-1)
    visible = patchify(x, 8) * (1 - mask)
    torch.testing.assert_close(patchify(v["reconstruction"], 8) * (1 - mask), visible)
    torch.testing.assert_close(patchify(v["masked"], 8), visible)
    assert model.backbone.num_patches == 16  # what the report draws its noise for


def test_clear_errors():
    with pytest.raises(ValueError, match="ConvNeXt backbone"):
        FCMAE(FCMAEConfig(), ViT("vit_tiny", img_size=32, patch_size=4, in_chans=1, depth=1))
    with pytest.raises(ValueError, match="ConvNeXt backbone"):
        FCMAE(FCMAEConfig(), CNN("resnet18", img_size=32, patch_size=1, in_chans=1))
    with pytest.raises(ValueError, match="multiple of the encoder's total stride 8"):
        FCMAE(FCMAEConfig(), CNN("convnextv2_atto", img_size=36, patch_size=1, in_chans=1))
    with pytest.raises(ValueError, match="no visible token or cell of 1"):  # stride 32 at 32 px
        FCMAE(FCMAEConfig(), CNN("convnextv2_atto", img_size=32, patch_size=4, in_chans=1))
    model = tiny()
    with pytest.raises(ValueError, match="grn_stats"):
        SparseConvNeXt(model.backbone.model, grn_stats="global")
    assert isinstance(model.encoder, SparseConvNeXt) and not isinstance(model.encoder, nn.Module)
