"""visrep.evals.robustness (CE, mCE, relative mCE, per-severity errors, outputs) and the
`visrep eval robustness` command end to end on a tiny fine-tuned Fashion-MNIST run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import requires_fmnist, visrep

from visrep.data.corruptions import BENCHMARK
from visrep.evals.robustness import (
    ALEXNET_CLEAN,
    ALEXNET_ERRORS,
    ce_table,
    corruption_errors,
    markdown,
    plot_errors,
)


def test_alexnet_against_itself_is_100():
    errors = {n: [ALEXNET_ERRORS[n]] * 5 for n in BENCHMARK}
    t = ce_table(errors, ALEXNET_CLEAN)
    assert t["mce"] == pytest.approx(100.0) and t["relative_mce"] == pytest.approx(100.0)
    assert t["n_benchmark"] == 15


def test_clean_level_errors_give_zero_relative_mce():
    errors = {n: [12.0] * 5 for n in BENCHMARK}
    base = {n: [20.0, 30.0, 40.0, 50.0, 60.0] for n in BENCHMARK}
    t = ce_table(errors, 12.0, base, 10.0)
    assert t["relative_mce"] == pytest.approx(0.0)
    assert t["mce"] == pytest.approx(100 * 12 / 40)  # Σ12·5 / Σ(20..60)
    assert t["mean_corruption_error"] == pytest.approx(12.0)


def test_ce_by_hand_against_a_baseline():
    errors = {"gaussian_noise": [10, 20, 30, 40, 50], "fog": [5, 5, 5, 5, 5], "lines": [1] * 5}
    base = {"gaussian_noise": [20, 40, 60, 80, 100], "fog": [10] * 5, "lines": [2] * 5}
    t = ce_table(errors, 4.0, base, 8.0)
    g, f = t["corruptions"]["gaussian_noise"], t["corruptions"]["fog"]
    assert g["ce"] == pytest.approx(100 * 150 / 300)
    assert g["relative_ce"] == pytest.approx(100 * (150 - 20) / (300 - 40))
    assert f["relative_ce"] == pytest.approx(100 * (25 - 20) / (50 - 40))
    assert t["mce"] == pytest.approx((50 + 50) / 2)  # only the ImageNet-C 15 enter mCE
    assert t["mean_error_other"] == {"c_bar": 1.0}
    # a baseline whose corrupted error is not above its clean error: no relative CE
    assert math.isnan(ce_table({"fog": [5] * 5}, 1.0, {"fog": [3] * 5}, 3.0)["relative_mce"])
    two = ce_table({"fog": [5] * 5, "snow": [6] * 5}, 1.0, {"fog": [3] * 5, "snow": [5] * 5}, 3.0)
    assert two["n_relative"] == 1 and two["relative_mce"] == pytest.approx(100 * 5 / 2)


def test_errors_of_a_hand_made_classifier_and_outputs(tmp_path):
    # classifier: "bright" (label 1) iff the mean pixel exceeds 100
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    x[4:] = 200
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    y[0] = 1  # one wrong label: clean error 1/8

    def predict(images):
        return (images.float().mean(dim=(1, 2, 3)) > 100).long()

    res = corruption_errors(predict, x, y, ["brightness", "contrast"], base_seed=0)
    assert res["clean_error"] == pytest.approx(12.5) and res["n_test"] == 8
    # brightness s5 adds 0.3·255 = 76 to black images: still dark, so the same answers
    assert res["errors"]["brightness"] == [12.5] * 5
    assert len(res["errors"]["contrast"]) == 5
    res["table"] = ce_table(res["errors"], res["clean_error"])
    text = markdown(res, "t", "AlexNet")
    assert "| brightness | weather | 12.5 |" in text and "mCE" in text
    plot_errors({"a": res}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.finetune import finetune, finetune_config, resolve
    from visrep.loop import train

    d = tmp_path_factory.mktemp("rob")
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{"run.out_dir": str(d / "mae"),
                  "run.threads": 1, "eval.final": False, "eval.every_epochs": 0,
                  "optim.epochs": 1, "data.limit": 64})  # fmt: skip
    train(cfg)
    fast = {"run.max_steps": 2, "optim.batch_size": 16, "run.progress": False,
            "run.threads": 1, "eval.limit_train": 64, "eval.limit_test": 20}  # fmt: skip
    for name, seed in (("a", 0), ("b", 1)):
        ft = resolve(replace(finetune_config(d / "mae"), **fast,
                             **{"run.out_dir": str(d / name), "run.seed": seed}))  # fmt: skip
        finetune(ft)
    return d


@pytest.mark.slow
@requires_fmnist
def test_cli_end_to_end(finetuned):
    a, b = finetuned / "a", finetuned / "b"
    visrep("eval", "robustness", "--ckpt", str(a), "--baseline", str(b), "--suites", "c",
           "eval.limit_test=20")  # fmt: skip
    res = json.loads((a / "robustness.json").read_text())
    assert res["n_test"] == 20 and res["classifier"] == "finetune"
    assert set(res["errors"]) == set(BENCHMARK) and all(len(v) == 5 for v in res["errors"].values())
    assert np.isfinite(res["table"]["mce"]) and res["baseline"] == str(b)
    assert (a / "robustness.md").is_file() and (a / "robustness.png").is_file()
    base = json.loads((b / "robustness.json").read_text())  # the baseline's own errors, cached
    assert base["table"]["mce"] == pytest.approx(100.0)
    # errors of the same images under the same seeds: the run's CE is Σ own / Σ baseline's
    g = "gaussian_noise"
    want = 100 * sum(res["errors"][g]) / sum(base["errors"][g])
    assert res["table"]["corruptions"][g]["ce"] == pytest.approx(want)
    # MSD of a's training augmentation, features of b; mean over severities per corruption
    visrep("eval", "msd", "--ckpt", str(a), "--encoder", str(b), "--n-aug", "3", "--n-corr",
           "2", "--n-images", "4")  # fmt: skip
    m = json.loads((a / "msd.json").read_text())
    assert m["augmentation"]["crop_scale"] == [0.35, 1.0] and len(m["per_severity"]) == 75
    g = [m["per_severity"][f"fog-{s}"]["msd"] for s in range(1, 6)]
    assert m["per_corruption"]["fog"]["msd"] == pytest.approx(np.mean(g))
    # a pre-training run: the weighted k-NN on its frozen features (AlexNet normalisation)
    visrep("eval", "robustness", "--ckpt", str(finetuned / "mae"), "--suites", "c_bar",
           "--classifier", "knn", "eval.limit_test=10", "eval.limit_train=50")  # fmt: skip
    k = json.loads((finetuned / "mae" / "robustness.json").read_text())
    assert k["classifier"].startswith("knn (k=20") and len(k["errors"]) == 10
    assert k["baseline"].startswith("AlexNet") and "mce" not in k["table"]  # no C-bar AlexNet
    # a pre-training run has no head: --classifier finetune is one clear line
    bad = visrep("eval", "robustness", "--ckpt", str(finetuned / "mae"), "--classifier",
                 "finetune", check=False)  # fmt: skip
    assert bad.returncode == 2 and "fine-tuned run" in bad.stderr
