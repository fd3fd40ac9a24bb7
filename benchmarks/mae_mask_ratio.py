"""MAE's masking ratio (He et al. 2022, Fig. 5: 75% beats low ratios in linear probing and
fine-tuning) at the size that runs here: `mae_fmnist` at each `--ratios` value under the
reference table's Fashion-MNIST protocol (benchmarks/reference.py: 5 epochs over 10,000
images, 20-NN and linear probe beside the untrained encoder), then `visrep eval finetune` of
each run at the fine-tuning table's fixed step count (40 steps of batch 64 on 2,560 images,
blr 1e-2, layer decay 0.75; top-1 on the first 2,000 test images).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mae_mask_ratio.py

Writes benchmarks/results/mae_mask_ratio.{json,md} (rows: benchmarks/results/mae_mask_ratio/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_check import FINETUNE, finetune  # noqa: E402
from host import command_line, md_table, uptime, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
RECIPE_RATIO = 0.75  # mae_fmnist's method.mask_ratio
RESULTS = HERE / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.25])
    p.add_argument("--runs-dir", default="/tmp/visrep-mask-ratio")
    p.add_argument(
        "--reference-runs",
        default="/tmp/visrep-reference",
        help="runs of benchmarks/reference.py (the recipe's own ratio is reused)",
    )
    args = p.parse_args()
    out = {"command": command_line(), "uptime_before": uptime(), "rows": []}
    rows = []
    for r in args.ratios:
        tag = f"r{round(r * 100)}"
        runs = Path(args.runs_dir) / tag
        results = RESULTS / "mae_mask_ratio" / tag
        reference = RESULTS / "reference" / "fashion_mnist" / "mae_fmnist.json"
        ref_run = Path(args.reference_runs) / "fashion_mnist" / "mae_fmnist"
        if r == RECIPE_RATIO and reference.exists() and ref_run.exists():
            # the recipe's own ratio is the reference table's row: reuse it, run and all
            row, run_dir = json.loads(reference.read_text()), ref_run
        else:
            subprocess.run([sys.executable, str(HERE / "reference.py"), "--dataset",
                            "fashion_mnist", "--recipes", "mae_fmnist", "--runs-dir", str(runs),
                            "--results", str(results), "--collect", "--set", f"method.mask_ratio={r}"],
                           check=True)  # fmt: skip
            row = json.loads((results / "fashion_mnist" / "mae_fmnist.json").read_text())
            run_dir = runs / "fashion_mnist" / "mae_fmnist"
        results.mkdir(parents=True, exist_ok=True)
        # the fine-tuning table's protocol (benchmarks/finetune_check.py)
        ft = finetune(run_dir, results / "finetune.json", "pretrained", run_dir / "ft")["metrics"]
        m = row["metrics"]
        out["rows"].append({"mask_ratio": r, "pretrain": row, "finetune": ft})
        rows.append([f"{r:.2f}", f"{row['images_seen']:,}", f"{m['knn_top1']:.3f}",
                     f"{m['linear_top1']:.3f}", f"{ft['finetune_top1']:.3f}", f"{m['init_knn_top1']:.3f}",
                     f"{m['init_linear_top1']:.3f}", f"{row['wall_s'] / 60:.1f}"])  # fmt: skip
    out["uptime_after"] = uptime()
    write_json(out, RESULTS / "mae_mask_ratio.json")
    md = (
        "# MAE masking ratio at equal images seen (Fashion-MNIST, ViT-Tiny/4)\n\n"
        f"`{out['command']}`\n\n"
        + md_table(
            [
                "mask ratio",
                "images seen",
                "20-NN",
                "linear",
                "fine-tuned top-1 (40 steps)",
                "20-NN init",
                "linear init",
                "pre-train wall min",
            ],
            rows,
        )
        + f"\n\nHost before: {out['uptime_before']}; after: {out['uptime_after']}. Fine-tuning: "
        f"`visrep eval finetune --ckpt RUN method.init=pretrained {' '.join(FINETUNE)}`.\n"
    )
    (RESULTS / "mae_mask_ratio.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
