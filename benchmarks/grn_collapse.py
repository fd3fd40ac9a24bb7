"""ConvNeXt V2's GRN claim: FCMAE pre-training without GRN collapses features, with GRN it
does not (Woo et al., 2023, §3.2 "Feature collapse", Fig. 4).

The metric (paper §3.2): for an activation tensor X ∈ R^{H×W×C} of one image, X_i ∈ R^{HW}
is channel i's feature map flattened; the feature cosine distance is

    d(X) = 1/C² · Σ_i Σ_j (1 − cos(X_i, X_j)) / 2,

(i = j included, as in the formula; cos with PyTorch's eps 1e-8 on the norms, so a dead
channel is at distance 1/2 from every other). It is averaged over 1,000 images, 100 per
class (here Fashion-MNIST test images; the paper: 1,000 ImageNet val images of different
classes), computed per block on the high-dimensional features of its dimension-expansion
MLP — the 4C channels after fc1 and GELU, where the paper observed the collapse (the input
of GRN in V2, of fc2 without GRN) — and plotted against relative depth (block index /
number of blocks). Higher = more diverse channels; low = redundant (collapsed) features.
For V2 the same statistic after GRN (input of fc2) is also recorded.

Models: `fcmae_fmnist` (ConvNeXt V2-Atto, 32 px, 8 px mask cells, paper init) trained with
`backbone.name` = convnextv2_atto (GRN), convnextv2_atto_nogrn (the same V2 blocks without
GRN, the paper's GRN ablation) and convnext_atto (V1: no GRN, LayerScale — the paper's
"ConvNeXt V1 + FCMAE" curve), each for the same number of optimizer steps (`--steps`, the
whole schedule: warm-up 20% then cosine, on `steps × batch` images) — equal steps, not
equal seconds, because this host is shared and wall-clock budgets would not be equal
work. Random-init V2 is the reference curve.

Run:   python benchmarks/grn_collapse.py --steps 120 --device cpu      (2-core host)
       (`--profile-every N`: the statistic every N steps too, second panel of the plot)
       (`--jobs 2 --threads 1`: two models at once, one thread each)
Writes benchmarks/results/grn_collapse.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import (  # noqa: E402
    command_line,
    environment,
    fixed_step_config,
    md_table,
    parallel_map,
    write_json,
)

from visrep.config import apply_overrides, replace  # noqa: E402
from visrep.configs import resolved_recipe  # noqa: E402
from visrep.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from visrep.data.preprocess import make_preprocess, mean_std
from visrep.logger import read_log  # noqa: E402
from visrep.loop import train  # noqa: E402
from visrep.runs import (
    build_model,  # noqa: E402
    load_run,  # noqa: E402
)

RUNS = [  # (label, backbone.name)
    ("V2 (GRN)", "convnextv2_atto"),
    ("V2 without GRN", "convnextv2_atto_nogrn"),
    ("V1 (no GRN, LayerScale)", "convnext_atto"),
]


def cosine_distance(x: Tensor) -> Tensor:
    """Paper §3.2 per image: x [N, C, H, W] -> [N], 1/C² Σ_ij (1 − cos(X_i, X_j)) / 2,
    computed as (1 − ‖Σ_i v_i‖² / C²) / 2 with v_i = X_i / ‖X_i‖ (Σ_ij v_i·v_j = ‖Σ_i v_i‖²):
    O(C·HW) instead of the C×C matrix (`cosine_distance_pairwise`, the check)."""
    v = F.normalize(x.flatten(2).float(), dim=-1, eps=1e-8)  # [N, C, HW]
    c = v.shape[1]
    return (1 - v.sum(1).pow(2).sum(-1) / c**2) / 2


def cosine_distance_pairwise(x: Tensor) -> Tensor:
    """The formula as written (C×C cosines per image); `cosine_distance` must equal it."""
    v = F.normalize(x.flatten(2).float(), dim=-1, eps=1e-8)  # [N, C, HW]
    cos = v @ v.transpose(1, 2)  # [N, C, C]
    return ((1 - cos) / 2).mean(dim=(1, 2))


@torch.no_grad()
def collapse_profile(backbone: nn.Module, images: Tensor, batch: int = 100) -> dict:
    """Per block: mean over images of the cosine distance of the expansion activations."""
    model = backbone.model.eval()
    blocks = [b for s in model.stages for b in s.blocks]
    sums = {"expansion": [0.0] * len(blocks), "after_grn": [0.0] * len(blocks)}
    hooks = []
    for k, b in enumerate(blocks):
        chw = b.use_conv_mlp  # 1×1 convs on [N, C, H, W]; else Linears on [N, H, W, C]

        def add(key, k=k, chw=chw):
            def hook(module, inputs, output=None):
                x = output if output is not None else inputs[0]
                x = x if chw else x.permute(0, 3, 1, 2)
                sums[key][k] += cosine_distance(x).sum().item()

            return hook

        hooks.append(b.mlp.act.register_forward_hook(add("expansion")))
        if getattr(b.mlp, "grn", None) is not None:
            hooks.append(b.mlp.fc2.register_forward_pre_hook(add("after_grn")))
    for i in range(0, len(images), batch):
        model(images[i : i + batch])
    for h in hooks:
        h.remove()
    n = len(images)
    out = {"expansion": [s / n for s in sums["expansion"]]}
    if any(sums["after_grn"]):
        out["after_grn"] = [s / n for s in sums["after_grn"]]
    return out


def eval_images(cfg, device: str, per_class: int = 100) -> Tensor:
    images, labels = load_fashion_mnist(cfg.data.root, "test")
    idx = torch.cat([(labels == c).nonzero()[:per_class, 0] for c in range(10)])
    mean, std = mean_std(cfg.data)
    pre = make_preprocess(cfg.data.img_size, cfg.data.channels, mean, std)
    return pre(images[idx].float()).to(device)


def _summary(profile: dict) -> dict:
    e = profile["expansion"]
    return {"mean": sum(e) / len(e), "min": min(e), "last": e[-1]}


def train_run(
    arch: str,
    steps: int,
    batch: int,
    out: str,
    device: str,
    threads: int,
    extra: list[str],
    profile_every: int = 0,
) -> dict:
    """Train one model (a worker of `--jobs`); the final backbone is read back from `out`.
    With `profile_every`, training stops every that many steps (`run.max_steps`, then an
    exact `--resume`: the schedule is that of the whole run) and the collapse statistic of
    the checkpoint is recorded: `trajectory` = [(step, summary)], step 0 = the init."""
    cfg = replace(resolved_recipe("fcmae_fmnist"), **{"backbone.name": arch})
    cfg = apply_overrides(
        fixed_step_config(cfg, steps, batch, out, device=device, threads=threads), extra
    )
    t0 = time.perf_counter()
    trajectory = []
    if profile_every:
        torch.set_num_threads(threads or torch.get_num_threads())
        images = eval_images(cfg, device)
        torch.manual_seed(cfg.run.seed)
        trajectory.append((0, _summary(collapse_profile(build_model(cfg).backbone, images))))
        for stop in range(profile_every, steps, profile_every):
            train(replace(cfg, **{"run.max_steps": stop}), resume=stop > profile_every)
            _, method = load_run(out)
            trajectory.append((stop, _summary(collapse_profile(method.backbone, images))))
    train(cfg, resume=bool(trajectory) and steps > profile_every)
    rows = [r for r in read_log(out) if "train/loss" in r]
    return {
        "wall_s": time.perf_counter() - t0,
        "steps": rows[-1]["step"],
        "loss": [(r["step"], r["train/loss"]) for r in rows],
        "trajectory": trajectory,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traj = {k: r["trajectory"] for k, r in results["runs"].items() if r.get("trajectory")}
    fig, axes = plt.subplots(1, 2 if traj else 1, figsize=(11 if traj else 6.5, 3.8))
    ax = axes[0] if traj else axes
    for i, (label, prof) in enumerate(results["profiles"].items()):
        ys = prof["expansion"]
        xs = [(k + 1) / len(ys) for k in range(len(ys))]
        style = "--" if label.startswith("random") else "-"
        ax.plot(xs, ys, style, marker="o", ms=3, color=f"C{i}", label=label)
    ax.set_xlabel("relative depth (block / number of blocks)")
    ax.set_ylabel("feature cosine distance")
    steps = max((r["steps"] for r in results["runs"].values()), default=results["steps"])
    ax.set_title(f"FCMAE on Fashion-MNIST, ConvNeXt-Atto, {steps} steps each")
    ax.legend(fontsize=8)
    if traj:
        ax = axes[1]
        labels = list(results["profiles"])
        for label, points in traj.items():
            i = labels.index(label)
            xs = [p[0] for p in points] + [results["runs"][label]["steps"]]
            ys = [p[1]["mean"] for p in points] + [sum(results["profiles"][label]["expansion"])
                                                   / len(results["profiles"][label]["expansion"])]  # fmt: skip
            ax.plot(xs, ys, marker="o", ms=3, color=f"C{i}", label=label)
        ax.set_xlabel("FCMAE step")
        ax.set_ylabel("mean feature cosine distance (all blocks)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title("during training")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(results: dict, out: Path) -> None:
    """Write `out` (.md table), .json and .png of `results`."""
    write_json(results, out.with_suffix(".json"))
    plot(results, out.with_suffix(".png"))
    rows = []
    for label, prof in results["profiles"].items():
        e = prof["expansion"]
        run = results["runs"].get(label, {})
        rows.append([label, f"{sum(e) / len(e):.3f}", f"{min(e):.3f}", f"{e[-1]:.3f}",
                     f"{sum(prof['after_grn']) / len(e):.3f}" if "after_grn" in prof else "-",
                     run.get("steps", 0), f"{run['loss'][-1][1]:.4f}" if run else "-",
                     f"{run.get('wall_s', 0):.0f}"])  # fmt: skip
    headers = ["model", "mean distance", "min", "last block", "mean after GRN",
               "steps", "final loss", "train s"]  # fmt: skip
    commands = "\n".join(f"`{c}`" for c in results.get("commands", [results["command"]]))
    out.write_text(
        f"# GRN and feature collapse (ConvNeXt V2 §3.2, Fig. 4)\n\n{commands}\n\n"
        f"Feature cosine distance of the dimension-expansion activations, mean over the "
        f"{results['eval_images']} Fashion-MNIST test images and over blocks (see the script's "
        f"docstring).\n\n{md_table(headers, rows)}\n\n![per block]({out.with_suffix('.png').name})\n"
    )
    print(out.read_text())


def merge(paths: list[str]) -> dict:
    """One result from several runs of this script (same steps and batch): their profiles
    and runs side by side, every command kept."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    commands = [c for p in parts for c in p.get("commands", [p["command"]])]
    base = parts[0] | {"commands": commands, "profiles": {}, "runs": {}}
    for p in parts:
        if (p["steps"], p["batch"]) != (base["steps"], base["batch"]):
            raise SystemExit(f"cannot merge runs of different steps/batch: {paths}")
        base["profiles"] |= p["profiles"]
        base["runs"] |= p["runs"]
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=120,
                    help="optimizer steps per model (at most one epoch: 60,000 / batch)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs-dir", default="/tmp/visrep-grn-collapse")
    ap.add_argument("--only", nargs="*", help="labels of RUNS to train (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="run.threads of each run (0 = all)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value for every run")
    ap.add_argument("--profile-every", type=int, default=0,
                    help="also record the statistic every N steps (0 = only at the end)")  # fmt: skip
    ap.add_argument("--out", default="benchmarks/results/grn_collapse.md")
    ap.add_argument("--merge", nargs="+", help="JSONs of earlier runs: one report, no training")
    args = ap.parse_args()
    out = Path(args.out)
    if args.merge:
        report(merge(args.merge), out)
        return
    cfg = apply_overrides(resolved_recipe("fcmae_fmnist"), args.set)
    images = eval_images(cfg, args.device)
    results: dict = {"command": command_line(), "env": environment(), "steps": args.steps,
                     "batch": args.batch, "device": args.device, "eval_images": len(images),
                     "extra": args.set,
                     "profiles": {}, "runs": {}}  # fmt: skip
    torch.manual_seed(cfg.run.seed)
    results["profiles"]["random init V2"] = collapse_profile(
        build_model(cfg).backbone.to(args.device), images
    )
    stamp = int(time.time())
    todo = [(label, arch, str(Path(args.runs_dir) / f"{arch}_{stamp}")) for label, arch in RUNS
            if not args.only or label in args.only]  # fmt: skip
    jobs = [(arch, args.steps, args.batch, d, args.device, args.threads, args.set,
             args.profile_every) for _, arch, d in todo]  # fmt: skip
    for (label, arch, run_dir), run in zip(todo, parallel_map(train_run, jobs, args.jobs),
                                           strict=True):  # fmt: skip
        _, method = load_run(run_dir)
        results["profiles"][label] = collapse_profile(method.backbone.to(args.device), images)
        results["runs"][label] = run | {"arch": arch, "run_dir": run_dir}
        print(label, {k: round(sum(v) / len(v), 4) for k, v in results["profiles"][label].items()})
    report(results, out)


if __name__ == "__main__":
    main()
