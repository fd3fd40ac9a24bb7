"""Corruption robustness of fine-tuned Fashion-MNIST models trained with different
augmentations, and the Minimal Sample Distance claim in small (Mintun, Kirillov and Xie,
NeurIPS 2021, §4: the closer an augmentation's nearest sample is to a corruption in the
transform feature space, the lower the error on that corruption).

Models (each `visrep eval finetune --ckpt runs/demo`, the MAE demo, same steps and seed):
  none        data.crop_scale=1,1 data.hflip=false method.reprob=0 (no augmentation)
  recipe      the fine-tuning defaults: RandomResizedCrop(0.35-1) + flip + RandomErasing 0.25
  erase_noise recipe + method.reprob=1.0 method.recount=3: up to three erased boxes of
              per-pixel Gaussian noise on every image (corruption-like, Patch-Gaussian-like)

The MSD feature extractor f̂ is the frozen MAE demo encoder (`runs/demo`, `--encoder`): a
network trained separately from the three classifiers' fine-tuning, but not, as in the
paper, a supervised network of the same architecture at another seed (a fourth fine-tune
did not fit the time this shared host gave).

Then `visrep.robustness.evaluate_runs` (same corrupted images for all models; mCE against
`recipe`), `visrep.robustness.run_msd` (corruptions embedded once) and, per model ×
corruption, MSD against mean error with Spearman's rank correlation.

    .venv/bin/python benchmarks/robustness.py --steps 80 --limit-test 120
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from host import CpuMeter, command_line, environment, host_note, md_table, uptime, write_json
from own_colour import matmul_gflops
from scipy.stats import spearmanr

from visrep.data.corruptions import BENCHMARK
from visrep.evals.robustness import ce_table
from visrep.robustness import evaluate_runs, run_msd, write_outputs

RESULTS = Path(__file__).parent / "results"
MODELS = {
    "none": ["data.crop_scale=1.0,1.0", "data.hflip=false", "method.reprob=0"],
    "recipe": [],
    "erase_noise": ["method.reprob=1.0", "method.recount=3"],
}


def finetune(root: Path, name: str, steps: int) -> Path:
    out = root / name
    if (out / "checkpoint.pt").is_file() and (root / f"{name}.json").is_file():
        return out
    cmd = [sys.executable, "-m", "visrep.cli", "eval", "finetune", "--ckpt", "runs/demo",
           "--out", str(root / f"{name}.json"), f"run.out_dir={out}", f"run.max_steps={steps}",
           "run.threads=1", "eval.limit_test=2000", "run.progress=false", *MODELS[name]]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def msd_plot(points: list[dict], path: Path, rho: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, model in enumerate(sorted({p["model"] for p in points})):
        pts = [p for p in points if p["model"] == model]
        ax.scatter([p["msd"] for p in pts], [p["error"] for p in pts], s=18, label=model,
                   color=f"C{i}")  # fmt: skip
    for p in points:
        if p["model"] == "none":
            ax.annotate(p["corruption"].split("_")[0], (p["msd"], p["error"]), fontsize=6)
    ax.set_xlabel("MSD of the model's training augmentation to the corruption")
    ax.set_ylabel("top-1 error on the corruption (%, mean of 5 severities)")
    ax.set_title(f"Fashion-MNIST: MSD vs error, Spearman ρ = {rho:.2f} (pooled)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(args: argparse.Namespace) -> dict:
    """Fine-tune (if missing), evaluate all models on one corrupted set, MSD; raw results."""
    torch.set_num_threads(1)
    root = Path(args.root)
    runs = {m: str(finetune(root, m, args.steps)) for m in MODELS}
    evaluated = list(MODELS)
    host = {"uptime_before": uptime(), "matmul_gflops_before": round(matmul_gflops(), 1)}
    with CpuMeter() as meter:
        res = evaluate_runs([runs[m] for m in evaluated], [f"eval.limit_test={args.limit_test}"],
                            "finetune", args.suites.split(","), 0, torch.device("cpu"))  # fmt: skip
        base = res[runs["recipe"]]
        for m in evaluated:
            write_outputs(res[runs[m]], base, Path(runs[m]), runs[m], runs["recipe"])
        msd = run_msd([runs[m] for m in evaluated], encoder=args.encoder, n_aug=args.n_aug,
                      n_corr=args.n_corr, n_images=args.n_images)  # fmt: skip
    host |= {"uptime_after": uptime(), "matmul_gflops_after": round(matmul_gflops(), 1),
             **meter.as_dict(), **environment()}  # fmt: skip
    fin = {m: json.loads((root / f"{m}.json").read_text()) for m in MODELS}
    return {"command": command_line(), "limit_test": args.limit_test, "host": host, "runs": runs,
            "finetune": {m: {k: fin[m][k] for k in ("finetune_top1", "finetune_steps",
                                                    "train_minutes") if k in fin[m]}
                         for m in MODELS},
            "robustness": {m: res[runs[m]] for m in evaluated},
            "msd": {m: msd[runs[m]] for m in evaluated}}  # fmt: skip


def _rho(a: list[float], b: list[float]) -> float:
    return float(spearmanr(a, b)[0])


def analyse(out: dict, name: str) -> str:
    """MSD vs error: Spearman pooled over (model, corruption) points, on the error and on
    the error above the model's clean error, and per corruption across the models."""
    evaluated = list(out["robustness"])
    rob, msd = out["robustness"], out["msd"]
    points = [{"model": m, "corruption": c, "msd": msd[m]["per_corruption"][c]["msd"],
               "mmd": msd[m]["per_corruption"][c]["mmd"],
               "error": float(np.mean(rob[m]["errors"][c])),
               "excess": float(np.mean(rob[m]["errors"][c])) - rob[m]["clean_error"]}
              for m in evaluated for c in BENCHMARK]  # fmt: skip
    col = lambda k, pts=points: [q[k] for q in pts]  # noqa: E731
    rho, pval = spearmanr(col("msd"), col("error"))
    stats = {"spearman_msd_error": float(rho), "spearman_p": float(pval),
             "spearman_mmd_error": _rho(col("mmd"), col("error")),
             "spearman_msd_excess_error": _rho(col("msd"), col("excess")),
             "spearman_per_corruption": {
                 c: _rho(col("msd", [q for q in points if q["corruption"] == c]),
                         col("error", [q for q in points if q["corruption"] == c]))
                 for c in BENCHMARK}}  # fmt: skip
    per_c = stats["spearman_per_corruption"]
    write_json(out | {"points": points} | stats, RESULTS / f"{name}.json")
    msd_plot(points, RESULTS / f"{name}_msd.png", rho)
    from visrep.evals.robustness import plot_errors

    plot_errors(rob, RESULTS / f"{name}.png", title="Fashion-MNIST fine-tuned ViT-Tiny/4")
    rows = []
    for m in evaluated:  # against the recipe model, on the same corrupted images
        t = rob[m]["table"] = ce_table(rob[m]["errors"], rob[m]["clean_error"],
                                       rob["recipe"]["errors"], rob["recipe"]["clean_error"])  # fmt: skip
        rows.append([m, f"{out['finetune'][m]['finetune_top1'] * 100:.1f}",
                     f"{t['clean_error']:.1f}", f"{t['mean_corruption_error']:.1f}",
                     f"{t['mce']:.1f}", f"{t['relative_mce']:.1f} ({t['n_relative']})",
                     f"{t.get('mean_error_other', {}).get('c_bar', float('nan')):.1f}"])  # fmt: skip
    per_rows = [[c] + [f"{np.mean(rob[m]['errors'][c]):.1f}" for m in evaluated]
                + [f"{msd[m]['per_corruption'][c]['msd']:.2f}" for m in evaluated]
                + [f"{per_c[c]:+.1f}" if np.isfinite(per_c[c]) else "n/a"]
                for c in BENCHMARK]  # fmt: skip
    h = out["host"]
    n_test = out.get("limit_test", rob[evaluated[0]]["n_test"])
    md = [f"# Corruption robustness and MSD on Fashion-MNIST ({n_test} test images)",
          "", f"Command: `{out['command']}`", "",
          md_table(["model", "fine-tune top-1 (2000 test)", "clean err", "mean C err", "mCE",
                    "rel. mCE", "C-bar err"], rows), "",
          "mCE / relative mCE against `recipe` (= 100 by construction); in brackets, the "
          "corruptions with a relative CE (the recipe's error above its clean error); errors in %.", "",
          md_table(["corruption", *[f"err {m}" for m in evaluated],
                    *[f"MSD {m}" for m in evaluated], "ρ (3 models)"], per_rows), "",
          f"Spearman ρ(MSD, error) pooled over {len(points)} (model, corruption) points: "
          f"{rho:.3f} (p = {pval:.2g}); ρ(MMD, error) {stats['spearman_mmd_error']:.3f}; "
          f"ρ(MSD, error − clean error) {stats['spearman_msd_excess_error']:.3f}. Mean "
          f"per-corruption ρ across the 3 models: {np.nanmean(list(per_c.values())):.2f}.", "",
          host_note(h)]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="runs/robust")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--limit-test", type=int, default=120)
    p.add_argument("--n-aug", type=int, default=48)
    p.add_argument("--n-corr", type=int, default=6)
    p.add_argument("--n-images", type=int, default=20)
    p.add_argument("--encoder", default="runs/demo", help="MSD feature extractor run")
    p.add_argument("--suites", default="c,c_bar")
    p.add_argument("--name", default="robustness_fmnist")
    p.add_argument("--analyse", metavar="JSON", help="redo the analysis of a saved result")
    args = p.parse_args()
    out = json.loads(Path(args.analyse).read_text()) if args.analyse else measure(args)
    print(analyse(out, args.name))


if __name__ == "__main__":
    main()
