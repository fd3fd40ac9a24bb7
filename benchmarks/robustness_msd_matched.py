"""The MSD claim at matched clean accuracy, CPU-sized (Mintun, Kirillov and Xie, NeurIPS 2021,
§4, Fig. 3; facebookresearch/augmentation-corruption `experiments/feature_corrupt_error.py`):
for a fixed corruption, augmentation schemes whose nearest sample is closer to it in the
transform feature space (lower MSD) give lower error on it.

Classifiers: supervised ResNet-18s trained from scratch on Fashion-MNIST (the
`gen_reference_fmnist` recipe through `visrep train`, the one loop), same seed, 130 steps of
128, differing only in the training augmentation:

  none_short, none_78   no augmentation, 52 or 78 steps (no augmentation learns fastest:
              at 130 steps it is 8 points above the others, so its schedule is shortened;
              52 steps undershoot by 12 points, 78 overshoot by 2-4)
  base        RandomResizedCrop(0.6-1) + flip (the mild "standard augmentation" every other
              scheme starts from, as the paper's powerset starts from crop + flip)
  noise, blur, contrast, augmix   base + Gaussian noise / Gaussian blur / contrast
              reduction / AugMix (`visrep.data.photometric`, `method.photometric`)

f̂, the MSD feature extractor, is `none`: the same network trained without augmentation for
130 steps, a supervised run apart from the schemes compared (the paper's: a WRN-40-2 trained
with standard augmentation, separate from the models evaluated). Then `visrep eval
robustness`'s `evaluate_runs` (the same corrupted test images for every model; mCE against
`base`) and `visrep eval msd`'s `run_msd` (corruptions embedded once). Reported: per
corruption the Spearman ρ between MSD and error across the schemes (the paper's reading),
its mean over the 15 corruptions, and the pooled ρ over (scheme, corruption) points, with
bootstrap CIs over corruptions and a permutation test (MSD shuffled among schemes within
each corruption), for all schemes and for the largest subset within `--match` points of
clean accuracy.

    .venv/bin/python benchmarks/robustness_msd_matched.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from host import CpuMeter, command_line, environment, host_note, md_table, uptime, write_json
from own_colour import matmul_gflops
from scipy.stats import spearmanr

from visrep.data.corruptions import BENCHMARK
from visrep.robustness import evaluate_runs, run_msd, write_outputs

RESULTS = Path(__file__).parent / "results"
BASE = ["data.crop_scale=0.6,1.0", "data.hflip=true"]
SCHEMES = {
    "none": ["data.crop_scale=1.0,1.0", "data.hflip=false"],
    # no augmentation learns fastest: shorter schedules (52, 78 steps instead of 130) bring
    # its clean accuracy toward the augmented schemes' (`none` at 130 steps is f̂, not compared)
    "none_short": ["data.crop_scale=1.0,1.0", "data.hflip=false", "eval.limit_train=6656"],
    "none_78": ["data.crop_scale=1.0,1.0", "data.hflip=false", "eval.limit_train=9984"],
    "base": BASE,
    "noise": [*BASE, "method.photometric=noise"],
    "blur": [*BASE, "method.photometric=blur"],
    "contrast": [*BASE, "method.photometric=contrast"],
    "augmix": [*BASE, "method.photometric=augmix"],
}


def train(root: Path, name: str, extra: list[str], args: argparse.Namespace, seed: int) -> Path:
    """`visrep train gen_reference_fmnist` with the scheme's augmentation (reused if done)."""
    out = root / name
    if (out / "metrics.json").is_file():
        return out
    own = any(e.startswith("eval.limit_train=") for e in extra)  # a scheme's own budget
    cmd = [sys.executable, "-m", "visrep.cli", "train", "gen_reference_fmnist",
           f"run.out_dir={out}", f"run.seed={seed}",
           *([] if own else [f"eval.limit_train={args.train_images}"]),
           f"optim.epochs={args.epochs}", f"optim.blr={args.blr}", "run.threads=1",
           f"eval.limit_test={args.clean_test}", "run.progress=false", *extra]  # fmt: skip
    print("+", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
    return out


def measure(args: argparse.Namespace) -> dict:
    """Train (what is missing), evaluate all schemes on one corrupted set, MSD; raw results."""
    torch.set_num_threads(1)
    root = Path(args.root)
    t0 = time.time()
    schemes = [s for s in args.schemes.split(",") if s]
    unknown = sorted(set(schemes + [args.encoder]) - set(SCHEMES))
    if unknown and unknown != [args.encoder]:
        raise SystemExit(f"unknown schemes {unknown}; choose from {sorted(SCHEMES)}")
    runs = {m: str(train(root, m, SCHEMES[m], args, args.seed)) for m in schemes}
    # f̂: a supervised run apart from the schemes compared (a scheme's name, or a run folder)
    encoder = (str(train(root, args.encoder, SCHEMES[args.encoder], args, args.seed))
               if args.encoder in SCHEMES else args.encoder)  # fmt: skip
    train_min = (time.time() - t0) / 60
    host = {"uptime_before": uptime(), "matmul_gflops_before": round(matmul_gflops(), 1)}
    with CpuMeter() as meter:
        res = evaluate_runs(list(runs.values()), [f"eval.limit_test={args.limit_test}"],
                            "finetune", ["c"], 0, torch.device("cpu"))  # fmt: skip
        for m in schemes:
            write_outputs(res[runs[m]], res[runs["base"]], Path(runs[m]), runs[m], runs["base"])
        msd = run_msd(list(runs.values()), encoder=encoder, n_aug=args.n_aug,
                      n_corr=args.n_corr, n_images=args.n_images)  # fmt: skip
    host |= {"uptime_after": uptime(), "matmul_gflops_after": round(matmul_gflops(), 1),
             "train_minutes_this_call": round(train_min, 1), **meter.as_dict(),
             **environment()}  # fmt: skip
    metrics = {m: json.loads((Path(r) / "metrics.json").read_text()) for m, r in runs.items()}
    enc_metrics = json.loads((Path(encoder) / "metrics.json").read_text())
    keep = ("finetune_top1", "finetune_n_test", "train_steps", "train_minutes")
    return {"command": command_line(), "args": vars(args), "host": host, "runs": runs,
            "encoder": encoder, "encoder_metrics": {k: enc_metrics.get(k) for k in keep},
            "train": {m: {k: metrics[m].get(k) for k in keep} for m in schemes},
            "robustness": {m: res[runs[m]] for m in schemes},
            "msd": {m: msd[runs[m]] for m in schemes}}  # fmt: skip


def rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ (nan when one side is constant)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def correlations(msd: np.ndarray, err: np.ndarray) -> dict[str, object]:
    """msd, err [schemes, corruptions]: per-corruption ρ across schemes, their mean, pooled ρ."""
    per = [rho(msd[:, j], err[:, j]) for j in range(msd.shape[1])]
    mean = float(np.nanmean(per)) if not np.isnan(per).all() else float("nan")
    return {"per_corruption": per, "mean": mean,
            "pooled": rho(msd.ravel(), err.ravel())}  # fmt: skip


def uncertainty(msd: np.ndarray, err: np.ndarray, n: int, seed: int) -> dict[str, object]:
    """95% bootstrap CIs (corruptions resampled with replacement, the unit that varies) of the
    mean per-corruption and the pooled ρ, and a permutation p-value of the mean ρ (MSD
    shuffled among the schemes within each corruption: no link between MSD and error)."""
    rng = np.random.default_rng(seed)
    k = msd.shape[1]
    boot = {"mean": [], "pooled": []}
    for _ in range(n):
        j = rng.integers(0, k, k)
        c = correlations(msd[:, j], err[:, j])
        boot["mean"].append(c["mean"])
        boot["pooled"].append(c["pooled"])
    observed = correlations(msd, err)["mean"]
    null = [correlations(rng.permuted(msd, axis=0), err)["mean"] for _ in range(n)]
    ci = {key: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
          for key, v in boot.items()}  # fmt: skip
    p = (1 + sum(v >= observed for v in null)) / (n + 1)
    return {"ci95_mean": ci["mean"], "ci95_pooled": ci["pooled"], "permutation_p_mean": float(p),
            "n_resamples": n}  # fmt: skip


def plot(out: dict, msd: np.ndarray, err: np.ndarray, stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schemes = list(out["robustness"])
    markers = "osD^vP*X"
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for j, c in enumerate(BENCHMARK):
        ax.plot(msd[:, j][np.argsort(msd[:, j])], err[:, j][np.argsort(msd[:, j])], "-",
                color=cmap(j), lw=0.6, alpha=0.6)  # fmt: skip
        for i, _ in enumerate(schemes):
            ax.scatter(msd[i, j], err[i, j], color=cmap(j), marker=markers[i], s=22,
                       label=c if i == 0 else None)  # fmt: skip
    for i, s in enumerate(schemes):
        ax.scatter([], [], color="grey", marker=markers[i], label=f"scheme: {s}")
    ax.set_xlabel("MSD of the scheme's augmentation to the corruption (mean of 5 severities)")
    ax.set_ylabel("top-1 error on the corruption (%, mean of 5 severities)")
    ax.set_title(f"Fashion-MNIST ResNet-18, matched schemes ({', '.join(stats['schemes'])}):\n"
                 f"mean per-corruption ρ = {stats['mean']:.2f}, pooled ρ = {stats['pooled']:.2f}",
                 fontsize=8, loc="left")  # fmt: skip
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def matched_subset(top1: dict[str, float], window: float) -> list[str]:
    """The largest set of schemes whose clean top-1 (points) spans at most `window` (ties:
    the narrower span)."""
    names = sorted(top1, key=top1.get)
    best: list[str] = []
    for a in range(len(names)):
        sub = [n for n in names[a:] if top1[n] - top1[names[a]] <= window]
        span = lambda x: top1[x[-1]] - top1[x[0]]  # noqa: E731
        if len(sub) > len(best) or (len(sub) == len(best) and span(sub) < span(best)):
            best = sub
    return [n for n in top1 if n in best]  # in scheme order


def summary(msd: np.ndarray, mmd: np.ndarray, err: np.ndarray, clean: np.ndarray,
            n_boot: int) -> dict:  # fmt: skip
    """ρ(MSD, error) per corruption / mean / pooled with CIs, and the MMD and excess-error
    variants, for the schemes (rows) given."""
    return (correlations(msd, err) | uncertainty(msd, err, n_boot, 0)
            | {"mmd": correlations(mmd, err),
               "msd_vs_excess_error": correlations(msd, err - clean[:, None])})  # fmt: skip


def _stat_row(label: str, names: list[str], top1: dict, st: dict) -> list[str]:
    spread = max(top1[n] for n in names) - min(top1[n] for n in names)
    m, p = st["ci95_mean"], st["ci95_pooled"]
    return [label, ", ".join(names), f"{spread:.1f}",
            f"**{st['mean']:.2f}** [{m[0]:.2f}, {m[1]:.2f}]", f"{st['permutation_p_mean']:.3f}",
            f"{st['pooled']:.2f} [{p[0]:.2f}, {p[1]:.2f}]",
            f"{st['mmd']['mean']:.2f} / {st['mmd']['pooled']:.2f}",
            f"{st['msd_vs_excess_error']['mean']:.2f} / {st['msd_vs_excess_error']['pooled']:.2f}"]  # fmt: skip


def analyse(out: dict, name: str, n_boot: int, window: float) -> str:
    schemes = list(out["robustness"])
    rob, msd_res = out["robustness"], out["msd"]
    msd = np.array([[msd_res[s]["per_corruption"][c]["msd"] for c in BENCHMARK] for s in schemes])
    mmd = np.array([[msd_res[s]["per_corruption"][c]["mmd"] for c in BENCHMARK] for s in schemes])
    err = np.array([[np.mean(rob[s]["errors"][c]) for c in BENCHMARK] for s in schemes])
    clean = np.array([rob[s]["clean_error"] for s in schemes])
    top1 = {s: out["train"][s]["finetune_top1"] * 100 for s in schemes}
    matched = matched_subset(top1, window)
    k = [schemes.index(s) for s in matched]
    stats = {
        "all": summary(msd, mmd, err, clean, n_boot),
        "matched": summary(msd[k], mmd[k], err[k], clean[k], n_boot) | {"schemes": matched},
    }
    write_json(out | {"stats": stats, "match_window_points": window}, RESULTS / f"{name}.json")
    plot(out, msd, err, stats["matched"], RESULTS / f"{name}.png")
    t = {s: rob[s]["table"] for s in schemes}
    rows = [[s, f"{top1[s]:.1f}", f"{t[s]['clean_error']:.1f}", f"{t[s]['mean_corruption_error']:.1f}",
             f"{t[s]['mce']:.1f}", f"{out['train'][s]['train_steps']}",
             f"{out['train'][s]['train_minutes']:.1f}"] for s in schemes]  # fmt: skip

    def rho_cell(v: float) -> str:
        return "n/a" if np.isnan(v) else f"{v:+.2f}"

    per_rows = [[c, *[f"{err[i, j]:.1f}" for i in range(len(schemes))],
                 *[f"{msd[i, j]:.2f}" for i in range(len(schemes))],
                 rho_cell(stats["all"]["per_corruption"][j]),
                 rho_cell(stats["matched"]["per_corruption"][j])]
                for j, c in enumerate(BENCHMARK)]  # fmt: skip
    h, a = out["host"], out["args"]
    n_test = rob[schemes[0]]["n_test"]
    enc = out["encoder_metrics"]
    md = [f"# MSD vs error across augmentation schemes at matched clean accuracy "
          f"(Fashion-MNIST, {n_test} test images)", "", f"Command: `{out['command']}`", "",
          md_table(["scheme", f"clean top-1 ({out['train'][schemes[0]]['finetune_n_test']} test)",
                    f"clean err ({n_test})", "mean C err", "mCE vs base", "steps",
                    "train min"], rows), "",
          "Errors in %, mean of the 5 severities; mCE against `base` (= 100 by construction).",
          "", md_table(["schemes", "which", "clean top-1 spread", "mean per-corruption ρ [95% CI]",
                        "permutation p", "pooled ρ [95% CI]", "MMD: mean / pooled ρ",
                        "MSD vs error − clean: mean / pooled ρ"],
                       [_stat_row("all", schemes, top1, stats["all"]),
                        _stat_row(f"matched (≤ {window:g} points)", matched, top1,
                                  stats["matched"])]), "",
          "ρ = Spearman ρ(MSD, error): per corruption across the schemes, then the mean over the "
          "15 corruptions (the paper's reading), or pooled over every (scheme, corruption) "
          "point. CIs: bootstrap over corruptions; p: MSD shuffled among the schemes within "
          f"each corruption ({n_boot} resamples each).", "",
          md_table(["corruption", *[f"err {s}" for s in schemes], *[f"MSD {s}" for s in schemes],
                    "ρ all", "ρ matched"], per_rows), "",  # fmt: skip
          f"Models: supervised ResNet-18 from scratch (`gen_reference_fmnist`), "
          f"{a['train_images']} training images × {a['epochs']} epoch unless the scheme sets its "
          f"own, blr {a['blr']}, seed {a['seed']}, one thread. f̂: `{out['encoder']}` (not one "
          f"of the schemes compared; clean top-1 {enc['finetune_top1']}). MSD: |A| = "
          f"{a['n_aug']} augmentation draws, M = {a['n_corr']} draws per corruption-severity, "
          f"|D_S| = {a['n_images']} clean training images.", "",
          host_note(h, "shared, 1 thread", "evaluation + MSD wall")]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="runs/robust_matched")
    p.add_argument(
        "--train-images", type=int, default=16640, help="eval.limit_train (130 steps of 128)"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--blr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean-test", type=int, default=5000, help="test images of the clean top-1")
    p.add_argument("--limit-test", type=int, default=200, help="test images under corruption")
    p.add_argument("--n-aug", type=int, default=64)
    p.add_argument("--n-corr", type=int, default=8)
    p.add_argument("--n-images", type=int, default=20)
    p.add_argument(
        "--schemes",
        default="none_short,none_78,base,noise,blur,contrast,augmix",
        help=f"comma list of the schemes compared, from {', '.join(SCHEMES)}",
    )
    p.add_argument(
        "--encoder",
        default="none",
        help="f̂: a scheme name (trained as ROOT/NAME, not compared) or a run folder",
    )
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--match", type=float, default=2.0,
                   help="the matched subset: largest set of schemes within this many points")  # fmt: skip
    p.add_argument("--name", default="robustness_msd_matched")
    p.add_argument("--analyse", metavar="JSON", help="redo the analysis of a saved result")
    args = p.parse_args()
    print("reproduce:", command_line(), flush=True)
    print("host:", uptime(), f"matmul {matmul_gflops():.1f} GFLOP/s", flush=True)
    if args.analyse:
        out = json.loads(Path(args.analyse).read_text())
    else:  # the raw measurement first, so the analysis can be redone with --analyse
        out = measure(args)
        write_json(out, Path(args.root) / "raw.json")
    print(analyse(out, args.name, args.n_boot, args.match))


if __name__ == "__main__":
    main()
