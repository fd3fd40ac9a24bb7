"""Relational networks for 28-px Fashion-MNIST: the paper's 5-layer MLP and a small ResNet,
with the paper's FLOPs matching.

You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020, §4; official code
facebookresearch/graph2nn `pycls/models/mlp.py` (`MLPNet`: dense stem, `TalkLinearTransform`
blocks, dense head), `pycls/models/resnet.py` (basic blocks with `TalkConv2d`),
`pycls/utils/metrics.py` (`flops_count`) and `tools/train_net.py` (`AUTO_MATCH`, `UPPER`).

Every relational layer of a network uses the same graph (`KEEP_GRAPH: true`). FLOPs matching
widens the relational layers of a sparse graph until the network's FLOPs reach the dense
baseline's: the paper's 15 rounds of d <- round(d · round(sqrt(base / flops), 2)), then ±1
steps; UPPER keeps the smallest width at or above the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx
import torch
from torch import nn

from visrep.graphs.layers import RelationalConv2d, RelationalLinear, mask_nnz, relational_flops

BN_EPS, BN_MOMENTUM = 1e-5, 0.1


class RelationalMLP(nn.Module):
    """`mlp5`: dense Linear(in → stem) + BN + ReLU, `layers` relational blocks
    RelationalLinear(→ width) + BN + ReLU on the same graph, dense Linear(width → classes) with
    bias. All Linear weights N(0, 0.01²), biases 0, BN γ = 1, β = 0 (`net.py:init_weights`)."""

    def __init__(
        self, graph: nx.Graph, width: int, in_dim: int = 784, stem: int = 128, layers: int = 3,
        num_classes: int = 10,
    ):  # fmt: skip
        super().__init__()
        self.stem = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, stem, bias=False),
            nn.BatchNorm1d(stem, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
        )  # fmt: skip
        blocks = []
        for i in range(layers):
            blocks += [
                RelationalLinear(stem if i == 0 else width, width, graph),
                nn.BatchNorm1d(width, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def mlp_flops(width: int, graph: nx.Graph, in_dim: int = 784, stem: int = 128, layers: int = 3,
              num_classes: int = 10) -> int:  # fmt: skip
    """Σ in·out over the Linear layers, a relational one as ⌊in·out·flops_scale⌋ (BN ignored)."""
    total = in_dim * stem + width * num_classes
    for i in range(layers):
        total += relational_flops(graph, stem if i == 0 else width, width)
    return total


def mlp_baseline_flops(in_dim: int = 784, stem: int = 128, layers: int = 3,
                       num_classes: int = 10) -> int:  # fmt: skip
    """The dense MLP at width = stem: 784·128 + 3·128² + 128·10 = 150,784 at the defaults."""
    return in_dim * stem + layers * stem * stem + stem * num_classes


def match_width(flops: Callable[[int], int], base: int, start: int, rounds: int = 15) -> int:
    """The smallest width at or above the baseline's FLOPs, found as `train_net.py` does:
    `rounds` multiplicative steps, then ±1 steps until the FLOPs cross the baseline (UPPER)."""
    width = start
    stats = flops(width)
    if stats == base:
        return width
    for _ in range(rounds):
        width = int(round(width * round(math.sqrt(base / stats), 2)))
        stats = flops(width)
    direction = 1 if stats < base else -1
    while True:
        width += direction
        stats = flops(width)
        if stats == base:
            return width
        if (1 if stats < base else -1) != direction:
            return width - direction if stats < base else width


class BasicBlock(nn.Module):
    """ResNet basic block with relational 3×3 convs and a relational 1×1 projection shortcut
    (the paper's 'group' transforms: every conv of the block follows the graph)."""

    def __init__(self, c_in: int, c_out: int, stride: int, graph: nx.Graph):
        super().__init__()
        self.conv1 = RelationalConv2d(c_in, c_out, graph, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = RelationalConv2d(c_out, c_out, graph, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(
                RelationalConv2d(c_in, c_out, graph, 1, stride=stride),
                nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.proj is None else self.proj(x)))


class RelationalResNet(nn.Module):
    """A small ResNet for 28-px images: dense 3×3 stem conv (1 → w) + BN + ReLU, three stages
    of `depth` basic blocks at widths (w, 2w, 4w), strides (1, 2, 2) → 28, 14, 7 px, global
    average pool, dense Linear head. The blocks' convs follow the graph."""

    def __init__(self, graph: nx.Graph, width: int = 16, depth: int = 1, in_chans: int = 1,
                 num_classes: int = 10):  # fmt: skip
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
        )  # fmt: skip
        blocks, c = [], width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c, width * mult, stride, graph))
                c = width * mult
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)
        nn.init.kaiming_normal_(self.stem[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


def resnet_flops(width: int, graph: nx.Graph, depth: int = 1, img_size: int = 28,
                 in_chans: int = 1, num_classes: int = 10) -> int:  # fmt: skip
    """`conv_flops` of `RelationalResNet(graph, width, depth)` computed without building it
    (what FLOPs matching calls; a test checks the two agree)."""

    def talk(c_in: int, c_out: int, k: int, size: int) -> int:
        scale = mask_nnz(graph, c_in, c_out) / (c_in * c_out)  # float, as flops_count
        return int(c_out * c_in * k * k * scale * size * size)

    total, c, size = in_chans * width * 9 * img_size * img_size, width, img_size
    for stage, mult in enumerate((1, 2, 4)):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            out_size = (size - 1) // stride + 1
            total += talk(c, width * mult, 3, out_size) + talk(
                width * mult, width * mult, 3, out_size
            )
            if stride != 1 or c != width * mult:
                total += talk(c, width * mult, 1, out_size)
            c, size = width * mult, out_size
    return total + c * num_classes


def conv_flops(model: nn.Module, img_size: int = 28) -> int:
    """Multiply-adds per image as `metrics.flops_count` counts them: every conv's
    weight.numel() · h_out · w_out (a relational one scaled by flops_scale, floored), every
    Linear's in·out; BN, ReLU, pooling ignored. Spatial sizes come from a forward pass."""
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, tuple(o.shape[-2:])))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        model(torch.zeros(1, first.in_channels, img_size, img_size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    total = 0
    for m in model.modules():
        if isinstance(m, RelationalConv2d):
            h, w = sizes[m]
            total += int(m.weight.numel() * m.flops_scale * h * w)
        elif isinstance(m, nn.Conv2d):
            h, w = sizes[m]
            total += m.weight.numel() * h * w
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


MODELS = ("mlp5", "resnet")


def matched_width(model: str, graph: nx.Graph) -> int:
    """The FLOPs-matched relational width of `mlp5` (dense: 128) or `resnet` (dense base
    width 16) on `graph`."""
    if model == "mlp5":
        return match_width(lambda d: mlp_flops(d, graph), mlp_baseline_flops(), 128)
    if model == "resnet":
        base = resnet_flops(16, nx.complete_graph(graph.number_of_nodes()))
        return match_width(lambda w: resnet_flops(w, graph), base, 16)
    raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")


def build_model(model: str, graph: nx.Graph, width: int) -> nn.Module:
    """`mlp5` or `resnet` on `graph` at relational width `width` (`matched_width`)."""
    if model == "mlp5":
        return RelationalMLP(graph, width)
    if model == "resnet":
        return RelationalResNet(graph, width)
    raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
