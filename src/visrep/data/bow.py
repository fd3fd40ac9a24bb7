"""Bag-of-words captions (Tejankar et al., 2021, "A Fistful of Words: Learning Transferable
Visual Models from Bag-of-Words Supervision").

The paper trains CLIP-style models on captions reduced to a bag of words (BoW) and finds
that, with *word balancing*, BoW captions match or beat full sentences for zero-shot
classification; a BoW-trained model can then caption uncaptioned images with its top-k
vocabulary words (*pseudo-BoW* captions) to grow the training set.

What is implemented here (`data.caption_style=bow`, `data.bow_balance=t`):

- **Caption → BoW** (`bow_words`, `to_bow`): lower-case; words are runs of letters/digits,
  keeping inner hyphens and apostrophes ("t-shirt", "o'clock"); punctuation and the
  function words of `STOP_WORDS` are dropped; repeats are removed (first occurrence kept);
  the remaining words are put in a random order drawn from an injectable
  `torch.Generator`, so a caption's BoW is a function of the seed (exact resume). A caption
  made only of stop words keeps its (deduplicated) stop words rather than becoming empty.
- **Word balancing** (`keep_probability`, `word_frequencies`): a frequent word is dropped
  from a caption with probability 1 − p_keep(f), p_keep(f) = min(1, √(t/f) + t/f), where f
  is the word's share of all BoW word occurrences in the training captions and t the
  threshold `data.bow_balance` (0 = no balancing). This is word2vec's subsampling of frequent
  words as implemented in its C code (Mikolov et al., 2013; the paper's formula is
  1 − √(t/f) as the discard probability, the code adds t/f). The exact rule of the BoW paper
  could not be retrieved with the tools available here, so this is our choice of a
  frequency-based balancing, documented as such. Words never seen when counting (f = 0) are
  always kept; if every word of a caption is dropped, its rarest word is kept so that no
  caption becomes empty.
- **Zero-shot prompts for a BoW model** (`bow_template`): the prompt templates go through the
  same transform without shuffling or balancing ("a photo of the large {}." → "photo large
  {}"), so the text tower sees text of the kind it was trained on.
- **Pseudo-BoW captions**: the command `visrep data pseudo-bow` (`visrep.pseudo_bow`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from visrep.data.tokenizer import tokenize

# English function words (articles, pronouns, prepositions, conjunctions, auxiliaries,
# quantifiers); content words such as colours, numbers or "top"/"back" are kept.
STOP_WORDS: frozenset[str] = frozenset(
    """a an the this that these those there here
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves one ones
    what which who whom whose when where why how
    am is are was were be been being have has had having do does did doing done
    will would shall should can could may might must ought
    and or but nor so yet if then else than as because while until although though
    of at by for with about against between into through during before after above below
    to from up down in out on off over under again further once onto upon within without
    along across around among via per
    all any both each few more most other some such no not only own same too very just
    also s t d ll m o re ve y don't isn't aren't it's i'm you're we're they're that's
    let's there's can't won't""".split()
)

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_SLOT = "zzslotzz"  # stands for the "{}" of a prompt template while it is transformed


def tokenize_words(caption: str) -> list[str]:
    """Lower-cased words of a caption, punctuation removed, in order."""
    return _WORD.findall(caption.lower())


def bow_words(caption: str) -> list[str]:
    """The caption's content words, deduplicated, in their original order (no randomness)."""
    words = tokenize_words(caption)
    content = [w for w in words if w not in STOP_WORDS]
    return list(dict.fromkeys(content or words))


def keep_probability(freq: float, t: float) -> float:
    """p_keep(f) = min(1, √(t/f) + t/f) (word2vec's subsampling); 1 when t ≤ 0 or f = 0."""
    if t <= 0 or freq <= 0:
        return 1.0
    r = t / freq
    return min(1.0, math.sqrt(r) + r)


