"""The learning rate of the momentum-encoder ρ methods on Moving Fashion-MNIST: loss curves
and frozen k-NN of ρMoCo's and ρBYOL's 625-step pre-trainings at blr 4e-3 (the ρ recipes'
shared lr; `rho_moco_mfmnist` had it until it moved to 1e-3) and at blr 1e-3, three
pre-training seeds each.

The pre-trainings are `benchmarks/video_finetune.py`'s `rho_{moco,byol}_625*` and
`rho_{moco,byol}_blr1e-3_625*` (its `MADE_HERE`; that script fine-tunes them too). This
script only reads their logs: `train/loss_official` (SlowFast's logged loss: ρMoCo's summed
per-query InfoNCE over 2ρ, ρBYOL's minus the mean cosine) every 20 steps, and each run's final video
k-NN beside its untrained encoder.

    .venv/bin/python benchmarks/rho_lr.py

Writes benchmarks/results/rho_lr.{json,md,png}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from host import command_line, md_table, write_json  # noqa: E402
from video_finetune import PSEEDS, SOURCES  # noqa: E402

from visrep.logger import read_log  # noqa: E402

OUT = HERE / "results" / "rho_lr"
METHODS = {"ρMoCo": "rho_moco", "ρBYOL": "rho_byol"}
LRS = {"4e-3": "{}_625", "1e-3": "{}_blr1e-3_625"}
EARLY = (60, 100)  # the logs just after the official no-update window (32 steps)


def curve(run: Path) -> list[tuple[int, float]]:
    log = read_log(run)
    return [(r["step"], r["train/loss_official"]) for r in log if "train/loss_official" in r]


def summary(name: str) -> dict:
    run = SOURCES[name]
    points = curve(run)
    early = [v for s, v in points if EARLY[0] <= s <= EARLY[1]]
    last = [v for _, v in points[-5:]]
    m = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "curve": points,
            "loss_early": sum(early) / len(early), "loss_last5": sum(last) / len(last),
            **{k: m[k] for k in ("knn_direction_top1", "init_knn_direction_top1",
                                 "knn_top1", "init_knn_top1")}}  # fmt: skip


def main() -> None:
    names = {(m, lr, p): LRS[lr].format(key) + p
             for m, key in METHODS.items() for lr in LRS for p in PSEEDS}  # fmt: skip
    out = {"command": command_line(), "early_steps": EARLY,
           "runs": {n: summary(n) for n in names.values()}}  # fmt: skip
    write_json(out, OUT.with_suffix(".json"))
    rows = []
    for (method, lr, p), name in names.items():
        r = out["runs"][name]
        rows.append([method, lr, p.removeprefix("_pseed") or "0", f"{r['loss_early']:.2f}",
                     f"{r['loss_last5']:.2f}",
                     f"{r['knn_direction_top1']:.3f} ({r['init_knn_direction_top1']:.3f})",
                     f"{r['knn_top1']:.3f} ({r['init_knn_top1']:.3f})"])  # fmt: skip
    headers = ["method", "blr", "pre-training seed", f"loss, logs of steps {EARLY[0]}-{EARLY[1]}",
               "loss, last five logs", "frozen k-NN direction (init)", "frozen k-NN class (init)"]  # fmt: skip
    OUT.with_suffix(".md").write_text(
        "# ρMoCo's and ρBYOL's learning rate: 625 pre-training steps on Moving Fashion-MNIST\n\n"
        f"Command: `{out['command']}` (reads the runs of benchmarks/video_finetune.py)\n\n"
        + md_table(headers, rows)
        + "\n\nLoss: `train/loss_official` (SlowFast's logged value), mean of the logs named. "
        "ρMoCo: the summed per-query InfoNCE over 2ρ, chance ln(1 + 1024) / 2 = 3.47; ρBYOL: "
        "the summed per-query −cos/τ (τ = 0.5) over 2ρ, i.e. minus the mean cosine, −1 at a "
        "perfect match. Curves: "
        "rho_lr.png.\n"
    )
    fig, axes = plt.subplots(1, len(METHODS), figsize=(10, 3.5))
    for ax, method in zip(axes, METHODS, strict=True):
        for lr, color in zip(LRS, ("tab:red", "tab:blue"), strict=True):
            for i, p in enumerate(PSEEDS):
                steps, loss = zip(*out["runs"][names[method, lr, p]]["curve"], strict=True)
                ax.plot(steps, loss, color=color, alpha=0.8, label=f"blr {lr}" if i == 0 else None)
        if method == "ρMoCo":  # the end of the official no-update window
            ax.axvline(32, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="step (32 videos, ρ = 2)", ylabel="train/loss_official",
               title=f"{method}, video ViT-Tiny, 3 seeds per lr")  # fmt: skip
        ax.legend()
    fig.tight_layout()
    fig.savefig(OUT.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
