"""Fine-tuning after pre-training vs the same architecture at random init, at a fixed step
count (docs/results.md "Fine-tuning: pre-training vs random init" and "ConvNeXt V2 after
FCMAE vs random init").

The protocol is MAE's fine-tuning recipe (He et al. 2022, facebookresearch/mae
`main_finetune.py`: AdamW, layer-wise lr decay, drop path, label smoothing, RandomErasing)
shrunk to a CPU: `visrep eval finetune` for **40 steps of batch 64** = one epoch over the
first 2,560 Fashion-MNIST train images (warmup 0.1 epoch, so the cosine completes),
blr 1e-2, layer decay 0.75, one thread; top-1 on the first 2,000 test images. Each row
varies one thing: the init (`method.init=pretrained` or `random`: the same architecture,
untrained), the blr (1e-3, the recipe's default), layer decay (1.0 = off) or
the number of images (15,000 = 234 steps).

Pre-trained runs:
  * MAE: the reference table's `mae_fmnist` row (benchmarks/reference.py: 5 epochs over
    10,000 images), `--mae`;
  * ConvNeXt V2-Atto after FCMAE (Woo et al. 2023, facebookresearch/ConvNeXt-V2), with GRN
    and without (the paper's GRN ablation): trained here by benchmarks/grn_collapse.py's
    `train_run` (`fcmae_fmnist`, 32 px, batch 64, the schedule compressed into
    `--fcmae-steps` steps) unless the run folder already holds a checkpoint.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_check.py [--rows NAME ...]

Rows already in the JSON are kept (run again with `--rerun`). Writes
benchmarks/results/finetune_check.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402
from own_colour import matmul_gflops  # noqa: E402

RESULTS = HERE / "results"
# the fixed-step protocol; a row changes some of these keys
PROTOCOL = {"optim.blr": "1e-2", "optim.batch_size": "64", "optim.epochs": "1",
            "optim.warmup_epochs": "0.1", "eval.limit_train": "2560",
            "eval.limit_test": "2000", "run.threads": "1", "run.progress": "False"}  # fmt: skip
FINETUNE = [f"{k}={v}" for k, v in PROTOCOL.items()]
# name -> (pre-trained run, init, changes to PROTOCOL)
ROWS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mae": ("mae", "pretrained", {}),
    "mae_random": ("mae", "random", {}),
    "mae_blr1e-3": ("mae", "pretrained", {"optim.blr": "1e-3"}),
    "mae_random_blr1e-3": ("mae", "random", {"optim.blr": "1e-3"}),
    "mae_random_ld1": ("mae", "random", {"method.layer_decay": "1.0"}),
    "fcmae_v2": ("convnextv2_atto", "pretrained", {}),
    "fcmae_v2_nogrn": ("convnextv2_atto_nogrn", "pretrained", {}),
    "fcmae_v2_random": ("convnextv2_atto", "random", {}),
    "fcmae_v2_15k": ("convnextv2_atto", "pretrained", {"eval.limit_train": "15000"}),
    "fcmae_v2_random_15k": ("convnextv2_atto", "random", {"eval.limit_train": "15000"}),
}  # fmt: skip
FCMAE_BATCH = 64


def finetune(source: Path, out_json: Path, init: str, out_dir: Path, **changes: str) -> dict:
    """`visrep eval finetune` of `source` under PROTOCOL (with `changes`); its metrics, the
    command and its wall time. A finished `out_json` is read back, not run again."""
    keys = PROTOCOL | changes
    cmd = ["eval", "finetune", "--ckpt", str(source), "--out", str(out_json), f"method.init={init}",
           *(f"{k}={v}" for k, v in keys.items()), f"run.out_dir={out_dir}"]  # fmt: skip
    row = {"command": "visrep " + " ".join(cmd), "uptime_before": uptime()}
    if not out_json.exists():
        row["matmul_gflops_before"] = round(matmul_gflops(), 1)  # this host's speed just then
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "visrep.cli", *cmd], check=True)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row | {"uptime_after": uptime(), "metrics": json.loads(out_json.read_text())}


def pretrain_fcmae(arch: str, steps: int, runs: Path) -> tuple[Path, dict]:
    """The FCMAE run of `arch` (grn_collapse.train_run: the GRN experiment's own training),
    trained unless its folder already holds a checkpoint."""
    from grn_collapse import train_run

    out = runs / f"fcmae_{arch}_{steps}x{FCMAE_BATCH}"
    info = {"run_dir": str(out), "arch": arch, "steps": steps, "batch": FCMAE_BATCH,
            "command": f"grn_collapse.train_run({arch!r}, {steps}, {FCMAE_BATCH}, "
                       f"{str(out)!r}, 'cpu', threads=1, extra=[]) = visrep train fcmae_fmnist "
                       f"backbone.name={arch} data.limit={steps * FCMAE_BATCH} "
                       f"optim.batch_size={FCMAE_BATCH} optim.epochs=1 eval.final=False "
                       f"eval.every_epochs=0 run.threads=1 run.out_dir={out}"}  # fmt: skip
    if not (out / "checkpoint.pt").exists():
        info |= {"uptime_before": uptime()}
        run = train_run(arch, steps, FCMAE_BATCH, str(out), "cpu", 1, [])
        info |= {"wall_s": round(run["wall_s"], 1), "steps_done": run["steps"],
                 "last_loss": run["loss"][-1][1], "uptime_after": uptime()}  # fmt: skip
    return out, info


HEADERS = ["row", "pre-trained run", "init", "blr", "layer decay", "steps (images)", "top-1",
           "top-5", "test loss", "wall", "load"]  # fmt: skip


def render(out: dict) -> str:
    rows = []
    for r in out["rows"]:
        m = r["metrics"]
        keys = r["changes"]
        rows.append([f"`{r['name']}`", r["source_label"], r["init"],
                     keys.get("optim.blr", PROTOCOL["optim.blr"]),
                     keys.get("method.layer_decay", "0.75"),
                     f"{m['finetune_steps']} ({m['train_images_seen']:,})",
                     f"{m['finetune_top1']:.3f}", f"{m['finetune_top5']:.3f}",
                     f"{m['finetune_test_loss']:.3f}",
                     f"{r['wall_s']:.0f} s" if "wall_s" in r else "–",
                     r["uptime_before"].rsplit("load average:", 1)[-1].split(",")[0].strip()])  # fmt: skip
    pre = "\n".join(f"- `{k}`: {v['command']}" + (f" ({v['wall_s']:.0f} s, last loss "
                    f"{v['last_loss']:.4f})" if "wall_s" in v else "")
                    for k, v in out["pretrained"].items())  # fmt: skip
    return (
        "# Fine-tuning at a fixed step count: pre-trained vs random init (Fashion-MNIST, CPU)\n\n"
        + "; ".join(f"`{c}`" for c in out["commands"])
        + f"\n\nEvery row: `visrep eval finetune --ckpt RUN method.init=INIT {' '.join(FINETUNE)}` "
        "with the row's changes; top-1 on the first 2,000 test images.\n\n"
        + md_table(HEADERS, rows)
        + f"\n\nPre-trained runs:\n{pre}\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="*", default=list(ROWS))
    p.add_argument("--mae", default="/tmp/visrep-reference/fashion_mnist/mae_fmnist",
                   help="MAE run folder (benchmarks/reference.py's mae_fmnist row)")  # fmt: skip
    p.add_argument("--fcmae-steps", type=int, default=937,
                   help="FCMAE pre-training steps of batch 64 (937 = one epoch)")  # fmt: skip
    p.add_argument("--runs-dir", default="/tmp/visrep-finetune-check")
    p.add_argument("--rerun", action="store_true", help="run rows already in the JSON again")
    args = p.parse_args()
    runs = Path(args.runs_dir)
    path = RESULTS / "finetune_check.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    out = {"command": command_line(), "environment": environment(), "protocol": PROTOCOL,
           "commands": list(dict.fromkeys([*earlier.get("commands", []), command_line()])),
           "pretrained": earlier.get("pretrained", {}), "rows": []}  # fmt: skip
    done = {r["name"]: r for r in earlier.get("rows", [])}
    for name in args.rows:
        source, init, changes = ROWS[name]
        if name in done and not args.rerun:
            continue
        (runs / f"{name}.json").unlink(missing_ok=True)  # (a row not in the JSON is run anew)
        if source == "mae":
            src, info = Path(args.mae), {"run_dir": args.mae, "command": "benchmarks/reference.py "
                                         "--dataset fashion_mnist --recipes mae_fmnist"}  # fmt: skip
        else:
            src, info = pretrain_fcmae(source, args.fcmae_steps, runs)
        out["pretrained"][source] = out["pretrained"].get(source, {}) | info
        row = finetune(src, runs / f"{name}.json", init, runs / name, **changes)
        label = f"{source} ({info['steps']}×{info['batch']})" if "steps" in info else source
        done[name] = {"name": name, "source": str(src), "source_label": label, "init": init,
                      "changes": changes, **row}  # fmt: skip
        out["rows"] = [done[n] for n in ROWS if n in done]
        write_json(out, path)
        print(name, row["metrics"]["finetune_top1"], flush=True)
    out["rows"] = [done[n] for n in ROWS if n in done]
    write_json(out, path)
    (RESULTS / "finetune_check.md").write_text(render(out))
    print(render(out))


if __name__ == "__main__":
    main()
