"""`ViT.encode`: all tokens, kept tokens (MAE, FLIP), or masked tokens replaced by a mask
token (MaskFeat, MAE's "encoder w/ [M]" baseline), each checked against a reference written
from the formula on timm's own submodules."""

import pytest
import torch

from visrep.backbones import ViT
from visrep.parts.masking import gather_tokens


def tiny() -> ViT:
    torch.manual_seed(0)
    vit = ViT("vit_tiny", img_size=16, patch_size=4, in_chans=3, depth=2, pos_embed="learn")
    with torch.no_grad():  # a non-zero cls position, so that its row is checked too
        vit.model.pos_embed.normal_(std=0.02)
    return vit.eval()


def reference(vit: ViT, tokens: torch.Tensor) -> torch.Tensor:
    """cls + pos_0 in front of the [N, K, D] patch tokens, blocks, final norm."""
    m = vit.model
    cls = (m.cls_token + m.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
    return m.norm(m.blocks(m.norm_pre(torch.cat([cls, tokens], dim=1))))


def patch_embed(vit: ViT, x: torch.Tensor) -> torch.Tensor:
    """The patch embedding as a strided conv, tokens in row-major order: [N, L, D]."""
    return vit.model.patch_embed.proj(x).flatten(2).transpose(1, 2)


def test_encode_all_tokens_is_timms_forward_features():
    vit = tiny()
    x = torch.randn(2, 3, 16, 16)
    out = vit.encode(x)
    assert out.shape == (2, 17, 192)
    torch.testing.assert_close(out, vit.model.forward_features(x), rtol=0, atol=0)
    pos = vit.model.pos_embed[:, 1:]
    torch.testing.assert_close(out, reference(vit, patch_embed(vit, x) + pos), rtol=0, atol=0)


def test_encode_kept_tokens_gathers_after_the_position_embedding():
    vit = tiny()
    x = torch.randn(2, 3, 16, 16)
    ids_keep = torch.tensor([[3, 0, 9, 14], [15, 2, 7, 1]])
    tokens = gather_tokens(patch_embed(vit, x) + vit.model.pos_embed[:, 1:], ids_keep)
    torch.testing.assert_close(vit.encode(x, ids_keep), reference(vit, tokens), rtol=0, atol=0)


@pytest.mark.parametrize("as_float", [False, True])
def test_mask_token_replaces_masked_patches_before_the_position_embedding(as_float):
    """x_i <- (1 - m_i)·x_i + m_i·t, then x_i + p_i (MaskFeat's encoder input)."""
    vit = tiny()
    x = torch.randn(2, 3, 16, 16)
    mask = torch.rand(2, 16) > 0.5
    token = torch.randn(1, 1, 192)
    out = vit.encode(x, mask=mask.float() if as_float else mask, mask_token=token)
    patches = patch_embed(vit, x)
    expected = torch.where(mask[..., None], token.expand_as(patches), patches)
    ref = reference(vit, expected + vit.model.pos_embed[:, 1:])
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # a fully masked image no longer depends on the pixels, only on the positions
    full = torch.ones(2, 16, dtype=torch.bool)
    a = vit.encode(x, mask=full, mask_token=token)
    b = vit.encode(torch.randn(2, 3, 16, 16), mask=full, mask_token=token)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a[:, 1], a[:, 2])  # masked tokens keep their position


def test_mask_token_gets_gradient_only_through_masked_positions():
    vit = tiny()
    x = torch.randn(2, 3, 16, 16)
    token = torch.zeros(1, 1, 192, requires_grad=True)
    vit.encode(x, mask=torch.zeros(2, 16), mask_token=token).sum().backward()
    assert torch.equal(token.grad, torch.zeros_like(token))
    mask = torch.zeros(2, 16)
    mask[0, 5] = 1
    vit.encode(x, mask=mask, mask_token=token).square().sum().backward()
    assert token.grad.abs().sum() > 0


def test_mask_needs_a_token_and_excludes_ids_keep():
    vit = tiny()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="mask_token"):
        vit.encode(x, mask=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="not both"):
        vit.encode(x, torch.tensor([[0, 1]]), mask=torch.zeros(1, 16), mask_token=torch.zeros(192))


@pytest.mark.parametrize("arch", ["vit_tiny", "vit_small"])
def test_vit_size_reads_timms_definition(arch):
    from visrep.backbones.vit import vit_size

    vit = ViT(arch, img_size=28, patch_size=7, in_chans=1)
    blocks = vit.model.blocks
    assert vit_size(arch) == (vit.embed_dim, len(blocks), blocks[0].attn.num_heads)
    assert vit_size("vit_tiny") == (192, 12, 3)  # the MAE / DeiT-Tiny size
    with pytest.raises(ValueError, match="unknown ViT arch"):
        vit_size("vit_gigantic")
