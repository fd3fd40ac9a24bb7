"""Runs the visrep CLI and records the resident memory (RSS) of this process per phase:
training, each feature extraction, each k-NN and each linear probe of the final evaluation.

    python benchmarks/rss_phases.py OUT.json train mae_own data.dataset=DIR ...

A thread samples /proc/self/status every 50 ms; the evaluation's functions are wrapped so
each sample is charged to the phase running. Writes OUT.json: a list of phases in order,
each with its RSS on entry and exit and its peak (MiB). `eval_scale.py` runs the CLI
through this to say which phase sets the peak.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import visrep.evals.run as evals_run
import visrep.loop as loop
from visrep import cli


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


class Phases:
    """The phase running now and the peak RSS seen in each."""

    def __init__(self) -> None:
        self.rows = [{"phase": "start (imports, model, training)", "enter": rss_mib(), "peak": 0.0}]
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            row = self.rows[-1]
            row["peak"] = max(row["peak"], rss_mib())
            time.sleep(0.05)

    def wrap(self, module, attr: str, name: str) -> None:
        fn = getattr(module, attr)

        def wrapped(*args, **kwargs):
            label = f"{name} {sum(r['phase'].startswith(name) for r in self.rows) + 1}"
            row = {"phase": label, "enter": rss_mib(), "peak": rss_mib()}
            self.rows.append(row)
            try:
                return fn(*args, **kwargs)
            finally:
                row["exit"] = rss_mib()  # nested phases: this one's own row
                self.rows.append({"phase": f"after {label}", "enter": row["exit"],
                                  "peak": row["exit"]})  # fmt: skip

        setattr(module, attr, wrapped)


def main() -> None:
    out = Path(sys.argv[1])
    phases = Phases()
    phases.wrap(loop, "finish_run", "final evaluation")
    phases.wrap(evals_run, "extract_features_many", "features")
    phases.wrap(evals_run, "knn", "k-NN")
    phases.wrap(evals_run, "linear_probe", "linear probe")
    try:
        code = cli.main(sys.argv[2:])
    finally:
        time.sleep(0.1)
        rows = [{k: round(v) if isinstance(v, float) else v for k, v in r.items()}
                for r in phases.rows]  # fmt: skip
        out.write_text(json.dumps(rows, indent=1))
    sys.exit(code)


if __name__ == "__main__":
    main()
