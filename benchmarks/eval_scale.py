"""Evaluation at scale: k-NN + linear probe over a folder of 100,000 JPEGs in bounded memory.

A user's own folder is evaluated by streaming it through a DataLoader into a float16
feature store (`visrep.evals.features.FeatureStore`; memory-mapped beyond
`eval.feature_memory_mb`), k-NN reads the memory bank in chunks and the linear probe reads
its mini-batches from the store, so memory is set by the features, not by the images.
This runs the main job as a user would, through the CLI, under `/usr/bin/time -v`:

1. `visrep train mae_own data.dataset=DIR run.max_steps=S`: a short pre-training on the
   folder (the step rate at this size), then the final evaluation on val/ with the raw-pixel
   and untrained-encoder baselines (three encoders, 90,000 + 10,000 images each);
2. `visrep eval all --ckpt RUN`: the same protocols on the trained encoder alone.

For each: peak RSS of the largest process (`/usr/bin/time -v`), the peak of the summed PSS
of the whole process tree (loader workers included; sampled every 0.5 s from
/proc/PID/smaps_rollup), wall time, and the rates. Build the folder first:

    .venv/bin/python benchmarks/make_jpeg_folder.py --out /tmp/jpeg100k --n 100000 --size 64
    .venv/bin/python benchmarks/eval_scale.py --folder /tmp/jpeg100k

Writes benchmarks/results/eval_scale_100k.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HERE = Path(__file__).resolve().parent


def visrep(phases: Path) -> list[str]:
    """The visrep CLI, run through rss_phases.py (the main process's RSS per phase -> phases)."""
    return [sys.executable, str(HERE / "rss_phases.py"), str(phases)]


def _tree(pid: int) -> list[int]:
    """pid and its descendants (/proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _pss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) if m else 0
    return total / 1024


def measured(cmd: list[str], log: Path) -> dict:
    """Runs cmd under /usr/bin/time -v; peak RSS (largest process), peak tree PSS, wall."""
    t0, peak = time.perf_counter(), [0.0]
    with log.open("w") as f:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=f, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], _pss_mb(_tree(proc.pid)))

        threading.Thread(target=sample, daemon=True).start()
        rc = proc.wait()
        done.set()
    text = log.read_text()
    if rc:
        sys.exit(f"{' '.join(cmd)} failed ({rc}); see {log}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"cmd": " ".join(cmd), "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(rss_kb / 1024), "peak_tree_pss_mb": round(peak[0])}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True, help="output of benchmarks/make_jpeg_folder.py")
    p.add_argument("--recipe", default="mae_own")
    p.add_argument("--steps", type=int, default=100, help="pre-training steps before the eval")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs-dir", default="/tmp/visrep-eval-scale")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    p.add_argument("--skip-eval-all", action="store_true", help="only the training run")
    p.add_argument("--out", default=str(RESULTS / "eval_scale_100k"))
    args = p.parse_args()
    run_dir = Path(args.runs_dir) / args.recipe
    common = [f"data.num_workers={args.workers}", "run.threads=2", *args.set]
    out = {"command": command_line(), "environment": environment(),
           "folder": json.loads((Path(args.folder) / "build_report.json").read_text())}  # fmt: skip
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    out["matmul_gflops_before"] = round(matmul_gflops(), 1)
    out["uptime_before"] = uptime()
    train = measured([*visrep(run_dir.parent / "train_phases.json"), "train", args.recipe, f"data.dataset={args.folder}",
                      f"run.max_steps={args.steps}", "optim.epochs=1", "eval.every_epochs=0",
                      f"run.out_dir={run_dir}", *common],
                     Path(args.runs_dir) / "train.log")  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [json.loads(r) for r in (run_dir / "log.jsonl").read_text().splitlines()]
    rates = [r["train/img_per_s"] for r in rows if "train/img_per_s" in r][1:]  # warm-up out
    train |= {"train_img_per_s": round(sum(rates) / max(len(rates), 1), 1), "metrics": metrics,
              "phases": json.loads((run_dir.parent / "train_phases.json").read_text())}  # fmt: skip
    ev = {}
    if not args.skip_eval_all:
        ev = measured([*visrep(run_dir.parent / "eval_phases.json"), "eval", "all", "--ckpt", str(run_dir), *common],
                      Path(args.runs_dir) / "eval.log")  # fmt: skip
        ev["metrics"] = json.loads((run_dir / "eval_all.json").read_text())
        ev["phases"] = json.loads((run_dir.parent / "eval_phases.json").read_text())
    out |= {"train_and_final_eval": train, "eval_all": ev, "uptime_after": uptime(),
            "matmul_gflops_after": round(matmul_gflops(), 1)}  # fmt: skip
    m, e = metrics, ev.get("metrics", {})
    table = md_table(
        ["run", "images (train + val)", "encoders", "peak RSS (largest process)",
         "peak PSS (process tree)", "wall", "feature extraction", "k-NN / linear top-1"],
        [[f"`train {args.recipe}` + final eval", f"{m['knn_n_train']:,} + {m['knn_n_test']:,}",
          "trained, raw pixels, untrained", f"{train['peak_rss_mb']:,} MiB",
          f"{train['peak_tree_pss_mb']:,} MiB", f"{train['wall_s'] / 60:.1f} min",
          f"{m['eval_images_per_second']:.0f} img/s (× 3 encoders)",
          f"{m['knn_top1']:.3f} / {m['linear_top1']:.3f} (raw {m['raw_knn_top1']:.3f} / "
          f"{m['raw_linear_top1']:.3f})"],
         *([["`eval all`", f"{e['knn_n_train']:,} + {e['knn_n_test']:,}", "trained",
             f"{ev['peak_rss_mb']:,} MiB", f"{ev['peak_tree_pss_mb']:,} MiB",
             f"{ev['wall_s'] / 60:.1f} min", f"{e['eval_images_per_second']:.0f} img/s",
             f"{e['knn_top1']:.3f} / {e['linear_top1']:.3f}"]] if e else [])],
    )  # fmt: skip
    md = (f"# Evaluation over {out['folder']['n']:,} JPEGs ({out['folder']['size']} px)\n\n"
          f"`{out['command']}`\n\n{table}\n\nTraining step rate at the same size: "
          f"{train['train_img_per_s']:.0f} img/s ({args.recipe}, batch of the recipe, "
          f"{args.workers} loader workers). Matmul probe {out['matmul_gflops_before']:.0f} / "
          f"{out['matmul_gflops_after']:.0f} GFLOP/s before / after; "
          f"{out['uptime_before']}; after: {out['uptime_after']}.\n\n"
          "Resident memory of the main process per phase of the training run (MiB; "
          "`benchmarks/rss_phases.py`):\n\n" + md_table(
              ["phase", "on entry", "peak", "on exit"],
              [[r["phase"], f"{r['enter']:,}", f"{r['peak']:,}", f"{r['exit']:,}" if "exit" in r
                else ""] for r in train["phases"]]) + "\n")  # fmt: skip
    write_json(out, args.out + ".json")
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
