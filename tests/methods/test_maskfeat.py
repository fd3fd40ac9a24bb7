import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from visrep.backbones import ViT
from visrep.loop import param_groups
from visrep.methods.maskfeat import MaskFeat, MaskFeatConfig
from visrep.parts.hog import hog, hog_token_targets


def tiny(**kw) -> MaskFeat:
    """ViT with 4 px patches on 16 px RGB images: a 4x4 token grid; 2 px cells give the
    paper's 2x2 cells per token, K = 9 · 4 · 3 = 108."""
    torch.manual_seed(0)
    cfg = MaskFeatConfig(cell_size=kw.pop("cell_size", 2), **kw)
    return MaskFeat(cfg, ViT("vit_tiny", img_size=16, patch_size=4, in_chans=3, depth=2))


def fixed_mask(n: int = 2) -> torch.Tensor:
    mask = torch.zeros(n, 4, 4, dtype=torch.bool)
    mask[0, :2, 1:3] = True
    mask[1, 3, :] = True
    mask[1, 0, 0] = True
    return mask


def test_shapes_and_loss_is_mse_over_masked_tokens_times_k():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    mask = fixed_mask()
    out = model({"images": x}, mask=mask)
    assert model.target_dim == 108 and out["pred"].shape == (2, 16, 108)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    m = mask.flatten(1)
    target = hog_token_targets(hog(x, 9, 2), (4, 4))  # [2, 16, 108]
    expected = F.mse_loss(out["pred"][m], target[m])  # nn.MSELoss 'mean' over M x K
    torch.testing.assert_close(out["loss"], expected)
    assert torch.equal(out["mask"], m.float())


def test_loss_follows_the_masked_tokens_in_row_major_order():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    mask = fixed_mask()
    out = model({"images": x}, mask=mask)
    feats = hog(x, 9, 2)  # [2, 3, 9, 8, 8]
    rows = []
    for n, i, j in mask.nonzero().tolist():  # token (i, j) of image n, row-major
        cells = feats[n, :, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]  # [3, 9, u, v]
        rows.append((out["pred"][n, 4 * i + j] - cells.reshape(-1)) ** 2)
    torch.testing.assert_close(out["loss"], torch.stack(rows).mean())


def test_gradient_reaches_only_masked_token_predictions():
    model = tiny()
    out = model({"images": torch.randn(2, 3, 16, 16)}, mask=fixed_mask())
    out["pred"].retain_grad()
    out["loss"].backward()
    grad = out["pred"].grad.abs().sum(-1)  # [2, 16]
    m = fixed_mask().flatten(1)
    assert (grad[~m] == 0).all() and (grad[m] > 0).all()


def test_mask_token_replaces_patch_embedding_before_position_embedding():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    mask = fixed_mask()
    seen = {}
    model.backbone.model.blocks.register_forward_hook(lambda m, i, o: seen.update(inp=i[0]))
    model({"images": x}, mask=mask)
    vit = model.backbone.model
    assert seen["inp"].shape == (2, 17, 192)  # the encoder sees every token (+ cls)
    pos = vit.pos_embed[0]
    m = mask.flatten(1)
    expected = torch.where(m[..., None], model.mask_token, vit.patch_embed(x)) + pos[1:]
    torch.testing.assert_close(seen["inp"][:, 1:], expected)
    torch.testing.assert_close(seen["inp"][:, 0], (vit.cls_token[0, 0] + pos[0]).expand(2, -1))
    # masked positions still differ by their position embedding
    assert not torch.allclose(seen["inp"][0, 2], seen["inp"][0, 3])


def test_position_embedding_is_learned_and_decayed_like_cls_and_mask_token():
    model = tiny()
    pe = model.backbone.model.pos_embed
    assert pe.requires_grad and 0.01 < pe.std() < 0.03  # trunc_normal(0.02), not sin-cos
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[1]["params"]}
    no_decay = {names[id(p)] for p in groups[0]["params"]}
    assert {"backbone.model.pos_embed", "backbone.model.cls_token", "mask_token"} <= decay
    assert "head.weight" in decay and "head.bias" in no_decay


def test_init_follows_slowfast_and_layernorm_eps():
    model = tiny()
    blk = model.backbone.model.blocks[0]
    assert torch.all(blk.attn.qkv.bias == 0.02) and torch.all(blk.norm1.bias == 0.02)
    assert torch.all(model.head.bias == 0) and 0.01 < model.head.weight.std() < 0.03
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, nn.LayerNorm))


def test_patch_embed_init_option_sets_the_projection_scale():
    """slowfast: trunc_normal(0.02); xavier: U(±sqrt(6 / (fan_in + fan_out))) on the
    flattened [D, p·p·C] projection (fan_in 48, fan_out 192 here: bound 0.158, std 0.091)."""
    w = tiny().backbone.model.patch_embed.proj.weight
    assert 0.015 < w.std() < 0.025
    w = tiny(patch_embed_init="xavier").backbone.model.patch_embed.proj.weight
    bound = (6 / (48 + 192)) ** 0.5
    assert w.abs().max() <= bound and 0.08 < w.std() < 0.1
    with pytest.raises(ValueError, match="slowfast or xavier"):
        tiny(patch_embed_init="kaiming")


def test_target_is_the_hog_of_the_model_input_without_gradient():
    model = tiny()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = model.target(x)
    assert not target.requires_grad
    torch.testing.assert_close(target, hog_token_targets(hog(x.detach(), 9, 2), (4, 4)))


def test_injected_mask_shapes_and_drawn_masks():
    model = tiny()
    x = torch.randn(3, 3, 16, 16)
    mask = torch.rand(3, 4, 4) > 0.5
    a = model({"images": x}, mask=mask)["loss"]
    b = model({"images": x}, mask=mask.flatten(1).float())["loss"]
    torch.testing.assert_close(a, b)
    torch.manual_seed(5)
    drawn = model({"images": x})["mask"]
    torch.manual_seed(5)
    assert torch.equal(drawn, model({"images": x})["mask"])  # a function of the torch seed
    assert (drawn.sum(1) <= model.num_masked).all() and model.num_masked == 6  # round(6.4)
    with pytest.raises(ValueError, match="mask must be"):
        model({"images": x}, mask=torch.ones(3, 9))


def test_empty_mask_gives_zero_loss_not_nan():
    model = tiny()
    out = model({"images": torch.randn(2, 3, 16, 16)}, mask=torch.zeros(2, 16))
    assert out["loss"] == 0


def test_a_few_steps_decrease_the_loss_on_a_fixed_batch():
    model = tiny(cell_size=4)  # one cell per token, K = 27
    torch.manual_seed(1)
    x = F.avg_pool2d(torch.randn(8, 3, 32, 32), 2)  # smoother than white noise
    mask = torch.rand(8, 4, 4) > 0.6
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, betas=(0.9, 0.999))
    losses = []
    for _ in range(15):
        loss = model({"images": x}, mask=mask)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.02)  # the paper's clip
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_exported_backbone_loads_into_timm_strictly():
    model = tiny()
    vit = model.backbone
    ref = timm.create_model(vit.timm_name, pretrained=False, **vit.timm_kwargs)
    ref.load_state_dict(vit.model.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(ref.eval()(x), vit.eval()(x))


def test_bad_configurations_say_what_to_do():
    with pytest.raises(ValueError, match="cell_size=3 must divide the patch size 4"):
        tiny(cell_size=3)
    with pytest.raises(ValueError, match="ViT backbone"):
        MaskFeat(MaskFeatConfig(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny(mask_ratio=0.0)
