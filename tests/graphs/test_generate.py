"""WS-flex graphs and their measures (graph2nn `relation_graph.py`)."""

import math
import random

import networkx as nx
import numpy as np
import pytest

from visrep.graphs.generate import (
    complete_spec,
    edge_counts,
    measures,
    sample_graphs,
    ws_flex,
    ws_flex_once,
)


@pytest.mark.parametrize("n,k", [(16, 4.0), (16, 3.3), (16, 7.77), (64, 8.192064), (16, 14.0)])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_n_nodes_and_average_degree_k(n, k, p):
    g = ws_flex(n, k, p, seed=3)
    e = int(round(k * n / 2))  # non-integer k: e = round(k n / 2) edges
    assert sorted(g.nodes) == list(range(n))
    assert g.number_of_edges() == e  # a rewiring removes one edge and adds one
    assert 2 * g.number_of_edges() / n == pytest.approx(2 * e / n)
    assert abs(2 * e / n - k) <= 1 / n
    assert nx.is_connected(g) and nx.number_of_selfloops(g) == 0


def test_edges_spread_evenly():
    assert edge_counts(26, 16) == [2] * 10 + [1] * 6
    assert sum(edge_counts(66, 16)) == 66


def test_p0_is_the_ring_lattice_with_its_known_c_and_l():
    g = ws_flex(16, 4, 0.0, seed=0)
    assert nx.utils.graphs_equal(g, nx.watts_strogatz_graph(16, 4, 0.0))
    c, length = measures(g)
    assert c == pytest.approx(3 * (4 - 2) / (4 * (4 - 1)))  # 3(k-2)/(4(k-1)) = 0.5
    # distances ceil(d/2) for ring distance d = 1..8 (both ways, 8 once): 36 / 15
    assert length == pytest.approx(36 / 15)
    ring = ws_flex(16, 2, 0.0, seed=0)
    assert measures(ring) == (0.0, pytest.approx(64 / 15))


def test_complete_graph_and_k_equal_n():
    g = ws_flex(16, 16, 0.0, seed=0)  # the lattice wraps: C(16, 2) edges, not 128
    assert g.number_of_edges() == 120
    assert measures(g) == (1.0, 1.0)
    assert (complete_spec(16).C, complete_spec(16).L) == (1.0, 1.0)


def test_c_and_l_equal_networkx_without_self_loops():
    for g in (nx.karate_club_graph(), ws_flex(16, 5.5, 0.4, 7), ws_flex(64, 10.0, 0.2, 1)):
        want = (nx.average_clustering(g), nx.average_shortest_path_length(g))
        h = nx.Graph(g)
        h.add_edges_from((v, v) for v in h.nodes)  # self-loops do not count
        assert measures(h) == pytest.approx(want, abs=1e-15)
        c = np.mean(sorted(nx.clustering(g).values()))  # the notebook's sort-then-average
        assert measures(g)[0] == pytest.approx(c, abs=1e-15)


def test_one_rng_stream_across_connectivity_retries():
    # a sparse, fully rewired graph is often disconnected: the retries must continue the stream
    n, k, p = 16, 2.0, 1.0
    for seed in range(20):
        rng = random.Random(seed)
        tries = 0
        while True:
            tries += 1
            want = ws_flex_once(n, k, p, rng)
            if nx.is_connected(want):
                break
        assert nx.utils.graphs_equal(ws_flex(n, k, p, seed), want)
        if tries > 1:
            return
    pytest.fail("no seed needed a retry")


def test_deterministic_and_seed_dependent():
    a, b = ws_flex(16, 6.0, 0.5, 11), ws_flex(16, 6.0, 0.5, 11)
    assert nx.utils.graphs_equal(a, b)
    assert not all(nx.utils.graphs_equal(a, ws_flex(16, 6.0, 0.5, s)) for s in range(3))


def test_sample_graphs_covers_distinct_bins():
    grid = [(k, p, s) for k in (2.5, 4.0, 6.0, 9.0, 12.0) for p in (0.0, 0.1, 0.4, 1.0)
            for s in range(2)]  # fmt: skip
    specs = sample_graphs(16, 8, bins=12, grid=grid)
    assert len(specs) == 8
    cells = {(math.ceil(s.C * 12), int((s.L - 1) / 1.5 * 12)) for s in specs}
    assert len(cells) == 8  # one graph per occupied (C, L) bin
    assert all(1.0 <= s.L <= 2.5 for s in specs)
    for s in specs:
        assert measures(s.graph()) == pytest.approx((s.C, s.L))
