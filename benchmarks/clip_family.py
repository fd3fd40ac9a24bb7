"""SLIP vs CLIP, bag-of-words captions, and the weight-decay control, at an equal step budget
(docs/results.md "SLIP vs CLIP, and bag-of-words captions").

Every row: 120 steps of batch 32 on the first 3,840 Fashion-MNIST train images with their
caption templates (one epoch: warmup 0.1 + cosine), blr 4e-3, one thread; each recipe keeps
its own method settings (SLIP: weight decay 0.1, SimCLR views and head; CLIP: 0.5). Zero-shot
on the first 2,000 Fashion-MNIST **test** images with the 7 unseen ImageNet templates (a BoW
run gets them in BoW form, and once more as sentences). The control row trains `clip_fmnist`
at SLIP's weight decay: the script reads back each run's saved config and optimizer groups,
so a row whose override did not reach the optimizer is visible, and reports how far the final
weights of the two CLIP runs (wd 0.5 vs 0.1) are apart. The LiT row (`lit_fmnist`, needs
`pip install -e '.[text]'`) trains only the image tower and the locked text tower's projection.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_family.py [--rows lit ...]

`--rows` runs only the rows named; the rows of an earlier invocation stay in the JSON.

Writes benchmarks/results/clip_family.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

from visrep.checkpoint import load_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMON = ["data.limit=3840", "optim.batch_size=32", "optim.blr=4e-3", "run.max_steps=120",
          "eval.final=False", "run.threads=1", "run.progress=False"]  # fmt: skip
# name -> (recipe, overrides, zero-shot overrides)
ROWS: dict[str, tuple[str, list[str], list[str]]] = {
    "clip": ("clip_fmnist", [], []),
    "slip": ("slip_fmnist", [], []),
    "clip_bow": ("clip_bow_fmnist", [], []),
    "clip_bow_sentence_eval": ("clip_bow_fmnist", [], ["data.caption_style=sentence"]),
    "clip_bow_unbalanced": ("clip_bow_fmnist", ["data.bow_balance=0"], []),
    "clip_seed1": ("clip_fmnist", ["run.seed=1"], []),
    "slip_seed1": ("slip_fmnist", ["run.seed=1"], []),
    "clip_wd0.1": ("clip_fmnist", ["optim.weight_decay=0.1"], []),
    # LiT (Zhai et al. 2022): the pretrained all-MiniLM-L6-v2 text tower locked
    "lit": ("lit_fmnist", [], []),
}  # fmt: skip
VISREP = [sys.executable, "-m", "visrep.cli"]


def run(name: str, root: Path) -> dict:
    recipe, extra, zs_extra = ROWS[name]
    # the sentence-prompt evaluation reuses the BoW run rather than training it again
    out = root / ("clip_bow" if name == "clip_bow_sentence_eval" else name)
    row = {"name": name, "recipe": recipe, "uptime_before": uptime()}
    train = [*VISREP, "train", recipe, *COMMON, *extra, f"run.out_dir={out}"]
    if not (out / "checkpoint.pt").exists():  # (a rerun of the script reuses finished runs)
        t0 = time.perf_counter()
        subprocess.run(train, check=True)
        row["train_wall_s"] = round(time.perf_counter() - t0, 1)
    zs = out / f"zeroshot_{name}.json"
    if not zs.exists():
        subprocess.run([*VISREP, "eval", "zeroshot", "--ckpt", str(out), "eval.limit_test=2000",
                        *zs_extra, "--out", str(zs)], check=True)  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    state = load_checkpoint(out, map_location="cpu")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    row |= {"command": " ".join(["visrep", *train[3:]]), "zeroshot": json.loads(zs.read_text()),
            "last_loss": [r["train/loss"] for r in log if "train/loss" in r][-1],
            # SLIP's loss is CLIP's + SimCLR's: its CLIP term is the comparable figure
            "last_clip_loss": [r.get("train/clip_loss", r["train/loss"]) for r in log
                               if "train/loss" in r][-1],
            "steps": max(r["step"] for r in log if "train/loss" in r),
            "config_weight_decay": cfg["optim"]["weight_decay"],
            "optimizer_group_weight_decays":
                sorted({g["weight_decay"] for g in state["optimizer"]["param_groups"]}),
            "uptime_after": uptime()}  # fmt: skip
    return row


def weight_distance(a: Path, b: Path) -> dict:
    """Relative Frobenius distance per weight matrix between two runs' final models."""
    wa, wb = (load_checkpoint(p, map_location="cpu")["model"] for p in (a, b))
    d = [(wa[k].float() - wb[k].float()).norm().item() / max(wa[k].float().norm().item(), 1e-12)
         for k in wa if wa[k].is_floating_point() and wa[k].ndim > 1]  # fmt: skip
    return {"median": float(torch.tensor(d).median()), "max": max(d)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="*", default=list(ROWS))
    p.add_argument("--runs-dir", default="/tmp/visrep-clip-family")
    args = p.parse_args()
    root = Path(args.runs_dir)
    out = {"command": command_line(), "environment": environment(), "common": COMMON, "runs": []}
    before, earlier = {}, {}  # a rerun reuses finished runs: keep their wall time and load
    if (RESULTS / "clip_family.json").exists():
        earlier = json.loads((RESULTS / "clip_family.json").read_text())
        before = {r["name"]: r for r in earlier["runs"]}
    # every invocation that produced a row in the file (a `--rows` run adds rows)
    out["commands"] = list(dict.fromkeys([*earlier.get("commands", [earlier.get("command")]),
                                          out["command"]] if earlier else [out["command"]]))  # fmt: skip
    fresh = {}
    for name in args.rows:
        row = run(name, root)
        if "train_wall_s" not in row and name in before:  # trained by an earlier invocation
            row |= {
                k: before[name][k] for k in ("train_wall_s", "uptime_before") if k in before[name]
            }
        fresh[name] = row | {"script_command": out["command"]}
        # rows not run this time keep their earlier result, in ROWS order
        out["runs"] = [fresh.get(n) or before[n] for n in ROWS if n in fresh or n in before]
        write_json(out, RESULTS / "clip_family.json")
    if {"clip", "clip_wd0.1"} <= set(args.rows):
        out["clip_wd_weight_distance"] = weight_distance(root / "clip", root / "clip_wd0.1")
    elif "clip_wd_weight_distance" in earlier:
        out["clip_wd_weight_distance"] = earlier["clip_wd_weight_distance"]
    write_json(out, RESULTS / "clip_family.json")
    rows = [[f"`{r['name']}`", f"`{r['recipe']}`", str(r["steps"]), f"{r['last_clip_loss']:.3f}",
             f"{r['zeroshot']['zeroshot_top1']:.3f}", f"{r['zeroshot']['zeroshot_top5']:.3f}",
             f"{r['config_weight_decay']} / {', '.join(map(str, r['optimizer_group_weight_decays']))}",
             f"{r['train_wall_s']:.0f} s" if "train_wall_s" in r else "–",
             r["uptime_before"].rsplit("load average:", 1)[-1].split(",")[0].strip()]
            for r in out["runs"]]  # fmt: skip
    dist = out.get("clip_wd_weight_distance")
    md = ("# SLIP vs CLIP, bag-of-words, weight-decay control (120 steps of batch 32)\n\n"
          + "; ".join(f"`{c}`" for c in out["commands"])
          + f"; every row: `visrep train RECIPE {' '.join(COMMON)} [row's "
          "overrides]`, then `visrep eval zeroshot --ckpt RUN eval.limit_test=2000`.\n\n" + md_table(
              ["row", "recipe", "steps", "last CLIP loss", "zero-shot top-1", "top-5",
               "wd: config / optimizer groups", "train wall", "load"], rows) +
          (f"\n\nCLIP wd 0.5 vs wd 0.1, relative distance between the final weight matrices: "
           f"median {dist['median']:.4f}, max {dist['max']:.4f}.\n" if dist else "\n"))  # fmt: skip
    (RESULTS / "clip_family.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
