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

Elsewhere (benchmarks/gpu_claims.sh): `--device cuda` (every `visrep train` gets
`run.device`, sampling and scoring run there), `--threads N` (OMP_NUM_THREADS and
`run.threads` of each process), `--set KEY=VALUE ...` (every training), `--ref-set` /
`--enc-set` / `--enc-b-steps` (the reference classifier's and the two encoders' budgets),
`--jobs N` (trainings at once, each started when what it needs is trained; a generator is
scored as soon as it finishes), `--results DIR` and `--encoders-dir DIR`. The defaults are
the CPU table's.
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
from host import command_line, uptime

from visrep.io import atomic_write_text
from visrep.sample import evaluate_generation, grid

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the installed CLI, or the source tree's (a machine where visrep is not installed)
_CLI = ROOT / ".venv" / "bin" / "visrep"
VISREP = [str(_CLI)] if _CLI.is_file() else [sys.executable, "-m", "visrep.cli"]


def schedule(tasks: list[dict], log: list[dict], jobs: int = 1, threads: int = 1,
             after=None) -> None:  # fmt: skip
    """Run the tasks' `visrep ...` commands ({"cmd", "run", "deps": runs it needs finished,
    "then": called once the run is finished}), at most `jobs` at once, each started in list
    order once its deps are finished; a finished run is not retrained (its command is
    recorded once), one stopped midway resumes from its checkpoint (`visrep train --resume`;
    its minutes then count the resumed part); `after()` after each task. With jobs=1: one
    after another, in order."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    pending, running = list(tasks), {}

    def finish(task: dict, minutes) -> None:
        line = "visrep " + " ".join(task["cmd"])
        if minutes is not None:
            log.append({"command": line, "minutes": minutes, "uptime_after": uptime()})
        elif all(e["command"] != line for e in log):
            log.append({"command": line, "minutes": metrics(task["run"]).get("train_minutes"),
                        "note": "trained by an earlier invocation of this script"})  # fmt: skip
        if task.get("then"):
            task["then"]()
        if after:
            after()

    while pending or running:
        for task in list(pending):
            if len(running) >= jobs or not all(done(d) for d in task.get("deps", ())):
                if jobs == 1:
                    break
                continue
            pending.remove(task)
            if done(task["run"]):
                finish(task, None)
                continue
            cmd = task["cmd"]
            if (task["run"] / "checkpoint.pt").is_file():  # stopped midway: it continues
                cmd = ["train", "--resume", str(task["run"])]
            proc = subprocess.Popen(VISREP + cmd, cwd=ROOT, env=env)
            running[proc] = (task, time.time())
        if not running:
            if pending:
                raise RuntimeError(f"{pending[0]['run']}: what it needs was not trained")
            break
        finished = [p for p in running if p.poll() is not None]
        if not finished:
            time.sleep(1)
            continue
        for proc in finished:
            task, t0 = running.pop(proc)
            if proc.returncode:
                for other in running:
                    other.terminate()
                raise subprocess.CalledProcessError(proc.returncode, proc.args)
            finish(task, round((time.time() - t0) / 60, 2))


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
    p.add_argument("--device", default="cpu", help="training, sampling and scoring device")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for every training")  # fmt: skip
    p.add_argument("--ref-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="the reference classifier's overrides (default: the recipe's)")  # fmt: skip
    p.add_argument("--enc-set", nargs="*", default=["run.budget_minutes=6"], metavar="KEY=VALUE",
                   help="the better encoder's (mocov3_6min) budget")  # fmt: skip
    p.add_argument("--enc-b-steps", type=int, default=10, help="the worse encoder's steps")
    p.add_argument("--results", default=str(RESULTS), help="folder of the JSON, table, grids")
    p.add_argument("--encoders-dir", default="runs", help="folder of the encoder runs")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (`run.seed`) of "
                   "every generator; seed s > 0 adds rows <name>_seed<s>")  # fmt: skip
    args = p.parse_args()
    runs, results, encs = ROOT / args.runs, ROOT / args.results, ROOT / args.encoders_dir
    results.mkdir(parents=True, exist_ok=True)
    out_json = results / "rcg_fmnist.json"
    state = json.loads(out_json.read_text()) if out_json.is_file() else {}
    log = state.setdefault("commands", [])
    state["settings"] = vars(args) | {"threads": args.threads, "batch": 64}
    if args.device != "cpu" or args.jobs > 1 or args.results != str(RESULTS):
        state["floor_command" if args.floor else "command"] = command_line()
    every = [*([f"run.device={args.device}"] if args.device != "cpu" else []),
             *([f"run.threads={args.threads}"] if args.threads != 1 else []), *args.set]  # fmt: skip
    # encoders: MoCo v3 with a 6-minute budget, and the same recipe stopped after 10 steps
    encoders = {
        "mocov3_6min": list(args.enc_set),
        "mocov3_10steps": [f"run.max_steps={args.enc_b_steps}", "eval.baselines=false"],
    }
    enc_runs = {name: encs / f"rcg_enc_{name}" for name in encoders}

    def record_encoder(name: str) -> None:
        state.setdefault("encoders", {})[name] = {k: metrics(enc_runs[name]).get(k) for k in (
            "knn_top1", "linear_top1", "train_steps", "train_minutes")}  # fmt: skip

    ref = runs / "reference"

    def record_reference() -> None:
        state["reference"] = {k: metrics(ref).get(k) for k in (
            "finetune_top1", "finetune_n_test", "train_steps", "train_minutes")}  # fmt: skip

    tasks = [{"cmd": ["train", "mocov3_fmnist", f"run.out_dir={enc_runs[name]}",
                      "run.progress=false", *extra, *every],
              "run": enc_runs[name], "then": lambda name=name: record_encoder(name)}
             for name, extra in encoders.items()]  # fmt: skip
    tasks.append({"cmd": ["train", "gen_reference_fmnist", f"run.out_dir={ref}",
                          "run.progress=false", *args.ref_set, *every],
                  "run": ref, "then": record_reference})  # fmt: skip
    fixed = [f"run.max_steps={args.steps}", "run.budget_minutes=0", "run.progress=false"]
    gens = {
        "dit_uncond": ["dit_fmnist", "method.num_classes=0"],
        "rcg_mocov3_6min": ["rcg_fmnist", f"method.encoder={enc_runs['mocov3_6min']}",
                            f"method.rdm_steps={args.rdm_steps}"],
        "dit_cond": ["dit_fmnist"],
        "rcg_mocov3_10steps": ["rcg_fmnist", f"method.encoder={enc_runs['mocov3_10steps']}",
                               f"method.rdm_steps={args.rdm_steps}"],
    }  # fmt: skip
    if args.floor:
        return floor(runs, ref, args, state, out_json)
    only = set(filter(None, args.only.split(",")))

    def score(name: str, run: Path) -> None:
        t0 = time.time()
        images, _, _ = _draw_and_score(run, ref, enc_runs["mocov3_6min"], args, state, name)
        picture = grid(images[:64], 8).repeat(3, axis=0).repeat(3, axis=1)
        from PIL import Image

        Image.fromarray(picture[..., 0]).save(results / f"rcg_fmnist_{name}.png")
        state["generators"][name]["train"] = {k: metrics(run).get(k) for k in (
            "train_steps", "train_minutes", "train_img_per_s")}  # fmt: skip
        state["generators"][name]["score_minutes"] = round((time.time() - t0) / 60, 2)
        state["uptime"] = uptime()
        atomic_write_text(out_json, json.dumps(state, indent=2) + "\n")
        atomic_write_text(results / "rcg_fmnist.md", markdown(state))

    to_score = []
    seeds = [int(x) for x in args.seeds.split(",")]
    for seed in seeds:  # seed-major: every generator of the first seed is trained first
        for base, (recipe, *extra) in gens.items():
            if only and base not in only:
                continue
            name = base if seed == 0 else f"{base}_seed{seed}"
            run = runs / name
            needs = [enc_runs[n] for n in encoders if f"method.encoder={enc_runs[n]}" in extra]
            seeded = [f"run.seed={seed}"] if seed else []
            tasks.append({"cmd": ["train", recipe, f"run.out_dir={run}", *fixed, *extra, *seeded,
                                  *every], "run": run, "deps": needs})  # fmt: skip
            to_score.append((name, run))

    def score_finished() -> None:  # each generator once, when it and the scorers are trained
        if done(ref) and done(enc_runs["mocov3_6min"]):
            for name, run in [g for g in to_score if done(g[1])]:
                to_score.remove((name, run))
                score(name, run)

    schedule(tasks, log, args.jobs, args.threads, after=score_finished)
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
    enc = ROOT / args.encoders_dir / "rcg_enc_mocov3_6min"
    scores = evaluate_generation(first, ref, enc, samples=train, device=args.device)
    state.setdefault("floor", {})["real_train_images"] = {
        k: scores[k] for k in ("reference", "encoder")
    }
    from visrep.sample import draw

    again, _, info = draw(first, args.n, steps=f"ddim{args.sample_steps}", ddim=True, seed=1,
                          device=args.device, use_ema=args.ema)  # fmt: skip
    scores = evaluate_generation(first, ref, enc, samples=again, device=args.device)
    state["floor"]["dit_uncond_sampling_seed1"] = {"sampling": info} | {
        k: scores[k] for k in ("reference", "encoder")}  # fmt: skip
    atomic_write_text(out_json, json.dumps(state, indent=2) + "\n")
    atomic_write_text(out_json.with_suffix(".md"), markdown(state))
    return 0


def _draw_and_score(run, ref, encoder, args, state, name):
    """n samples (seed 0, EMA, DDIM, no guidance), scored in both feature spaces."""
    from visrep.sample import draw

    # online weights by default: an EMA of decay 0.995 still holds 0.995^200 = 37% of the
    # zero-output initialisation after 200 steps (its samples are noise)
    images, labels, info = draw(run, args.n, steps=f"ddim{args.sample_steps}", ddim=True,
                                cfg_scale=1.0, seed=0, device=args.device, progress=False,
                                use_ema=args.ema)  # fmt: skip
    np.savez(run / "bench_samples.npz", arr_0=images, labels=labels)
    scores = evaluate_generation(run, ref, encoder, samples=images, device=args.device)
    state.setdefault("generators", {})[name] = {"sampling": info} | {
        k: scores[k] for k in ("reference", "encoder")}  # fmt: skip
    return images, labels, info


def markdown(state: dict) -> str:
    s, ref = state["settings"], state["reference"]
    enc = state.get("encoders", {})
    device = s.get("device", "cpu")
    command = state.get("command") or (
        f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rcg_fmnist.py --steps "
        f"{s['steps']} --rdm-steps {s['rdm_steps']} --n {s['n']} --sample-steps "
        f"{s['sample_steps']}")  # fmt: skip
    where = ("1 torch thread" if device == "cpu" and s.get("threads", 1) == 1 else
             f"device {device}, {s.get('threads', 1)} torch thread(s) per process")  # fmt: skip
    lines = [
        f"# RCG vs DiT on Fashion-MNIST ({'CPU size' if device == 'cpu' else device})", "",
        f"Command: `{command}`", "",
        *([f"Floor rows: `{state['floor_command']}`", ""] if "floor_command" in state else []),
        f"Every generator: {s['steps']} optimizer steps of batch 64 in total (RCG: "
        f"{s['rdm_steps']} RDM steps, then {s['steps'] - s['rdm_steps']} pixel-generator "
        f"steps), {where}. Scored on {s['n']} samples ({'EMA' if s.get('ema') else 'online'} weights, DDIM "
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
    lines += seed_means(state.get("generators", {}))
    lines += ["", "Encoders (RCG's conditioning):", "", "| encoder | k-NN top-1 | linear top-1 "
              "| steps |", "|---|---|---|---|"]  # fmt: skip
    for name, m in enc.items():
        lines.append(f"| {name} | {m['knn_top1']} | {m['linear_top1']} | {m['train_steps']} |")
    host = " (2 cores shared with other jobs)" if device == "cpu" else ""
    lines += ["", f"Host: {state.get('uptime', '')}{host}.", ""]
    return "\n".join(lines)


def seed_means(generators: dict) -> list[str]:
    """Markdown rows: each generator's Fréchet distances over its training seeds (rows
    `<name>` and `<name>_seed<s>`), mean and the per-seed values; [] with one seed each."""
    groups: dict[str, list[dict]] = {}
    for name, g in generators.items():
        groups.setdefault(name.split("_seed")[0], []).append(g)
    if all(len(v) == 1 for v in groups.values()):
        return []
    lines = ["", "Over training seeds (Fréchet distance: mean, then each seed):", "",
             "| generator | seeds | FD (reference) | per seed | FD (MoCo v3) | per seed |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for base, gs in groups.items():
        cells = []
        for space in ("reference", "encoder"):
            fd = [g[space]["frechet_distance"] for g in gs]
            cells += [f"{np.mean(fd):.2f}", " / ".join(f"{x:.2f}" for x in fd)]
        lines.append(f"| {base} | {len(gs)} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
