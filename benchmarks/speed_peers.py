"""Training-step speed of visrep (eager, `run.compile=true`, `run.precision=bf16`) beside
lightly 1.6.0's implementation of the same method on the same model, timed interleaved.

Per method (MAE, SimSiam, MoCo v3, SimCLR; the `*_fmnist` recipes and, with `--own`, the
64-px colour-folder recipes) one real batch from the recipe's own data pipeline is built
once and every variant steps on it: forward (the method's masking / views and loss),
backward, gradient clipping if the recipe sets it, the recipe's optimizer (built by
`visrep.loop.build_optimizer` for every variant, so optimizer cost is equal), and the
step hook (MoCo v3's momentum update). Variants:

* `visrep eager`: the method as `visrep train` runs it (fp32);
* `visrep compiled`: the same through `visrep.device.CompiledOrEager` (`run.compile=true`,
  inductor's C++ backend on CPU);
* `visrep bf16`: eager under `torch.autocast("cpu", torch.bfloat16)` (`run.precision=bf16`);
* `visrep compiled bf16`: both (`run.compile=true run.precision=bf16`);
* `lightly`: the method from lightly's parts as lightly's examples write it (its heads,
  losses and momentum utilities; MAE = `MaskedVisionTransformerTIMM` + `MAEDecoderTIMM`,
  `benchmarks/peer_lightly_mae.py`) around the same backbone (a copy of visrep's trunk:
  "the same model"), fp32;
* `lightly bf16`: the lightly step under the same autocast, to show what precision alone
  buys either library.

lightly has no MoCo v3 example or loss; its MoCo v3 peer uses lightly's `MoCoProjectionHead`
(2 layers, BN), `BYOLPredictionHead` (MoCo v3's ResNet predictor: hidden BN, none at the
output), `deactivate_requires_grad` and `update_momentum`, with the loss 2τ·CE(q·k/τ) written in
torch (`moco/builder.py` `contrastive_loss`).

Timing: each round runs a 2048² fp32 matmul probe, then one step of every variant of every
method; img/s is the median over rounds; the ratio columns are medians of per-round paired
ratios (variant ÷ lightly in the same round), which survive a noisy host better than
absolute speeds.

Run:  .venv/bin/python benchmarks/speed_peers.py            (5 rounds, ~15 min quiet)
      .venv/bin/python benchmarks/speed_peers.py --quick    (2 rounds, no quiet wait)
Needs `pip install -e '.[bench]'` (lightly 1.6.0). Writes benchmarks/results/speed_peers.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, command_line, environment, md_table, uptime, wait_for_quiet, write_json  # noqa: E402
from peer_lightly_mae import LightlyMAE  # noqa: E402
from throughput import MatmulProbe  # noqa: E402
from throughput_methods import build_bench, describe_backbone, train_step  # noqa: E402

from visrep.device import CompiledOrEager  # noqa: E402
from visrep.loop import build_optimizer  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import (
        BYOLPredictionHead,
        MoCoProjectionHead,
        SimCLRProjectionHead,
        SimSiamPredictionHead,
        SimSiamProjectionHead,
    )
    from lightly.models.utils import deactivate_requires_grad, update_momentum

FMNIST = ["mae_fmnist", "simsiam_fmnist", "mocov3_fmnist", "simclr_fmnist"]
OWN = ["mae_own", "simclr_resnet18_own"]


class LightlyMAEStep(nn.Module):
    def __init__(self, cfg: Any, _backbone: nn.Module) -> None:
        super().__init__()
        self.mae = LightlyMAE(cfg)  # lightly wraps its own timm ViT of the same size

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return {"loss": self.mae.loss(batch["images"])}


class LightlySimSiam(nn.Module):
    """lightly `examples/pytorch/simsiam.py`."""

    def __init__(self, cfg: Any, backbone: nn.Module) -> None:
        super().__init__()
        m, d = cfg.method, backbone.feature_dim
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(d, m.proj_dim, m.proj_dim)
        self.prediction_head = SimSiamPredictionHead(m.proj_dim, m.pred_dim, m.proj_dim)
        self.criterion = NegativeCosineSimilarity()

    def _zp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projection_head(self.backbone(x).flatten(start_dim=1))
        return z.detach(), self.prediction_head(z)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x0, x1 = batch["views"][:2]
        z0, p0 = self._zp(x0)
        z1, p1 = self._zp(x1)
        return {"loss": 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))}


class LightlySimCLR(nn.Module):
    """lightly `examples/pytorch/simclr.py` (3-layer head as visrep's SLIP-style recipe)."""

    def __init__(self, cfg: Any, backbone: nn.Module) -> None:
        super().__init__()
        m, d = cfg.method, backbone.feature_dim
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(d, m.mlp_dim, m.dim, num_layers=3)
        self.criterion = NTXentLoss(temperature=m.tau)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x0, x1 = batch["views"][:2]
        z0 = self.projection_head(self.backbone(x0).flatten(start_dim=1))
        z1 = self.projection_head(self.backbone(x1).flatten(start_dim=1))
        return {"loss": self.criterion(z0, z1)}


class LightlyMoCoV3(nn.Module):
    """MoCo v3 (ResNet variant) from lightly's parts: a 2-layer BN projector and a 2-layer
    predictor, momentum copies by `deactivate_requires_grad`, `update_momentum` per step."""

    def __init__(self, cfg: Any, backbone: nn.Module) -> None:
        super().__init__()
        m, d = cfg.method, backbone.feature_dim
        self.tau, self.m = m.tau, m.m0
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(
            d, m.mlp_dim, m.dim, num_layers=2, batch_norm=True
        )
        self.prediction_head = BYOLPredictionHead(m.dim, m.mlp_dim, m.dim)
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def _loss(self, q: Tensor, k: Tensor) -> Tensor:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.T / self.tau
        return 2 * self.tau * F.cross_entropy(logits, torch.arange(len(q)))

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x0, x1 = batch["views"][:2]
        q0 = self.prediction_head(self.projection_head(self.backbone(x0).flatten(start_dim=1)))
        q1 = self.prediction_head(self.projection_head(self.backbone(x1).flatten(start_dim=1)))
        with torch.no_grad():
            k0 = self.projection_head_momentum(self.backbone_momentum(x0).flatten(start_dim=1))
            k1 = self.projection_head_momentum(self.backbone_momentum(x1).flatten(start_dim=1))
        return {"loss": self._loss(q0, k1) + self._loss(q1, k0)}

    def on_step_end(self, _progress: float) -> None:
        update_momentum(self.backbone, self.backbone_momentum, m=self.m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=self.m)


PEERS: dict[str, Callable[[Any, nn.Module], nn.Module]] = {
    "mae": LightlyMAEStep, "simsiam": LightlySimSiam, "mocov3": LightlyMoCoV3,
    "simclr": LightlySimCLR,
}  # fmt: skip


@dataclass
class Variant:
    name: str
    model: nn.Module
    call: Callable[[dict], dict]
    opt: torch.optim.Optimizer
    bf16: bool = False
    times: list[float] = field(default_factory=list)

    def step(self, batch: dict, clip: float, seed: int) -> float:
        torch.manual_seed(seed)  # both libraries draw their masks from the same state
        t0 = time.perf_counter()
        train_step(self.call, self.model, self.opt, batch, clip, self.bf16)
        return time.perf_counter() - t0


@dataclass
class MethodRow:
    recipe: str
    family: str
    cfg: Any
    batch: dict
    images: int
    variants: list[Variant]
    compile_fallback: str = ""
    steps: int = 0

    def round(self) -> None:
        for v in self.variants:
            v.times.append(v.step(self.batch, self.cfg.optim.clip_grad, 1000 + self.steps))
        self.steps += 1


def build_row(recipe: str, **changes: Any) -> MethodRow:
    b = build_bench(recipe, **changes)  # visrep's model, optimizer and one real batch
    family = type(b.model).__name__.lower()
    cfg, lr = b.cfg, b.opt.defaults["lr"]

    def opt_for(model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(model, cfg.optim, lr)

    compiled_model = copy.deepcopy(b.model)
    compiled = CompiledOrEager(compiled_model)
    bf16_model = copy.deepcopy(b.model)
    both_model = copy.deepcopy(b.model)
    both = CompiledOrEager(both_model)
    torch.manual_seed(0)
    peer = PEERS[family](cfg, copy.deepcopy(b.model.backbone))
    peer_bf16 = copy.deepcopy(peer)
    variants = [
        Variant("visrep eager", b.model, b.model, b.opt),
        Variant("visrep compiled", compiled_model, compiled, opt_for(compiled_model)),
        Variant("visrep bf16", bf16_model, bf16_model, opt_for(bf16_model), bf16=True),
        Variant("visrep compiled bf16", both_model, both, opt_for(both_model), bf16=True),
        Variant("lightly", peer, peer, opt_for(peer)),
        Variant("lightly bf16", peer_bf16, peer_bf16, opt_for(peer_bf16), bf16=True),
    ]
    row = MethodRow(recipe, family, cfg, b.batch, b.images, variants)
    row.compiled = [compiled, both]  # type: ignore[attr-defined]
    return row


def warm_up(row: MethodRow, steps: int) -> None:
    for _ in range(steps):  # the compiled variant compiles here (tens of seconds)
        t0 = time.perf_counter()
        row.round()
        print(f"warm-up {row.recipe}: {time.perf_counter() - t0:.1f} s", flush=True)
    row.compile_fallback = "; ".join(c.fallback_reason for c in row.compiled if c.fallback_reason)  # type: ignore[attr-defined]
    for v in row.variants:
        v.times.clear()


def summarize(row: MethodRow) -> dict:
    peer = next(v for v in row.variants if v.name == "lightly")
    out = {"recipe": row.recipe, "method": row.family, "backbone": describe_backbone(row.cfg),
           "batch": row.images, "views": len(row.batch.get("views", [0])),
           "compile_fallback": row.compile_fallback, "variants": {}}  # fmt: skip
    for v in row.variants:
        ratios = [p / t for t, p in zip(v.times, peer.times)]  # variant speed ÷ lightly's
        out["variants"][v.name] = {
            "img_per_s": row.images / statistics.median(v.times),
            "img_per_s_all_rounds": [round(row.images / t, 1) for t in v.times],
            "vs_lightly": statistics.median(ratios),
            "vs_lightly_all_rounds": [round(r, 3) for r in ratios],
        }
    return out


def render(rows: list[dict], info: dict) -> str:
    names = list(rows[0]["variants"])
    headers = ["method", "recipe", "backbone", "batch"] + [f"{n} img/s" for n in names] + [
        f"{n} ÷ lightly" for n in names if n != "lightly"]  # fmt: skip
    table = []
    for r in rows:
        v = r["variants"]
        batch = f"{r['batch']}" + (f" × {r['views']} views" if r["views"] > 1 else "")
        table.append([r["method"], f"`{r['recipe']}`", r["backbone"], batch]
                     + [f"{v[n]['img_per_s']:.1f}" for n in names]
                     + [f"{v[n]['vs_lightly']:.2f}×" for n in names if n != "lightly"])  # fmt: skip
    m = info["meter"]
    lines = [
        "# Training-step speed: visrep eager / compiled / bf16 vs lightly 1.6.0 on the same model",
        "",
        f"One training step (forward, backward, the recipe's optimizer, the momentum hook) on one "
        f"real batch of the recipe's data pipeline, {info['threads']} threads, torch "
        f"{torch.__version__}, CPU ({info['cpu']}). All variants of all methods timed interleaved,"
        f" one step each per round, {info['rounds']} rounds after {info['warmup']} warm-up "
        "round(s) (compilation happens there); img/s is the median over rounds; `÷ lightly` is the "
        "median per-round ratio of the variant's speed to lightly's fp32 step in the same round.",
        "",
        md_table(headers, table),
        "",
        f"- Matmul probe (2048² fp32): median {statistics.median(info['probe']):.0f} GFLOP/s over "
        f"the rounds (min {min(info['probe']):.0f}, max {max(info['probe']):.0f}).",
        f"- Host: waited {info['wait']['waited_s']} s for a quiet host (quiet: "
        f"{info['wait']['quiet']}); our process used {m['cores_used']:.2f} cores on average over "
        f"{m['wall_s']:.0f} s; load average before {m['load_before']}, after {m['load_after']}.",
        f"- uptime at start: `{info['start']}`; at end: `{info['end']}`",
    ]
    for r in rows:
        if r["compile_fallback"]:
            lines.append(
                f"- `{r['recipe']}`: torch.compile fell back to eager: {r['compile_fallback']}"
            )
    lines += ["", f"Command: `{command_line()}`", ""]
    return "\n".join(lines)


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
                return line.split(":", 1)[1].strip() + (", bf16 instructions" if bf16 else "")
    return "unknown"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, no quiet wait")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--own", action="store_true", help="also the 64-px colour-folder recipes "
                    "(data.dataset=--folder)")  # fmt: skip
    ap.add_argument("--folder", default="/tmp/emoji_folder/train")
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--max-wait-minutes", type=float, default=2.0)
    ap.add_argument("--out", default="benchmarks/results/speed_peers.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.max_wait_minutes = 2, 0.0
    torch.set_num_threads(args.threads)
    recipes = FMNIST + (OWN if args.own else [])
    if args.only:
        recipes = [r for r in recipes if any(s in r for s in args.only)]
    rows = []
    for r in recipes:
        rows.append(build_row(r, **({"data.dataset": args.folder} if r in OWN else {})))
        warm_up(rows[-1], args.warmup)
    start = uptime()
    wait = wait_for_quiet(args.max_wait_minutes * 60) if args.max_wait_minutes > 0 else {
        "waited_s": 0, "quiet": False, "last_busy_cores": []}  # fmt: skip
    probe = MatmulProbe()
    with CpuMeter() as meter:
        for i in range(args.rounds):
            probe.run()
            for row in rows:
                row.round()
            print(f"round {i + 1}/{args.rounds}: probe {probe.gflops[-1]:.0f} GFLOP/s; "
                  + "; ".join(f"{row.recipe} " + " ".join(
                      f"{row.images / v.times[-1]:.0f}" for v in row.variants) for row in rows),
                  flush=True)  # fmt: skip
    out_rows = [summarize(row) for row in rows]
    info = {"threads": torch.get_num_threads(), "rounds": args.rounds, "warmup": args.warmup,
            "probe": probe.gflops, "meter": meter.as_dict(), "wait": wait, "start": start,
            "end": uptime(), "cpu": cpu_name()}  # fmt: skip
    report = render(out_rows, info)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    write_json({"command": command_line(), "env": environment(), **info, "rows": out_rows},
               out.with_suffix(".json"))  # fmt: skip
    return out_rows


if __name__ == "__main__":
    main()