def word_frequencies(captions: Iterable[str], weights: Iterable[float] | None = None):
    """Share f(w) of each word among all BoW word occurrences (each caption's words counted
    once, after stop-word removal), optionally weighting each caption."""
    counts: Counter[str] = Counter()
    weights = iter(weights) if weights is not None else None
    for caption in captions:
        w = next(weights) if weights is not None else 1.0
        for word in bow_words(caption):
            counts[word] += w
    total = sum(counts.values()) or 1.0
    return {word: c / total for word, c in counts.items()}


def to_bow(
    caption: str,
    generator: torch.Generator,
    freqs: dict[str, float] | None = None,
    t: float = 0.0,
) -> str:
    """A random-order bag of the caption's content words, balanced when `freqs` and `t > 0`.

    Draws: one uniform per word for balancing (if on), then a permutation, both from
    `generator`.
    """
    words = bow_words(caption)
    if not words:
        return caption.strip()
    if freqs and t > 0:
        p = torch.tensor([keep_probability(freqs.get(w, 0.0), t) for w in words])
        keep = torch.rand(len(words), generator=generator) < p
        kept = [w for w, k in zip(words, keep.tolist()) if k]
        words = kept or [min(words, key=lambda w: freqs.get(w, 0.0))]  # rarest survives
    order = torch.randperm(len(words), generator=generator).tolist()
    return " ".join(words[i] for i in order)


def bow_template(template: str) -> str:
    """A prompt template in BoW form, slot kept: "a photo of the large {}." → "photo large {}"."""
    return " ".join(bow_words(template.replace("{}", f" {_SLOT} "))).replace(_SLOT, "{}")


CaptionFn = Callable[[str, torch.Generator], str]


def caption_transform(
    style: str, t: float = 0.0, captions: Callable[[], Iterable[str]] | None = None
) -> CaptionFn | None:
    """The caption transform `data.caption_style` names: None for "sentence", else a BoW
    transform; with balancing (`t > 0`) word frequencies are counted over `captions()`."""
    if style in ("", "sentence"):
        return None
    if style != "bow":
        raise ValueError(f"data.caption_style must be sentence or bow, got {style!r}")
    if t < 0:
        raise ValueError(f"data.bow_balance must be >= 0 (0 = no balancing), got {t}")
    freqs = word_frequencies(captions()) if t > 0 and captions is not None else None

    def apply(caption: str, generator: torch.Generator) -> str:
        return to_bow(caption, generator, freqs, t)

    return apply


class FMNISTBowCaptions:
    """BoW captions for Fashion-MNIST class-name captions: the sentence of (class, template)
    is drawn as in `FMNISTCaptionData`, then turned into a BoW per sample. Word frequencies
    are the expected ones under that sampling (class counts × uniform template)."""

    def __init__(
        self,
        classnames: Sequence[str],
        templates: Sequence[str],
        labels: Tensor,
        t: float = 0.0,
    ) -> None:
        self.sentences = [[tp.format(c) for tp in templates] for c in classnames]
        counts = torch.bincount(labels, minlength=len(classnames)).tolist()
        flat = [s for row in self.sentences for s in row]
        weights = [counts[k] / len(templates) for k in range(len(classnames)) for _ in templates]
        self.freqs = word_frequencies(flat, weights) if t > 0 else None
        self.t = t

    def tokens(self, labels: Tensor, which: Tensor, generator: torch.Generator) -> Tensor:
        caps = [to_bow(self.sentences[k][j], generator, self.freqs, self.t)
                for k, j in zip(labels.tolist(), which.tolist())]  # fmt: skip
        return tokenize(caps)


def fmnist_bow(data, classnames, templates, labels: Tensor) -> FMNISTBowCaptions | None:
    """`FMNISTBowCaptions` when `data.caption_style` is "bow", None for sentences."""
    if caption_transform(data.caption_style, data.bow_balance) is None:
        return None
    return FMNISTBowCaptions(classnames, templates, labels, data.bow_balance)


def shard_captions(shards: Sequence[str], limit: int = 0) -> Iterable[str]:
    """The `.txt` captions of WebDataset shards, read from the tar members without decoding
    images (word counts for balancing)."""
    import tarfile

    n = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".txt"):
                    f = tar.extractfile(member)
                    yield f.read().decode("utf-8", "replace") if f else ""
                    n += 1
                    if limit and n >= limit:
                        return
