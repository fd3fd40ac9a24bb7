"""The command line without a model: `recipes` and `show` never import torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["recipes"], ["show", "mae_fmnist"]])
def test_recipes_and_show_never_import_torch(argv):
    """~4 s of importing torch to print names was the cost before (issue 14)."""
    code = (f"import sys, visrep.cli; assert visrep.cli.main({argv!r}) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mae_fmnist" in proc.stdout
