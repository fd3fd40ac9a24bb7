"""SimSiam collapse at a fixed step count: k-NN on the projector output z, not only on the
backbone (SimSiam §4.1 / Fig. 2: without stop-gradient the *encoder output* z = projector(
backbone(x)) collapses to a constant and its k-NN accuracy falls to chance).

Trains `simsiam_fmnist` with and without `method.stop_gradient` for the same `--steps`
(fixed step count, `run.max_steps`; schedule of the recipe unchanged), then on fixed random
Fashion-MNIST subsets (`--limit` train / `--limit` test, the library's `subset`, seed 0),
in eval mode (BN running statistics):

- per-channel std of the L2-normalised z on the test subset (1/√d ≈ 0.0221 for d = 2048
  when spread, 0 when constant), next to the last logged training `z_std` (train-mode BN);
- 20-NN top-1 (cosine, T = 0.07; `visrep.evals.knn`) on z and on the backbone's pooled
  features, train subset as memory bank, test subset as queries.

Run:   OMP_NUM_THREADS=1 python benchmarks/simsiam_collapse_knn.py --steps 40 --threads 1
       (`--jobs 2`: both runs at once, one thread each)
Writes benchmarks/results/simsiam_collapse_knn.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, parallel_map, write_json  # noqa: E402

from visrep.config import apply_overrides, replace  # noqa: E402
from visrep.configs import resolved_recipe  # noqa: E402
from visrep.data.preprocess import eval_preprocess
from visrep.evals.features import extract_features  # noqa: E402
from visrep.evals.knn import knn  # noqa: E402
from visrep.evals.run import _cached_split, subset
from visrep.logger import read_log  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.runs import (
    build_model,  # noqa: E402
    load_run,  # noqa: E402
)

RUNS = [("with stop-gradient", {}), ("without stop-gradient", {"method.stop_gradient": False})]


def features(encoder: nn.Module, cfg, limit: int) -> dict:
    """{split: (features, labels)} of the fixed `limit`-image subsets."""
    pre = eval_preprocess(cfg.data)
    out = {}
    for split in ("train", "test"):
        images, labels = _cached_split(cfg.eval, split, cfg.data.channels, cfg.data.img_size)
        images, labels = subset(images, labels, limit)
        out[split] = (extract_features(encoder, images, batch_size=256, preprocess=pre), labels)
    return out


def knn_top1(f: dict) -> float:
    (ftr, ytr), (fte, yte) = f["train"], f["test"]
    return knn(ftr, ytr, fte, yte, k=20, temperature=0.07, num_classes=10)["knn_top1"]


def measure(run_dir: Path, limit: int) -> dict:
    cfg, model = load_run(run_dir)
    return measure_model(cfg, model, limit)


def measure_model(cfg, model: nn.Module, limit: int) -> dict:
    fb = features(model.backbone, cfg, limit)
    enc = nn.Sequential(model.backbone, model.projector)
    fz = features(enc, cfg, limit)
    z = F.normalize(fz["test"][0], dim=1)
    # z with train-mode BN (statistics of each 256-image batch, as in training and in the
    # logged z_std), on a copy so that the running statistics are not touched
    enc_bn = copy.deepcopy(enc).train()
    fzb = features(lambda x: enc_bn(x), cfg, limit)  # a function: extract_features keeps its mode
    zb = F.normalize(fzb["test"][0], dim=1)
    return {
        "knn_backbone": knn_top1(fb),
        "knn_z": knn_top1(fz),
        "knn_z_batchstats": knn_top1(fzb),
        "z_std_batchstats": zb.std(dim=0).mean().item(),
        "z_std_eval": z.std(dim=0).mean().item(),
        "z_dim": z.shape[1],
        # mean pairwise cosine of z on the test subset: 1 for a constant output
        "z_mean_cos": ((z @ z.T).sum() - len(z)).item() / (len(z) * (len(z) - 1)),
    }


def train_and_measure(
    label: str,
    overrides: dict,
    steps: int,
    limit: int,
    threads: int,
    device: str,
    runs_dir: str,
    extra: list[str],
) -> dict:
    """Train one run of `RUNS` for `steps` steps and measure it (a worker of `--jobs`)."""
    out = Path(runs_dir) / label.replace(" ", "_")
    cfg = replace(resolved_recipe("simsiam_fmnist"), **{
        "run.out_dir": str(out), "run.device": device, "run.progress": False,
        "run.threads": threads, "run.max_steps": steps, "eval.final": False,
        "eval.every_epochs": 0, **overrides,
    })  # fmt: skip
    cfg = apply_overrides(cfg, extra)
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    rows = [r for r in read_log(out) if "train/loss" in r]
    log = [{k: r.get(k) for k in ("step", "train/loss", "train/z_std")} for r in rows]
    return {"overrides": overrides, "train_wall_s": wall, "log": log, **measure(out, limit)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--limit", type=int, default=2000, help="train / test subset size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs-dir", default="/tmp/visrep-simsiam-collapse")
    ap.add_argument("--only", nargs="*", help="labels of RUNS to train (default: both)")
    ap.add_argument("--no-random-init", action="store_true", help="skip the step-0 row")
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value for both runs")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    ap.add_argument("--out", default="benchmarks/results/simsiam_collapse_knn.md")
    args = ap.parse_args()
    extra = {k: v for k, v in (kv.split("=", 1) for kv in args.set)}  # for the JSON
    res: dict = {"command": command_line(), "env": environment(), "steps": args.steps,
                 "limit": args.limit, "device": args.device, "extra": extra, "runs": {}}  # fmt: skip
    todo = [(label, o, args.steps, args.limit, args.threads, args.device, args.runs_dir,
             args.set) for label, o in RUNS if not args.only or label in args.only]  # fmt: skip
    for (label, *_), r in zip(todo, parallel_map(train_and_measure, todo, args.jobs), strict=True):
        res["runs"][label] = r
        print(f"{label}: {r}", flush=True)
    # untrained model (the recipe's seed, step 0), same subsets
    if not args.no_random_init:
        cfg0 = apply_overrides(resolved_recipe("simsiam_fmnist"), args.set)
        torch.manual_seed(cfg0.run.seed)
        res["random_init"] = measure_model(cfg0, build_model(cfg0).eval(), args.limit)
        print(f"random init: {res['random_init']}", flush=True)
    out_md = Path(args.out)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    write_json(res, out_md.with_suffix(".json"))
    out_md.write_text(
        render(res) + f"\n![loss and output std]({out_md.with_suffix('.png').name})\n"
    )
    plot(res, out_md.with_suffix(".png"))
    print(out_md.read_text())


def plot(res: dict, path: Path) -> None:
    """Training loss and per-channel std of the L2-normalised z (train-mode BN, the log's
    `train/z_std`) against the step, one line per run; 1/√d dashed (SimSiam Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_std) = plt.subplots(1, 2, figsize=(10, 3.6))
    dim = next(iter(res["runs"].values()))["z_dim"] if res["runs"] else 2048
    for i, (label, r) in enumerate(res["runs"].items()):
        steps = [row["step"] for row in r["log"]]
        ax_loss.plot(steps, [row["train/loss"] for row in r["log"]], color=f"C{i}", label=label)
        ax_std.plot(steps, [row["train/z_std"] for row in r["log"]], color=f"C{i}", label=label)
    ax_std.axhline(1 / math.sqrt(dim), ls="--", color="gray", lw=1, label="1/√d")
    ax_loss.set(xlabel="step", ylabel="training loss (min −1)", title="SimSiam loss")
    ax_std.set(xlabel="step", ylabel="std of z/‖z‖ per channel", title="output std", ylim=(0, None))
    for ax in (ax_loss, ax_std):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def render(res: dict) -> str:
    rows = []
    for label, r in res["runs"].items():
        last = r["log"][-1] if r["log"] else {}
        rows.append([label, last.get("step", 0), f"{last.get('train/loss', float('nan')):.3f}",
                     f"{last.get('train/z_std') or float('nan'):.4f}", f"{r['z_std_eval']:.4f}",
                     f"{r['z_mean_cos']:.3f}", f"{r['knn_z']:.4f}", f"{r['z_std_batchstats']:.4f}",
                     f"{r['knn_z_batchstats']:.4f}", f"{r['knn_backbone']:.4f}",
                     f"{r['train_wall_s']:.0f}"])  # fmt: skip
    if res.get("random_init"):
        r = res["random_init"]
        rows.append(["random init (step 0)", 0, "-", "-", f"{r['z_std_eval']:.4f}",
                     f"{r['z_mean_cos']:.3f}", f"{r['knn_z']:.4f}", f"{r['z_std_batchstats']:.4f}",
                     f"{r['knn_z_batchstats']:.4f}", f"{r['knn_backbone']:.4f}", "-"])  # fmt: skip
    table = md_table(["SimSiam", "steps", "last loss", "z std (train log)", "z std (eval BN)",
                      "mean cos(z)", "20-NN top-1 on z", "z std (batch-stat BN)",
                      "20-NN on z (batch-stat BN)", "20-NN top-1 on backbone",
                      "train s"], rows)  # fmt: skip
    return (
        f"# SimSiam collapse at {res['steps']} steps ({res['device']})\n\n"
        f"Command: `{res['command']}`\n\nFashion-MNIST, fixed random subsets of "
        f"{res['limit']:,} train / {res['limit']:,} test images; 20-NN cosine T=0.07; "
        f"1/√d = {1 / math.sqrt(2048):.4f}; chance 0.10.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
