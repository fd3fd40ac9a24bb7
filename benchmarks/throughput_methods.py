"""Training-step throughput of every Fashion-MNIST recipe (`*_fmnist` in RECIPES), side by
side with a matmul probe in the same process.

One step = what the training loop does per step on one process: forward (the method's
own masking/views/captions), backward, gradient clipping if the recipe sets it, the
recipe's optimizer (AdamW / SGD / LARS / LAMB with its parameter groups) and the method's
`on_step_end` hook (EMA updates). fp32, `--threads` threads, the recipe's model and batch
size. The batch is a real one from the recipe's own data pipeline (`build_train_data`:
augmented Fashion-MNIST, two views, captions), built once before timing and reused, so
the data pipeline is not timed.

The host is shared and noisy (throughput can drop 3x for up to a minute), so methods are
timed interleaved: each round runs the matmul probe, then one step of every method. img/s
is the median over rounds; "% of probe" is the median over rounds of (achieved GFLOP/s ÷
the probe's GFLOP/s in the same round), a ratio that survives a busy host better than
absolute speeds.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward + backward (the
optimizer is not counted). Its formula for `convolution_backward` ignores the groups of
a grouped/depthwise convolution (it counts a 7×7 depthwise backward as 65× its forward
instead of 2×), so this script replaces it: backward = forward FLOPs ×
(number of gradients asked for: input and/or weight), which equals torch's count for
ordinary convolutions.

Run:  .venv/bin/python benchmarks/throughput_methods.py          (5 rounds, ~6 min quiet)
      .venv/bin/python benchmarks/throughput_methods.py --quick  (2 rounds, ~4 min quiet)
Writes benchmarks/results/throughput_methods.md (and .json).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, md_table, uptime, wait_for_quiet, write_json  # noqa: E402
from throughput import MatmulProbe  # noqa: E402

from visrep.config import TrainConfig, replace  # noqa: E402
from visrep.configs import RECIPES, get_recipe  # noqa: E402
from visrep.data.pipeline import build_train_data  # noqa: E402
from visrep.data.resolve import resolve_data  # noqa: E402
from visrep.loop import build_optimizer  # noqa: E402
from visrep.methods import method_name
from visrep.runs import build_model  # noqa: E402

CPU = torch.device("cpu")


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                         _dilation, transposed, _output_padding, _groups, output_mask,
                         out_shape=None, **kwargs) -> int:  # fmt: skip
    """Backward of a (possibly grouped) convolution: each requested gradient (input,
    weight) costs one forward. `conv_flop_count` reads C_in/groups from the weight shape,
    so grouped and depthwise convolutions come out right."""
    fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return fwd * (int(output_mask[0]) + int(output_mask[1]))


FLOP_MAPPING = {torch.ops.aten.convolution_backward: _conv_backward_flops}


def train_step(call, model: nn.Module, opt: torch.optim.Optimizer, batch: dict, clip: float,
               bf16: bool = False) -> None:  # fmt: skip
    """One step as the loop runs it: `call(batch)` (the model, or a compiled wrapper of it)
    under bf16 autocast if asked, backward, clipping, the optimizer, the step hook."""
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with amp:
        loss = call(batch)["loss"]
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    hook = getattr(model, "on_step_end", None)
    if hook is not None:
        hook(0.5)


@dataclass
class MethodBench:
    recipe: str
    cfg: TrainConfig
    model: nn.Module
    batch: dict
    opt: torch.optim.Optimizer
    images: int  # images per step (one per sample, whatever the number of views)
    times: list[float] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    flops: int = 0
    step_no: int = 0

    def _step(self) -> None:
        torch.manual_seed(1000 + self.step_no)  # the loop seeds every step's draws
        self.step_no += 1
        train_step(self.model, self.model, self.opt, self.batch, self.cfg.optim.clip_grad)

    def step(self) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        self._step()
        wall = time.perf_counter() - t0
        self.times.append(wall)
        self.cores.append((time.process_time() - c0) / wall)

    def count_flops(self) -> None:
        torch.manual_seed(0)
        with FlopCounterMode(display=False, custom_mapping=FLOP_MAPPING) as fc:
            self.model(self.batch)["loss"].backward()
        self.opt.zero_grad(set_to_none=True)
        self.flops = fc.get_total_flops()


def describe_backbone(cfg: TrainConfig) -> str:
    b, d = cfg.backbone, cfg.data
    depth = f", {b.depth} blocks" if b.depth else ""
    if b.name.startswith("vit"):
        return f"{b.name}/{b.patch_size}{depth}, {d.img_size} px"
    return f"{b.name} (stem /{b.patch_size}), {d.img_size} px"


def build_bench(name: str, **changes: Any) -> MethodBench:
    """`name`'s model, optimizer and one real batch; `changes` (e.g. `data.dataset`) apply
    before the data settings are resolved, as on `visrep train`'s command line."""
    cfg = resolve_data(replace(get_recipe(name), **changes))
    bs = cfg.optim.batch_size
    cfg = replace(cfg, **{"data.limit": bs, "data.num_workers": 0, "run.device": "cpu"})
    torch.manual_seed(0)
    model = build_model(cfg).to(CPU).train()
    data = build_train_data(cfg.data, bs, seed=0, rank=0, world_size=1, device=CPU)
    batch = next(iter(data.batches(0, 1)))
    opt = build_optimizer(model, cfg.optim, cfg.optim.lr or cfg.optim.blr * bs / 256)
    images = batch["views"][0].shape[0] if "views" in batch else batch["images"].shape[0]
    return MethodBench(name, cfg, model, batch, opt, images)


