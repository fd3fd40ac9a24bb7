"""MoCo v3's ViT instability and the frozen random patch projection (Chen, Xie & He 2021,
"An Empirical Study of Training Self-Supervised Vision Transformers", Sec. 4, Figs. 4-5;
facebookresearch/moco-v3 `vits.py`, `--stop-grad-conv1`): at a large lr, ViT training
shows sudden dips in k-NN accuracy with spikes in the loss and in the first layer's gradient
norm; a fixed random patch projection removes them at equal or better accuracy.

At the size that runs here: `mocov3_vit_fmnist` (ViT-Tiny/4, 4 blocks, 28 px) on the first
`--limit` Fashion-MNIST train images, `--epochs` epochs of batch `--batch` (fixed steps),
at the recipe's blr and at 10× it (`--mults`), each with the patch projection trained and
frozen: 4 runs, same seed (same initial weights, same batches and augmentations). Every step logs
the loss and the gradient norms of the patch projection and the first and last block
(`method.log_grad_norms=true`); the loop's periodic 20-NN (`eval.every_epochs=1`,
`--knn-limit` train/test images) gives the k-NN curve.

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/mocov3_stability.py \\
        > /tmp/mocov3_stability.log 2>&1 &
    # a much higher lr, shorter (4 epochs)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mocov3_stability.py --mults 50 --epochs 4 \\
        --runs-dir /tmp/visrep-mocov3-stability-50x --name mocov3_stability_50x

Writes benchmarks/results/NAME.{json,md,png} (default mocov3_stability) after every run (rows that finished
stay when the script is interrupted); runs go to `--runs-dir`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from throughput import MatmulProbe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = "mocov3_vit_fmnist"
RECIPE_BLR = 5e-4  # mocov3_vit_fmnist's optim.blr
NORMS = ("patch_embed", "block_first", "block_last")


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]


def dips(knn: list[float], drop: float) -> int:
    """k-NN evaluations that fall more than `drop` below the best one before them."""
    return sum(1 for i in range(1, len(knn)) if knn[i] < max(knn[:i]) - drop)


def spikes(values: list[float], factor: float, window: int = 10) -> int:
    """Steps whose value exceeds `factor` × the median of the `window` steps before it."""
    out = 0
    for i in range(window, len(values)):
        prev = sorted(values[i - window : i])
        if values[i] > factor * prev[window // 2]:
            out += 1
    return out


def summarise(run_dir: Path) -> dict:
    rows = read_rows(run_dir)
    train = [r for r in rows if "train/loss" in r]
    knn = [(r["step"], r["eval/knn_top1"]) for r in rows if "eval/knn_top1" in r]
    curves = {"step": [r["step"] for r in train], "loss": [r["train/loss"] for r in train]}
    for n in NORMS:
        if f"train/grad_norm_{n}" in train[0]:
            curves[n] = [r[f"train/grad_norm_{n}"] for r in train]
    k = [v for _, v in knn] or [float("nan")]  # a run that diverged before its first eval
    return {
        "curves": curves,
        "knn": knn,
        "knn_final": k[-1],
        "knn_best": max(k),
        "knn_dips_gt_0.02": dips(k, 0.02),
        "loss_final_mean_last_10": sum(curves["loss"][-10:]) / 10,
        "loss_spikes_1.5x": spikes(curves["loss"], 1.5),
        "first_block_grad_spikes_3x": spikes(curves["block_first"], 3.0),
        "patch_grad_spikes_3x": spikes(curves["patch_embed"], 3.0)
        if "patch_embed" in curves
        else None,
    }


def matmul_gflops() -> float:
    """One thread (as the runs): fp32 2048² matmul GFLOP/s, the host-load probe."""
    import torch

    torch.set_num_threads(1)
    probe = MatmulProbe()
    probe.run()
    return round(probe.gflops[-1], 1)


def init_knn(knn_limit: int) -> float:
    """20-NN of the runs' common initial encoder (seed 0, the loop's periodic protocol)."""
    import torch

    from visrep.config import replace
    from visrep.configs import resolved_recipe
    from visrep.evals.run import evaluate
    from visrep.runs import build_model

    cfg = resolved_recipe(RECIPE)
    torch.manual_seed(cfg.run.seed)  # as train() does before building the model
    backbone = build_model(cfg).backbone
    ev = replace(cfg.eval, budget_minutes=0.0)
    m = evaluate(backbone, cfg.data, ev, protocols=("knn",), limit=knn_limit, device="cpu")
    return float(m["knn_top1"])


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5))
    for i, row in enumerate(out["rows"]):
        c, label, colour = row["summary"]["curves"], row["label"], f"C{i}"
        style = "-" if row["frozen"] else "--"
        ax[0].plot(c["step"], c["loss"], style, color=colour, label=label, lw=0.9)
        ax[1].plot(c["step"], c["block_first"], style, color=colour, label=f"{label}: block 1",
                   lw=0.9)  # fmt: skip
        if "patch_embed" in c:
            ax[1].plot(c["step"], c["patch_embed"], ":", color=colour,
                       label=f"{label}: patch proj.", lw=0.9)  # fmt: skip
        if row["summary"]["knn"]:
            s, k = zip(*row["summary"]["knn"], strict=True)
            ax[2].plot(s, k, style + "o", color=colour, label=label, ms=3)
    ax[2].axhline(out["init_knn"], color="grey", lw=0.8, label="initial encoder")
    ax[0].set(title="loss", xlabel="step")
    ax[1].set(title="gradient norm (first block; patch projection when trained)",
              xlabel="step", yscale="log")  # fmt: skip
    ax[2].set(title=f"20-NN top-1 ({out['knn_limit']} train / test images)", xlabel="step")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=1920, help="Fashion-MNIST train images")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--mults", type=float, nargs="+", default=[10.0, 1.0],
                   help="learning rates to run, × the recipe's blr (default: 10× and 1×)")  # fmt: skip
    p.add_argument("--knn-limit", type=int, default=1000)
    p.add_argument("--runs-dir", default="/tmp/visrep-mocov3-stability")
    p.add_argument("--name", default="mocov3_stability")
    args = p.parse_args()
    earlier = RESULTS / f"{args.name}.json"  # a rerun reuses finished runs: keep their times
    before = (
        {r["command"]: r for r in json.loads(earlier.read_text())["rows"]}
        if earlier.exists()
        else {}
    )
    out = {"command": command_line(), "environment": environment(), "uptime_before": uptime(),
           "recipe": RECIPE, "knn_limit": args.knn_limit, "init_knn": init_knn(args.knn_limit),
           "matmul_gflops_1thread_before": matmul_gflops(), "rows": []}  # fmt: skip
    arms = [(RECIPE_BLR * m, frozen) for m in args.mults for frozen in (False, True)]
    for blr, frozen in arms:
        tag = f"blr{blr:g}_{'frozen' if frozen else 'trained'}"
        run_dir = Path(args.runs_dir) / tag
        overrides = [f"optim.blr={blr:g}", f"method.stop_grad_conv1={frozen}",
                     "method.log_grad_norms=true", f"data.limit={args.limit}",
                     f"optim.batch_size={args.batch}", f"optim.epochs={args.epochs}",
                     f"optim.warmup_epochs={args.warmup_epochs}", "eval.every_epochs=1",
                     f"eval.periodic_limit={args.knn_limit}", "eval.final=false",
                     "run.log_every=1", "run.threads=1", "run.progress=false",
                     f"run.out_dir={run_dir}"]  # fmt: skip
        cmd = ["visrep", "train", RECIPE, *overrides]
        t0, load = time.perf_counter(), uptime()
        if (run_dir / "checkpoint.pt").exists() and " ".join(cmd) in before:
            t0, load = t0 - before[" ".join(cmd)]["wall_s"], before[" ".join(cmd)]["uptime_before"]
        else:  # a run folder the JSON does not know is an interrupted run: start it again
            shutil.rmtree(run_dir, ignore_errors=True)
            done = subprocess.run([sys.executable, "-m", "visrep.cli", *cmd[1:]], cwd=ROOT)
            if done.returncode:  # diverged (the loop stops on a NaN loss): keep what it logged
                print(f"{tag}: visrep train exited with {done.returncode}", flush=True)
        row = {"label": f"blr {blr:g} ({blr * args.batch / 256:.2g} abs), patch proj. "
                        f"{'frozen' if frozen else 'trained'}",
               "blr": blr, "lr": blr * args.batch / 256, "frozen": frozen,
               "command": " ".join(cmd), "wall_s": round(time.perf_counter() - t0, 1),
               "uptime_before": load, "summary": summarise(run_dir)}  # fmt: skip
        out["rows"].append(row)
        out["uptime_after"], out["matmul_gflops_1thread_after"] = uptime(), matmul_gflops()
        write_json(out, RESULTS / f"{args.name}.json")
        write_md(out, args)
        plot(out, RESULTS / f"{args.name}.png")


def write_md(out: dict, args: argparse.Namespace) -> None:
    rows = []
    for r in out["rows"]:
        s = r["summary"]
        knn = ", ".join(f"{v:.3f}" for _, v in s["knn"])
        patch = "frozen" if s["patch_grad_spikes_3x"] is None else s["patch_grad_spikes_3x"]
        rows.append([f"{r['blr']:g}", f"{r['lr']:.2g}", "frozen" if r["frozen"] else "trained",
                     knn, f"{s['knn_best']:.3f}", s["knn_dips_gt_0.02"],
                     f"{s['loss_final_mean_last_10']:.3f}", s["loss_spikes_1.5x"],
                     s["first_block_grad_spikes_3x"], patch, f"{r['wall_s'] / 60:.1f}",
                     r["uptime_before"].rsplit("load average:", 1)[-1].split(",")[0].strip()])  # fmt: skip
    steps = math.ceil(args.limit / args.batch) * args.epochs
    md = (
        f"# MoCo v3 ViT stability: trained vs frozen random patch projection ({RECIPE})\n\n"
        f"`{out['command']}`\n\n"
        f"{steps} steps of batch {args.batch} on the first {args.limit:,} Fashion-MNIST train "
        f"images ({args.epochs} epochs, {args.warmup_epochs:g} warm-up), same seed for every run. "
        f"20-NN on {out['knn_limit']} train / {out['knn_limit']} test images after each epoch "
        f"(the runs' common initial encoder: {out['init_knn']:.3f}).\n\n"
        + md_table(
            [
                "blr",
                "abs lr",
                "patch proj.",
                "20-NN per epoch",
                "best",
                "dips > 0.02",
                "loss (last 10 steps)",
                "loss spikes > 1.5×",
                "block-1 grad spikes > 3×",
                "patch grad spikes > 3×",
                "wall min",
                "load",
            ],
            rows,
        )  # fmt: skip
        + "\n\nSpikes: steps whose value exceeds the factor × the median of the 10 steps before. "
        f"Dips: evaluations more than 0.02 below the best one before them.\n\n"
        f"Host before: {out['uptime_before']}; after: {out.get('uptime_after', '')}; 1-thread "
        f"2048² matmul {out['matmul_gflops_1thread_before']} GFLOP/s before, "
        f"{out.get('matmul_gflops_1thread_after')} after (this invocation; a reused run's wall "
        "time and load are those of the invocation that trained it). "
        f"Curves: `{args.name}.png`; per-step values in `{args.name}.json`.\n"
    )
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md, flush=True)


if __name__ == "__main__":
    main()
