"""Id 0 is a real BPE token ("!" in "wow!/"): text encoding pools at every caption's true
end-of-text position, and decoding keeps the "!"."""

import torch

from visrep.backbones import build_backbone
from visrep.config import BackboneConfig, DataConfig
from visrep.data.tokenizer import EOT, decode, tokenize, trim_padding
from visrep.methods.clip import CLIP, CLIPConfig

CAPTIONS = ["wow!/ a red boot", "hi!; ok!~ a long caption about a shoe on a table", "a bag"]


def test_captions_with_id_0_decode_back_with_their_bang():
    tokens = tokenize(CAPTIONS)
    assert (tokens[:2, 1:] == 0).any(1).all() and (tokens[:, 0] != 0).all()
    for row, caption in zip(tokens, CAPTIONS):  # CLIP's BPE decodes word ends as spaces
        assert decode(row.tolist()).replace(" ", "") == caption.replace(" ", "")
    ends = tokens.argmax(1)
    assert (tokens[torch.arange(3), ends] == EOT).all()
    assert trim_padding(tokens).shape[1] == int(ends.max()) + 1


def test_text_is_pooled_at_the_true_end_of_text_whatever_the_batch():
    torch.manual_seed(0)
    cfg = CLIPConfig(embed_dim=16, text_width=32, text_layers=1, text_heads=2)
    bb = build_backbone(BackboneConfig("vit_tiny", patch_size=8, depth=1), DataConfig(img_size=16))
    model = CLIP(cfg, bb).eval()
    tokens = tokenize(CAPTIONS)
    with torch.no_grad():
        batch = model.encode_text(tokens)
        full = model.text(tokens) @ model.text_projection  # all 77 columns, no trimming
        alone = torch.cat([model.encode_text(tokens[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(alone, full, rtol=0, atol=1e-6)
