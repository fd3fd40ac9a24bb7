"""Relational graphs: networks whose layers exchange messages along a graph of channel groups
(You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020;
facebookresearch/graph2nn).

`generate`: WS-flex graphs, their (C, L), the sampling of the (C, L) plane; `layers`: masked
relational Linear / Conv2d; `models`: the relational MLP (`mlp5`) and ResNet with FLOPs
matching; `analysis`: binning, the bin-level sweet spot and the figures. The sweep command is
`visrep.graphs_sweep` (`visrep graphs sweep`).
"""

from visrep.graphs.generate import (
    GraphSpec,
    complete_graph,
    complete_spec,
    measures,
    sample_graphs,
    ws_flex,
)
from visrep.graphs.layers import RelationalConv2d, RelationalLinear, group_mask, group_sizes
from visrep.graphs.models import (
    RelationalMLP,
    RelationalResNet,
    build_model,
    match_width,
    matched_width,
    mlp_baseline_flops,
    mlp_flops,
)

__all__ = [
    "GraphSpec", "RelationalConv2d", "RelationalLinear", "RelationalMLP", "RelationalResNet",
    "build_model", "complete_graph", "complete_spec", "group_mask", "group_sizes",
    "match_width", "matched_width", "measures", "mlp_baseline_flops", "mlp_flops",
    "sample_graphs", "ws_flex",
]  # fmt: skip
