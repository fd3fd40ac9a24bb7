"""RCG's claims at a CPU size (Li, Katabi & He 2024, Table 1 / Sec. 4): unconditional RCG vs
unconditional DiT trained for the same total steps vs class-conditional DiT, and RCG from
two encoders of different k-NN, scored by `visrep.sample.evaluate_generation` in the
features of a supervised reference classifier (`gen_reference_fmnist`) and of a MoCo v3
encoder. Not FID: a Fréchet distance in a visrep-trained network's features.

Every training is a `visrep train` process (the commands are recorded); runs that already
hold a finished checkpoint are reused, so the script can be re-run to fill the table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rcg_fmnist.py --steps 300 --rdm-steps 60

Writes benchmarks/results/rcg_fmnist.{json,md} and one sample grid per generator
(rcg_fmnist_<name>.png, the first 64 samples, 3× enlarged).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from host import uptime

from visrep.io import atomic_write_text
from visrep.sample import evaluate_generation, grid

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VISREP = [str(ROOT / ".venv" / "bin" / "visrep")]


def sh(cmd: list[str], log: list[dict]) -> None:
    """Run `visrep ...` (1 torch thread), record the command and its wall time."""
    t0 = time.time()
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run(VISREP + cmd, check=True, cwd=ROOT, env=env)
    log.append({"command": "visrep " + " ".join(cmd), "minutes": round((time.time() - t0) / 60, 2),
                "uptime_after": uptime()})  # fmt: skip


def ensure(cmd: list[str], run: Path, log: list[dict]) -> None:
    """Train unless `run` is finished; a finished run's command is recorded once."""
    line = "visrep " + " ".join(cmd)
    if not done(run):
        sh(cmd, log)
    elif all(e["command"] != line for e in log):
        log.append({"command": line, "minutes": metrics(run).get("train_minutes"),
                    "note": "trained by an earlier invocation of this script"})  # fmt: skip


def done(run: Path) -> bool:
    return (run / "metrics.json").is_file()


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="total optimizer steps per generator")
    p.add_argument("--rdm-steps", type=int, default=60, help="RCG: of those, the RDM's")
    p.add_argument("--n", type=int, default=500, help="samples (and real test images) scored")
    p.add_argument("--sample-steps", default="25", help="DDIM steps of the pixel sampler")
    p.add_argument("--runs", default="runs/rcg_bench", help="folder of the runs")
    p.add_argument("--ema", action="store_true", help="sample the EMA weights (default: online)")
    p.add_argument(
        "--floor",
        action="store_true",
        help="only add the rows of real train images and of a second sampling seed",
    )
    p.add_argument("--only", default="", help="comma-separated generator names")
    args = p.parse_args()
    runs = ROOT / args.runs
    out_json = RESULTS / "rcg_fmnist.json"
    state = json.loads(out_json.read_text()) if out_json.is_file() else {}
    log = state.setdefault("commands", [])
    state["settings"] = vars(args) | {"threads": 1, "batch": 64}
    # encoders: MoCo v3 with a 6-minute budget, and the same recipe stopped after 10 steps
    encoders = {
        "mocov3_6min": ["run.budget_minutes=6"],
        "mocov3_10steps": ["run.max_steps=10", "eval.baselines=false"],
    }
    for name, extra in encoders.items():
        run = ROOT / "runs" / f"rcg_enc_{name}"
        ensure(["train", "mocov3_fmnist", f"run.out_dir={run}", "run.progress=false", *extra],
               run, log)  # fmt: skip
        state.setdefault("encoders", {})[name] = {k: metrics(run).get(k) for k in (
            "knn_top1", "linear_top1", "train_steps", "train_minutes")}  # fmt: skip
    ref = runs / "reference"
    ensure(["train", "gen_reference_fmnist", f"run.out_dir={ref}", "run.progress=false",
            "eval.limit_train=20000"], ref, log)  # fmt: skip
    state["reference"] = {k: metrics(ref).get(k) for k in (
        "finetune_top1", "finetune_n_test", "train_steps", "train_minutes")}  # fmt: skip
    fixed = [f"run.max_steps={args.steps}", "run.budget_minutes=0", "run.progress=false"]
    gens = {
        "dit_uncond": ["dit_fmnist", "method.num_classes=0"],
        "rcg_mocov3_6min": ["rcg_fmnist", f"method.encoder={ROOT / 'runs' / 'rcg_enc_mocov3_6min'}",
                            f"method.rdm_steps={args.rdm_steps}"],
        "dit_cond": ["dit_fmnist"],
        "rcg_mocov3_10steps": ["rcg_fmnist", f"method.encoder={ROOT / 'runs' / 'rcg_enc_mocov3_10steps'}",
                               f"method.rdm_steps={args.rdm_steps}"],
    }  # fmt: skip
    if args.floor:
        return floor(runs, ref, args, state, out_json)
    only = set(filter(None, args.only.split(",")))
    for name, (recipe, *extra) in gens.items():
        if only and name not in only:
            continue
        run = runs / name
        ensure(["train", recipe, f"run.out_dir={run}", *fixed, *extra], run, log)
        t0 = time.time()
        images, _, _ = _draw_and_score(
            run, ref, ROOT / "runs" / "rcg_enc_mocov3_6min", args, state, name
        )
        picture = grid(images[:64], 8).repeat(3, axis=0).repeat(3, axis=1)
        from PIL import Image

        Image.fromarray(picture[..., 0]).save(RESULTS / f"rcg_fmnist_{name}.png")
        state["generators"][name]["train"] = {k: metrics(run).get(k) for k in (
            "train_steps", "train_minutes", "train_img_per_s")}  # fmt: skip
        state["generators"][name]["score_minutes"] = round((time.time() - t0) / 60, 2)
        state["uptime"] = uptime()
        atomic_write_text(out_json, json.dumps(state, indent=2) + "\n")
        atomic_write_text(RESULTS / "rcg_fmnist.md", markdown(state))
    return 0


