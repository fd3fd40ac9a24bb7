"""The ρ study's online k-NN monitor: `eval.every_epochs` on a video run logs the clip-level
video k-NN (class and direction) through the loop's periodic-evaluation hook."""

import json

import pytest
from conftest import requires_fmnist

from visrep.config import ConfigError, replace
from visrep.configs import get_recipe, smoke
from visrep.data.video_eval import video_eval_sets
from visrep.evals.video import video_knn_eval
from visrep.loop import train
from visrep.runs import load_run

QUIET = {"eval.final": False, "run.threads": 1, "run.progress": False}


@requires_fmnist
def test_periodic_video_knn_logs_the_final_weights_scores(tmp_path):
    """One epoch of ρBYOL (smoke size, 8 steps of 32 videos) with the monitor every epoch:
    log.jsonl holds eval/knn_top1 and eval/knn_direction_top1 at step 8, equal to the video
    k-NN of the saved weights on the same 80 + 80 videos."""
    cfg = replace(smoke(get_recipe("rho_byol_mfmnist")), **QUIET, **{
        "run.out_dir": str(tmp_path / "run"), "optim.epochs": 1, "eval.every_epochs": 1,
        "eval.dataset": "fashion_mnist", "eval.limit_train": 160, "eval.limit_test": 80,
        "eval.periodic_limit": 80})  # fmt: skip
    train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/knn_top1" in r]
    assert [r["step"] for r in evals] == [8]
    row = evals[0]
    assert row["eval/knn_n_train"] == row["eval/knn_n_test"] == 80  # capped by periodic_limit
    saved, model = load_run(tmp_path / "run")
    sets = video_eval_sets(saved.data, replace(saved.eval, limit_train=80, limit_test=80))
    want = video_knn_eval(model.backbone, *sets, batch_size=saved.eval.batch_size // 8 or 1)
    assert row["eval/knn_top1"] == pytest.approx(want["knn_top1"], abs=1e-6)
    assert row["eval/knn_direction_top1"] == pytest.approx(want["knn_direction_top1"], abs=1e-6)


def test_periodic_video_knn_needs_labelled_videos(tmp_path):
    cfg = replace(smoke(get_recipe("rho_byol_mfmnist")), **QUIET, **{
        "run.out_dir": str(tmp_path / "run"), "optim.epochs": 1, "eval.every_epochs": 1,
        "eval.dataset": "", "data.limit": 64})  # fmt: skip
    with pytest.raises(ConfigError, match="labelled eval.dataset"):
        train(cfg)
