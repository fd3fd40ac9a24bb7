"""MetaCLIP sub-string matching (facebookresearch/MetaCLIP `substr_matching.py`): spacing,
exact sub-string semantics, naive == Aho-Corasick."""

import itertools
import random

import pytest

from visrep.curation.match import (
    AhoCorasickMatcher,
    NaiveMatcher,
    can_match,
    match_texts,
    spacing,
)

ENTRIES = [
    "cat",  # 0
    "Cat",  # 1
    "new york",  # 2
    "york",  # 3
    "U.S.",  # 4  (never matches: the dots get spaces in the text)
    "Mr.",  # 5  (never matches)
    "cat's",  # 6
    "dog",  # 7
    "hot-dog",  # 8
    "(cat)",  # 9
    "a , b",  # 10 (matches "a,b": the comma stands between spaces)
    "0",  # 11
    "99",  # 12
    "New York",  # 13
]

# (caption, expected ids): a golden table of punctuation wrapping, case, apostrophes, dotted
# entries and overlapping n-grams
GOLDEN = [
    ("A cat.", [0]),  # "." is wrapped: "cat." matches cat
    ("A Cat sat", [1]),  # case-sensitive: "Cat" only
    ("the CAT", []),
    ("the cat's toy", [6]),  # apostrophe stays attached: cat's, not cat
    ("cat, dog", [0, 7]),  # "," is wrapped
    ("cat;dog:cat?dog!", [0, 7]),
    ("`cat`", [0]),
    ("I love New york", [3]),  # "New york" is neither "new york" nor "New York"
    ("new york city", [2, 3]),  # overlapping entries all match
    ("New York, New York", [13]),
    ("the U.S. army", []),
    ("U.S.", []),
    ("Mr. Smith", []),
    ("a hot-dog stand", [8]),  # hyphen attached: not dog
    ("(cat) and dog", [7, 9]),  # brackets attached
    ("cat\tdog\ncat\rcat", [0, 7]),  # tab / newline / CR become spaces; ids once
    ("cat cat cat", [0]),  # each id once per text
    ("catdog", []),
    ("a,b", [10]),
    ("a, b", []),  # spacing gives "a ,  b": two spaces after the comma
    ("0 to 99 and 100", [11, 12]),
    ("new  york", [3]),  # double space: "new york" does not match
    ("", []),
]


@pytest.mark.parametrize("matcher_cls", [NaiveMatcher, AhoCorasickMatcher])
@pytest.mark.parametrize("text,expected", GOLDEN)
def test_golden_table(matcher_cls, text, expected):
    assert sorted(matcher_cls(ENTRIES).match(text)) == expected


def test_spacing_wraps_punctuation_and_keeps_case():
    assert spacing("Hi,you.") == " Hi , you .  "
    assert spacing("a;b:c?d!e`f") == " a ; b : c ? d ! e ` f "
    assert spacing("x\ty\nz\rw") == " x y z w "
    assert spacing('Don\'t (x) "q" a-b') == ' Don\'t (x) "q" a-b '


def test_naive_returns_metadata_order():
    assert NaiveMatcher(["york", "new york", "new"]).match("new york") == [0, 1, 2]


def test_duplicate_entries_both_match():
    entries = ["cat", "dog", "cat"]
    assert NaiveMatcher(entries).match("a cat") == [0, 2]
    assert AhoCorasickMatcher(entries).match("a cat") == [0, 2]


@pytest.mark.parametrize("entry", ["U.S.", "Mr.", "e.g", "cat,", ".x", "x!", ", ,", "a\tb", "a:b"])
def test_entries_with_attached_wrapped_characters_never_match(entry):
    assert not can_match(entry)
    texts = [entry, f"the {entry} is here", f"{entry}{entry}", entry.replace(" ", "")]
    for matcher in (NaiveMatcher([entry]), AhoCorasickMatcher([entry])):
        assert all(matcher.match(t) == [] for t in texts)


@pytest.mark.parametrize("entry", ["cat", "new york", "a , b", ", x", "cat's", " lead"])
def test_can_match_is_true_when_some_caption_matches(entry):
    assert can_match(entry)


def test_can_match_agrees_with_exhaustive_search():
    """On a small alphabet, can_match(e) is True iff some caption of up to 6 characters
    matches e (checked against every such caption)."""
    alphabet = "a ,."
    texts = ["".join(p) for n in range(7) for p in itertools.product(alphabet, repeat=n)]
    spaced = [spacing(t) for t in texts]
    for n in range(1, 4):
        for chars in itertools.product(alphabet, repeat=n):
            entry = "".join(chars)
            matchable = any(f" {entry} " in s for s in spaced)
            assert can_match(entry) == matchable, entry


def _random_text(rng: random.Random, vocab: list[str]) -> str:
    words = rng.choices(vocab, k=rng.randint(0, 14))
    out = []
    for w in words:
        w = w.capitalize() if rng.random() < 0.1 else w
        out.append(w + rng.choice(["", "", "", ",", ".", "'s", "!", "-x", ":"]))
    return rng.choice([" ", " ", "  ", "\t"]).join(out)


def test_naive_equals_aho_corasick_on_random_texts():
    rng = random.Random(0)
    vocab = ["".join(rng.choices("abcdefgh", k=rng.randint(1, 4))) for _ in range(150)] + [
        "U.S.",
        "e.g.",
        "a , b",
    ]
    entries = vocab + [
        f"{a} {b}" for a, b in zip(rng.choices(vocab, k=300), rng.choices(vocab, k=300))
    ]
    entries += [e.capitalize() for e in rng.choices(vocab, k=30)] + ["x's", "a-b"]
    naive, aho = NaiveMatcher(entries), AhoCorasickMatcher(entries)
    texts = [_random_text(rng, vocab) for _ in range(400)]
    n_matches = 0
    for text in texts:
        expected = naive.match(text)
        assert aho.match(text) == expected, text
        n_matches += len(expected)
    assert n_matches > 1000  # the texts do exercise the matchers
    assert match_texts(texts[:5], entries) == [naive.match(t) for t in texts[:5]]


def test_empty_metadata_is_an_error():
    with pytest.raises(ValueError, match="empty metadata"):
        AhoCorasickMatcher([])
