"""Faults during a run: divergence never overwrites the last finite checkpoint, a run folder
has one writer, resume keeps its counters and cleans its debris, overrides on resume, and
the CLI's one-line errors."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from conftest import requires_fmnist
from PIL import Image

from visrep.checkpoint import LOCK, RunDirLock, load_checkpoint
from visrep.cli import main
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.loop import train


def _smoke(run, **changes):
    cfg = smoke(get_recipe("mae_fmnist"))
    return replace(cfg, **{"run.out_dir": str(run), "run.threads": 1, "eval.final": False,
                           "eval.every_epochs": 0, **changes})  # fmt: skip


@requires_fmnist
def test_a_diverging_run_keeps_its_last_finite_checkpoint_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    train(_smoke(run, **{"optim.epochs": 1}))  # 8 good steps, checkpoint at step 8
    # continue with an absurd lr: the loss and weights blow up before the next save
    code = main(["train", "--resume", str(run), "optim.epochs=3", "optim.blr=1e9",
                 "run.log_every=100"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "NaN/inf" in err and "checkpoint of step 8" in err
    assert err.count("\n") == 1  # one line, no traceback
    state = load_checkpoint(run)
    assert state["step"] == 8
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the override was recorded, and the run continues from step 8 with a sane lr
    assert json.loads((run / "config.json").read_text())["optim"]["blr"] == 1e9
    assert main(["train", "--resume", str(run), "optim.blr=1e-3", "optim.epochs=2"]) == 0
    assert load_checkpoint(run)["step"] == 16


def test_a_run_folder_has_one_writer_and_a_dead_owner_frees_it(tmp_path):
    run = tmp_path / "run"
    (run).mkdir()
    (run / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    with RunDirLock(run):
        assert not (run / ".checkpoint.pt.abc123.tmp").exists()  # debris of a killed write
        assert f"pid {os.getpid()}" in (run / LOCK).read_text()
        with pytest.raises(OSError, match="in use by pid") as e:
            RunDirLock(run).__enter__()
        assert e.value.errno == errno.EBUSY
    with RunDirLock(run):  # released on exit (the kernel also releases it when a process dies)
        pass


@requires_fmnist
def test_a_second_training_process_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with RunDirLock(run):
        code = main(["train", "mae_fmnist", "--smoke", f"run.out_dir={run}"])
    assert code == 2 and "is in use by pid" in capsys.readouterr().err
    assert not (run / "config.json").exists()  # nothing of the refused run was written


@requires_fmnist
def test_resume_keeps_counting_unreadable_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    for i in range(2):
        (folder / f"broken{i}.png").write_bytes(b"not an image")
    changes = {"data.dataset": str(folder), "data.channels": 3, "data.img_size": 16,
               "data.limit": 0, "optim.batch_size": 7}  # fmt: skip
    whole = train(_smoke(tmp_path / "whole", **changes))
    part = tmp_path / "part"
    train(_smoke(part, **changes, **{"run.max_steps": 4}))
    assert main(["train", "--resume", str(part), "run.max_steps=0"]) == 0
    metrics = json.loads((part / "metrics.json").read_text())
    assert metrics["unreadable_images_skipped"] == whole["unreadable_images_skipped"] == 4


def test_resume_refuses_changes_to_the_model_or_the_data(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "method.mask_ratio=0.5"]) == 2
    assert "cannot change method.mask_ratio=0.5" in capsys.readouterr().err


@requires_fmnist
def test_resuming_a_finished_run_says_there_is_nothing_left(tmp_path, caplog):
    run = tmp_path / "run"
    train(_smoke(run, **{"optim.epochs": 1}))
    assert main(["train", "--resume", str(run)]) == 0
    assert "nothing left to train" in caplog.text


def test_outputs_follow_the_umask(tmp_path):
    from visrep.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("argv", [["export", "--ckpt", "x", "--out", "y", "--fromat", "timm"],
                                  ["recipes", "--all"], ["show", "mae_fmnist", "--verbose"]])  # fmt: skip
def test_a_mistyped_flag_is_an_error_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "eval", "knn", "--ckpt", str(tmp_path / "missing")])


@pytest.mark.parametrize("override", ["optim.epochs=0", "optim.epochs=-3", "optim.batch_size=0",
                                      "optim.batch_size=-1", "run.log_every=0",
                                      "optim.accum_steps=0", "eval.holdout=1.5",
                                      "data.channels=2", "optim.epochs=abc",
                                      "optim.blr=fast"])  # fmt: skip
def test_nonsense_sizes_are_refused_by_name(override, capsys, tmp_path):
    code = main(["train", "mae_fmnist", override, f"run.out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and override.split("=")[0] in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_an_unknown_device_lists_the_valid_ones(capsys, tmp_path):
    assert (
        main(["train", "mae_fmnist", "--smoke", "run.device=gpu", f"run.out_dir={tmp_path}"]) == 2
    )
    assert "auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@requires_fmnist
def test_a_folder_of_a_few_batches_warns(tmp_path, caplog):
    from conftest import colour_folder

    folder = colour_folder(tmp_path / "images", labelled=False)
    train(_smoke(tmp_path / "run", **{"data.dataset": str(folder), "data.channels": 0,
                                      "data.limit": 0, "optim.batch_size": 8,
                                      "eval.dataset": "auto", "optim.epochs": 1}))  # fmt: skip
    assert "an epoch is only 3 step(s) of 8 images" in caplog.text


@requires_fmnist  # the smoke recipe; the data are a colour folder and image shards
@pytest.mark.parametrize("source", ["folder", "shards"])
def test_repeated_kills_at_random_moments_then_resume_match_an_uninterrupted_run(source, tmp_path):
    """Fault injection: kill -9 three times at random moments of a run that checkpoints
    every step (so some kills land inside a checkpoint write), resume each time; the end is
    bit-identical to a run that was never interrupted."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, colour_folder, image_shards, visrep

    data = (colour_folder(tmp_path / "images", labelled=False) if source == "folder"
            else image_shards(tmp_path / "shards", n=24, per_shard=10))  # fmt: skip
    args = ["mae_fmnist", "--smoke", f"data.dataset={data}", "data.channels=3",
            "data.img_size=16", "data.limit=0", "optim.batch_size=4", "optim.epochs=4",
            "eval.final=False", "eval.every_epochs=0", "run.ckpt_every_minutes=0",
            "run.threads=1"]  # fmt: skip
    whole = tmp_path / "whole"
    visrep("train", *args, f"run.out_dir={whole}")
    run, rng, kills = tmp_path / "run", random.Random(0), 0
    cmd = [sys.executable, "-m", "visrep.cli", "train", *args, f"run.out_dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while kills < 3:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        start = load_checkpoint(run)["step"] if (run / "checkpoint.pt").exists() else 0
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if load_checkpoint(run)["step"] > start:
                    break
            except (FileNotFoundError, ValueError, RuntimeError):
                pass
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))  # anywhere in the next steps, writes included
        if proc.poll() is not None:
            break  # it finished before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        cmd = [sys.executable, "-m", "visrep.cli", "train", "--resume", str(run)]
    assert kills == 3, "the run ended before three kills: make it longer"
    visrep("train", "--resume", str(run))
    a, b = load_checkpoint(whole), load_checkpoint(run)
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not list(run.glob(".*.tmp"))  # no debris of the killed writes is left


