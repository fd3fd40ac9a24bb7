"""benchmarks/gpu_claims.sh, the prepared GPU call for the claims of issues 17-19: its shell
parses, every option it passes exists in the benchmark script it calls, and (slow) its TINY=1
mode runs end to end on the CPU and writes every output a GPU call would bring back."""

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
from conftest import FMNIST, REPO, requires_fmnist

SCRIPT = REPO / "benchmarks" / "gpu_claims.sh"
CALLS = {"video_methods.py": "video", "rcg_fmnist.py": "rcg", "detect_transfer.py": "detect"}


def test_shell_scripts_parse():
    for name in ("gpu_claims.sh", "gpu_claims_carry.sh"):
        r = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / name)], capture_output=True,
                           text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr


def _options_passed(script: str) -> set[str]:
    """The `--option`s gpu_claims.sh passes to `script`: on its command lines and in the
    bash arrays it expands there (VIDEO, RCG, DET)."""
    text = SCRIPT.read_text()
    arrays = {"video_methods.py": "VIDEO", "rcg_fmnist.py": "RCG", "detect_transfer.py": "DET"}
    chunks = re.findall(rf"benchmarks/{re.escape(script)}((?:[^\n]*\\\n)*[^\n]*)", text)
    chunks += re.findall(rf"\b{arrays[script]}=\(([^)]*)\)", text)
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", " ".join(chunks)))


@pytest.mark.parametrize("script", sorted(CALLS))
def test_every_option_it_passes_exists(script):
    passed = _options_passed(script)
    assert "--device" in passed and {"--out", "--results"} & passed, passed
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    missing = sorted(o for o in passed if not re.search(rf"(?<![\w-]){o}(?![\w-])", r.stdout))
    assert not missing, f"gpu_claims.sh passes {missing} to {script}, which has no such option"


@pytest.mark.slow
@requires_fmnist
def test_tiny_mode_end_to_end(tmp_path):
    """TINY=1: a few steps of every training on the CPU (~5-8 min on one thread), then the
    files a GPU call brings back: the three tables, the summary, the archive."""
    built = (REPO / "data" / "emoji").is_dir() and (REPO / "data" / "det_emoji64").is_dir()
    emoji = built or (REPO / "emoji-datasource-google-16.0.0.tgz").is_file()  # TINY's det set
    jobs = "video rcg detect" if emoji else "video rcg"  # detection needs the emoji images
    out, work = tmp_path / "out", tmp_path / "work"
    env = os.environ | {"TINY": "1", "PY": sys.executable, "OUT": str(out), "WORK": str(work),
                        "JOBS": jobs, "DATA_ROOT": str(FMNIST), "OMP_NUM_THREADS": "1",
                        "CARRY": str(tmp_path / "no_carry")}  # fmt: skip
    if not (REPO / "data" / "emoji").is_dir():  # built from the npm tarball, in tmp_path
        env["EMOJI"] = str(tmp_path / "emoji")
    r = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    tables = {"video_methods.md", "rcg_fmnist.md"} | ({"detect_transfer.md"} if emoji else set())
    assert {"gpu.txt", "summary.md", "gpu_claims.tar.gz"} | tables <= files
    assert all(p.is_file() for p in out.iterdir()) and len(files) <= 8  # what a call returns
    status = (work / "logs" / "status.txt").read_text().split("\n")
    assert sorted(s for s in status if s) == sorted(f"{j} exited 0" for j in jobs.split())
    video = json.loads((work / "results" / "video_methods.json").read_text())
    names = {r["name"] for r in video["runs"]}
    assert names == {"rho_byol_rho2", "rho_byol_rho1", "rho_moco_rho2", "rho_moco_rho1",
                     "mae_st", "mae_st_mask75"}  # fmt: skip
    for run in video["runs"]:  # k-NN and linear, trained and initial encoder, both labels
        m = run["metrics"]
        for key in ("knn_top1", "init_knn_direction_top1", "linear_direction_top1",
                    "init_linear_top1"):  # fmt: skip
            assert 0.0 <= m[key] <= 1.0, (run["name"], key)
        assert m["train_steps"] == 2 and "data.limit=64" in run["set"]
    rcg = json.loads((work / "results" / "rcg" / "rcg_fmnist.json").read_text())
    assert set(rcg["generators"]) == {"dit_uncond", "rcg_mocov3_6min", "dit_cond",
                                      "rcg_mocov3_10steps"}  # fmt: skip
    for g in rcg["generators"].values():
        assert g["train"]["train_steps"] == 4 and g["sampling"]["n"] == 40
        assert g["reference"]["frechet_distance"] > 0 and g["encoder"]["frechet_distance"] > 0
    assert set(rcg["floor"]) == {"real_train_images", "dit_uncond_sampling_seed1"}
    assert rcg["settings"]["ema"] and rcg["settings"]["device"] == "cpu"
    if emoji:
        det = json.loads((work / "results" / "detect_transfer.json").read_text())
        assert sorted(r["variant"] for r in det["runs"]) == ["mae", "mae_ft", "random"]
        for run in det["runs"]:
            assert run["metrics"]["train_steps"] == 2 and "box_AP" in run["metrics"]
    with tarfile.open(out / "gpu_claims.tar.gz") as tar:
        names = tar.getnames()
    assert "results/video_methods.json" in names and "logs/status.txt" in names
    assert not any(n.endswith((".pt", ".safetensors")) for n in names)
    summary = (out / "summary.md").read_text()
    assert "# Video methods side by side" in summary and "RCG vs DiT" in summary
    assert "video_methods.py --device cpu --jobs 1 --set data.limit=64" in summary  # commands
