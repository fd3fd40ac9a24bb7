"""Masked dense matmul vs block form for a relational Linear layer (visrep.graphs.layers).

A relational layer on an n-node graph can run as one dense matmul with the weight multiplied
by the channel mask (`RelationalLinear`), or in block form: per out group one matmul over the
gathered channels of its neighbours (`BlockRelationalLinear`, which does only the FLOPs the
graph asks for). Timed here: forward + backward of one layer, batch 128, fp32, one thread,
the two forms interleaved, median over rounds; n = 16, the widths and densities of the
relational MLP sweep (k/n 0.125 .. complete).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/graphs_layer_speed.py
Writes benchmarks/results/graphs_layer_speed.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from visrep.graphs.generate import complete_graph, ws_flex
from visrep.graphs.layers import BlockRelationalLinear, RelationalLinear

OUT = Path(__file__).resolve().parent / "results"


def step_ms(layer: torch.nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    layer(x).sum().backward()
    return 1000 * (time.perf_counter() - t)


def main(rounds: int = 30) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for width in (128, 256, 512, 1024):
        for k in (2.0, 4.0, 8.0, 16.0):
            g = complete_graph(16) if k == 16 else ws_flex(16, k, 0.0, 0)
            masked = RelationalLinear(width, width, g)
            block = BlockRelationalLinear(masked, g)
            x = torch.randn(128, width)
            times = {"masked": [], "block": []}
            for _ in range(3):
                step_ms(masked, x), step_ms(block, x)  # warm-up
            for _ in range(rounds):
                times["masked"].append(step_ms(masked, x))
                times["block"].append(step_ms(block, x))
            med = {f: statistics.median(v) for f, v in times.items()}
            rows.append({"width": width, "k": k, "density": masked.flops_scale,
                         "masked_ms": med["masked"], "block_ms": med["block"],
                         "block_over_masked": med["block"] / med["masked"]})  # fmt: skip
            print(rows[-1], flush=True)
    (OUT / "graphs_layer_speed.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Relational Linear: masked dense vs block form (forward + backward, batch 128, "
             f"1 thread, median of {rounds})", "",
             "| width | k (n = 16) | mask density | masked dense ms | block form ms | block / masked |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['width']} | {r['k']:.0f} | {r['density']:.3f} | {r['masked_ms']:.3f} | "
                     f"{r['block_ms']:.3f} | {r['block_over_masked']:.2f} |")  # fmt: skip
    (OUT / "graphs_layer_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