@requires_fmnist
def test_config_and_checkpoint_of_different_runs_are_one_clear_error(tmp_path, capsys):
    """eval, export and --resume share `checkpoint.load_model_weights` with run.init_from."""
    import shutil

    train(_smoke(tmp_path / "mae", **{"run.max_steps": 1}))
    other = replace(smoke(get_recipe("maskfeat_fmnist")), **{"run.out_dir": str(tmp_path / "mf"),
                    "run.threads": 1, "eval.final": False, "eval.every_epochs": 0,
                    "run.max_steps": 1})  # fmt: skip
    train(other)
    train(_smoke(tmp_path / "wide", **{"run.max_steps": 1, "method.decoder_dim": 64}))
    for source, differs in (("mf", "holds a 'maskfeat' run, but"), ("wide", "does not fit")):
        mixed = tmp_path / f"mixed_{source}"
        mixed.mkdir()
        shutil.copy(tmp_path / "mae" / "config.json", mixed)
        shutil.copy(tmp_path / source / "checkpoint.pt", mixed)
        for argv in (["eval", "knn", "--ckpt", str(mixed)],
                     ["export", "--ckpt", str(mixed), "--out", str(tmp_path / "exported")],
                     ["train", "--resume", str(mixed)]):  # fmt: skip
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("visrep: error: ") and err.count("\n") == 1, err
            assert differs in err and "come from different runs" in err, err
    assert "mask_token [1, 1, 64] in the checkpoint" in err
    assert not (tmp_path / "exported").exists()
    assert json.loads((mixed / "config.json").read_text())["run"]["out_dir"].endswith("mae")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"method_name": "mae", "optim": 5}'])
def test_a_damaged_config_json_is_one_clear_error(tmp_path, capsys, text):
    (tmp_path / "config.json").write_text(text)
    assert main(["eval", "knn", "--ckpt", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/config.json" in err and "put back the config.json" in err
    assert err.count("\n") == 1


@requires_fmnist
def test_a_run_that_diverges_before_its_first_checkpoint_says_nothing_was_saved(tmp_path, capsys):
    code = main(["train", "mae_fmnist", "--smoke", "optim.blr=1e9", "eval.final=False",
                 "run.threads=1", f"run.out_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "nothing was saved" in err and "--resume" not in err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_run_or_export_folder_that_cannot_be_made_says_so(tmp_path):
    from visrep.export import prepare_out_dir

    (tmp_path / "a_file").write_text("x")
    for run in (tmp_path / "a_file", tmp_path / "a_file" / "run"):
        with pytest.raises(OSError, match="cannot make the run folder .*another run.out_dir"):
            RunDirLock(run).__enter__()
    with pytest.raises(OSError, match="is a file, not a folder: choose another --out"):
        prepare_out_dir(tmp_path / "a_file", force=True)  # never deleted, not even with --force
    with pytest.raises(OSError, match="cannot make .*choose another --out"):
        prepare_out_dir(tmp_path / "a_file" / "x", force=False)
    assert (tmp_path / "a_file").read_text() == "x"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_or_cut_checkpoint_is_refused_without_running_code(tmp_path):
    torch.save({"model": _Evil(tmp_path / "pwned"), "step": 0}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="only running code could rebuild .*posix.system"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()
    torch.save({"model": {}, "step": 0}, tmp_path / "checkpoint.pt")
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a readable visrep checkpoint \(.*\): a file cut"):
        load_checkpoint(tmp_path)
