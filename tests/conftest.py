import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Fashion-MNIST's idx files: $FMNIST (`make test FMNIST=DIR` passes it), else
# $VISREP_FMNIST_ROOT, else the Debian package's folder. visrep's configs read their default
# `data.root` / `eval.root` from $VISREP_FMNIST_ROOT (`visrep.config.FMNIST_ROOT`), set here
# before any test imports visrep, so in-process runs and the CLI subprocesses the tests start
# find the same files.
FMNIST = Path(os.environ.get("FMNIST") or os.environ.get("VISREP_FMNIST_ROOT")
              or "/usr/share/datasets/fashion-mnist")  # fmt: skip
os.environ["VISREP_FMNIST_ROOT"] = str(FMNIST)
REPO = Path(__file__).resolve().parents[1]

requires_fmnist = pytest.mark.skipif(
    not any((FMNIST / f"train-images-idx3-ubyte{gz}").exists() for gz in (".gz", "")),
    reason=f"Fashion-MNIST missing from {FMNIST}: apt-get install dataset-fashion-mnist "
    "(or make test FMNIST=DIR)",
)

# CI (`.ci/run` exports VISREP_CI=1): a skipped test fails unless its reason contains one of
# the lines of $VISREP_CI_ALLOWED_SKIPS, which `.ci/run` lists (optional data `make test`
# does not install); a skip at collection (a module's `importorskip`) fails the session.
CI = os.environ.get("VISREP_CI") == "1"
ALLOWED_SKIPS = [s.strip() for s in os.environ.get("VISREP_CI_ALLOWED_SKIPS", "").splitlines()
                 if s.strip()]  # fmt: skip


def _skip_reason(report) -> str:
    r = report.longrepr
    return r[2] if isinstance(r, tuple) else str(r)


def _allowed(reason: str) -> bool:
    return any(a in reason for a in ALLOWED_SKIPS)


def _ci_message(what: str, reason: str) -> str:
    return (f"{what} was skipped in CI ({reason}); a skip in CI is a failure unless .ci/run "
            "lists its reason in VISREP_CI_ALLOWED_SKIPS: install what it needs or list it")  # fmt: skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not _allowed(reason):
            report.outcome = "failed"
            report.longrepr = _ci_message(item.nodeid, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:
        reason = _skip_reason(report)
        if not _allowed(reason):
            report.outcome = "failed"  # a collection error: pytest reports it and fails
            report.longrepr = _ci_message(collector.nodeid, reason)


def visrep(
    *args: str, check: bool = True, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess with one torch thread (tests run two at a time)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "visrep.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=kw.pop("cwd", REPO), **kw,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"visrep {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc


def torchrun_worker(script: Path, out: Path, timeout: float = 180) -> dict:
    """Run `script out` under `torchrun --standalone --nproc_per_node=2` (gloo, one thread
    each) and return what rank 0 saved to `out` (loaded with weights_only)."""
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (40, 60, 210)}


def colour_folder(root, per_class=(12, 8, 4), split=False, labelled=True, seed=0):
    """Class folders of noisy colour images: mixed sizes, JPEG and PNG, RGB / RGBA / P."""
    rng = np.random.default_rng(seed)
    for (name, rgb), n in zip(COLOURS.items(), per_class):
        for i in range(n):
            part = ("val" if i % 4 == 0 else "train") if split else ""
            folder = root / part / (name if labelled else "") if labelled else root
            folder.mkdir(parents=True, exist_ok=True)
            h, w = 20 + (i * 7) % 30, 24 + (i * 5) % 26
            x = np.clip(rng.normal(rgb, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            im = Image.fromarray(x)
            if i % 3 == 1:
                im.convert("RGBA").save(folder / f"{name}{i}.png")
            elif i % 3 == 2:
                im.convert("P").save(folder / f"{name}{i}.png")
            else:
                im.save(folder / f"{name}{i}.jpg", quality=90)
    return root


def image_shards(root, n=48, per_shard=20, seed=0):
    """WebDataset shards of n random JPEG images (no captions), `per_shard` per tar."""
    import io

    import webdataset as wds

    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for s in range(0, n, per_shard):
        with wds.TarWriter(str(root / f"shard-{s // per_shard:04d}.tar")) as w:
            for i in range(s, min(n, s + per_shard)):
                x = rng.integers(0, 255, (18 + i % 7, 22, 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(x).save(buf, format="JPEG")
                w.write({"__key__": f"img{i:05d}", "jpg": buf.getvalue()})
    return root


def smoke_run(out, recipe: str, steps: int, **changes):
    """A `steps`-step smoke run of a recipe (`visrep.configs.smoke`; a video recipe: 8 frames
    at 32 px, Moving Fashion-MNIST made on the fly) in `out`, quiet, one thread, no
    evaluation."""
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.loop import train

    quiet = {"eval.final": False, "eval.every_epochs": 0, "run.threads": 1,
             "run.progress": False}  # fmt: skip
    cfg = replace(smoke(get_recipe(recipe)), **quiet,
                  **{"run.out_dir": str(out), "run.max_steps": steps}, **changes)  # fmt: skip
    train(cfg)
    return out