def floor(runs: Path, ref: Path, args, state: dict, out_json: Path) -> int:
    """Rows that say how far apart two samples of one distribution already are: n real
    Fashion-MNIST *train* images (seeded draw) scored like a generator, and the first
    generator again with sampling seed 1."""
    import torch

    from visrep.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(split="train")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(2))[: args.n]
    train = images[idx].permute(0, 2, 3, 1).numpy()  # [n, 28, 28, 1] uint8
    first = runs / "dit_uncond"
    enc = ROOT / "runs" / "rcg_enc_mocov3_6min"
    scores = evaluate_generation(first, ref, enc, samples=train, device="cpu")
    state.setdefault("floor", {})["real_train_images"] = {
        k: scores[k] for k in ("reference", "encoder")
    }
    from visrep.sample import draw

    again, _, info = draw(first, args.n, steps=f"ddim{args.sample_steps}", ddim=True, seed=1,
                          device="cpu", use_ema=args.ema)  # fmt: skip
    scores = evaluate_generation(first, ref, enc, samples=again, device="cpu")
    state["floor"]["dit_uncond_seed1"] = {"sampling": info} | {
        k: scores[k] for k in ("reference", "encoder")}  # fmt: skip
    atomic_write_text(out_json, json.dumps(state, indent=2) + "\n")
    atomic_write_text(RESULTS / "rcg_fmnist.md", markdown(state))
    return 0


def _draw_and_score(run, ref, encoder, args, state, name):
    """n samples (seed 0, EMA, DDIM, no guidance), scored in both feature spaces."""
    from visrep.sample import draw

    # online weights by default: an EMA of decay 0.995 still holds 0.995^200 = 37% of the
    # zero-output initialisation after 200 steps (its samples are noise)
    images, labels, info = draw(run, args.n, steps=f"ddim{args.sample_steps}", ddim=True,
                                cfg_scale=1.0, seed=0, device="cpu", progress=False,
                                use_ema=args.ema)  # fmt: skip
    np.savez(run / "bench_samples.npz", arr_0=images, labels=labels)
    scores = evaluate_generation(run, ref, encoder, samples=images, device="cpu")
    state.setdefault("generators", {})[name] = {"sampling": info} | {
        k: scores[k] for k in ("reference", "encoder")}  # fmt: skip
    return images, labels, info


def markdown(state: dict) -> str:
    s, ref = state["settings"], state["reference"]
    enc = state.get("encoders", {})
    lines = [
        "# RCG vs DiT on Fashion-MNIST (CPU size)", "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rcg_fmnist.py --steps "
        f"{s['steps']} --rdm-steps {s['rdm_steps']} --n {s['n']} --sample-steps "
        f"{s['sample_steps']}`", "",
        f"Every generator: {s['steps']} optimizer steps of batch 64 in total (RCG: "
        f"{s['rdm_steps']} RDM steps, then {s['steps'] - s['rdm_steps']} pixel-generator "
        f"steps), 1 torch thread. Scored on {s['n']} samples ({'EMA' if s.get('ema') else 'online'} weights, DDIM "
        f"{s['sample_steps']} steps, no guidance, seed 0; RCG's representations: RDM DDIM 250 "
        f"steps, η = 1) against {s['n']} Fashion-MNIST test images.", "",
        f"Reference network: `gen_reference_fmnist` (supervised ResNet-18, "
        f"{ref['train_steps']} steps), test top-1 {ref['finetune_top1']:.4f} on "
        f"{ref['finetune_n_test']} images. Encoder features: MoCo v3 `mocov3_6min` "
        f"(k-NN {enc.get('mocov3_6min', {}).get('knn_top1')}).", "",
        "| generator | FD (reference classifier) | precision | recall | FD (MoCo v3 encoder) "
        "| precision | recall | train min |", "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, g in state.get("generators", {}).items():
        r, e = g["reference"], g["encoder"]
        lines.append(f"| {name} | {r['frechet_distance']:.2f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {e['frechet_distance']:.2f} | {e['precision']:.3f} | "
                     f"{e['recall']:.3f} | {g['train']['train_minutes']} |")  # fmt: skip
    for name, g in state.get("floor", {}).items():
        r, e = g["reference"], g["encoder"]
        lines.append(f"| *{name}* | {r['frechet_distance']:.2f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {e['frechet_distance']:.2f} | {e['precision']:.3f} | "
                     f"{e['recall']:.3f} | |")  # fmt: skip
    lines += ["", "Encoders (RCG's conditioning):", "", "| encoder | k-NN top-1 | linear top-1 "
              "| steps |", "|---|---|---|---|"]  # fmt: skip
    for name, m in enc.items():
        lines.append(f"| {name} | {m['knn_top1']} | {m['linear_top1']} | {m['train_steps']} |")
    lines += ["", f"Host: {state.get('uptime', '')} (2 cores shared with other jobs).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
