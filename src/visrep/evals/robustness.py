"""Corruption robustness of a classifier: top-1 error under every corruption × severity,
Corruption Error (CE), mCE and relative mCE against a baseline (Hendrycks and Dietterich,
ICLR 2019, §3 and hendrycks/robustness `ImageNet-C/test.py`; the CIFAR-10-C-bar set of
Mintun et al., NeurIPS 2021, facebookresearch/augmentation-corruption
`imagenet_c_bar/test_c_bar.py`).

    CE_c   = Σ_s E_{s,c} / Σ_s E^base_{s,c}
    rCE_c  = Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean)
    mCE    = mean of CE_c over the 15 benchmark corruptions (× 100, %), likewise relative mCE
             (over the corruptions whose baseline error rises above its clean error)

The baseline of ImageNet-C is AlexNet (`ALEXNET_ERRORS`); there is no AlexNet for small
datasets, so the baseline is a named reference run evaluated on the same corrupted images,
the role `mCE_baseline.p` (the authors' own WRN-40-2) plays for CIFAR in
augmentation-corruption `experiments/overlap/test_corrupt_net.py`. The unnormalised mean
error over the 15 × 5 sets (what `test.py` prints and CIFAR-10-C papers report) is given
too. Corruptions outside the 15 (held-out, C-bar) are reported but never enter mCE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from visrep.data.corruptions import BENCHMARK, CATEGORY, corrupt_each
from visrep.io import atomic_write

SEVERITIES = (1, 2, 3, 4, 5)
# AlexNet top-1 error (%) averaged over the 5 severities and clean, ImageNet-C
# (hendrycks/robustness README; augmentation-corruption `mCE_baseline_imagenet.p`)
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 88.6428, "shot_noise": 89.4468, "impulse_noise": 92.2640,
    "defocus_blur": 81.9880, "glass_blur": 82.6268, "motion_blur": 78.5948,
    "zoom_blur": 79.8360, "snow": 86.6816, "frost": 82.6572, "fog": 81.9324,
    "brightness": 56.4592, "contrast": 85.3204, "elastic_transform": 64.6056,
    "pixelate": 71.7840, "jpeg_compression": 60.6500, "speckle_noise": 84.5388,
    "gaussian_blur": 78.7108, "spatter": 71.7512, "saturate": 65.8248,
}  # fmt: skip
ALEXNET_CLEAN = 43.5


def to_numpy_images(images: Tensor) -> np.ndarray:
    """uint8 [N, C, H, W] tensor -> [N, H, W] (grey) or [N, H, W, 3] numpy."""
    x = images.cpu().numpy()
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def from_numpy_images(images: np.ndarray) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)


def _error(predict: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor, bs: int) -> float:
    wrong = sum(int((predict(images[i : i + bs]).cpu() != labels[i : i + bs]).sum())
                for i in range(0, len(images), bs))  # fmt: skip
    return 100.0 * wrong / max(len(images), 1)


def corruption_errors(
    predict: Callable[[Tensor], Tensor] | dict[str, Callable[[Tensor], Tensor]],
    images: Tensor,
    labels: Tensor,
    corruptions: Sequence[str],
    *,
    base_seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1 error (%) of `predict` (uint8 images [B, C, H, W] -> labels [B]) on the clean
    images and on every (corruption, severity) set; image i of a set gets its own draw
    (`visrep.data.corruptions.corrupt_each`, seeded by name, severity, i and `base_seed`).
    A dict of predictors is evaluated on the same corrupted sets, each corrupted once;
    the result is then a dict of results by the same keys."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    fns = predict if isinstance(predict, dict) else {"": predict}
    res = {k: {"clean_error": _error(f, images, labels, batch_size), "errors": {},
               "n_test": len(images), "base_seed": base_seed} for k, f in fns.items()}  # fmt: skip
    x = to_numpy_images(images)
    bar = tqdm(total=len(corruptions) * len(SEVERITIES), desc="corruptions", disable=not progress)
    for name in corruptions:
        for s in SEVERITIES:
            bad = from_numpy_images(corrupt_each(x, name, s, base_seed))
            for k, f in fns.items():
                res[k]["errors"].setdefault(name, []).append(_error(f, bad, labels, batch_size))
            bar.update(1)
    bar.close()
    return res if isinstance(predict, dict) else res[""]


def _ratio(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else math.nan


def ce_table(
    errors: dict[str, Sequence[float]],
    clean: float,
    baseline: dict[str, Sequence[float]] | None = None,
    baseline_clean: float | None = None,
) -> dict[str, Any]:
    """Per corruption: mean error over severities, CE and relative CE (%) against the
    baseline's per-severity errors (or AlexNet's severity-averaged errors when `baseline`
    is None and the corruption is an ImageNet-C one); mCE, relative mCE and the
    unnormalised mean error over the benchmark corruptions present."""
    rows: dict[str, dict[str, float]] = {}
    for name, errs in errors.items():
        mean = float(np.mean(errs))
        if baseline is not None and name in baseline:
            base, base_clean = float(np.mean(baseline[name])), float(baseline_clean)
        elif baseline is None and name in ALEXNET_ERRORS:
            base, base_clean = ALEXNET_ERRORS[name], ALEXNET_CLEAN
        else:
            base, base_clean = math.nan, math.nan
        # Σ_s / Σ_s equals mean / mean over the same five severities
        rows[name] = {"mean_error": mean, "ce": _ratio(mean, base),
                      "relative_ce": _ratio(mean - clean, base - base_clean)}  # fmt: skip
    bench = [n for n in BENCHMARK if n in rows]
    out = {"corruptions": rows, "clean_error": clean, "n_benchmark": len(bench)}
    if bench:
        out["mce"] = float(np.mean([rows[n]["ce"] for n in bench]))
        # a corruption whose baseline error does not rise above its clean error (possible on
        # a small test set) has no relative CE; the mean is over the others, counted
        rel = [rows[n]["relative_ce"] for n in bench if math.isfinite(rows[n]["relative_ce"])]
        out["relative_mce"] = float(np.mean(rel)) if rel else math.nan
        out["n_relative"] = len(rel)
        out["mean_corruption_error"] = float(np.mean([rows[n]["mean_error"] for n in bench]))
    others = [n for n in rows if n not in BENCHMARK]
    if others:
        out["mean_error_other"] = {
            suite: float(np.mean([rows[n]["mean_error"] for n in others if CATEGORY[n] == suite]))
            for suite in sorted({CATEGORY[n] for n in others})
        }  # fmt: skip
    return out


def markdown(result: dict[str, Any], title: str, baseline_name: str) -> str:
    """The per-corruption table (errors by severity, CE, relative CE) and the summary."""
    t = result["table"]
    lines = [f"# {title}", "",
             f"Clean error {t['clean_error']:.2f} %; {result['n_test']} test images; CE and "
             f"relative CE against `{baseline_name}`.", "",
             "| corruption | category | s1 | s2 | s3 | s4 | s5 | mean | CE | rel. CE |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, errs in result["errors"].items():
        r = t["corruptions"][name]
        cells = " | ".join(f"{e:.1f}" for e in errs)
        lines.append(f"| {name} | {CATEGORY[name]} | {cells} | {r['mean_error']:.1f} | "
                     f"{r['ce']:.1f} | {r['relative_ce']:.1f} |")  # fmt: skip
    if "mce" in t:
        lines += ["", f"**mCE {t['mce']:.1f} %**, relative mCE {t['relative_mce']:.1f} % (over "
                  f"{t['n_relative']} corruptions), mean "
                  f"error over the {t['n_benchmark']} ImageNet-C corruptions "
                  f"{t['mean_corruption_error']:.2f} %."]  # fmt: skip
    for suite, v in t.get("mean_error_other", {}).items():
        lines.append(f"Mean error, {suite}: {v:.2f} %.")
    return "\n".join(lines) + "\n"


def plot_errors(
    runs: dict[str, dict[str, Any]], path: str | Path, title: str = "error by severity"
) -> None:
    """Small multiples: top-1 error vs severity per corruption, one line per run
    ({label: corruption_errors result}), the clean error as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(runs.values()))["errors"])
    cols = 5
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, squeeze=False,
                             figsize=(2.6 * cols, 2.1 * math.ceil(len(names) / cols)))  # fmt: skip
    for ax, name in zip(axes.flat, names):
        for label, res in runs.items():
            line = ax.plot(SEVERITIES, res["errors"][name], marker="o", ms=3, label=label)[0]
            ax.axhline(res["clean_error"], color=line.get_color(), ls=":", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 100)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"{title} (top-1 error %, dotted: clean)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