def measure(benches: list[MethodBench], probe: MatmulProbe, rounds: int, warmup: int) -> None:
    for b in benches:
        b.count_flops()
        for _ in range(warmup):
            b._step()
    for r in range(rounds):
        probe.run()
        for b in benches:
            b.step()
        line = ", ".join(f"{b.recipe} {b.images / b.times[-1]:.0f}" for b in benches)
        print(f"round {r + 1}/{rounds}: probe {probe.gflops[-1]:.0f} GFLOP/s; img/s: {line}",
              flush=True)  # fmt: skip


def summarize(b: MethodBench, probe: MatmulProbe) -> dict:
    t = statistics.median(b.times)
    fractions = [b.flops / tb / 1e9 / pg for tb, pg in zip(b.times, probe.gflops)]
    views = len(b.batch["views"]) if "views" in b.batch else 1
    return {
        "recipe": b.recipe,
        "method": method_name(b.cfg.method),
        "backbone": describe_backbone(b.cfg),
        "batch": b.images,
        "views": views,
        "captions": "texts" in b.batch or "tokens" in b.batch or "text" in b.batch,
        "gflop_per_img": b.flops / b.images / 1e9,
        "img_per_s": b.images / t,
        "img_per_s_all_rounds": [round(b.images / x, 2) for x in b.times],
        "gflop_per_s": b.flops / t / 1e9,
        "probe_fraction": statistics.median(fractions),
        "probe_fraction_all_rounds": [round(f, 3) for f in fractions],
        "cores_median": statistics.median(b.cores),
    }


