"""MetaCLIP metadata (MetaCLIP paper Sec. 3; facebookresearch/MetaCLIP `build_metadata.py`):
WordNet synset lemmas, numbers, user lists, filters."""

import json
from pathlib import Path

import pytest

from visrep.curation.metadata import (
    WORDNET_DATA_FILES,
    build_metadata,
    load_metadata,
    read_entry_list,
    save_metadata,
    synset_lemma,
    wordnet_entries,
)

REAL_WORDNET = Path("/usr/share/wordnet")
HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def _fake_wordnet(folder: Path) -> Path:
    lines = {
        "data.noun": [
            "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists",
            "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | a member of the genus Canis",
            "09119976 15 n 02 New_York 0 NY 0 000 | the largest city",
            "12345678 20 n 02 St._John's_wort 0 hypericum 0 000 | a plant",
            "this line is broken",
        ],
        "data.verb": ["01234567 29 v 01 run 0 000 | move fast"],
        "data.adj": [
            "00001740 00 a 01 able 0 000 | having the necessary means",
            "00002000 00 s 01 long(a) 0 000 | of great length",
        ],
        "data.adv": ["00001740 02 r 01 Dog 0 000 | same lemma as a noun, other case"],
    }
    for name in WORDNET_DATA_FILES:
        (folder / name).write_text(HEADER + "\n".join(lines[name]) + "\n")
    return folder


@pytest.mark.parametrize(
    "word,entry",
    [
        ("dog", "dog"),
        ("New_York", "new york"),  # nltk lower-cases the synset name; "_" -> " "
        ("long(a)", "long"),  # adjective syntactic marker dropped
        ("St._John's_wort", "st"),  # cut at the first "." of the synset name (reference)
        ("Canis_familiaris", "canis familiaris"),
    ],
)
def test_synset_lemma(word, entry):
    assert synset_lemma(word) == entry


def test_wordnet_entries_takes_the_first_lemma_of_each_synset(tmp_path):
    entries, malformed = wordnet_entries(_fake_wordnet(tmp_path))
    assert entries == {"entity", "dog", "new york", "st", "run", "able", "long"}
    assert malformed == 1  # the broken line is skipped and counted, the header ignored


def test_missing_wordnet_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        wordnet_entries(tmp_path)


@pytest.mark.skipif(
    not (REAL_WORDNET / "data.noun").exists(), reason="apt-get install wordnet-base"
)
def test_real_wordnet():
    entries, malformed = wordnet_entries(REAL_WORDNET)
    assert malformed == 0
    assert 80_000 < len(entries) < 117_660  # one lemma per synset (117,659), deduplicated
    assert {"dog", "new york", "cat", "abandon"} <= entries
    assert all(e == e.lower() and "_" not in e and "." not in e for e in entries)


def test_build_metadata_union_filters_and_order(tmp_path):
    lst = tmp_path / "ngrams.txt"
    lst.write_bytes(b"new york\n\n  padded  \n,\n!\nab\nU.S.\n\xff\xfe bad\nzebra crossing\ndog\n")
    entries, report = build_metadata(_fake_wordnet(tmp_path), [lst])
    assert entries == sorted(set(entries))
    assert {str(i) for i in range(100)} <= set(entries)
    assert {"new york", "padded", "ab", "U.S.", "zebra crossing", "dog", "able"} <= set(entries)
    assert "," not in entries and "!" not in entries and "" not in entries
    assert report["excluded_by_filter"] == 2  # "," and "!"
    assert report["skipped_lines"][str(lst)] == 1  # the undecodable line
    assert report["never_match"] == 1  # "U.S."
    assert report["entries"] == len(entries)
    assert len(entries) == len(set(entries))


def test_build_metadata_without_sources(tmp_path):
    entries, _ = build_metadata(None, [], numbers=True)
    assert entries == sorted(str(i) for i in range(100))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n,\n")
    with pytest.raises(ValueError, match="empty"):
        build_metadata(None, [empty], numbers=False)
    with pytest.raises(FileNotFoundError, match="one entry per line"):
        read_entry_list(tmp_path / "missing.txt")


def test_save_and_load_metadata(tmp_path):
    save_metadata(["a", "new york", "Ünïcode"], tmp_path / "m.json")
    assert load_metadata(tmp_path / "m.json") == ["a", "new york", "Ünïcode"]
    (tmp_path / "m.txt").write_text("a\nnew york\n\n")
    assert load_metadata(tmp_path / "m.txt") == ["a", "new york"]
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="list of strings"):
        load_metadata(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="no entries"):
        load_metadata(tmp_path / "empty.json")
    with pytest.raises(FileNotFoundError, match="build-metadata"):
        load_metadata(tmp_path / "nope.json")
