"""Relational graph → neural network layers: a layer is one round of message exchange along a
graph whose nodes are groups of channels.

You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020, §2; official code
facebookresearch/graph2nn `pycls/models/relation_graph.py` (`compute_size`,
`compute_densemask`, `TalkLinear`, `TalkConv2d`) and `pycls/utils/net.py` (`init_weights`).

Node v of an n-node graph owns a group of channels; the block W_vu of the weight (out group v,
in group u) exists iff u is v or a neighbour of v. The layer is a dense Linear / Conv2d whose
weight is multiplied by a fixed 0/1 mask: the group adjacency with self-loops, rows repeated
by the out-group sizes and columns by the in-group sizes. Group sizes split c channels as
evenly as possible (the first c mod n groups get one more) and are then permuted by
`np.random.seed(1); np.random.permutation`; here a local `RandomState(1)` draws the same
permutation without resetting numpy's global RNG (the paper's code does reset it, which makes
its numpy-driven augmentation identical across training seeds; visrep's augmentation uses
torch generators, so nothing depends on it). On the complete graph the mask is all ones and
the layer is exactly `nn.Linear` / `nn.Conv2d`.

Masked dense vs block form, measured on this shared 2-core host (forward + backward of one
layer, batch 128, one thread, median of 30 interleaved steps, n = 16;
`benchmarks/graphs_layer_speed.py` -> `benchmarks/results/graphs_layer_speed.md`): the masked
dense matmul is 1.3-17x faster than the block form (one gathered matmul per out group,
`BlockRelationalLinear`) at widths 128-512 and every density (k/n 0.125 to complete); the
block form wins only at width 1024 with k/n <= 0.25 (0.58x and 0.90x of the masked time). The
relational MLP sweep runs widths 128-289, so the layers keep the mask. FLOPs are counted as
the paper does (`flops_scale` = nnz(M) / (c_in·c_out)), not as the dense matmul spends them.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def group_sizes(channels: int, groups: int) -> np.ndarray:
    """Channels per node: as even as possible, then permuted by RandomState(1) (`compute_size`)."""
    out = np.full(groups, channels // groups, dtype=np.int64)
    out[: channels % groups] += 1
    return np.random.RandomState(1).permutation(out)


def adjacency(g: nx.Graph) -> np.ndarray:
    """n×n 0/1 group adjacency with both edge directions and self-loops (`nx_to_edge`), nodes
    in the order of `g.nodes`."""
    a = nx.to_numpy_array(g, nodelist=list(g.nodes), dtype=np.float64, weight=None)
    a = (a > 0).astype(np.float32)
    np.fill_diagonal(a, 1.0)
    return a


def group_mask(g: nx.Graph, c_in: int, c_out: int) -> torch.Tensor:
    """The channel mask M (c_out × c_in) of graph g (`compute_densemask`); the number of groups
    is clipped to min(c_in, c_out) (then g must have that many nodes or fewer)."""
    n = g.number_of_nodes()
    if n > min(c_in, c_out):
        raise ValueError(f"{n} nodes need at least {n} channels, got {c_in} -> {c_out}")
    a = adjacency(g)
    m = np.repeat(np.repeat(a, group_sizes(c_out, n), axis=0), group_sizes(c_in, n), axis=1)
    return torch.from_numpy(np.ascontiguousarray(m))


def relational_flops(g: nx.Graph, c_in: int, c_out: int) -> int:
    """⌊c_in·c_out·flops_scale⌋ with flops_scale = nnz(M) / (c_in·c_out), as `flops_count`
    counts a `TalkLinear` (float arithmetic included), without building the layer."""
    return int(c_in * c_out * (mask_nnz(g, c_in, c_out) / (c_in * c_out)))


def mask_nnz(g: nx.Graph, c_in: int, c_out: int) -> int:
    """nnz of `group_mask(g, c_in, c_out)` without building it."""
    n = g.number_of_nodes()
    return int(group_sizes(c_out, n) @ adjacency(g) @ group_sizes(c_in, n))


class RelationalLinear(nn.Linear):
    """`TalkLinear`: y = x (W ⊙ M)ᵀ (+ b), M the graph's channel mask (a buffer). Init as the
    paper's MLP: N(0, 0.01²), not rescaled by the mask density."""

    def __init__(self, c_in: int, c_out: int, graph: nx.Graph, bias: bool = False):
        super().__init__(c_in, c_out, bias=bias)
        self.register_buffer("mask", group_mask(graph, c_in, c_out), persistent=False)
        nnz = int(self.mask.sum())
        self.flops_scale = self.params_scale = nnz / (c_in * c_out)
        nn.init.normal_(self.weight, 0.0, 0.01)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def flops(self) -> int:
        """Multiply-adds per sample as the paper counts them: ⌊in·out·flops_scale⌋."""
        return int(self.in_features * self.out_features * self.flops_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class RelationalConv2d(nn.Conv2d):
    """`TalkConv2d`: a k×k convolution whose weight is multiplied by M[:, :, None, None].
    Init N(0, 2 / (k²·c_out·params_scale)): He init rescaled by the density."""

    def __init__(
        self, c_in: int, c_out: int, graph: nx.Graph, kernel_size: int, stride: int = 1,
        padding: int = 0, bias: bool = False,
    ):  # fmt: skip
        super().__init__(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias)
        mask = group_mask(graph, c_in, c_out)[:, :, None, None]
        self.register_buffer("mask", mask, persistent=False)
        self.flops_scale = self.params_scale = float(mask.sum()) / (c_in * c_out)
        fan = kernel_size * kernel_size * c_out * self.params_scale
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class BlockRelationalLinear(nn.Module):
    """The block form of `RelationalLinear`, kept for the speed comparison only: one
    gathered matmul per out group over the channels of its neighbours (with itself). Same
    function as the masked layer given the same weight (`from_masked`)."""

    def __init__(self, layer: RelationalLinear, graph: nx.Graph):
        super().__init__()
        n = graph.number_of_nodes()
        a = adjacency(graph)
        s_in, s_out = group_sizes(layer.in_features, n), group_sizes(layer.out_features, n)
        in_off = np.concatenate([[0], np.cumsum(s_in)])
        out_off = np.concatenate([[0], np.cumsum(s_out)])
        self.in_idx, self.out_idx = [], []
        weights = []
        for v in range(n):
            cols = np.concatenate(
                [np.arange(in_off[u], in_off[u + 1]) for u in range(n) if a[v, u]]
            )
            rows = np.arange(out_off[v], out_off[v + 1])
            self.in_idx.append(torch.from_numpy(cols))
            self.out_idx.append(torch.from_numpy(rows))
            weights.append(nn.Parameter(layer.weight.detach()[rows][:, cols].clone()))
        self.weights = nn.ParameterList(weights)
        self.order = torch.from_numpy(np.argsort(np.concatenate([r.numpy() for r in self.out_idx])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, i] @ w.t() for i, w in zip(self.in_idx, self.weights)]
        return torch.cat(parts, dim=1)[:, self.order]
