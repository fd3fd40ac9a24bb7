"""CLIP tokenizer (SLIP `tokenizer.py`, open_clip): SOT/EOT, zero padding to 77, both truncation
rules."""

import torch

from visrep.data.tokenizer import EOT, SOT, VOCAB_SIZE, decode, encode, tokenize


def test_sot_eot_and_zero_padding_to_77():
    t = tokenize(["a photo of a cat.", "hi"])
    assert t.shape == (2, 77) and t.dtype == torch.long
    ids = encode("a photo of a cat.")
    assert t[0, : len(ids) + 2].tolist() == [SOT, *ids, EOT]
    assert (t[0, len(ids) + 2 :] == 0).all()
    assert t[1, :2].tolist() == [SOT, encode("hi")[0]] and t[1].argmax() == len(encode("hi")) + 1
    assert (SOT, EOT, VOCAB_SIZE) == (49406, 49407, 49408)
    assert tokenize("one string").shape == (1, 77)


def test_known_ids_and_cleaning():
    # OpenAI BPE ids: "a"=320, "photo"=1125, "of"=539, "cat"=2368, "."=269 (lower-cased,
    # HTML entities unescaped, whitespace collapsed)
    assert encode("A  Photo of a CAT.") == [320, 1125, 539, 320, 2368, 269]
    assert encode("fish &amp; chips") == encode("fish & chips")
    assert decode(tokenize("a photo of a cat.")[0].tolist()).strip() == "a photo of a cat ."


def test_truncation_eot_forced_vs_slip_slicing():
    long = "word " * 100  # 100 BPE tokens > 75
    eot = tokenize(long)[0]
    assert eot[0] == SOT and eot[-1] == EOT and (eot != 0).all()
    assert eot.argmax() == 76  # argmax pooling finds EOT
    sliced = tokenize(long, truncate="slice")[0]
    assert sliced[0] == SOT and EOT not in sliced.tolist()  # SLIP quirk: EOT cut off
    assert sliced[:76].tolist() == eot[:76].tolist()


def test_matches_open_clip_call():
    from open_clip.tokenizer import SimpleTokenizer

    texts = ["a photo of a cat.", "Ünïcödé café &lt;3", "word " * 90, ""]
    torch.testing.assert_close(tokenize(texts), SimpleTokenizer()(texts))