def render(rows: list[dict], failed: dict[str, str], info: dict) -> str:
    headers = ["method", "recipe", "backbone", "batch", "GFLOP/img (fwd+bwd)", "img/s",
               "GFLOP/s", "% of probe", "cores"]  # fmt: skip
    table = [
        [r["method"], f"`{r['recipe']}`", r["backbone"],
         f"{r['batch']}" + (f" × {r['views']} views" if r["views"] > 1 else "")
         + (" + captions" if r["captions"] else ""),
         f"{r['gflop_per_img']:.3f}", f"{r['img_per_s']:.1f}", f"{r['gflop_per_s']:.1f}",
         f"{100 * r['probe_fraction']:.0f}%", f"{r['cores_median']:.2f}"]
        for r in rows
    ]  # fmt: skip
    m = info["meter"]
    lines = [
        "# Training-step throughput per method (Fashion-MNIST recipes)",
        "",
        f"Forward + backward + the recipe's optimizer step (+ EMA hook), fp32, {info['threads']} "
        f"threads, torch {torch.__version__}, each recipe's model and batch on a real batch of "
        "its own data pipeline (built once; not timed). Methods timed interleaved, one step "
        f"each per round, {info['rounds']} rounds after {info['warmup']} warm-up step(s); img/s "
        "is the median over rounds; % of probe is the median per-round ratio of achieved "
        "GFLOP/s (FlopCounterMode, forward + backward, grouped-conv backward = 2× forward) to "
        "a 2048² fp32 matmul timed in the same round. `cores` = median process CPU time / wall "
        "time of the step (2.00 = both cores were ours). Shared, noisy host: compare ratios.",
        "",
        md_table(headers, table),
        "",
        f"- Matmul probe: median {statistics.median(info['probe']):.0f} GFLOP/s over the rounds "
        f"(min {min(info['probe']):.0f}, max {max(info['probe']):.0f}).",
        f"- Host: {_waited(info['wait'])}; our process used {m['cores_used']:.2f} cores on average over {m['wall_s']:.0f} s; "
        f"load average before {m['load_before']}, after {m['load_after']}.",
        f"- uptime at start: `{info['start']}`",
        f"- uptime at end: `{info['end']}`",
    ]
    for name, err in failed.items():
        lines.append(f"- `{name}` not timed: {err}")
    lines += ["", f"Command: `{command_line()}`", ""]
    return "\n".join(lines)


def _waited(wait: dict) -> str:
    if not wait["last_busy_cores"]:
        return "no wait for a quiet host (--quick or --max-wait-minutes 0)"
    return (f"waited {wait['waited_s']} s for a quiet host (quiet: {wait['quiet']}; busy cores "
            f"in the last samples {wait['last_busy_cores']})")  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 warm-up, no quiet wait")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--only", nargs="*", default=[], help="recipes whose name contains one of these"
    )
    ap.add_argument("--max-wait-minutes", type=float, default=2.0,
                    help="before timing, wait up to this long for a quiet host")  # fmt: skip
    ap.add_argument("--out", default="benchmarks/results/throughput_methods.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.max_wait_minutes = 2, 1, 0.0
    torch.set_num_threads(args.threads)
    names = [n for n in sorted(RECIPES) if n.endswith("_fmnist")]
    if args.only:
        names = [n for n in names if any(s in n for s in args.only)]
    benches, failed = [], {}
    for name in names:
        try:
            benches.append(build_bench(name))
            print(f"built {name}: {describe_backbone(benches[-1].cfg)}", flush=True)
        except Exception as e:  # a recipe that cannot build here is reported, not fatal
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            traceback.print_exc()
    start = uptime()
    wait = wait_for_quiet(args.max_wait_minutes * 60) if args.max_wait_minutes > 0 else {
        "waited_s": 0, "quiet": False, "last_busy_cores": []}  # fmt: skip
    probe = MatmulProbe()
    probe.run()  # warm-up
    probe.gflops = []
    with CpuMeter() as meter:
        measure(benches, probe, args.rounds, args.warmup)
    end = uptime()
    rows = [summarize(b, probe) for b in benches]
    info = {"threads": torch.get_num_threads(), "rounds": args.rounds, "warmup": args.warmup,
            "probe": probe.gflops, "meter": meter.as_dict(), "wait": wait, "start": start,
            "end": end}  # fmt: skip
    report = render(rows, failed, info)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    write_json({"command": command_line(), "env": environment(), **info, "rows": rows,
                "failed": failed}, out.with_suffix(".json"))  # fmt: skip
    del benches
    gc.collect()
    return rows


if __name__ == "__main__":
    main()
