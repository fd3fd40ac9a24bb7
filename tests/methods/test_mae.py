import torch
from torch import nn

from visrep.backbones import ViT
from visrep.loop import param_groups
from visrep.methods.mae import MAE, MAEConfig
from visrep.parts.masking import random_masking
from visrep.parts.patches import normalize_patches, patchify
from visrep.parts.pos_embed import sincos_2d


def tiny(**kw) -> MAE:
    torch.manual_seed(0)
    cfg = MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2, **kw)
    return MAE(cfg, ViT("vit_tiny", img_size=16, patch_size=4, in_chans=3, depth=2))


def test_loss_is_mean_over_removed_patches_of_norm_pix_mse():
    model = tiny()
    x = torch.randn(3, 3, 16, 16)
    noise = torch.rand(3, 16)
    out = model({"images": x}, noise=noise)
    mask = random_masking(3, 16, 0.75, noise=noise).mask
    target = patchify(x, 4)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)  # unbiased
    target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((out["pred"] - target) ** 2).mean(-1)
    expected = (per_patch * mask).sum() / mask.sum()
    torch.testing.assert_close(out["loss"], expected)
    assert torch.equal(out["mask"], mask)
    assert out["pred"].shape == (3, 16, 4 * 4 * 3)
    # the loss ignores visible patches: changing their prediction changes nothing
    pred2 = out["pred"].detach().clone()
    pred2[mask == 0] += 5.0
    torch.testing.assert_close(model.loss(x, pred2, mask), expected.detach())


def test_raw_pixel_loss_when_norm_pix_off():
    model = tiny(norm_pix_loss=False)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.target(x), patchify(x, 4))
    assert torch.equal(tiny().target(x), normalize_patches(patchify(x, 4)))


def test_encoder_sees_only_kept_tokens_with_their_positions():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    masking = random_masking(2, 16, 0.75, noise=torch.rand(2, 16))
    seen = {}
    model.backbone.model.blocks.register_forward_hook(lambda m, i, o: seen.update(inp=i[0]))
    latent = model.encode(x, masking)
    assert latent.shape == (2, 1 + 4, 192)
    vit = model.backbone.model
    tokens = vit.patch_embed(x) + vit.pos_embed[:, 1:]  # positions added before masking
    for i in range(2):
        torch.testing.assert_close(seen["inp"][i, 1:], tokens[i, masking.ids_keep[i]])
        torch.testing.assert_close(seen["inp"][i, 0], vit.cls_token[0, 0])  # cls pos embed is 0


def test_decoder_places_mask_tokens_at_removed_positions():
    model = tiny()
    latent = torch.randn(2, 1 + 4, 192)
    masking = random_masking(2, 16, 0.75, noise=torch.rand(2, 16))
    pred = model.decode(latent, masking.ids_restore)
    # reference from the formula: spatial sequence with encoded tokens at kept indices
    y = model.decoder_embed(latent)
    full = model.mask_token.expand(2, 16, -1).clone()
    for i in range(2):
        full[i, masking.ids_keep[i]] = y[i, 1:]
    seq = torch.cat([y[:, :1], full], 1) + model.decoder_pos_embed
    ref = model.decoder_pred(model.decoder_norm(model.decoder_blocks(seq)))[:, 1:]
    torch.testing.assert_close(pred, ref)


def test_fixed_position_tables_and_layernorm_eps():
    model = tiny()
    vit = model.backbone.model
    assert not vit.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    torch.testing.assert_close(vit.pos_embed[0], sincos_2d(192, 4, cls_token=True))
    torch.testing.assert_close(model.decoder_pos_embed[0], sincos_2d(32, 4, cls_token=True))
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, nn.LayerNorm))


def test_weight_decay_groups_follow_mae():
    model = tiny()
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups[0]["params"]}
    decay = {names[id(p)] for p in groups[1]["params"]}
    assert "mask_token" in decay and "backbone.model.cls_token" in decay  # METHODS A#4
    assert "decoder_norm.weight" in no_decay and "decoder_pred.bias" in no_decay
    assert "backbone.model.pos_embed" not in decay | no_decay  # frozen


def test_gradients_reach_every_trainable_parameter():
    model = tiny()
    model({"images": torch.randn(2, 3, 16, 16)})["loss"].backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


def test_encoder_mask_token_baseline_processes_all_tokens():
    model = tiny(encoder_mask_tokens=True)
    seen = {}
    model.backbone.model.blocks.register_forward_hook(lambda m, i, o: seen.update(n=i[0].shape[1]))
    out = model({"images": torch.randn(2, 3, 16, 16)})
    assert seen["n"] == 17 and out["pred"].shape == (2, 16, 48)
    out["loss"].backward()
    assert model.encoder_mask_token.grad is not None


def test_visualize_keeps_visible_patches():
    model = tiny()
    x = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    v = model.visualize(x, noise=noise)
    mask = random_masking(2, 16, 0.75, noise=noise).mask.unsqueeze(-1)
    visible = patchify(x, 4) * (1 - mask)
    torch.testing.assert_close(patchify(v["reconstruction"], 4) * (1 - mask), visible)
    torch.testing.assert_close(patchify(v["masked"], 4), visible)


def test_visualize_shows_the_raw_prediction_beside_the_true_statistics_reconstruction():
    """`prediction` is the decoder's output as is; with norm_pix_loss the reconstruction's
    masked patches are that output un-normalized with the true patch statistics, so the two
    differ there; with a raw-pixel target they are the same pixels."""
    x = torch.randn(2, 3, 16, 16) * 3 + 1
    noise = torch.rand(2, 16)
    mask = random_masking(2, 16, 0.75, noise=noise).mask.unsqueeze(-1).bool()  # [N, L, 1]
    for norm in (True, False):
        model = tiny(norm_pix_loss=norm)
        v = model.visualize(x, noise=noise)
        pred = model({"images": x}, noise=noise)["pred"]
        torch.testing.assert_close(patchify(v["prediction"], 4), pred)
        rec, raw = patchify(v["reconstruction"], 4), patchify(v["prediction"], 4)
        masked = mask.expand_as(rec)
        if norm:
            assert (rec[masked] - raw[masked]).abs().min() > 0
            target = patchify(x, 4)
            std = (target.var(-1, keepdim=True) + 1e-6) ** 0.5
            torch.testing.assert_close(
                rec, torch.where(mask, raw * std + target.mean(-1, True), target)
            )
        else:
            torch.testing.assert_close(rec[masked], raw[masked])
