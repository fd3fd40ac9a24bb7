"""The balancing report: head/tail distribution of entry counts before and after balancing.

Head entries have count > t (they are down-sampled, p < 1); tail entries have
0 < count <= t (every text matching one is kept). After balancing a tail entry keeps all
its texts and a head entry keeps about t of them, a little more when its texts also
match other entries (a text is kept when any of its entries' trials succeeds): the
report gives the exact expectation sum_{texts with e} P(keep) next to the realised count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visrep.io import atomic_write, atomic_write_text

TOP = 10


def balance_report(
    before: np.ndarray,
    after: np.ndarray,
    expected: np.ndarray,
    t: float,
    seed: int,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Numbers of the report (JSON-ready)."""
    before, after = before.astype(np.float64), after.astype(np.float64)
    head, tail = before > t, (before > 0) & (before <= t)
    total_before, total_after = before.sum(), after.sum()
    top = np.argsort(-before, kind="stable")[:TOP]
    return {
        "t": t,
        "seed": seed,
        "texts": summary["texts"],
        "texts_matched": summary["texts_matched"],
        "entries": len(before),
        "entries_matched": int((before > 0).sum()),
        "head_entries": int(head.sum()),
        "tail_entries": int(tail.sum()),
        "matches_before": int(total_before),
        "matches_after": int(total_after),
        "head_share_before": float(before[head].sum() / max(total_before, 1)),
        "head_share_after": float(after[head].sum() / max(total_after, 1)),
        "tail_entries_fully_kept": bool(np.array_equal(after[tail], before[tail])),
        "head_after_over_t_median": float(np.median(after[head] / t)) if head.any() else None,
        "head_after_over_expected": float(after[head].sum() / max(expected[head].sum(), 1e-12))
        if head.any()
        else None,
        "top_entries": [
            {
                "id": int(i),
                "count_before": int(before[i]),
                "p": float(t / max(before[i], t)),
                "min_count_t": float(min(before[i], t)),
                "expected_after": round(float(expected[i]), 1),
                "count_after": int(after[i]),
            }
            for i in top
            if before[i] > 0
        ],
    }


def _entry_names(match_dir: str | Path) -> list[str] | None:
    from visrep.curation.metadata import load_metadata

    try:
        manifest = json.loads((Path(match_dir) / "manifest.json").read_text())
        return load_metadata(manifest["metadata"])
    except (OSError, ValueError, KeyError):
        return None  # metadata moved: the report shows ids only


def write_report(
    report: dict[str, Any],
    before: np.ndarray,
    after: np.ndarray,
    t: float,
    out_dir: str | Path,
    match_dir: str | Path,
) -> None:
    """Write `report.json`, `report.md` and `distribution.png` into `out_dir`."""
    out_dir = Path(out_dir)
    names = _entry_names(match_dir)
    for row in report["top_entries"]:
        row["entry"] = names[row["id"]] if names else None
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write(out_dir / "distribution.png", lambda tmp: plot_distribution(before, after, t, tmp))
    atomic_write_text(out_dir / "report.md", _markdown(report))


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# MetaCLIP balancing report (t = {r['t']:g}, seed = {r['seed']})",
        "",
        f"- texts: {r['texts']:,}; with at least one matched entry: {r['texts_matched']:,}; "
        f"kept: {r.get('texts_kept', 0):,}",
        f"- entries: {r['entries']:,}; matched: {r['entries_matched']:,}; head (count > t): "
        f"{r['head_entries']:,}; tail (0 < count <= t): {r['tail_entries']:,}",
        f"- (text, entry) matches: {r['matches_before']:,} before, {r['matches_after']:,} after",
        f"- share of matches in head entries: {r['head_share_before']:.1%} before, "
        f"{r['head_share_after']:.1%} after",
        f"- every tail entry kept all its texts: {r['tail_entries_fully_kept']}",
    ]
    if r["head_after_over_t_median"] is not None:
        lines.append(
            f"- head entries after balancing: median count / t = {r['head_after_over_t_median']:.2f}"
            f"; realised / expected = {r['head_after_over_expected']:.3f} (expected = sum of "
            "P(keep) over the entry's texts; above t when its texts match other entries too)"
        )
    lines += [
        "",
        "| entry | count before | p | min(count, t) | expected after | count after |",
        "|---|---|---|---|---|---|",
    ]
    for e in r["top_entries"]:
        name = e["entry"] if e.get("entry") is not None else f"#{e['id']}"
        lines.append(
            f"| {name} | {e['count_before']:,} | {e['p']:.4f} | {e['min_count_t']:,.0f} | "
            f"{e['expected_after']:,.1f} | {e['count_after']:,} |"
        )
    lines += ["", "![entry counts before and after](distribution.png)", ""]
    return "\n".join(lines)


def plot_distribution(before: np.ndarray, after: np.ndarray, t: float, path: Path) -> None:
    """Rank-frequency plot (log-log) of entry counts before and after, with t marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for counts, label in ((before, "before"), (after, "after")):
        c = np.sort(counts[counts > 0].astype(np.float64))[::-1]
        if c.size:
            ax.loglog(np.arange(1, c.size + 1), c, label=f"{label} ({int(c.sum()):,} matches)")
    ax.axhline(t, color="gray", linestyle="--", linewidth=1, label=f"t = {t:g}")
    ax.set_xlabel("entry rank")
    ax.set_ylabel("texts matching the entry")
    ax.set_title("MetaCLIP balancing: head entries capped near t, tail kept")
    ax.legend()
    fig.tight_layout()
    with open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
