"""Every video method side by side on Moving Fashion-MNIST, and the ρ study's claim.

Each method trains the same encoder (video ViT-Tiny, 2×16×16 tubelets, 6 blocks, 8 × 64 × 64
clips at τ = 2: 64 tokens) for the same 60 steps of 32 videos (1,920 videos; the ρ methods
see 2 clips per video whatever ρ, so ρ = 1 and ρ = 2 are compared at an equal number of seen
clips), then the run's own final evaluation: the video k-NN (2 temporal views,
feature_mean, k = 20, T = 0.07) on 400 train / 240 test videos for the class (appearance)
and direction (motion) labels, beside the same encoder at its initialisation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_methods.py [--only NAME ...]

Writes benchmarks/results/video_methods.{json,md} after every run (a rerun skips the runs
already recorded) and keeps the runs under runs/video_methods/. `--linear` then adds the
video linear probe of each trained encoder (what `visrep eval linear --ckpt
runs/video_methods/NAME` computes: view-averaged features, class and direction).

Elsewhere (benchmarks/gpu_claims.sh): `--device cuda`, `--threads N`, `--set KEY=VALUE ...`
(applied to every run after its own overrides, e.g. a longer schedule `data.limit=4000
optim.epochs=8`), `--jobs N` (runs in N processes, each recorded as it finishes), `--out
PREFIX` and `--runs-dir DIR`. The defaults are the CPU table's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import as_finished, command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

from visrep.config import apply_overrides, replace  # noqa: E402
from visrep.configs import get_recipe  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.report import video_eval  # noqa: E402
from visrep.runs import build_model, load_run  # noqa: E402

OUT = HERE / "results" / "video_methods"
RUNS = Path("runs/video_methods")
# the ρ recipes' encoder and budget, for the masked methods too
COMMON = {"backbone.patch_size": 16, "backbone.depth": 6, "data.limit": 1920,
          "optim.epochs": 1, "optim.batch_size": 32, "optim.warmup_epochs": 0.1,
          "run.budget_minutes": 0.0}  # fmt: skip
PLAN = [
    ("rho_byol_rho2", "rho_byol_mfmnist", {}),
    ("rho_byol_rho1", "rho_byol_mfmnist", {"data.clips": 1}),
    ("rho_moco_rho2", "rho_moco_mfmnist", {}),
    ("rho_moco_rho1", "rho_moco_mfmnist", {"data.clips": 1}),
    ("rho_simclr_rho2", "rho_simclr_mfmnist", {}),
    ("rho_swav_rho2", "rho_swav_mfmnist", {}),
    ("maskfeat_video", "maskfeat_video_mfmnist",
     COMMON | {"method.cell_size": 8, "method.mask_unit": 1, "optim.blr": 1e-3}),  # recipe then
    ("mae_st", "mae_st_mfmnist", COMMON),
    ("mae_st_mask75", "mae_st_mfmnist", COMMON | {"method.mask_ratio": 0.75}),  # MAE-ST Fig. 2
    # video MaskFeat on its official backbone family, MViTv2 (its own CPU-size encoder: the
    # ViT keys of COMMON do not apply), at the same budget and its recipe's lr then
    ("maskfeat_video_mvit", "maskfeat_video_mvit_mfmnist",
     {k: v for k, v in COMMON.items() if not k.startswith("backbone.")} | {"optim.blr": 1e-3}),
]  # fmt: skip
COMMANDS = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_methods.py",
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_methods.py --linear",
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_methods.py --linear --only "
    "rho_byol_rho2 maskfeat_video mae_st mae_st_mask75 maskfeat_video_mvit",
)  # the ρ runs share rho_byol_rho2's init
KEYS = ("knn_top1", "init_knn_top1", "knn_direction_top1", "init_knn_direction_top1",
        "linear_top1", "init_linear_top1", "linear_direction_top1",
        "init_linear_direction_top1")  # fmt: skip


def run_one(name: str, recipe: str, changes: dict, runs: str = str(RUNS), threads: int = 1,
            device: str = "", extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Train PLAN row `name` (its final evaluation included); `device` "" = the recipe's
    (auto), `extra` = `key=value` overrides applied last."""
    cfg = replace(get_recipe(recipe), **changes, **{"run.out_dir": str(Path(runs) / name),
                                                    "run.threads": threads, "run.progress": False})  # fmt: skip
    cfg = apply_overrides(cfg, [*([f"run.device={device}"] if device else []), *extra])
    print(f"== {name}: {recipe} {changes} {list(extra)}", flush=True)
    before = {"uptime": uptime(), "matmul_gflops": round(matmul_gflops(), 1)}
    t0 = time.perf_counter()
    metrics = train(cfg)
    return {"name": name, "recipe": recipe, "changes": changes, **({"set": list(extra)} if extra
            else {}), "minutes": round(
        (time.perf_counter() - t0) / 60, 1), "host_before": before, "host_after": uptime(),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}}  # fmt: skip


