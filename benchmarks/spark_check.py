"""SparK sanity check at a fixed number of steps: `fixed_step_check.py` with the defaults
of the original SparK check (spark_fmnist, k-NN only, 20-step loss windows, output
benchmarks/results/spark_check.json). Any option of fixed_step_check.py may follow.

Run:   python benchmarks/spark_check.py --steps 80 --batch 32 --limit 1500 --threads 1 \
           backbone.patch_size=2 optim.lr=2e-3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_step_check import main  # noqa: E402

DEFAULTS = ["--recipe", "spark_fmnist", "--out", "benchmarks/results/spark_check.json",
            "--log-every", "20", "--protocols", "knn"]  # fmt: skip

if __name__ == "__main__":
    main(DEFAULTS + sys.argv[1:])
