"""Does `run.channels_last` speed up a convolutional training step on this CPU?

One ResNet-18 training step (timm; forward, backward and AdamW, throughput.py's `Bench`) on
a random batch, with the weights in the default NCHW layout and in channels-last (what
`run.channels_last` does in `visrep.loop.train`: the model converted, the input left as the
data path gives it), the two timed interleaved in one process (throughput.py's `measure`:
one step each per round, after 2 warm-up steps each, a matmul probe per round); the figure
is the median of the per-round ratios NCHW time / channels-last time (> 1: channels-last is
faster).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/channels_last.py

Writes benchmarks/results/channels_last.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import timm
import torch
from host import command_line, environment, md_table, uptime, write_json
from throughput import Bench, MatmulProbe, measure

RESULTS = Path(__file__).resolve().parent / "results"


def bench(channels_last: bool, batch: int, size: int) -> Bench:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Bench("channels_last" if channels_last else "nchw", model,
                 lambda m, x: m(x).square().mean(), torch.randn(batch, 3, size, size), 0)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    probe, load = MatmulProbe(), uptime()
    benches = [bench(False, args.batch, args.size), bench(True, args.batch, args.size)]
    measure(benches, probe, args.rounds, warmup=2)
    nchw, cl = benches
    ratios = [a / b for a, b in zip(nchw.times, cl.times)]
    result = {
        "command": command_line(), "batch": args.batch, "size": args.size,
        "threads": args.threads, "optimizer": "AdamW", "rounds": [
            {b.name: b.times[r] for b in benches} for r in range(args.rounds)],
        "cores": {b.name: b.cores for b in benches}, "ratios": ratios,
        "median_ratio": statistics.median(ratios), "uptime_before": load,
        "uptime_after": uptime(), "matmul_gflops": probe.gflops,
        "environment": environment(),
    }  # fmt: skip
    write_json(result, RESULTS / "channels_last.json")
    rows = [[b.name, f"{statistics.median(b.times):.3f}", f"{statistics.median(b.cores):.2f}"]
            for b in benches]  # fmt: skip
    md = "\n".join([
        "# ResNet-18 training step: NCHW vs channels-last (CPU)", "",
        f"Command: `{command_line()}`", "",
        md_table(["layout", "median step (s)", "median cores used"], rows), "",
        f"Per-round NCHW / channels-last: {', '.join(f'{x:.2f}' for x in ratios)}; median "
        f"**{result['median_ratio']:.2f}** (> 1: channels-last faster). Batch {args.batch} at "
        f"{args.size} px, AdamW, {args.threads} thread(s), {args.rounds} interleaved rounds "
        "after 2 warm-up steps each.", "",
        f"Host: {load}; matmul probe per round {min(probe.gflops):.0f}–"
        f"{max(probe.gflops):.0f} GFLOP/s.", "",
    ])  # fmt: skip
    (RESULTS / "channels_last.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
