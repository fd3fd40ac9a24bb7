"""The CI skip policy of `tests/conftest.py`: with VISREP_CI=1 (`.ci/run`) a skipped test fails
unless its reason contains a line of VISREP_CI_ALLOWED_SKIPS; outside CI a skip is a skip."""

import os
import shutil
import subprocess
import sys

from conftest import REPO

SUITE = """
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="apt-get install tuxpaint-stamps-default")
def test_allowed_skip():
    pass

@pytest.mark.skipif(True, reason="Fashion-MNIST missing from /x")
def test_data_missing():
    pass

def test_skips_while_running():
    pytest.skip("no GPU")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


def _pytest(tmp_path, **env) -> tuple[int, str]:
    """Run a small suite under a copy of the conftest (serially: a collection error would end
    a serial session, hence --continue-on-collection-errors; `make test`'s xdist goes on)."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_x():\n    pass\n'
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VISREP_CI")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env={**clean, **env}, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout


def test_outside_ci_a_skip_is_a_skip(tmp_path):
    code, out = _pytest(tmp_path)
    assert code == 0, out
    assert "1 passed, 4 skipped, 1 xfailed" in out, out


def test_in_ci_only_the_listed_reasons_may_skip(tmp_path):
    allowed = "apt-get install tuxpaint-stamps-default\nnpm pack emoji"
    code, out = _pytest(tmp_path, VISREP_CI="1", VISREP_CI_ALLOWED_SKIPS=allowed)
    assert code != 0, out
    assert "SKIPPED [1] test_suite.py" in out and "tuxpaint-stamps-default" in out
    for what in ("test_data_missing", "test_skips_while_running", "test_module_skip.py"):
        assert f"{what} was skipped in CI" in out, (what, out)
    assert "test_expected_failure" in out and "XFAIL" in out  # an xfail is not a skip
