"""Does `run.channels_last` speed up a convolutional training step on this CPU?

One ResNet-18 training step (timm, SGD with momentum, forward + backward + update) on a
random batch, in the default NCHW layout and in channels-last, the two timed interleaved in
one process (one step each per round, after 2 warm-up rounds); the figure is the median of
the per-round ratios NCHW time / channels-last time (> 1: channels-last is faster).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/channels_last.py

Writes benchmarks/results/channels_last.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import timm
import torch
from host import command_line, environment, md_table, uptime, write_json
from throughput import MatmulProbe

RESULTS = Path(__file__).resolve().parent / "results"


def build(channels_last: bool, batch: int, size: int):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=0)
    x = torch.randn(batch, 3, size, size)
    if channels_last:  # what run.channels_last does to the model, and the input layout it gets
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, x, opt


def step(model, x, opt) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    probe = MatmulProbe()
    probe.run()
    before, load = probe.gflops[-1], uptime()
    variants = {"nchw": build(False, args.batch, args.size),
                "channels_last": build(True, args.batch, args.size)}  # fmt: skip
    for _ in range(2):
        for v in variants.values():
            step(*v)
    rounds = []
    for _ in range(args.rounds):
        rounds.append({name: step(*v) for name, v in variants.items()})
    ratios = [r["nchw"] / r["channels_last"] for r in rounds]
    probe.run()
    result = {
        "command": command_line(), "batch": args.batch, "size": args.size,
        "threads": args.threads, "rounds": rounds, "ratios": ratios,
        "median_ratio": statistics.median(ratios), "uptime_before": load,
        "uptime_after": uptime(), "matmul_gflops": [before, probe.gflops[-1]],
        "environment": environment(),
    }  # fmt: skip
    write_json(result, RESULTS / "channels_last.json")
    rows = [[name, f"{statistics.median(r[name] for r in rounds):.3f}"] for name in variants]
    md = "\n".join([
        "# ResNet-18 training step: NCHW vs channels-last (CPU)", "",
        f"Command: `{command_line()}`", "",
        md_table(["layout", "median step (s)"], rows), "",
        f"Per-round NCHW / channels-last: {', '.join(f'{x:.2f}' for x in ratios)}; median "
        f"**{result['median_ratio']:.2f}** (> 1: channels-last faster). Batch {args.batch} at "
        f"{args.size} px, {args.threads} thread(s), {args.rounds} interleaved rounds after 2 "
        f"warm-up rounds.", "",
        f"Host: {load}; matmul probe {before:.0f} / {probe.gflops[-1]:.0f} GFLOP/s before / "
        "after.", "",
    ])  # fmt: skip
    (RESULTS / "channels_last.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
