"""Training-step throughput of visrep's MAE vs the same model whose encoder sees every
token (masked ones as a mask token: MAE paper Table 1c, "encoder w/ [M]").

One step = forward + backward + AdamW step, fp32, 2 threads, synthetic normalized
images (the data pipeline is not timed). Two sizes:
  * paper: ViT-B/16, 224 px, 3 channels, 8-block × 512 decoder (recipe mae_vit_base_in1k),
    plus lightly's MAE of the same size as a peer reference;
  * demo:  ViT-Tiny/4, 28 px, 1 channel, 2-block × 128 decoder, batch 128 (mae_fmnist),
    plus lightly's MAE of the same size (benchmarks/peer_lightly_mae.py) for reference;
  * optional (--large): ViT-L/16 224 px with the 8 × 512 decoder, the paper's Table 1c/2 model.

The host is shared and noisy, so the models of one size are timed interleaved
(probe, A, B, probe, A, B, ...), one step each per round, and we report medians; the
speed-up is the median of the per-round ratios (A and B measured back to back). FLOPs of
one forward+backward are counted with `torch.utils.flop_counter.FlopCounterMode` (the
optimizer step is not counted); "% of probe" compares achieved GFLOP/s with a 2048² fp32
matmul timed in the same rounds.

Run:   .venv/bin/python benchmarks/throughput.py            (about 4 minutes on a quiet host)
Writes benchmarks/results/throughput.md (and .json).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import (  # noqa: E402
    CpuMeter,
    command_line,
    environment,
    md_table,
    uptime,
    wait_for_quiet,
    write_json,
)

from visrep.config import TrainConfig, replace  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.loop import param_groups  # noqa: E402
from visrep.parts.masking import num_keep  # noqa: E402
from visrep.runs import build_model  # noqa: E402

TARGET_SPEEDUP = 2.5  # acceptance: MAE >= 2.5x faster per image than "encoder w/ [M]" at ViT-B/16


@dataclass
class Bench:
    name: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    images: torch.Tensor
    encoder_tokens: int
    opt: torch.optim.Optimizer = field(init=False)
    times: list[float] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)  # process CPU time / wall time per step
    flops: int = 0

    def __post_init__(self) -> None:
        self.model.train()
        self.opt = torch.optim.AdamW(param_groups(self.model, 0.05), lr=1e-4, betas=(0.9, 0.95))

    @property
    def batch(self) -> int:
        return self.images.shape[0]

    def step(self) -> tuple[float, float]:
        """One training step: (wall seconds, cores our process used meanwhile)."""
        t0, c0 = time.perf_counter(), time.process_time()
        loss = self.loss_fn(self.model, self.images)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        wall = time.perf_counter() - t0
        return wall, (time.process_time() - c0) / wall

    def count_flops(self) -> None:
        with FlopCounterMode(display=False) as fc:
            self.loss_fn(self.model, self.images).backward()
        self.opt.zero_grad(set_to_none=True)
        self.flops = fc.get_total_flops()


def visrep_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model({"images": x})["loss"]


def lightly_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.loss(x)


def visrep_bench(cfg: TrainConfig, name: str, batch: int, mask_tokens: bool) -> Bench:
    cfg = replace(cfg, **{"method.encoder_mask_tokens": mask_tokens})
    torch.manual_seed(0)
    model = build_model(cfg)
    d = cfg.data
    x = torch.randn(batch, d.channels, d.img_size, d.img_size)
    n = model.backbone.num_patches
    tokens = 1 + (n if mask_tokens else num_keep(n, cfg.method.mask_ratio))
    return Bench(name, model, visrep_loss, x, tokens)


def lightly_bench(cfg: TrainConfig, batch: int) -> Bench | None:
    try:
        from peer_lightly_mae import LightlyMAE
    except ImportError as e:  # lightly is an optional (bench) dependency
        print(f"skipping lightly ({e})")
        return None
    torch.manual_seed(0)
    model = LightlyMAE(cfg)
    d = cfg.data
    x = torch.randn(batch, d.channels, d.img_size, d.img_size)
    n = model.backbone.vit.patch_embed.num_patches
    return Bench("lightly MAE (75% masked)", model, lightly_loss, x, 1 + num_keep(n, 0.75))


class MatmulProbe:
    """fp32 n×n matmul; GFLOP/s of the median of `reps` products."""

    def __init__(self, n: int = 2048, reps: int = 3) -> None:
        self.a, self.b, self.n, self.reps = torch.randn(n, n), torch.randn(n, n), n, reps
        self.gflops: list[float] = []

    def run(self) -> None:
        ts = []
        for _ in range(self.reps):
            t0 = time.perf_counter()
            torch.mm(self.a, self.b)
            ts.append(time.perf_counter() - t0)
        self.gflops.append(2 * self.n**3 / statistics.median(ts) / 1e9)


def measure(benches: list[Bench], probe: MatmulProbe, rounds: int, warmup: int) -> None:
    for b in benches:
        b.count_flops()
        for _ in range(warmup):
            b.step()
    for r in range(rounds):
        probe.run()
        for b in benches:
            wall, cores = b.step()
            b.times.append(wall)
            b.cores.append(cores)
        line = ", ".join(
            f"{b.name}: {b.batch / b.times[-1]:.1f} img/s ({b.cores[-1]:.2f} cores)"
            for b in benches
        )
        print(f"  round {r + 1}/{rounds}: probe {probe.gflops[-1]:.0f} GFLOP/s; {line}", flush=True)


def clean_rounds(benches: list[Bench], min_cores: float) -> list[int]:
    """Rounds in which every step of every model had our 2 threads running (no other
    process took a core): the noise filter. All rounds if fewer than 3 are clean."""
    n = len(benches[0].times)
    clean = [r for r in range(n) if all(b.cores[r] >= min_cores for b in benches)]
    return clean if len(clean) >= 3 else list(range(n))


def summarize(
    size: str, benches: list[Bench], probe: MatmulProbe, baseline: Bench, min_cores: float
) -> list[dict]:
    use = clean_rounds(benches, min_cores)
    peak = statistics.median(probe.gflops[r] for r in use)
    rows = []
    for b in benches:
        times = [b.times[r] for r in use]
        t = statistics.median(times)
        gflops = b.flops / t / 1e9
        ratios = [baseline.times[r] / b.times[r] for r in use]
        rows.append(
            {
                "size": size,
                "model": b.name,
                "batch": b.batch,
                "encoder_tokens": b.encoder_tokens,
                "gflop_per_img": b.flops / b.batch / 1e9,
                "img_per_s": b.batch / t,
                "img_per_s_all_rounds": [round(b.batch / x, 2) for x in b.times],
                "cores_all_rounds": [round(c, 2) for c in b.cores],
                "rounds_used": use,
                "rounds_total": len(b.times),
                "gflop_per_s": gflops,
                "probe_fraction": gflops / peak,
                "speedup_vs_mask_tokens": statistics.median(ratios),
                "speedup_range": [min(ratios), max(ratios)],
                "speedup_all_rounds_median": statistics.median(
                    tb / ta for ta, tb in zip(b.times, baseline.times)
                ),
                "flop_ratio_vs_mask_tokens": baseline.flops / b.flops,
                "probe_gflop_per_s_median": peak,
            }
        )
    return rows


def run_size(size: str, benches: list[Bench], args: argparse.Namespace, rounds: int):
    print(f"{size}: {', '.join(b.name for b in benches)}", flush=True)
    wait = wait_for_quiet(args.max_wait_minutes * 60)
    probe = MatmulProbe()
    probe.run()  # warm-up
    probe.gflops = []
    with CpuMeter() as meter:
        measure(benches, probe, rounds, args.warmup)
    baseline = next(b for b in benches if "w/ [M]" in b.name)
    rows = summarize(size, benches, probe, baseline, args.min_cores)
    for r in rows:
        r["meter"] = meter.as_dict()
        r["host_wait"] = wait
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paper-batch", type=int, default=8)
    ap.add_argument("--paper-rounds", type=int, default=7)
    ap.add_argument("--demo-batch", type=int, default=128)
    ap.add_argument("--demo-rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--min-cores",
        type=float,
        default=1.8,
        help="a round counts only if every step got this many cores (noise filter)",
    )
    ap.add_argument("--large", action="store_true", help="also ViT-L/16 (slow, ~10 GB RAM)")
    ap.add_argument("--large-batch", type=int, default=4)
    ap.add_argument("--large-rounds", type=int, default=3)
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--no-peer-paper", action="store_true", help="no lightly MAE at ViT-B/16")
    ap.add_argument(
        "--max-wait-minutes",
        type=float,
        default=5.0,
        help="before each size, wait up to this long for a quiet host",
    )
    ap.add_argument("--out", default="benchmarks/results/throughput.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = uptime()
    print(start, flush=True)
    rows: list[dict] = []
    m = "MAE (75% masked, encoder on kept tokens)"
    mm = "encoder w/ [M] (all tokens)"
    if not args.skip_paper:
        cfg = get_recipe("mae_vit_base_in1k")
        benches = [visrep_bench(cfg, f"visrep {m}", args.paper_batch, False),
                   visrep_bench(cfg, f"visrep {mm}", args.paper_batch, True)]  # fmt: skip
        peer = None if args.no_peer_paper else lightly_bench(cfg, args.paper_batch)
        benches += [peer] if peer else []
        rows += run_size("ViT-B/16 224px, 8x512 dec", benches, args, args.paper_rounds)
        del benches, peer
        gc.collect()
    if not args.skip_demo:
        cfg = get_recipe("mae_fmnist")
        benches = [visrep_bench(cfg, f"visrep {m}", args.demo_batch, False),
                   visrep_bench(cfg, f"visrep {mm}", args.demo_batch, True)]  # fmt: skip
        peer = lightly_bench(cfg, args.demo_batch)
        benches += [peer] if peer else []
        rows += run_size("ViT-Tiny/4 28px 1ch, 2x128 dec", benches, args, args.demo_rounds)
        del benches, peer
        gc.collect()
    if args.large:
        cfg = get_recipe("mae_vit_large_in1k")
        benches = [visrep_bench(cfg, f"visrep {m}", args.large_batch, False),
                   visrep_bench(cfg, f"visrep {mm}", args.large_batch, True)]  # fmt: skip
        rows += run_size("ViT-L/16 224px, 8x512 dec", benches, args, args.large_rounds)
        del benches
        gc.collect()
    end = uptime()
    report = render(rows, start, end, args.min_cores)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    write_json({"command": command_line(), "env": environment(), "uptime_start": start,
                "uptime_end": end, "rows": rows}, out.with_suffix(".json"))  # fmt: skip
    return rows


def render(rows: list[dict], start: str, end: str, min_cores: float) -> str:
    headers = ["size", "model", "batch", "enc. tokens", "GFLOP/img (fwd+bwd)", "img/s (median)",
               "GFLOP/s", "% of matmul probe", "speed-up vs w/ [M] (min-max)", "FLOP ratio"]  # fmt: skip
    table = []
    for r in rows:
        lo, hi = r["speedup_range"]
        table.append([
            r["size"], r["model"], r["batch"], r["encoder_tokens"], f"{r['gflop_per_img']:.2f}",
            f"{r['img_per_s']:.1f}", f"{r['gflop_per_s']:.0f}", f"{100 * r['probe_fraction']:.0f}%",
            f"**{r['speedup_vs_mask_tokens']:.2f}x** ({lo:.2f}-{hi:.2f})",
            f"{r['flop_ratio_vs_mask_tokens']:.2f}x",
        ])  # fmt: skip
    sizes = []
    for r in rows:
        if r["size"] not in [s for s, _ in sizes]:
            sizes.append((r["size"], r))
    notes = []
    for size, r in sizes:
        meter = r["meter"]
        notes.append(
            f"- {size}: {len(r['rounds_used'])} of {r['rounds_total']} rounds used (a round "
            "counts when every step in it had both cores: process CPU time / wall >= "
            f"{min_cores}; all rounds if fewer than 3 qualify); median over all rounds "
            f"{r['speedup_all_rounds_median']:.2f}x. Matmul probe median "
            f"{r['probe_gflop_per_s_median']:.0f} GFLOP/s. Our process used "
            f"{meter['cores_used']:.2f} cores on average over {meter['wall_s']:.0f} s; load avg "
            f"before {meter['load_before']}, after {meter['load_after']}."
        )
    vitb = [
        r for r in rows if r["size"].startswith("ViT-B") and r["model"].startswith("visrep MAE")
    ]
    verdict = ""
    if vitb:
        s = vitb[0]["speedup_vs_mask_tokens"]
        ok = "PASS" if s >= TARGET_SPEEDUP else "FAIL"
        verdict = (
            f"\nAcceptance (MAE >= {TARGET_SPEEDUP}x faster per training image than encoder w/ [M] "
            f"at ViT-B/16 224): **{ok}** ({s:.2f}x measured; the FLOP ratio "
            f"{vitb[0]['flop_ratio_vs_mask_tokens']:.2f}x is what equal efficiency would give).\n"
        )
    return "\n".join([
        "# Training-step throughput: MAE vs encoder with mask tokens",
        "",
        "Forward + backward + AdamW step, fp32, synthetic inputs (data pipeline not timed), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}. Models of one size are "
        "timed interleaved one step at a time; img/s is the median over clean rounds; the "
        "speed-up is the median of per-round paired ratios (min-max in brackets). FLOPs: FlopCounterMode on one "
        "forward+backward. Compare ratios, not absolute times (shared, noisy 2-core host).",
        "",
        md_table(headers, table),
        verdict,
        *notes,
        f"- uptime at start: `{start}`",
        f"- uptime at end: `{end}`",
        "",
        f"Command: `{command_line()}`",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
