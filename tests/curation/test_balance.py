"""MetaCLIP entry counts (per text) and balancing (the t rule; MetaCLIP paper Sec. 3 and
Algorithm 1), including the statistics."""

import numpy as np
import pytest

from visrep.curation.balance import (
    entry_probabilities,
    keep_probability,
    sample_keep,
    shard_rng,
)
from visrep.curation.counts import count_entries, reduce_counts, shard_counts
from visrep.curation.match import match_texts
from visrep.curation.shard_matches import ShardMatches


def _shard(match_lists, source="s"):
    n = len(match_lists)
    return ShardMatches.from_lists(source, list(range(n)), [str(i) for i in range(n)], match_lists)


# ---- counts ------------------------------------------------------------------------------


def test_counts_are_per_text_not_per_occurrence():
    entries = ["cat", "dog", "new york", "york"]
    texts = ["cat cat cat", "cat, dog. Dog", "new york, york, York", "nothing", "dog"]
    lists = match_texts(texts, entries)
    counts = count_entries(lists, len(entries))
    assert counts.dtype == np.uint64
    assert counts.tolist() == [2, 2, 1, 1]
    assert count_entries([[0, 0, 0]], 2).tolist() == [1, 0]  # duplicates inside a list


def test_shard_counts_reduce_to_the_global_counts():
    rng = np.random.default_rng(0)
    lists = [sorted(set(rng.integers(0, 50, rng.integers(0, 5)).tolist())) for _ in range(900)]
    parts = [_shard(lists[i : i + 300]) for i in range(0, 900, 300)]
    reduced = reduce_counts((shard_counts(p.entry_ids, 50) for p in parts), 50)
    assert reduced.dtype == np.uint64
    np.testing.assert_array_equal(reduced, count_entries(lists, 50))


def test_counts_from_other_metadata_are_rejected():
    with pytest.raises(ValueError, match="other metadata"):
        shard_counts(np.array([0, 7], dtype=np.uint32), 5)


# ---- balancing ---------------------------------------------------------------------------


def test_entry_probabilities():
    p = entry_probabilities(np.array([0, 5, 20_000, 40_000, 10**12], dtype=np.uint64), 20_000)
    np.testing.assert_allclose(p, [1, 1, 1, 0.5, 2e-8])
    with pytest.raises(ValueError, match="positive"):
        entry_probabilities(np.array([1]), 0)


def test_keep_probability_is_one_minus_product_of_misses():
    p = np.array([0.5, 0.5, 1.0, 0.1])
    m = _shard([[0, 1], [], [2, 3], [3], [0, 1, 3]])
    np.testing.assert_allclose(keep_probability(m, p), [0.75, 0.0, 1.0, 0.1, 1 - 0.25 * 0.9])


def test_unmatched_texts_never_kept_and_tail_texts_always_kept():
    p = entry_probabilities(np.array([10, 10**4]), t=100)  # entry 0 tail, entry 1 head: p=0.01
    m = _shard([[], [0], [0, 1], [], [1]] * 2000)
    keep = sample_keep(m, p, np.random.default_rng(0))
    lengths = np.diff(m.offsets)
    assert not keep[lengths == 0].any()
    tail_texts = np.array([0 in ids for ids in m.match_lists()])
    assert keep[tail_texts].all()
    assert 0.002 < keep[~tail_texts & (lengths > 0)].mean() < 0.03


def test_sampler_is_seeded_and_reproducible():
    p = np.full(3, 0.3)
    m = _shard([[0], [1, 2], [2]] * 100)
    a = sample_keep(m, p, shard_rng(7, "shard-0.jsonl.npz"))
    b = sample_keep(m, p, shard_rng(7, "shard-0.jsonl.npz"))
    c = sample_keep(m, p, shard_rng(8, "shard-0.jsonl.npz"))
    d = sample_keep(m, p, shard_rng(7, "shard-1.jsonl.npz"))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)


def test_expected_count_per_entry_is_min_count_t():
    """Texts matching one entry each: the kept count of entry e is Binomial(count, p[e])
    with mean count * t / max(count, t) = min(count, t). Averaged over 300 seeded runs,
    the mean is within 4 standard errors of min(count, t) for every entry."""
    t = 200
    counts = np.array([5000, 1200, 400, 201, 200, 150, 3, 1])
    lists = [[e] for e, c in enumerate(counts) for _ in range(c)]
    m = _shard(lists)
    assert np.array_equal(count_entries(lists, len(counts)), counts)
    p = entry_probabilities(counts, t)
    runs = 300
    rng = np.random.default_rng(123)
    kept = np.zeros((runs, len(counts)))
    for r in range(runs):
        keep = sample_keep(m, p, rng)
        kept[r] = np.bincount(m.entry_ids[keep[m.text_index()]], minlength=len(counts))
    target = np.minimum(counts, t)
    stderr = np.sqrt(counts * p * (1 - p) / runs)
    assert np.all(np.abs(kept.mean(0) - target) <= 4 * stderr + 1e-9)
    np.testing.assert_array_equal(kept[:, counts <= t], np.tile(counts[counts <= t], (runs, 1)))


def test_keep_rate_matches_analytic_probability_within_3_sigma():
    """Texts matching several head/tail entries: empirical keep rate over 10^5 seeded
    trials vs P(keep) = 1 - prod(1 - p[e]) (MetaCLIP paper Algorithm 1)."""
    rng = np.random.default_rng(0)
    p = np.array([0.02, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0])
    texts = [sorted(set(rng.integers(0, 6, rng.integers(1, 4)).tolist())) for _ in range(20)]
    texts += [[6], [0, 6], []]
    trials = 100_000
    m = _shard(texts * trials)
    keep = sample_keep(m, p, np.random.default_rng(1)).reshape(trials, len(texts))
    analytic = keep_probability(_shard(texts), p)
    empirical = keep.mean(0)
    sigma = np.sqrt(analytic * (1 - analytic) / trials)
    assert np.all(np.abs(empirical - analytic) <= 3 * sigma + 1e-12)
    assert empirical[-1] == 0 and empirical[-2] == 1 and empirical[-3] == 1


def test_multi_entry_texts_expected_count_is_sum_of_keep_probabilities():
    """With texts matching several entries, E[kept count of e] = sum over e's texts of
    P(keep) >= min(count, t) (a text also survives through another entry's trial)."""
    t = 50
    rng = np.random.default_rng(3)
    lists = [sorted(set(rng.zipf(1.6, 3).clip(max=40) - 1)) for _ in range(4000)]
    m = _shard(lists)
    counts = count_entries(lists, 40)
    p = entry_probabilities(counts, t)
    expected = np.bincount(
        m.entry_ids, weights=keep_probability(m, p)[m.text_index()], minlength=40
    )
    assert np.all(expected >= np.minimum(counts, t) - 1e-9)
    runs, kept = 200, np.zeros(40)
    for _ in range(runs):
        keep = sample_keep(m, p, rng)
        kept += np.bincount(m.entry_ids[keep[m.text_index()]], minlength=40)
    head = counts > 4 * t
    assert head.sum() >= 2
    np.testing.assert_allclose(kept[head] / runs, expected[head], rtol=0.03)
