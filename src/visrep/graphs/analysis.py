"""Analysis of a relational-graph sweep: binned (C, L) heatmap, the bin-level sweet spot, 1-D
trends, the best bin against the complete graph and a smoothness measure.

You, Leskovec, He, Xie, "Graph Structure of Neural Networks", ICML 2020, §4-5; official
notebook facebookresearch/graph2nn `analysis/analyze_results.ipynb` (`plot_2d`,
`align_results_bin`, `plot_1d_slice`).

Sweet spot (`align_results_bin`): every (graph, seed) error is pooled into its (C, L) bin (C
digitised with right=True on linspace(0, 1, B+1), L with right=False on linspace(lo, hi, B+1));
the bin with the lowest mean error is the best; a Student two-sample t-test (equal variances)
of the best bin's errors against each other bin; a bin belongs to the sweet spot unless it is
significantly worse (t < 0 and p/2 < 0.05, one-sided); the sweet spot is the rectangle over
the centres of the kept bins. Uses scipy's `ttest_ind` when scipy is installed, else the same
test computed here (`student_t_test`).

Smoothness: a quadratic surface err ~ 1 + C + L + C² + CL + L² fitted to the per-graph mean
errors, with its R² and leave-one-out R², next to the split-seed reliability (the Pearson
correlation of per-graph errors between two disjoint halves of the seeds), which bounds
what any function of (C, L) can explain given the seed noise, and the R² of a line in the
relational width alone (FLOPs matching widens sparse graphs, and at n = 16 C and L move with
the density, so structure and width are confounded).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from visrep.graphs.generate import L_RANGE_N16, L_RANGE_N64, bin_index


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
        + b * math.log1p(-x)
    )  # fmt: skip
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the two-sample Student t-test with pooled variance, as
    `scipy.stats.ttest_ind(a, b)` (NaN when a variance cannot be estimated)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    dof = na + nb - 2
    if dof <= 0:
        return math.nan, math.nan
    pooled = ((na - 1) * a.var(ddof=1 if na > 1 else 0) + (nb - 1) * b.var(ddof=1 if nb > 1 else 0)) / dof  # fmt: skip
    se = math.sqrt(pooled * (1.0 / na + 1.0 / nb))
    if se == 0.0:
        return math.nan, math.nan
    t = float((a.mean() - b.mean()) / se)
    return t, _betainc(dof / 2.0, 0.5, dof / (dof + t * t))


def t_test(a, b) -> tuple[float, float]:
    try:
        from scipy.stats import ttest_ind
    except ImportError:
        return student_t_test(a, b)
    r = ttest_ind(np.asarray(a, float), np.asarray(b, float))
    return float(r.statistic), float(r.pvalue)


def l_range(n: int) -> tuple[float, float]:
    return L_RANGE_N16 if n <= 16 else L_RANGE_N64


def sweet_spot(rows: list[dict], bins: int, lrange: tuple[float, float]) -> dict:
    """Bin-level sweet spot over the WS graphs (`rows`: C, L, errors per seed)."""
    cells: dict[tuple[int, int], list[float]] = {}
    for r in rows:
        ci = int(bin_index(np.array([r["C"]]), 0.0, 1.0, bins, right=True)[0])
        li = int(bin_index(np.array([r["L"]]), *lrange, bins, right=False)[0])
        ci, li = min(max(ci, 0), bins - 1), min(max(li, 0), bins - 1)
        cells.setdefault((ci, li), []).extend(r["errors"])
    c_edges, l_edges = np.linspace(0, 1, bins + 1), np.linspace(*lrange, bins + 1)

    def centre(cell):
        return (c_edges[cell[0]] + c_edges[cell[0] + 1]) / 2, (l_edges[cell[1]] + l_edges[cell[1] + 1]) / 2  # fmt: skip

    means = {cell: float(np.mean(e)) for cell, e in cells.items()}
    best = min(means, key=means.get)
    kept, tests = [], {}
    for cell, errs in cells.items():
        t, p = (math.nan, math.nan) if cell == best else t_test(cells[best], errs)
        tests[cell] = (t, p)
        if not (t < 0 and p / 2 < 0.05):
            kept.append(cell)
    cs = [centre(c)[0] for c in kept]
    ls = [centre(c)[1] for c in kept]
    return {
        "bins": bins, "l_range": list(lrange),
        "cells": [
            {"c_bin": c[0], "l_bin": c[1], "C_centre": centre(c)[0], "L_centre": centre(c)[1],
             "n": len(cells[c]), "mean_err": means[c], "t": tests[c][0], "p": tests[c][1],
             "in_sweet_spot": c in kept}
            for c in sorted(cells)
        ],
        "best": {"c_bin": best[0], "l_bin": best[1], "C_centre": centre(best)[0],
                 "L_centre": centre(best)[1], "errors": cells[best], "mean_err": means[best]},
        "sweet_spot": {"C": [min(cs), max(cs)], "L": [min(ls), max(ls)],
                       "bins_kept": len(kept), "bins_occupied": len(cells)},
    }  # fmt: skip


def quad_design(c: np.ndarray, length: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(c), c, length, c * c, c * length, length * length], axis=1)


def smoothness(rows: list[dict]) -> dict:
    """Quadratic (C, L) fit of per-graph mean error: R², leave-one-out R², Pearson r with C and
    with L, and the split-seed reliability of the per-graph errors."""
    c = np.array([r["C"] for r in rows])
    length = np.array([r["L"] for r in rows])
    y = np.array([np.mean(r["errors"]) for r in rows])
    x = quad_design(c, length)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - x @ coef) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    loo = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        ci, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        loo[i] = x[i] @ ci
    r2_loo = 1.0 - float(((y - loo) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    r2_width = math.nan  # the confound: FLOPs matching makes sparser graphs wider
    if all("width" in r for r in rows) and ss_tot > 0:
        xw = np.stack([np.ones_like(y), np.array([r["width"] for r in rows], float)], axis=1)
        cw, *_ = np.linalg.lstsq(xw, y, rcond=None)
        r2_width = 1.0 - float(((y - xw @ cw) ** 2).sum()) / ss_tot
    seeds = min(len(r["errors"]) for r in rows)
    reliability = math.nan
    if seeds >= 2:
        half = seeds // 2
        a = np.array([np.mean(r["errors"][:half]) for r in rows])
        b = np.array([np.mean(r["errors"][half:seeds]) for r in rows])
        reliability = float(np.corrcoef(a, b)[0, 1])
    return {
        "quadratic_coef": coef.tolist(), "r2": r2, "r2_loo": r2_loo,
        "pearson_err_C": float(np.corrcoef(c, y)[0, 1]),
        "pearson_err_L": float(np.corrcoef(length, y)[0, 1]),
        "split_seed_reliability": reliability, "graphs": len(rows), "r2_width_only": r2_width,
    }  # fmt: skip


def best_vs_complete(best_errors: list[float], complete_errors: list[float]) -> dict:
    """Best bin against the complete graph: the gap, the seed standard errors, the standard
    error of the gap and the t-test."""
    b, c = np.asarray(best_errors, float), np.asarray(complete_errors, float)
    se_b = float(b.std(ddof=1) / math.sqrt(len(b))) if len(b) > 1 else math.nan
    se_c = float(c.std(ddof=1) / math.sqrt(len(c))) if len(c) > 1 else math.nan
    gap = float(c.mean() - b.mean())
    se_gap = math.sqrt(se_b**2 + se_c**2)
    t, p = t_test(b, c)
    return {
        "complete_mean_err": float(c.mean()), "complete_se": se_c,
        "best_bin_mean_err": float(b.mean()), "best_bin_se": se_b,
        "gap": gap, "gap_se": se_gap, "beats_by_more_than_se": bool(gap > se_gap),
        "t": t, "p": p,
    }  # fmt: skip


def held_out_best(rows: list[dict], complete_errors: list[float], bins: int,
                  lrange: tuple[float, float]) -> dict | None:  # fmt: skip
    """The winner's curse check: pick the best bin on all seeds but the last, then compare
    that bin's last-seed errors with the complete graph's last-seed error."""
    seeds = min(len(r["errors"]) for r in rows)
    if seeds < 2 or len(complete_errors) < seeds:
        return None
    pick = sweet_spot([{**r, "errors": r["errors"][: seeds - 1]} for r in rows], bins, lrange)
    cell = (pick["best"]["c_bin"], pick["best"]["l_bin"])
    held = sweet_spot([{**r, "errors": r["errors"][seeds - 1 : seeds]} for r in rows], bins, lrange)  # fmt: skip
    errs = next(
        c for c in held["cells"] if (c["c_bin"], c["l_bin"]) == cell
    )  # same graphs, so the bin exists
    return {
        "picked_on_seeds": seeds - 1, "cell": list(cell), "held_out_seed_index": seeds - 1,
        "held_out_bin_mean_err": errs["mean_err"],
        "held_out_complete_err": float(complete_errors[seeds - 1]),
    }  # fmt: skip


def plot(rows: list[dict], complete: dict | None, spot: dict, fit: dict, path: Path,
         title: str) -> None:  # fmt: skip
    """2×2 figure: top-1 heatmap over binned (C, L) with the best bin and the sweet spot;
    top-1 vs C; top-1 vs L (per-graph means, the quadratic fit's marginal trend, the complete
    graph's mean ± SE); the best bin against the complete graph, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins, lrange = spot["bins"], spot["l_range"]
    grid = np.full((bins, bins), np.nan)
    for cell in spot["cells"]:
        grid[cell["l_bin"], cell["c_bin"]] = 100.0 - cell["mean_err"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 9))
    im = ax[0, 0].imshow(grid, origin="lower", cmap="Blues", aspect="auto",
                         extent=(0, 1, lrange[0], lrange[1]))  # fmt: skip
    fig.colorbar(im, ax=ax[0, 0], label="top-1 % (mean over graphs and seeds in the bin)")
    best = spot["best"]
    ax[0, 0].plot(best["C_centre"], best["L_centre"], "rx", ms=12, mew=2, label="best bin")
    if complete:
        ax[0, 0].plot(1.0, 1.0, "k*", ms=14, clip_on=False,
                      label=f"complete graph ({100 - complete['mean_err']:.2f} %)")  # fmt: skip
    s = spot["sweet_spot"]
    cw, lw = 1.0 / bins, (lrange[1] - lrange[0]) / bins
    ax[0, 0].add_patch(plt.Rectangle(
        (s["C"][0] - cw / 2, s["L"][0] - lw / 2), s["C"][1] - s["C"][0] + cw,
        s["L"][1] - s["L"][0] + lw, fill=False, ec="red", ls="--", label="sweet spot",
    ))  # fmt: skip
    ax[0, 0].set(xlabel="clustering coefficient C", ylabel="average path length L",
                 title="top-1 over binned (C, L)")  # fmt: skip
    ax[0, 0].legend(loc="upper right", fontsize=8)
    c = np.array([r["C"] for r in rows])
    length = np.array([r["L"] for r in rows])
    acc = np.array([100.0 - np.mean(r["errors"]) for r in rows])
    se = np.array([np.std(r["errors"], ddof=1) / math.sqrt(len(r["errors"]))
                   if len(r["errors"]) > 1 else 0.0 for r in rows])  # fmt: skip
    for a, xs, name, key in ((ax[0, 1], c, "C", "pearson_err_C"), (ax[1, 0], length, "L", "pearson_err_L")):  # fmt: skip
        a.errorbar(xs, acc, yerr=se, fmt="o", ms=4, alpha=0.7, label="graph (mean ± SE)")
        order = np.argsort(xs)
        poly = np.polyfit(xs, acc, 2)
        a.plot(xs[order], np.polyval(poly, xs[order]), "k-", lw=1, label="quadratic fit")
        if complete:
            a.axhline(100 - complete["mean_err"], color="C3", label="complete graph")
            a.axhspan(100 - complete["mean_err"] - complete["se"],
                      100 - complete["mean_err"] + complete["se"], color="C3", alpha=0.15)  # fmt: skip
        a.set(xlabel=name, ylabel="top-1 %", title=f"top-1 vs {name} (Pearson r(err, {name}) = {fit[key]:.2f})")  # fmt: skip
        a.legend(fontsize=8)
    a = ax[1, 1]
    groups = [("best bin", best["errors"])]
    if complete:
        groups.append(("complete graph", complete["errors"]))
    for i, (_name, errs) in enumerate(groups):
        accs = 100.0 - np.asarray(errs, float)
        a.bar(i, accs.mean(), yerr=accs.std(ddof=1) / math.sqrt(len(accs)) if len(accs) > 1 else 0,
              color=f"C{i}", alpha=0.6, capsize=6)  # fmt: skip
        a.plot(np.full(len(accs), i), accs, "k.", ms=6)
    lo = min(100.0 - max(e) for _, e in groups)
    hi = max(100.0 - min(e) for _, e in groups)
    a.set_ylim(lo - 0.5, hi + 0.5)
    a.set_xticks(range(len(groups)), [g[0] for g in groups])
    a.set(ylabel="top-1 % (bar: mean ± SE; dots: runs)", title="best (C, L) bin vs complete graph")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
