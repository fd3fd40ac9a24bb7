"""Bag-of-words captions (visrep.data.bow): transform, word balancing, pipeline wiring."""

import io
import math

import pytest
import torch
from conftest import requires_fmnist
from PIL import Image

from visrep.config import DataConfig
from visrep.data.bow import (
    STOP_WORDS,
    bow_template,
    bow_words,
    caption_transform,
    keep_probability,
    to_bow,
    word_frequencies,
)
from visrep.data.tokenizer import decode

KW = dict(seed=0, rank=0, world_size=1, device=torch.device("cpu"))


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_bow_words_lowercase_stop_words_punctuation_dedupe():
    cap = "A photo of THE large, large dog -- on a red t-shirt! It's 2 o'clock."
    assert bow_words(cap) == ["photo", "large", "dog", "red", "t-shirt", "2", "o'clock"]
    assert {"a", "of", "the", "on", "it's"} <= STOP_WORDS
    assert bow_words("it is what it is") == ["it", "is", "what"]  # only stop words: kept
    assert bow_words("!!!") == [] and to_bow(" !!! ", g(0)) == "!!!"


def test_to_bow_order_is_a_permutation_drawn_from_the_generator():
    cap = "a small red dog with a blue ball on grass"
    words = bow_words(cap)  # small red dog blue ball grass
    for seed in range(5):
        perm = torch.randperm(len(words), generator=g(seed)).tolist()
        assert to_bow(cap, g(seed)) == " ".join(words[i] for i in perm)
    orders = {to_bow(cap, g(s)) for s in range(30)}
    assert len(orders) > 20 and all(sorted(o.split()) == sorted(words) for o in orders)


def test_keep_probability_formula():
    # p_keep = min(1, sqrt(t/f) + t/f)
    assert keep_probability(0.1, 1e-3) == pytest.approx(math.sqrt(0.01) + 0.01)
    assert keep_probability(0.04, 0.01) == pytest.approx(0.75)
    assert keep_probability(0.01, 0.01) == 1.0 and keep_probability(0.001, 0.01) == 1.0
    assert keep_probability(0.5, 0.0) == 1.0 and keep_probability(0.0, 0.01) == 1.0


def test_word_frequencies_count_each_caption_once_after_stop_words():
    f = word_frequencies(["a red dog", "red cat", "the red red dog"])
    assert f == pytest.approx({"red": 3 / 6, "dog": 2 / 6, "cat": 1 / 6})
    fw = word_frequencies(["red dog", "cat"], weights=[1.0, 2.0])
    assert fw == pytest.approx({"red": 0.25, "dog": 0.25, "cat": 0.5})


def test_balancing_keeps_frequent_words_at_p_keep_in_expectation():
    t, n = 0.01, 4000
    freqs = {"photo": 0.04, "coat": 0.005}  # p_keep 0.75 and 1
    caps = [to_bow("a photo of a coat", g(s), freqs, t).split() for s in range(n)]
    kept = sum("photo" in c for c in caps) / n
    sigma = math.sqrt(0.75 * 0.25 / n)
    assert abs(kept - 0.75) < 4 * sigma
    assert all("coat" in c for c in caps)
    # a caption whose every word is dropped keeps its rarest word
    rare = {"photo": 0.9, "picture": 0.5}
    outs = {to_bow("photo picture", g(s), rare, 1e-12) for s in range(50)}
    assert outs == {"picture"}


def test_bow_templates_keep_the_class_slot():
    assert bow_template("a photo of the large {}.") == "photo large {}"
    assert bow_template("a {} in a video game.") == "{} video game"
    assert bow_template("itap of a {}.").format("ankle boot") == "itap ankle boot"


def test_caption_transform_switch():
    assert caption_transform("sentence") is None
    with pytest.raises(ValueError, match="caption_style"):
        caption_transform("words")
    fn = caption_transform("bow", 0.5, lambda: ["red dog", "red cat"])
    assert sorted(fn("The red dog.", g(0)).split()) == ["dog", "red"]


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buf, format="PNG")
    return buf.getvalue()


def test_csv_pairs_become_bags_of_words(tmp_path):
    from visrep.data.pipeline import build_train_data

    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(_png((50 * i, 0, 0)))
    rows = "".join(f"{i}.png,A photo of the red box number {i}.\n" for i in range(4))
    (tmp_path / "p.csv").write_text("image_path,caption\n" + rows)
    data = DataConfig(dataset=str(tmp_path / "p.csv"), img_size=8, channels=3,
                      caption_style="bow", bow_balance=0.0)  # fmt: skip
    a = list(build_train_data(data, 2, **KW).batches(0, 2))
    b = list(build_train_data(data, 2, **KW).batches(1, 2))
    torch.testing.assert_close(a[1]["tokens"], b[0]["tokens"])  # resume: same bags, same order
    caps = [decode(t.tolist()).strip() for x in a for t in x["tokens"]]
    for c in caps:
        words = c.split()
        assert {"photo", "red", "box", "number"} <= set(words)
        assert not {"a", "of", "the"} & set(words) and "." not in c


@requires_fmnist
def test_fmnist_bow_captions_are_seeded_and_stop_word_free():
    from visrep.data.pipeline import build_train_data

    data = DataConfig(dataset="fashion_mnist", img_size=28, channels=1, captions="fmnist_train",
                      limit=64, caption_style="bow", bow_balance=0.02)  # fmt: skip
    a = list(build_train_data(data, 16, **KW).batches(0, 3))
    b = list(build_train_data(data, 16, **KW).batches(2, 3))
    torch.testing.assert_close(a[2]["tokens"], b[0]["tokens"])
    caps = [decode(t.tolist()).strip() for x in a for t in x["tokens"]]
    assert all(c and not {"a", "of", "an"} & set(c.split()) for c in caps)
    assert len({tuple(sorted(c.split())) for c in caps}) > 5


class WordTable(torch.nn.Module):
    """A fake text tower: embedding of a caption = fixed random vector of its first BPE id."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(49408, 16, generator=g(0)))

    def encode_text(self, tokens):
        return self.table[tokens[:, 1]]


def test_pseudo_bow_keeps_the_top_k_words_most_similar_first():
    from visrep.data.tokenizer import tokenize
    from visrep.pseudo_bow import pseudo_bow

    m, vocab = WordTable(), ["dog", "cat", "red", "boot", "sky"]
    emb = torch.nn.functional.normalize(m.encode_text(tokenize(vocab)).detach(), dim=-1)
    image = torch.nn.functional.normalize(emb[3] + 0.5 * emb[1], dim=0)  # boot, then cat
    caps = pseudo_bow(m, torch.stack([image, emb[2]]), vocab, k=2, batch_size=2)
    assert caps[0] == "boot cat" and caps[1].split()[0] == "red" and len(caps[1].split()) == 2
