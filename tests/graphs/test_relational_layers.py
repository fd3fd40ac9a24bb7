"""Relational layers and networks (graph2nn `relation_graph.py`,
`mlp.py`, `train_net.py`)."""

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from visrep.graphs.generate import complete_graph, ws_flex
from visrep.graphs.layers import (
    BlockRelationalLinear,
    RelationalConv2d,
    RelationalLinear,
    group_mask,
    group_sizes,
    relational_flops,
)
from visrep.graphs.models import (
    RelationalMLP,
    RelationalResNet,
    conv_flops,
    match_width,
    matched_width,
    mlp_baseline_flops,
    mlp_flops,
    resnet_flops,
)


def test_group_sizes_even_then_permuted_by_seed_1_without_touching_numpy():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    sizes = group_sizes(100, 16)
    assert (np.random.get_state()[1] == before).all()  # the global RNG is not reset
    assert sizes.sum() == 100 and sorted(sizes) == [6] * 12 + [7] * 4
    np.random.seed(1)
    assert (sizes == np.random.permutation([7] * 4 + [6] * 12)).all()


def test_complete_graph_layer_equals_nn_linear():
    torch.manual_seed(0)
    layer = RelationalLinear(24, 40, complete_graph(16), bias=True)
    dense = nn.Linear(24, 40)
    dense.load_state_dict(layer.state_dict())
    x = torch.randn(5, 24)
    assert torch.equal(layer(x), dense(x))
    assert layer.flops_scale == 1.0
    conv = RelationalConv2d(16, 32, complete_graph(16), 3, padding=1)
    ref = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    xi = torch.randn(2, 16, 7, 7)
    assert torch.equal(conv(xi), ref(xi))


def _groups(channels, n):
    off = np.concatenate([[0], np.cumsum(group_sizes(channels, n))])
    return [list(range(off[v], off[v + 1])) for v in range(n)]


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_no_edge_no_gradient_path(kind):
    g = nx.path_graph(4)  # 0-1-2-3: no edge (0, 3), (0, 2), (1, 3)
    c_in, c_out = 10, 14
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = RelationalLinear(c_in, c_out, g), torch.randn(3, c_in, requires_grad=True)
    else:
        layer = RelationalConv2d(c_in, c_out, g, 3, padding=1)
        x = torch.randn(3, c_in, 5, 5, requires_grad=True)
    gin, gout = _groups(c_in, 4), _groups(c_out, 4)
    for v in range(4):
        (grad,) = torch.autograd.grad(layer(x)[:, gout[v]].sum(), x)
        for u in range(4):
            reach = grad[:, gin[u]].abs().sum() > 0
            assert bool(reach) == (abs(u - v) <= 1), (v, u)
    w = layer.weight.detach().clone().requires_grad_(True)  # nor to the masked-out weights
    layer.weight = nn.Parameter(w)
    layer(x).sum().backward()
    m = layer.mask.expand_as(layer.weight)
    assert (layer.weight.grad[m == 0] == 0).all() and (layer.weight.grad[m == 1] != 0).any()


def test_mask_is_the_expanded_adjacency_with_self_loops():
    g = ws_flex(16, 4.5, 0.3, 2)
    m = group_mask(g, 128, 128)
    assert m.shape == (128, 128) and torch.equal(m, m.t())  # equal groups in and out
    a = nx.to_numpy_array(g) + np.eye(16)
    assert int(m.sum()) == int((a > 0).sum()) * 64  # 8 x 8 channels per block
    assert relational_flops(g, 128, 128) == int(m.sum())


def test_block_form_equals_masked_form():
    g = ws_flex(16, 3.5, 0.5, 4)
    layer = RelationalLinear(40, 56, g)
    x = torch.randn(6, 40)
    torch.testing.assert_close(BlockRelationalLinear(layer, g)(x), layer(x))


def test_flops_matched_width_by_hand():
    ring = nx.cycle_graph(16)  # every node: itself and 2 neighbours
    assert mlp_baseline_flops() == 784 * 128 + 3 * 128**2 + 128 * 10 == 150_784
    # width 320 = 16 x 20: blocks of 8 x 20 (stem -> first) and 20 x 20, 3 per row
    assert mlp_flops(320, ring) == 784 * 128 + 16 * 3 * 8 * 20 + 2 * 16 * 3 * 20 * 20 + 320 * 10
    w = matched_width("mlp5", ring)
    assert mlp_flops(w, ring) >= 150_784 > mlp_flops(w - 1, ring)  # UPPER: smallest width
    # 0.375 w^2 + 34 w + 100352 = 150784 at w = 324.2 for widths divisible by 16
    assert w in (324, 325)
    assert matched_width("mlp5", complete_graph(16)) == 128


def test_flops_matching_reproduces_the_paper_width_1522():
    # the best CIFAR-10 graph of the shipped results: k/n 0.128001, p 0.128063, seed 4 at n = 64
    g = ws_flex(64, 64 * 0.128001, 0.128063, 4)
    base = mlp_baseline_flops(in_dim=3072, stem=512)
    assert base == 2_364_416
    width = match_width(lambda d: mlp_flops(d, g, in_dim=3072, stem=512), base, 512)
    assert width == 1522
    assert match_width(lambda d: mlp_flops(d, complete_graph(64), 3072, 512), base, 512) == 512


def test_networks_run_and_init_as_the_paper():
    g = ws_flex(16, 5.0, 0.2, 0)
    torch.manual_seed(0)
    mlp = RelationalMLP(g, 200)
    assert mlp(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    w = mlp.blocks[0].weight.detach()
    assert abs(float(w.std()) - 0.01) < 1e-3  # N(0, 0.01^2), not rescaled by the density
    width = matched_width("resnet", g)
    net = RelationalResNet(g, width)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    for w, graph in ((width, g), (width - 1, g), (16, complete_graph(16))):
        assert resnet_flops(w, graph) == conv_flops(RelationalResNet(graph, w))
    assert (
        resnet_flops(width, g) >= resnet_flops(16, complete_graph(16)) > resnet_flops(width - 1, g)
    )
