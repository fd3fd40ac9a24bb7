"""Run logging: one JSON object per line (`log.jsonl`) plus TensorBoard scalars."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends metrics to `run_dir/log.jsonl` and TensorBoard (`run_dir/tb`). Only the
    main process writes; others hold a disabled logger. On resume, entries after the
    checkpoint's step are dropped so the log reads as one uninterrupted run."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in _rows(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, **{f"{prefix}/{k}": _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "log.jsonl"
    return _rows(path) if path.exists() else []


def _rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a log; a line a kill cut in half (only ever the last) is dropped."""
    rows = []
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the write a kill interrupted
                continue
            raise ValueError(f"{path}:{i + 1} is not a JSON line; the run log is damaged "
                             "(move it away to resume without it)") from None  # fmt: skip
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return v
