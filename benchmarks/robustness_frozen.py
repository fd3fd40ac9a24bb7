"""Corruption robustness of a frozen encoder: the linear probe (`visrep eval robustness
--classifier linear`, the probe of `visrep eval linear` trained on clean features) against
the weighted k-NN (`--classifier knn`) on the same corrupted test images, for the MAE demo
encoder (`runs/demo`, ViT-Tiny/4 on Fashion-MNIST). Suites: the 15 ImageNet-C corruptions
(CIFAR-10-C constants at 28 px), CIFAR-10-C-bar and ImageNet-C-bar (all 10, perlin_noise
included; levels of the ImageNet-C-bar table) at 5 severities (Hendrycks and Dietterich,
ICLR 2019; Mintun, Kirillov and Xie, NeurIPS 2021).

    .venv/bin/python benchmarks/robustness_frozen.py --limit-test 100 --limit-train 5000 \
        --suites c,imagenet_c_bar
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from host import CpuMeter, command_line, environment, md_table, uptime, write_json
from own_colour import matmul_gflops

from visrep.config import apply_overrides
from visrep.data.corruptions import SUITES
from visrep.evals.robustness import corruption_errors, plot_errors
from visrep.robustness import eval_split, predictor
from visrep.runs import load_run

RESULTS = Path(__file__).parent / "results"
NAME = "robustness_frozen"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="runs/demo")
    ap.add_argument("--limit-test", type=int, default=100)
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--blr", type=float, default=1.0, help="probe base lr (LARS)")
    ap.add_argument("--suites", default="c,c_bar,imagenet_c_bar")
    args = ap.parse_args()
    torch.set_num_threads(1)
    host = {"uptime_before": uptime(), "matmul_gflops_before": round(matmul_gflops(), 1)}
    cpu = torch.device("cpu")
    cfg, model = load_run(args.ckpt, cpu)
    cfg = apply_overrides(cfg, [f"eval.limit_test={args.limit_test}",
                                f"eval.limit_train={args.limit_train}",
                                f"eval.linear_blr={args.blr}", "eval.budget_minutes=0"])  # fmt: skip
    suites = args.suites.split(",")
    names = list(dict.fromkeys(n for s in suites for n in SUITES[s]))
    with CpuMeter() as meter:
        preds = {c: predictor(cfg, model, c, cpu) for c in ("linear", "knn")}
        images, labels = eval_split(cfg, "test", cfg.eval.limit_test)
        with torch.no_grad():
            res = corruption_errors({c: p[0] for c, p in preds.items()}, images, labels, names,
                                    progress=True)  # fmt: skip
    host |= {"uptime_after": uptime(), "matmul_gflops_after": round(matmul_gflops(), 1),
             **meter.as_dict(), **environment()}  # fmt: skip
    summary = {}
    for c, r in res.items():
        r["classifier"] = preds[c][1]
        summary[c] = {"clean_error": r["clean_error"]} | {
            f"mean_error_{s}": float(np.mean([np.mean(r["errors"][n]) for n in SUITES[s]]))
            for s in suites
        }  # fmt: skip
    out = {"command": command_line(), "ckpt": args.ckpt, "n_test": len(labels),
           "limit_train": args.limit_train, "host": host, "summary": summary,
           "results": res}  # fmt: skip
    write_json(out, RESULTS / f"{NAME}.json")
    plot_errors(res, RESULTS / f"{NAME}.png", title=f"{args.ckpt}: frozen features")
    rows = [[res[c]["classifier"], f"{s['clean_error']:.1f}",
             *[f"{s[f'mean_error_{x}']:.1f}" for x in suites]] for c, s in summary.items()]  # fmt: skip
    per = [[n, *[" / ".join(f"{e:.0f}" for e in res[c]["errors"][n]) for c in res]]
           for n in names]  # fmt: skip
    h = host
    text = "\n\n".join([
        f"# Corruption robustness of frozen features: `{args.ckpt}`",
        f"`{command_line()}`; {len(labels)} test images (seeded stratified subset), top-1 "
        "error %.",
        md_table(["classifier", "clean", *[f"mean {s}" for s in suites]], rows),
        md_table(["corruption", *[f"{c} s1..s5" for c in res]], per),
        f"Host (shared, 1 thread): before `{h['uptime_before']}`, matmul "
        f"{h['matmul_gflops_before']} GFLOP/s; after `{h['uptime_after']}`, "
        f"{h['matmul_gflops_after']} GFLOP/s; wall {h['wall_s']} s, cores used "
        f"{h['cores_used']}.",
    ]) + "\n"  # fmt: skip
    (RESULTS / f"{NAME}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
