"""GPU training-step throughput of MAE vs the same model with mask tokens in the encoder
(MAE paper Table 1c / 2, "encoder w/ [M]"), side by side in one run.

The CPU version (`throughput.py`) times fp32 steps on 2 threads; this one times what a GPU
user runs: bf16 autocast (the training loop's default on GPU), fused AdamW, eager mode,
timm's scaled-dot-product attention. Models of one size are timed interleaved (A, B, peer,
A, B, peer, ...) with CUDA events around `steps` steps each; we report medians, and the
speed-up is the median of per-round time ratios.

Run (on a GPU machine):  python benchmarks/throughput_gpu.py
Writes benchmarks/results/throughput_gpu.md (and .json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, write_json  # noqa: E402
from throughput import TARGET_SPEEDUP, lightly_bench, visrep_bench  # noqa: E402

from visrep.configs import get_recipe  # noqa: E402


def time_steps(b, steps: int) -> float:
    """Seconds per step over `steps` consecutive steps (CUDA-event timed)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = b.loss_fn(b.model, b.images)
        loss.backward()
        b.opt.step()
        b.opt.zero_grad(set_to_none=True)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def run_size(recipe: str, size: str, batch: int, rounds: int, steps: int, peer: bool) -> list:
    cfg = get_recipe(recipe)
    benches = [
        visrep_bench(cfg, "visrep MAE (75% masked)", batch, False),
        visrep_bench(cfg, "visrep encoder w/ [M]", batch, True),
    ]
    if peer and (lb := lightly_bench(cfg, batch)) is not None:
        benches.append(lb)
    for b in benches:
        b.model.cuda()
        b.images = b.images.cuda()
        b.count_flops()  # FLOPs of one fp32 forward + backward
        b.opt = torch.optim.AdamW(b.model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
        time_steps(b, 3)  # warm-up (cuDNN/cuBLAS heuristics, allocator)
    times: dict[str, list[float]] = {b.name: [] for b in benches}
    for r in range(rounds):
        for b in benches:
            times[b.name].append(time_steps(b, steps))
        print(f"  {size} round {r + 1}/{rounds}: " + ", ".join(
            f"{n}: {batch / t[-1]:.0f} img/s" for n, t in times.items()), flush=True)  # fmt: skip
    base = times["visrep encoder w/ [M]"]
    rows = []
    for b in benches:
        t = times[b.name]
        rows.append({
            "size": size, "model": b.name, "batch": batch,
            "gflop_per_img": b.flops / batch / 1e9,
            "img_per_s": batch / statistics.median(t),
            "speedup_vs_mask_tokens": statistics.median(x / y for x, y in zip(base, t)),
            "flop_ratio_vs_mask_tokens": benches[1].flops / b.flops,
            "img_per_s_all_rounds": [round(batch / x, 1) for x in t],
        })  # fmt: skip
    del benches
    torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/throughput_gpu.md")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU; the CPU benchmark is benchmarks/throughput.py")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = run_size("mae_vit_base_in1k", "ViT-B/16 224, 8x512 dec", args.batch, args.rounds,
                    args.steps, peer=True)  # fmt: skip
    if not args.no_large:
        rows += run_size("mae_vit_large_in1k", "ViT-L/16 224, 8x512 dec", args.batch,
                         args.rounds, args.steps, peer=False)  # fmt: skip
    table = md_table(
        ["size", "model", "batch", "GFLOP/img", "img/s (median)", "speed-up vs w/ [M]",
         "FLOP ratio"],
        [[r["size"], r["model"], r["batch"], f"{r['gflop_per_img']:.1f}", f"{r['img_per_s']:.0f}",
          f"**{r['speedup_vs_mask_tokens']:.2f}x**", f"{r['flop_ratio_vs_mask_tokens']:.2f}x"]
         for r in rows],
    )  # fmt: skip
    vitb = rows[0]["speedup_vs_mask_tokens"]
    verdict = "PASS" if vitb >= TARGET_SPEEDUP else "FAIL"
    report = (
        f"# MAE training-step throughput on GPU ({torch.cuda.get_device_name()})\n\n"
        f"Command: `{command_line()}`\n\nbf16 autocast, fused AdamW, eager, {args.rounds} "
        f"interleaved rounds of {args.steps} steps; medians.\n\n{table}\n\n"
        f"Acceptance at ViT-B/16 (>= {TARGET_SPEEDUP}x): **{verdict}** ({vitb:.2f}x).\n"
    )
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    write_json({"command": command_line(), "env": environment(), "rows": rows},
               out.with_suffix(".json"))  # fmt: skip


if __name__ == "__main__":
    main()