def render(results: dict, commands: tuple[str, ...] = COMMANDS) -> str:
    rows = []
    order = [name for name, _, _ in PLAN]
    for r in sorted(results["runs"], key=lambda r: order.index(r["name"])):
        m = r["metrics"]
        # the run's effective overrides: its own, then the command's --set (which win)
        changes = r["changes"] | dict(kv.split("=", 1) for kv in r.get("set", []))
        rows.append([r["name"], r["recipe"], json.dumps(changes) if changes else "",
                     m.get("train_steps"), *(f"{m[k]:.3f}" if k in m else "" for k in KEYS),
                     r["minutes"], r["host_before"]["matmul_gflops"]])  # fmt: skip
    head = ["run", "recipe", "overrides", "steps", "class k-NN", "class k-NN (init)",
            "direction k-NN", "direction k-NN (init)", "class linear", "class linear (init)",
            "direction linear", "direction linear (init)", "minutes", "matmul GFLOP/s"]  # fmt: skip
    cpu_table = commands == COMMANDS
    commands = "\n".join(f"    {c}" for c in commands)
    note = ("Host shared (2 cores); per-run `uptime` and matmul probe in video_methods.json."
            if cpu_table else "Overrides: each row's own, then the commands' `--set` (which "
            "win). Per-run `uptime`, matmul probe and overrides in the JSON beside this file.")  # fmt: skip
    return (f"# Video methods side by side (Moving Fashion-MNIST)\n\nCommands:\n\n{commands}"
            f"\n\n{md_table(head, rows)}\n\nChance: class 0.100, direction 0.125. {note}\n")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=None, help="run names of PLAN to run")
    p.add_argument("--linear", action="store_true", help="add the linear probe to recorded "
                   "runs; with --only, to the named runs' initial encoders too")  # fmt: skip
    p.add_argument("--device", default="", help="run.device of every run and of the --linear "
                   "probe (default: the recipes' auto for training, cpu for --linear)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="run.threads of every run")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides applied to every run after its own")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    p.add_argument("--out", default=str(OUT), help="results prefix (.json / .md added)")
    p.add_argument("--runs-dir", default=str(RUNS), help="folder of the runs")
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    results |= {"command": command_line(), "environment": environment()}
    commands = COMMANDS
    if out != OUT:  # not the CPU table: list the commands this file was made by
        results["commands"] = [*results.get("commands", []), results["command"]]
        commands = tuple(results["commands"])
    done = {r["name"] for r in results["runs"]}
    if args.linear:  # with --only: also the encoder at its initialisation
        for r in results["runs"]:
            want = "init_linear_top1" if args.only else "linear_top1"
            if want in r["metrics"] or (args.only and r["name"] not in args.only):
                continue
            print(f"== linear probe: {r['name']}", flush=True)
            device = torch.device(args.device or "cpu")
            cfg, model = load_run(Path(args.runs_dir) / r["name"], device)
            torch.manual_seed(cfg.run.seed)  # the run's architecture at its initialisation
            init = build_model(cfg).backbone if args.only else None
            r["metrics"] |= video_eval(cfg, model.backbone, device, init_backbone=init,
                                       protocols=("linear",))  # fmt: skip
            write_json(results, path)
            out.with_suffix(".md").write_text(render(results, commands))
        return
    todo = [(name, recipe, changes, args.runs_dir, args.threads, args.device, tuple(args.set))
            for name, recipe, changes in PLAN
            if name not in done and not (args.only and name not in args.only)]  # fmt: skip

    def record(run: dict) -> None:
        results["runs"].append(run)
        write_json(results, path)
        out.with_suffix(".md").write_text(render(results, commands))

    for run in as_finished(run_one, todo, args.jobs):  # recorded as each finishes
        record(run)


if __name__ == "__main__":
    main()
