"""CLIP / SLIP / FLIP parts against the papers' formulas (facebookresearch/SLIP `losses.py`,
`tokenizer.py`; facebookresearch/flip `models_flip.py`)."""

import math

import pytest
import torch

from visrep.backbones.text import TextTransformer
from visrep.backbones.vit import ViT
from visrep.data.tokenizer import tokenize
from visrep.methods.clip import CLIP, FLIP, CLIPConfig, FLIPConfig
from visrep.methods.slip import SLIP, SLIPConfig
from visrep.parts.losses import clip_loss, nt_xent
from visrep.parts.masking import num_keep

TINY = dict(embed_dim=16, text_width=32, text_layers=2, text_heads=4)


def _vit(**kw):
    return ViT("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1, **kw)


def test_clip_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    s = math.exp(scale.item())
    i_n = [img[k] / img[k].norm() for k in range(6)]
    t_n = [txt[k] / txt[k].norm() for k in range(6)]
    rows_i = [-torch.log_softmax(torch.stack([s * i_n[a] @ t_n[b] for b in range(6)]), 0)[a]
              for a in range(6)]  # fmt: skip
    rows_t = [-torch.log_softmax(torch.stack([s * t_n[a] @ i_n[b] for b in range(6)]), 0)[a]
              for a in range(6)]  # fmt: skip
    want = (torch.stack(rows_i).mean() + torch.stack(rows_t).mean()) / 2
    got = clip_loss(img, txt, scale)
    torch.testing.assert_close(got, want)
    # on one process the gradient is the full gradient of the loss (columns included)
    g_got = torch.autograd.grad(got, [img, txt, scale])
    g_want = torch.autograd.grad(want, [img, txt, scale], allow_unused=True)
    for a, b in zip(g_got[:2], g_want[:2]):
        torch.testing.assert_close(a, b)
    assert g_got[2] != 0  # the logit scale is learnt


def test_logit_scale_init_and_in_place_clamp():
    m = CLIP(CLIPConfig(**TINY), _vit())
    assert m.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    p = m.logit_scale
    with torch.no_grad():
        m.logit_scale.fill_(7.0)
    m.on_step_end(0.5)
    assert m.logit_scale is p and m.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        m.logit_scale.fill_(-1.0)
    m.on_step_end(0.5)
    assert m.logit_scale.item() == 0.0
    with torch.no_grad():
        m.logit_scale.fill_(3.0)
    m.on_step_end(0.5)  # inside [0, ln 100]: untouched
    assert m.logit_scale.item() == 3.0


def test_text_tower_is_causal_and_pools_at_eot():
    torch.manual_seed(0)
    tower = TextTransformer(context_length=77, width=32, layers=2, heads=4).eval()
    toks = tokenize(["a red dress.", "a red dress and a bag."])
    out = tower(toks)  # [2, 32]
    n0 = int((toks[0] != 0).sum())  # EOT of the short caption sits at n0 - 1
    # causal: the long caption's prefix features do not depend on its later tokens
    full = tower.ln_final(tower.transformer(
        tower.token_embedding(toks) + tower.positional_embedding, tower.attn_mask))  # fmt: skip
    torch.testing.assert_close(out[0], full[0, n0 - 1])
    changed = toks.clone()
    changed[1, 5] = 1000
    full2 = tower.ln_final(tower.transformer(
        tower.token_embedding(changed) + tower.positional_embedding, tower.attn_mask))  # fmt: skip
    torch.testing.assert_close(full[1, :5], full2[1, :5])
    assert not torch.allclose(full[1, 5:], full2[1, 5:])
    # trimming the padding columns (CLIP.encode_text) is exact
    torch.testing.assert_close(tower(toks[:, :20]), out, rtol=1e-5, atol=1e-6)


def test_text_tower_init_stds():
    torch.manual_seed(0)
    w, n = 256, 4
    t = TextTransformer(width=w, layers=n, heads=8)
    b = t.transformer.resblocks[0]
    for p, std in [(t.token_embedding.weight, 0.02), (t.positional_embedding, 0.01),
                   (b.attn.in_proj_weight, w**-0.5), (b.attn.out_proj.weight, w**-0.5 * (2 * n) ** -0.5),
                   (b.mlp.c_fc.weight, (2 * w) ** -0.5), (b.mlp.c_proj.weight, w**-0.5 * (2 * n) ** -0.5)]:  # fmt: skip
        assert p.std().item() == pytest.approx(std, rel=0.05)


def test_flip_encodes_only_kept_tokens_with_injected_noise():
    torch.manual_seed(0)
    for ratio in (0.5, 0.75):
        m = FLIP(FLIPConfig(**TINY, mask_ratio=ratio), _vit()).train()
        vit = m.backbone
        x = torch.randn(3, 1, 16, 16)
        noise = torch.rand(3, vit.num_patches)
        seen = {}
        vit.model.blocks.register_forward_hook(
            lambda mod, i, o, seen=seen: seen.update(shape=o.shape)
        )
        feats = m.image_features(x, noise)
        assert seen["shape"][1] == 1 + num_keep(16, ratio) == 1 + int(16 * (1 - ratio))
        keep = noise.argsort(1)[:, : num_keep(16, ratio)]  # smallest noise kept (as MAE)
        torch.testing.assert_close(feats, vit.pool(vit.encode(x, keep)))
        m.eval()  # evaluation: every token, the exported backbone's features
        torch.testing.assert_close(m.image_features(x), vit(x))


def test_slip_loss_is_clip_plus_scaled_simclr():
    torch.manual_seed(0)
    cfg = SLIPConfig(**TINY, ssl_scale=0.5, mlp_dim=32, ssl_dim=8)
    m = SLIP(cfg, _vit())
    x = torch.randn(4, 1, 16, 16)
    batch = {"images": x, "tokens": tokenize(["a bag."] * 2 + ["a coat."] * 2),
             "views": [torch.randn_like(x), torch.randn_like(x)]}  # fmt: skip
    torch.manual_seed(1)
    out = m(batch)
    clip = clip_loss(m.encode_image(x), m.encode_text(batch["tokens"]), m.logit_scale)
    a = m.image_mlp(m.backbone(batch["views"][0]))
    b = m.image_mlp(m.backbone(batch["views"][1]))
    torch.testing.assert_close(out["loss"], clip + 0.5 * nt_xent(a, b, 0.1))
    with pytest.raises(ValueError, match="two augmented views"):
        m({"images": x, "tokens": batch["tokens"]})


def test_clip_without_tokens_says_what_to_do():
    m = CLIP(CLIPConfig(**TINY), _vit())
    with pytest.raises(ValueError, match="image-text pairs"):
        m({"images": torch.randn(2, 1, 16, 16)})


def test_clip_step_decreases_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    m = CLIP(CLIPConfig(**TINY), _vit())
    batch = {"images": torch.randn(8, 1, 16, 16),
             "tokens": tokenize([f"a photo of item {i}." for i in range(8)])}  # fmt: skip
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    first = m(batch)["loss"].item()
    for _ in range(5):
        loss = m(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.on_step_end(0.0)
    assert m(batch)["loss"].item() < first
    assert 0 <= m.logit_scale.item() <= math.log(100)
