"""Detection transfer in small: Mask R-CNN with a ViTDet backbone from an MAE run vs the same
architecture at its random initialisation (and the MAE run after supervised fine-tuning),
same detector, same steps, on a built COCO-format set (ViTDet, Li et al., ECCV 2022, Table 4:
MAE pre-training beats random init by a wide margin).

    .venv/bin/visrep data build-folder --out data/emoji
    .venv/bin/visrep train mae_own data.dataset=data/emoji run.out_dir=runs/det_mae_emoji
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detect_transfer.py \
        --mae runs/det_mae_emoji --steps 200

The set (built here if missing): `visrep.data.build_detection` with source emoji at 64 px
(the MAE run's resolution), 1-4 objects of 25-60% of the side per image, 1,000 train / 200
val images; val objects are the emoji of the folder's val/ (never seen by the MAE run) on
val-only photographs. Variants: `mae` (the run's weights), `random` (its initialisation,
same detector recipe), `random_nold` (its initialisation without layer decay: ViTDet's 0.7
over 12 blocks leaves a random patch embedding at 1% of the lr), `mae_nold` (the run's
weights without layer decay), `mae_ft` (the run after
`visrep eval finetune` on the folder's labels, `--ft-set` its schedule). Writes
benchmarks/results/detect_transfer.{json,md}: per variant the COCO box and mask AP
(pycocotools), the command, wall time, a matmul probe and host load.

Elsewhere (benchmarks/gpu_claims.sh): `--device cuda` (detector and fine-tuning),
`--threads N` (`run.threads` of both), `--ft-set KEY=VALUE ...` (the fine-tuning's overrides,
e.g. a longer schedule), `--jobs N` (variants trained at once in processes, each recorded as
it finishes). The defaults are the CPU table's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import CpuMeter, as_finished, command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

from visrep.data.build_detection import build_detection  # noqa: E402
from visrep.data.coco import CocoSet, annotation_file  # noqa: E402
from visrep.detect import run_detect_cli  # noqa: E402
from visrep.evals.detection import detection_eval  # noqa: E402
from visrep.finetune import run_finetune_cli  # noqa: E402
from visrep.runs import load_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# the detector for 64 px images on a CPU: 8x8 tokens (ViT/8), 4x4 windows, a 64-channel
# pyramid and light RoI heads; lr 1e-4 (ViTDet's, not scaled down to the batch of 8)
DETECTOR = ["method.window_size=4", "method.fpn_dim=64", "method.box_head_dim=256",
            "method.mask_head_dim=64", "method.rois_per_image=128", "method.proposals=300",
            "optim.batch_size=8", "optim.lr=1e-4", "run.threads=1", "run.progress=false"]  # fmt: skip
# no RandAugment: timm's posterize fails on this PIL ("bits must be between 1 and 8") in the
# fine-tuning of an image folder
FINETUNE = ["run.threads=1", "run.progress=false", "method.auto_augment="]
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def row(run: dict) -> list:
    m = run["metrics"]
    return [run["variant"], f"`{run['source']}` ({run['init']})",
            *(f"{m['box_' + s]:.4f}" for s in STATS[:3]), *(f"{m['mask_' + s]:.4f}" for s in STATS[:3]),
            *(f"{m.get(k, float('nan')):.4f}" for k in ("agnostic_box_AP50", "agnostic_mask_AP50")),
            m["train_steps"], f"{run['wall_s'] / 60:.1f}",
            f"{run['matmul_gflops_before']:.0f} / {run['matmul_gflops_after']:.0f}",
            f"{run['cpu']['cores_used']:.2f}"]  # fmt: skip


def reevaluate(run: dict) -> None:
    """COCO metrics of a finished variant again, from its checkpoint (the current metrics)."""
    cfg, model = load_run(run["metrics"]["detect_run"])
    val = CocoSet(cfg.method.data, "val", channels=cfg.method.channels)
    run["metrics"] |= detection_eval(model.detect, val, batch_size=cfg.optim.batch_size)


def context(mae: str, runs_dir: str) -> dict:
    """What the backbones were: the MAE run's k-NN / linear on its folder (and its untrained
    init's), the fine-tuned run's top-1."""
    keys = ("train_steps", "knn_top1", "linear_top1", "init_knn_top1", "init_linear_top1",
            "raw_knn_top1", "finetune_top1", "finetune_steps")  # fmt: skip
    out = {}
    for name, f in (("mae", Path(mae) / "metrics.json"),
                    ("mae_finetuned", Path(runs_dir) / "eval_finetune.json")):  # fmt: skip
        if f.is_file():
            m = json.loads(f.read_text())
            out[name] = {k: m[k] for k in keys if k in m}
    return out


def write(out: dict, path: str, steps: int) -> None:
    write_json(out, path + ".json")
    n_val = len(json.loads(annotation_file(out["data"], "val").read_text())["images"])
    table = md_table(["variant", "backbone", "box AP", "AP50", "AP75", "mask AP", "AP50", "AP75",
                      "class-agnostic box AP50", "class-agnostic mask AP50", "steps", "minutes",
                      "matmul GFLOP/s before/after", "cores used"],
                     [row(r) for r in out["runs"]])  # fmt: skip
    md = ("# Detection transfer: ViTDet Mask R-CNN on the built emoji set (64 px)\n\n"
          + "".join(f"`{c}`\n\n" for c in [*out.get("earlier_commands", []), out["command"]])
          + (f"re-scored from the checkpoints by `{out['reevaluated_by']}`\n\n"
             if "reevaluated_by" in out else "")
          + f"{table}\n\nCOCO AP (IoU 0.50:0.95; class-agnostic: "
          f"COCOeval useCats=0) on {out['data']}/val ({n_val} images), {steps} steps of 8 images; "
          f"detector overrides: `{' '.join(DETECTOR)}`. Backbones: "
          f"`{json.dumps(out.get('context', {}))}`. Host at the end: {uptime()}\n")  # fmt: skip
    Path(path + ".md").write_text(md)
    print(md)


def run_variant(variant: str, mae: str, data: str, runs_dir: str, steps: int, device: str,
                threads: int, extra: list[str], ft_extra: list[str]) -> dict:  # fmt: skip
    """One variant: (for mae_ft: supervised fine-tuning of the MAE run on the folder's labels
    first, unless done) the detector trained and scored; its row of the results."""
    torch.set_num_threads(threads)
    source, init = mae, "random" if variant.startswith("random") else "pretrained"
    threads_set = [f"run.threads={threads}"] if threads != 1 else []
    if variant == "mae_ft":  # supervised fine-tuning on the folder's labels first
        source = str(Path(runs_dir) / "mae_finetuned")
        if not (Path(source) / "checkpoint.pt").is_file():
            run_finetune_cli(mae, [f"run.out_dir={source}", *FINETUNE, *threads_set, *ft_extra],
                             out=str(Path(runs_dir) / "eval_finetune.json"), device=device)  # fmt: skip
    # random_nold: random init without layer decay (0.7 over 12 blocks leaves the random patch
    # embedding at 1% of the lr, which a from-scratch baseline would not do); mae_nold: the MAE
    # weights without it, to see whether the decay holds them back
    nold = ["method.layer_decay=1.0"] if variant.endswith("_nold") else []
    overrides = [*DETECTOR, *threads_set, f"method.init={init}", *nold,
                 f"run.out_dir={runs_dir}/{variant}", *extra]  # fmt: skip
    probe = matmul_gflops()
    t0 = time.perf_counter()
    with CpuMeter() as meter:
        m = run_detect_cli(source, data, overrides, steps=steps, out=f"{runs_dir}/{variant}.json",
                           device=device)  # fmt: skip
    return {
        "variant": variant, "source": source, "init": init, "overrides": overrides,
        "steps": steps, "metrics": {k: v for k, v in m.items() if k != "config"},
        "wall_s": round(time.perf_counter() - t0, 1), "cpu": meter.as_dict(),
        "matmul_gflops_before": round(probe, 1),
        "matmul_gflops_after": round(matmul_gflops(), 1), "uptime": uptime(),
        **({"device": device} if device else {})}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mae", required=True, help="the MAE run (visrep train mae_own ...)")
    p.add_argument("--data", default="data/det_emoji64", help="built here if missing")
    p.add_argument("--emoji-root", default="emoji-datasource-google-16.0.0.tgz")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["mae", "random", "mae_ft"],
        choices=["mae", "random", "random_nold", "mae_nold", "mae_ft"],
    )
    p.add_argument("--runs-dir", default="runs/detect_transfer")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    p.add_argument("--ft-set", nargs="*", default=[], help="key=value overrides of mae_ft's "
                   "fine-tuning")  # fmt: skip
    p.add_argument("--device", default="", help="run.device (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="run.threads of each training")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at once (processes)")
    p.add_argument("--out", default=str(RESULTS / "detect_transfer"))
    p.add_argument("--reeval", action="store_true",
                   help="no training: evaluate the runs listed in --out.json again")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.reeval:
        out = json.loads(Path(args.out + ".json").read_text())
        for run in out["runs"]:
            reevaluate(run)
        out["reevaluated_by"] = command_line()
        out["context"] = context(args.mae, args.runs_dir)
        write(out, args.out, args.steps)
        return
    if not annotation_file(args.data, "val").is_file():
        build_detection(args.data, "emoji", n_train=1000, n_val=200, size=64,
                        scale=(0.25, 0.6), emoji_root=args.emoji_root)  # fmt: skip
    out = {"command": command_line(), "environment": environment(), "data": args.data, "runs": []}
    if Path(args.out + ".json").is_file():  # keep the variants this command does not rerun
        old = json.loads(Path(args.out + ".json").read_text())
        out["runs"] = [r for r in old["runs"] if r["variant"] not in args.variants]
        out["earlier_commands"] = [*old.get("earlier_commands", []), old["command"]]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out["context"] = context(args.mae, args.runs_dir)
    jobs = [(v, args.mae, args.data, args.runs_dir, args.steps, args.device, args.threads,
             args.set, args.ft_set) for v in args.variants]  # fmt: skip

    def record(run: dict) -> None:
        out["runs"].append(run)
        out["context"] = context(args.mae, args.runs_dir)  # mae_ft's fine-tuning, once done
        write(out, args.out, args.steps)

    for run in as_finished(run_variant, jobs, args.jobs):  # recorded as each finishes
        record(run)


if __name__ == "__main__":
    main()
