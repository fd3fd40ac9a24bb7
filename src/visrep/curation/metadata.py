"""MetaCLIP metadata: the entry list that captions are matched against (MetaCLIP paper Sec. 3,
"metadata construction"; facebookresearch/MetaCLIP `metaclip/build_metadata.py`).

The released MetaCLIP 1 metadata is the union, as a set, of "0".."99", one lemma per
WordNet synset, Wikipedia unigrams (count >= 100), Wikipedia bigrams (PMI >= 30) and
Wikipedia titles (pageviews >= 70), without empty strings and single punctuation
characters. Wikipedia is not available offline, so its three sources come in here as
user-supplied lists (one entry per line): n-grams, titles, class names.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from visrep.curation.match import can_match
from visrep.io import atomic_write_text

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
# An adjective lemma may carry a syntactic marker, "(a)", "(p)" or "(ip)", which is not
# part of the name (WordNet wndb(5)); nltk strips it before naming the synset.
_SYNTACTIC_MARKER = re.compile(r"\([a-z]+\)$")
_DATA_LINE = re.compile(r"^\d{8} \d{2} [nvasr] [0-9a-fA-F]{2} (\S+) ")


def number_entries() -> list[str]:
    """The strings "0" ... "99" (the first source listed above)."""
    return [str(i) for i in range(100)]


def synset_lemma(first_word: str) -> str:
    """The metadata entry of one synset from the first word of its WordNet data line.

    nltk names a synset `<first lemma, lower-cased>.<pos>.<sense>` and MetaCLIP keeps
    the part before the first "." with "_" -> " ". A lemma that itself holds a dot
    (e.g. "St._John's_wort") is therefore cut at that dot ("st"): faithful to the
    reference, which splits the synset name on its first ".".
    """
    name = _SYNTACTIC_MARKER.sub("", first_word).lower()
    return name.split(".", 1)[0].replace("_", " ")


def wordnet_entries(wordnet_dir: str | Path = WORDNET_DIR) -> tuple[set[str], int]:
    """One entry per WordNet synset (the second source listed above), read from the database files.

    Args:
        wordnet_dir: folder holding `data.noun`, `data.verb`, `data.adj`, `data.adv`
            (Debian: `apt-get install wordnet-base` -> /usr/share/wordnet).

    Returns:
        (entries, malformed): the set of lemmas and the number of non-header lines
        that did not parse (skipped, not fatal).
    """
    wordnet_dir = Path(wordnet_dir)
    files = [wordnet_dir / name for name in WORDNET_DATA_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet data files missing: {', '.join(missing)}. Install them with "
            "`apt-get install wordnet-base` or pass --wordnet-dir FOLDER (or --no-wordnet)"
        )
    entries: set[str] = set()
    malformed = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header lines start with two spaces
                    continue
                m = _DATA_LINE.match(line)
                if m is None:
                    malformed += 1
                    continue
                entries.add(synset_lemma(m.group(1)))
    return entries, malformed


def read_entry_list(path: str | Path) -> tuple[list[str], int]:
    """Entries from a user list: a UTF-8 text file, one entry per line.

    Surrounding whitespace is stripped (a stray trailing space would otherwise make the
    entry unmatchable, see `match`) and blank lines are ignored. A line that is not valid UTF-8
    is skipped and counted, never fatal.

    Returns:
        (entries, skipped): the entries in file order and the number of undecodable lines.
    """
    path = Path(path)
    if not path.exists() or path.is_dir():
        raise FileNotFoundError(f"entry list {path} does not exist (expected one entry per line)")
    entries, skipped = [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped += 1
                continue
            if line.strip():
                entries.append(line.strip())
    return entries, skipped


def is_valid_entry(entry: str) -> bool:
    """The metadata filter: no empty strings, no single punctuation character."""
    return entry != "" and not (len(entry) == 1 and entry in string.punctuation)


def build_metadata(
    wordnet_dir: str | Path | None = WORDNET_DIR,
    lists: Sequence[str | Path] = (),
    numbers: bool = True,
) -> tuple[list[str], dict[str, Any]]:
    """Union of the metadata sources as a sorted list, and a report of what went in.

    Args:
        wordnet_dir: WordNet database folder, or None to leave WordNet out.
        lists: user entry lists (Wikipedia-style n-grams, titles, class names ...).
        numbers: include "0".."99".

    Returns:
        (entries, report). `entries` is sorted so that ids are reproducible (the
        reference stores a set, so its order carries no meaning).
    """
    sources: dict[str, Iterable[str]] = {}
    report: dict[str, Any] = {"sources": {}, "skipped_lines": {}}
    if numbers:
        sources["numbers"] = number_entries()
    if wordnet_dir is not None:
        sources["wordnet"], report["skipped_lines"]["wordnet"] = wordnet_entries(wordnet_dir)
    for path in lists:
        sources[str(path)], report["skipped_lines"][str(path)] = read_entry_list(path)
    union: set[str] = set()
    for name, items in sources.items():
        items = set(items)
        report["sources"][name] = len(items)
        union |= items
    entries = sorted(e for e in union if is_valid_entry(e))
    if not entries:
        raise ValueError("the metadata is empty: give WordNet, numbers or a non-empty --list")
    report["excluded_by_filter"] = len(union) - len(entries)
    report["entries"] = len(entries)
    report["never_match"] = sum(not can_match(e) for e in entries)
    return entries, report


def save_metadata(entries: Sequence[str], path: str | Path) -> None:
    """Write the entries as a JSON list (the format of MetaCLIP's metadata.json)."""
    atomic_write_text(path, json.dumps(list(entries), ensure_ascii=False) + "\n")


def load_metadata(path: str | Path) -> list[str]:
    """Read metadata: a JSON list of strings (`.json`) or one entry per line (other).

    The position of an entry in the list is its entry id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"metadata {path} does not exist; build one with `visrep curate build-metadata`"
        )
    if path.suffix == ".json":
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"metadata {path} is not valid JSON: {err}") from None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"metadata {path} must be a JSON list of strings")
    else:
        lines = path.read_text(encoding="utf-8").split("\n")
        entries = [e for e in (line.rstrip("\r") for line in lines) if e]
    if not entries:
        raise ValueError(f"metadata {path} has no entries")
    return entries
