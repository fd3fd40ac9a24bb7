"""CiT vs plain CLIP on the same noisy pool, the same model and the same number of steps
(CiT paper §4; `visrep.methods.cit`): Fashion-MNIST zero-shot top-1 on the test split (the
7 unseen ImageNet templates, docs/results.md's CLIP protocol) and, per curation round, the
share of Fashion-MNIST (task-relevant) pairs in CiT's curated set. Plain CLIP trains on the
pool as it is, so its share is the pool's.

    visrep data build-captions --out /tmp/cit_pool --fmnist-limit 1000
    .venv/bin/python benchmarks/cit_vs_clip.py --pool /tmp/cit_pool            # seed 0
    .venv/bin/python benchmarks/cit_vs_clip.py --pool /tmp/cit_pool --seeds 1 --name cit_vs_clip_s1
    .venv/bin/python benchmarks/cit_vs_clip.py --pool /tmp/cit_pool --seeds 0,1 \
        --recipes cit_fmnist --cit method.curate_every=27 "method.metadata_templates={}" \
        --name cit_vs_clip_bare      # the reference's bare class names as metadata
    .venv/bin/python benchmarks/cit_vs_clip.py --pool /tmp/cit_pool --recipes cit_fmnist \
        --cit method.curate_every=27 method.metadata_templates=imagenet \
        --name cit_vs_clip_imagenet_templates   # metadata in the 7 ImageNet templates
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import command_line, environment, md_table, uptime, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def visrep(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "visrep.cli", *args], check=True)


def rounds(run: Path) -> list[dict]:
    """One row per curation round from the run's log (`train/cit_*`)."""
    out: dict[int, dict] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "train/cit_round" in row:
            r = int(row["train/cit_round"])
            out[r] = {k.removeprefix("train/cit_"): v for k, v in row.items() if "cit_" in k}
    return [out[r] for r in sorted(out)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", required=True, help="shards from `visrep data build-captions`")
    ap.add_argument("--out", default="/tmp/cit_vs_clip")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--common", nargs="*", default=[
        "backbone.depth=2", "optim.batch_size=64", "optim.epochs=3", "optim.blr=1e-3",
        "optim.warmup_epochs=1", "eval.final=False", "run.progress=False", "run.log_every=9",
        "run.threads=1"])  # fmt: skip
    ap.add_argument("--cit", nargs="*", default=["method.curate_every=27"])
    ap.add_argument("--recipes", default="clip_fmnist,cit_fmnist")
    ap.add_argument("--name", default="cit_vs_clip", help="results/NAME.{md,json}")
    args = ap.parse_args()
    rows, result = [], {"command": command_line(), "environment": environment(), "runs": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for recipe in args.recipes.split(","):
            extra = args.cit if recipe == "cit_fmnist" else []
            run = Path(args.out) / f"{recipe}_s{seed}"
            t0 = time.perf_counter()
            visrep("train", recipe, f"data.dataset={args.pool}", f"run.out_dir={run}",
                   f"run.seed={seed}", *args.common, *extra)  # fmt: skip
            minutes = (time.perf_counter() - t0) / 60
            visrep("eval", "zeroshot", "--ckpt", str(run))
            zs = json.loads((run / "eval_zeroshot.json").read_text())
            steps = max(json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines())
            cur = rounds(run) if recipe == "cit_fmnist" else []
            rec = {"recipe": recipe, "seed": seed, "steps": steps, "train_minutes": minutes,
                   "zeroshot_top1": zs["zeroshot_top1"], "zeroshot_top5": zs["zeroshot_top5"],
                   "rounds": cur}  # fmt: skip
            result["runs"].append(rec)
            shares = ", ".join(f"{c.get('share_fmnist', 0):.2f}" for c in cur) or "pool"
            rows.append([recipe, seed, steps, f"{zs['zeroshot_top1']:.3f}",
                         f"{zs['zeroshot_top5']:.3f}", shares, f"{minutes:.1f}"])  # fmt: skip
    result["uptime_after"] = uptime()
    write_json(result, RESULTS / f"{args.name}.json")
    table = md_table(["recipe", "seed", "steps", "zero-shot top-1", "top-5",
                      "Fashion-MNIST share per round", "train min"], rows)  # fmt: skip
    (RESULTS / f"{args.name}.md").write_text(
        f"# CiT vs CLIP, same pool and steps\n\n`{command_line()}`\n\n{table}\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
