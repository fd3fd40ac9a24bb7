"""The ρ study's central claim over every pre-training seed run at 240 steps: ρ = 2 minus ρ = 1.

Feichtenhofer, Fan, Xiong, Girshick, He, "A Large-Scale Study on Unsupervised Spatiotemporal
Representation Learning" (CVPR 2021): positives from ρ = 2 (or more) clips of one video at
different times beat ρ = 1 (two augmentations of one clip) at an equal number of seen clips.
Here: ρBYOL (recipe lr) and ρMoCo (recipe lr, blr 1e-3) on Moving Fashion-MNIST, each seed a
pair of `benchmarks/video_methods.py` runs (240 steps of 32 videos, then the frozen video
k-NN and linear probe on 400 train / 240 test videos, class and direction labels), read
from the per-seed outputs it wrote (`SOURCES`; commands in each JSON and in
docs/results.md, "The ρ claim at four times the budget"). Pairs by seed: mean difference,
its standard error over seeds, and how many seeds ρ = 2 leads.

    .venv/bin/python benchmarks/rho_claim.py

Writes benchmarks/results/rho_claim.{json,md}; trains nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import md_table, write_json  # noqa: E402
from video_finetune import paired  # noqa: E402

RESULTS = HERE / "results"
OUT = RESULTS / "rho_claim"
# method -> (seed 0's output, the pattern of seed k's); seed 0 of ρBYOL shares its file with
# the ρMoCo pair run at blr 4e-3 (the recipe then)
SOURCES = {"rho_byol": ("video_rho_240", "video_rho_240_byol_seed{k}"),
           "rho_moco": ("video_rho_240_moco_blr1e-3", "video_rho_240_moco_blr1e-3_seed{k}")}  # fmt: skip
METRICS = {"knn_direction_top1": "direction k-NN", "linear_direction_top1": "direction linear",
           "knn_top1": "class k-NN", "linear_top1": "class linear"}  # fmt: skip


def collect(method: str) -> dict[int, dict[str, dict]]:
    """seed -> {"rho2" | "rho1" | "init": metrics} for every seed whose pair has finished."""
    first, pattern = SOURCES[method]
    seeds = {}
    for k in range(100):
        path = RESULTS / f"{first if k == 0 else pattern.format(k=k)}.json"
        if not path.is_file():
            continue
        runs = {r["name"]: r["metrics"] for r in json.loads(path.read_text())["runs"]}
        pair = {rho: runs.get(f"{method}_{rho}") for rho in ("rho2", "rho1")}
        if all(m and "linear_top1" in m for m in pair.values()):
            init = {key: pair["rho2"][f"init_{key}"] for key in METRICS}
            seeds[k] = pair | {"init": init, "source": str(path.relative_to(HERE.parent))}
    return seeds


def summarise() -> dict:
    out = {}
    for method in SOURCES:
        seeds = collect(method)
        diffs = {}
        for key in METRICS:
            top1 = {rho: {k: s[rho][key] for k, s in seeds.items()} for rho in ("rho2", "rho1")}
            d = [top1["rho2"][k] - top1["rho1"][k] for k in seeds]
            diffs[key] = {"per_seed": d, "paired": paired(top1, ["rho2"], ["rho1"])}
        out[method] = {"seeds": {str(k): {rho: {m: s[rho][m] for m in METRICS}
                                          for rho in ("rho2", "rho1", "init")} | {"source": s["source"]}
                                 for k, s in seeds.items()},
                       "rho2_minus_rho1": diffs}  # fmt: skip
    return out


def render(out: dict) -> str:
    lines = ["# The ρ claim at 240 steps, every seed", "",
             "Command: `.venv/bin/python benchmarks/rho_claim.py` (reads the per-seed "
             "`benchmarks/video_methods.py` outputs named below; trains nothing).", "",
             "ρ = 2 minus ρ = 1, paired by pre-training seed: mean (standard error over seeds, "
             "seeds ρ = 2 leads):", ""]  # fmt: skip
    rows = [[m, len(r["seeds"]), *(r["rho2_minus_rho1"][k]["paired"] for k in METRICS)]
            for m, r in out.items()]  # fmt: skip
    lines += [md_table(["method", "seeds", *METRICS.values()], rows), ""]
    for method, r in out.items():
        rows = []
        for k, s in r["seeds"].items():
            for rho in ("rho2", "rho1", "init"):
                label = {"rho2": "ρ = 2", "rho1": "ρ = 1", "init": "init"}[rho]
                rows.append([k if rho == "rho2" else "", label,
                             *(f"{s[rho][m]:.3f}" for m in METRICS),
                             f"`{s['source']}`" if rho == "rho2" else ""])  # fmt: skip
        lines += [
            f"## {method}",
            "",
            md_table(["seed", "run", *METRICS.values(), "output"], rows),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    out = summarise()
    write_json(out, OUT.with_suffix(".json"))
    OUT.with_suffix(".md").write_text(render(out))
    print(render(out))


if __name__ == "__main__":
    main()
