"""`visrep eval robustness --classifier linear`: the linear probe of `visrep eval linear`
(MAE's head on cached frozen features, `visrep.evals.linear.fit_linear_head`) trained on the
clean eval train split and scored on every corruption × severity. On a tiny MAE run its clean
error is `visrep eval linear`'s test error on the same split; a severe corruption does not
lower it; `auto` picks it for a pre-training run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import requires_fmnist, visrep

from visrep.evals.linear import fit_linear_head, linear_probe

# a small probe that still fits: 1,000 train / 40 test images, 30 epochs of batch 64, LARS
# budget blr·N·epochs/256 = 1,172 (clean error ~33 % on the 1-epoch MAE encoder)
EVAL = ["eval.limit_train=1000", "eval.limit_test=40", "eval.linear_epochs=30",
        "eval.linear_batch_size=64", "eval.linear_blr=10.0", "eval.budget_minutes=0"]  # fmt: skip


def test_fit_linear_head_is_the_probes_head():
    # the head linear_probe scores is the one fit_linear_head returns (same seed, same draws)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    x[:, 0] += 3 * y  # separable along one feature
    xt, yt = torch.randn(20, 8, generator=g), torch.randint(0, 3, (20,), generator=g)
    xt[:, 0] += 3 * yt
    kw = {"epochs": 30, "batch_size": 16, "blr": 4.0, "seed": 4, "optimizer": "sgd"}
    m = linear_probe(x, y, xt, yt, **kw)
    head, settings = fit_linear_head(x, y, 3, **kw)
    assert not head.training  # eval mode: BN running statistics
    acc = float((head(xt).argmax(1) == yt).float().mean())
    assert acc == pytest.approx(m["linear_top1"]) and acc > 0.8
    assert settings == {k: v for k, v in m.items() if k in settings}
    assert settings["linear_lr"] == 4.0 * 16 / 256 and settings["linear_optimizer"] == "sgd"


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.loop import train

    d = tmp_path_factory.mktemp("roblin") / "mae"
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{"run.out_dir": str(d), "run.threads": 1,
                  "eval.final": False, "eval.every_epochs": 0, "optim.epochs": 1,
                  "data.limit": 64, "run.progress": False})  # fmt: skip
    train(cfg)
    return d


@requires_fmnist
def test_linear_clean_error_is_eval_linears(mae_run):
    from visrep.config import apply_overrides
    from visrep.evals.robustness import corruption_errors
    from visrep.evals.run import evaluate
    from visrep.robustness import eval_split, predictor
    from visrep.runs import load_run

    cfg, model = load_run(str(mae_run), torch.device("cpu"))
    cfg = apply_overrides(cfg, EVAL)
    # what `visrep eval linear` computes (visrep.cli: evaluate(..., protocols=("linear",)))
    lin = evaluate(model.backbone, cfg.data, cfg.eval, protocols=("linear",))
    predict, name = predictor(cfg, model, "auto", torch.device("cpu"))  # pre-training: linear
    assert name == "linear (blr=10.0, 30 epochs, train 1000)"
    images, labels = eval_split(cfg, "test", cfg.eval.limit_test)
    with torch.no_grad():
        res = corruption_errors(predict, images, labels, ["inverse_sparkles"])
    # the same probe on the same clean test images: visrep eval linear's error, exactly
    assert res["n_test"] == 40
    assert res["clean_error"] == pytest.approx(100 * (1 - lin["linear_top1"]), abs=1e-9)
    # inverse_sparkles at level 5: white everywhere but one star (~88 % error vs ~33 % clean)
    assert res["errors"]["inverse_sparkles"][4] >= res["clean_error"] + 10


@pytest.mark.slow
@requires_fmnist
def test_linear_classifier_cli(mae_run, tmp_path):
    visrep("eval", "linear", "--ckpt", str(mae_run), "--out", str(tmp_path / "lin.json"), *EVAL)
    lin = json.loads((tmp_path / "lin.json").read_text())
    visrep("eval", "robustness", "--ckpt", str(mae_run), "--classifier", "linear", "--suites",
           "imagenet_c_bar", "--out", str(tmp_path), *EVAL)  # fmt: skip
    res = json.loads((tmp_path / "robustness.json").read_text())
    assert res["classifier"].startswith("linear (blr=10.0, 30 epochs, train 1000")
    assert res["n_test"] == 40 and len(res["errors"]) == 10 and "perlin_noise" in res["errors"]
    assert res["clean_error"] == pytest.approx(100 * (1 - lin["linear_top1"]), abs=1e-9)
    assert max(max(v) for v in res["errors"].values()) >= res["clean_error"] + 10
    assert (tmp_path / "robustness.md").is_file() and (tmp_path / "robustness.png").is_file()
