"""The command line and the run folder: export to timm, eval, user folders, errors."""

import json

import numpy as np
import pytest
import timm
import torch
from conftest import requires_fmnist, visrep
from PIL import Image

from visrep.data.preprocess import make_preprocess
from visrep.runs import load_run

SMOKE = ["--smoke", "eval.final=False", "eval.every_epochs=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    visrep("train", "mae_fmnist", *SMOKE, f"run.out_dir={d}", "backbone.pool=avg")
    return d


@requires_fmnist
def test_export_loads_into_timm_strictly_with_identical_features(run_dir, tmp_path):
    out = tmp_path / "export"
    visrep("export", "--ckpt", str(run_dir), "--out", str(out))
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    data_cfg = timm.data.resolve_model_data_config(model)
    cfg, method = load_run(run_dir)
    size = cfg.data.img_size
    assert data_cfg["input_size"] == (1, size, size) and data_cfg["interpolation"] == "bicubic"
    images = torch.randint(0, 256, (6, *data_cfg["input_size"]), dtype=torch.uint8).float()
    x = make_preprocess(size, 1, data_cfg["mean"], data_cfg["std"])(images)
    with torch.no_grad():
        ours, theirs = method.backbone(x), model(x)
    assert ours.shape == (6, 192)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=0)
    card = (out / "README.md").read_text()
    assert "mae_fmnist" in card and "local-dir:" in card
    again = visrep("export", "--ckpt", str(run_dir), "--out", str(out), check=False)
    assert again.returncode == 2 and "--force" in again.stderr  # never overwritten silently
    visrep("export", "--ckpt", str(run_dir), "--out", str(out), "--force")


@requires_fmnist
def test_eval_cli_records_protocol_settings(run_dir):
    out = visrep("eval", "knn", "--ckpt", str(run_dir), "eval.knn_k=5", "eval.limit_train=300",
                 "eval.limit_test=100")  # fmt: skip
    metrics = json.loads((run_dir / "eval_knn.json").read_text())
    assert metrics["knn_k"] == 5 and metrics["knn_temperature"] == 0.07
    assert metrics["knn_n_train"] == 300 and metrics["knn_n_test"] == 100
    assert '"knn_top1"' in out.stdout


def test_unknown_key_is_a_clear_error(tmp_path):
    proc = visrep("train", "mae_fmnist", "optim.lr_base=1", f"run.out_dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "unknown config key 'optim.lr_base'" in proc.stderr and "valid keys" in proc.stderr
    assert not (tmp_path / "config.json").exists()


def test_missing_data_is_a_clear_error(tmp_path):
    proc = visrep(
        "train", "mae_fmnist", "data.root=/nonexistent", f"run.out_dir={tmp_path}", check=False
    )
    assert proc.returncode == 2 and "apt-get install dataset-fashion-mnist" in proc.stderr
    proc = visrep("train", "mae_fmnist", f"data.dataset={tmp_path}/nope", f"run.out_dir={tmp_path}/r",
                  check=False)  # fmt: skip
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_eval_of_a_missing_run_says_what_to_pass(tmp_path):
    proc = visrep("eval", "knn", "--ckpt", str(tmp_path), check=False)
    assert proc.returncode == 2 and "run folder" in proc.stderr


@requires_fmnist
def test_trains_on_an_unlabelled_folder_skipping_corrupt_images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(40):
        size = (24 + i % 9, 30 + i % 5)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "truncated.jpg").write_bytes((folder / "0.jpg").read_bytes()[:100])
    run = tmp_path / "run"
    visrep("train", "mae_fmnist", "--smoke", f"data.dataset={tmp_path / 'images'}", "data.channels=3",
           "data.img_size=16", "data.limit=0", "optim.batch_size=7", "eval.dataset=fashion_mnist",
           f"run.out_dir={run}")  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    # 42 files, 2 unreadable; each of the 2 epochs visits both once (6 steps x 7 of 42)
    assert metrics["unreadable_images_skipped"] == 4
    assert "knn_top1" in metrics  # evaluated on a different, labelled dataset
    cfg, model = load_run(run)
    assert model.backbone.in_chans == 3 and cfg.data.img_size == 16


def test_recipes_and_show():
    out = visrep("recipes").stdout
    assert "mae_fmnist" in out and "mae_vit_base_in1k" in out
    show = visrep("show", "mae_vit_base_in1k").stdout
    line = next(x for x in show.splitlines() if x.startswith("optim.blr "))
    assert "float" in line and "0.00015" in line and "# lr = blr * effective batch / 256" in line
    patch = next(x for x in show.splitlines() if x.startswith("backbone.patch_size "))
    assert "int" in patch and "= 16" in patch
