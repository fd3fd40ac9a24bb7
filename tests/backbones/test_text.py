"""visrep's CLIP text tower is open_clip's `TextTransformer`: same names, init and outputs.
The one difference, and why `forward` is overridden: open_clip's forward needs all
`context_length` columns, and visrep's CLIP drops the all-padding tail (exact, cheaper)."""

import pytest
import torch

from visrep.backbones.text import TextTransformer
from visrep.data.tokenizer import tokenize

open_clip = pytest.importorskip("open_clip")
oc_transformer = pytest.importorskip("open_clip.transformer")

SIZES = {"width": 64, "layers": 2, "heads": 4}
CAPTIONS = ["a photo of a dog.", "Ankle boot", "a european bear with a very long caption " * 9]


def open_clips_tower() -> torch.nn.Module:
    """open_clip's own tower as its `CLIP(quick_gelu=True)` builds it (no projection)."""
    return oc_transformer.TextTransformer(
        context_length=77, vocab_size=49408, **SIZES, output_dim=None,
        act_layer=oc_transformer.QuickGELU, norm_layer=oc_transformer.LayerNormFp32,
    )  # fmt: skip


def test_state_dict_names_are_open_clips_clip_text_part():
    ours = TextTransformer(**SIZES)
    text_cfg = {"context_length": 77, "vocab_size": 49408, **SIZES}
    vision_cfg = {"image_size": 32, "patch_size": 16, "width": 64, "layers": 1, "head_width": 32}
    clip = open_clip.CLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=True)
    theirs = {k: v.shape for k, v in clip.state_dict().items() if not k.startswith("visual.")}
    del theirs["text_projection"], theirs["logit_scale"]  # on visrep's CLIP, not the tower
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs


def test_init_and_full_context_forward_are_open_clips_bit_for_bit():
    torch.manual_seed(0)
    ours = TextTransformer(**SIZES)
    torch.manual_seed(0)
    theirs = open_clips_tower()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    toks = tokenize(CAPTIONS)  # [3, 77]
    for mode in ("train", "eval"):  # eval: PyTorch's fused attention path
        ours.train(mode == "train")
        theirs.train(mode == "train")
        assert torch.equal(ours(toks), theirs(toks))


def test_trimmed_columns_need_the_override():
    torch.manual_seed(0)
    ours = TextTransformer(**SIZES).eval()
    theirs = open_clips_tower().eval()
    theirs.load_state_dict(ours.state_dict())
    toks = tokenize(CAPTIONS[:2])  # short captions: EOT by column 6
    t = int((toks != 0).sum(1).max())
    with pytest.raises(RuntimeError, match="attn_mask"):
        theirs(toks[:, :t])  # its [77, 77] causal mask against t columns
    torch.testing.assert_close(ours(toks[:, :t]), theirs(toks), rtol=1e-5, atol=1e-6)


def test_tokens_longer_than_the_context_are_refused():
    with pytest.raises(ValueError, match="T<=77"):
        TextTransformer(**SIZES)(torch.zeros(2, 78, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TextTransformer(width=64, heads=5)
