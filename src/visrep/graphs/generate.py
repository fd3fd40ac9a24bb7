"""WS-flex relational graphs, their measures (C, L) and the paper's sampling of the (C, L) plane.

You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020, §3 and Appendix;
official code facebookresearch/graph2nn: `pycls/models/relation_graph.py` (`ws_graph`,
`connected_ws_graph`) and `analysis/generate_graphs.ipynb` (the sweep, the shuffle and the
bin-and-keep-first subsets). (graph2nn `pycls/models/relation_graph.py`, `analysis/generate_graphs.ipynb`).

WS-flex(n, k, p, seed) generalises Watts-Strogatz to a real average degree k in [2, n]:
e = round(k·n/2) edges spread over the nodes as evenly as possible (the first e mod n nodes
get one more), a ring lattice in which node i links to its next count_i neighbours, then each
lattice edge (i, i+j) is rewired with probability p to a uniformly drawn node. Every draw
comes from one Python `random.Random(seed)` stream, which the connectivity retries continue
(they do not reseed): that is what networkx's `py_random_state` does with an int seed, and it
is what reproduces the paper's stored graphs exactly.

C is networkx's average clustering and L its average shortest-path length, both on the simple
graph without self-loops (the network's mask adds the self-loops, `layers.group_mask`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np

# the paper's n = 16 analysis range: C bins on [0, 1], L bins on [1, 2.5]
L_RANGE_N16 = (1.0, 2.5)
L_RANGE_N64 = (1.0, 4.5)


def edge_counts(e: int, n: int) -> list[int]:
    """e edges over n nodes as evenly as possible: the first e mod n nodes get one more."""
    return [e // n + (1 if i < e % n else 0) for i in range(n)]


def ws_flex_once(n: int, k: float, p: float, rng: random.Random) -> nx.Graph:
    """One WS-flex draw (graph2nn's steps 2-4: edge counts, ring lattice, rewiring) from `rng`; may be disconnected."""
    counts = edge_counts(int(round(k * n / 2)), n)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for i in range(n):  # ring lattice: duplicates collapse when the lattice wraps (k near n)
        g.add_edges_from((i, (i + j) % n) for j in range(1, counts[i] + 1))
    nodes = list(g.nodes())
    for i in range(n):
        for j in range(1, counts[i] + 1):
            v = (i + j) % n
            if rng.random() >= p:
                continue
            w = rng.choice(nodes)
            abandoned = False
            while w == i or g.has_edge(i, w):
                w = rng.choice(nodes)
                if g.degree(i) >= n - 1:  # checked only after a redraw, as the paper's code
                    abandoned = True
                    break
            if not abandoned:
                g.remove_edge(i, v)  # raises, as the paper's code, if a wrapped lattice lost it
                g.add_edge(i, w)
    return g


def ws_flex(n: int, k: float, p: float, seed: int, tries: int = 100) -> nx.Graph:
    """A connected WS-flex graph: n nodes, average degree ~k (real, 2 <= k <= n),
    rewiring probability p; retries continue the one `random.Random(seed)` stream."""
    if not 2 <= k <= n:
        raise ValueError(f"WS-flex needs 2 <= k <= n, got k={k}, n={n}")
    rng = random.Random(seed)
    for _ in range(tries):
        g = ws_flex_once(n, k, p, rng)
        if nx.is_connected(g):
            return g
    raise ValueError(f"no connected WS-flex graph in {tries} tries (n={n}, k={k}, p={p})")


def complete_graph(n: int) -> nx.Graph:
    """The complete graph on n nodes: with self-loops in the mask, the ordinary dense layer."""
    return nx.complete_graph(n)


def measures(g: nx.Graph) -> tuple[float, float]:
    """(C, L): average clustering and average shortest-path length, without self-loops."""
    h = nx.Graph(g)
    h.remove_edges_from(list(nx.selfloop_edges(h)))
    return float(nx.average_clustering(h)), float(nx.average_shortest_path_length(h))


@dataclass(frozen=True)
class GraphSpec:
    """One relational graph of a sweep: WS-flex parameters and measures. `kind` is "ws" or
    "complete" (the dense baseline, k = n)."""

    name: str
    kind: str
    n: int
    k: float
    p: float
    seed: int
    C: float
    L: float

    @property
    def sparsity(self) -> float:
        """Edge density of the undirected graph without self-loops: 2|E| / (n(n-1))."""
        return 2 * self.num_edges / (self.n * (self.n - 1))

    @property
    def num_edges(self) -> int:
        return self.graph().number_of_edges()

    def graph(self) -> nx.Graph:
        if self.kind == "complete":
            return complete_graph(self.n)
        return ws_flex(self.n, self.k, self.p, self.seed)

    def to_dict(self) -> dict:
        return {**asdict(self), "sparsity": self.sparsity}

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        return cls(**{f: d[f] for f in ("name", "kind", "n", "k", "p", "seed", "C", "L")})


def complete_spec(n: int) -> GraphSpec:
    return GraphSpec("complete", "complete", n, float(n), 0.0, 0, 1.0, 1.0)


def candidate_grid(
    n: int,
    num_k: int = 40,
    num_p: int = 40,
    seeds: int = 5,
    k_min: float | None = None,
    k_max: float | None = None,
) -> list[tuple[float, float, int]]:
    """The sweep of `generate_graphs.ipynb` at a coarser resolution: k on a square-root grid
    (square(linspace(sqrt(k_min), sqrt(k_max)))), p on a squared grid (linspace(0, 1)^2),
    seeds 0..seeds-1. Defaults: k from n/8 (k/n >= 0.125, the paper's filter) to n - 2."""
    k_min = max(2.0, n / 8) if k_min is None else k_min
    k_max = float(n - 2) if k_max is None else k_max
    ks = np.square(np.linspace(math.sqrt(k_min), math.sqrt(k_max), num_k))
    ps = np.square(np.linspace(0.0, 1.0, num_p))
    return [(float(k), float(p), s) for k in ks for p in ps for s in range(seeds)]


def bin_index(values: np.ndarray, lo: float, hi: float, bins: int, right: bool) -> np.ndarray:
    """0-based bin of each value on linspace(lo, hi, bins + 1) (`np.digitize`, as the paper's
    notebooks); values outside [lo, hi] get -1 or `bins`."""
    edges = np.linspace(lo, hi, bins + 1)
    return np.digitize(values, edges, right=right) - 1


def sample_graphs(
    n: int,
    num: int,
    bins: int = 12,
    l_range: tuple[float, float] = L_RANGE_N16,
    grid: list[tuple[float, float, int]] | None = None,
) -> list[GraphSpec]:
    """WS-flex graphs covering the (C, L) plane, the paper's bin-and-keep-first procedure:
    measure every candidate of `grid`, shuffle the rows with the permutation of
    `np.random.seed(1)` (a local RandomState(1), same numbers, no global side effect), bin C
    on [0, 1] and L on `l_range` into `bins` equal bins each and keep the first graph of each
    occupied bin. With fewer occupied bins than `num` the binning is refined (bins + 1, ...)
    until there are enough; the graphs kept are then the first `num` in the shuffled order.
    Graphs with L outside `l_range` are not kept (as the paper's coarse subsets)."""
    grid = candidate_grid(n) if grid is None else grid
    rows = []
    for k, p, s in grid:
        c, length = measures(ws_flex(n, k, p, s))
        rows.append((k, p, s, c, length))
    order = np.random.RandomState(1).permutation(len(rows))
    rows = [rows[i] for i in order]
    cs = np.array([r[3] for r in rows])
    ls = np.array([r[4] for r in rows])
    for b in range(bins, 10 * bins):
        ci = bin_index(cs, 0.0, 1.0, b, right=True)
        li = bin_index(ls, *l_range, b, right=False)
        seen: set[tuple[int, int]] = set()
        kept = []
        for i, cell in enumerate(zip(ci.tolist(), li.tolist())):
            if 0 <= cell[0] < b and 0 <= cell[1] < b and cell not in seen:
                seen.add(cell)
                kept.append(i)
        if len(kept) >= num:
            break
    else:
        raise ValueError(f"only {len(kept)} distinct (C, L) bins among {len(rows)} candidates")
    kept = sorted(kept)[:num]
    return [
        GraphSpec(f"ws_n{n}_k{k:.4f}_p{p:.4f}_s{s}", "ws", n, k, p, s, c, length)
        for k, p, s, c, length in (rows[i] for i in kept)
    ]
