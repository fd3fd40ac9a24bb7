"""The user's own images: seeded stratified subsets and hold-outs, channel detection, the
automatic evaluation split, one decoder for every path, and end-to-end runs on a colour
folder (labelled with a split, labelled without, unlabeled)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from conftest import colour_folder, image_shards, requires_fmnist
from PIL import Image

from visrep.config import DataConfig, EvalConfig, TrainConfig, replace
from visrep.configs import get_recipe, smoke
from visrep.data.folder import MAX_PIXELS, decode_bytes
from visrep.data.resolve import detect_channels, resolve_data
from visrep.data.sampling import holdout_split, stratified_subset
from visrep.loop import train


def test_stratified_subset_keeps_every_class_in_proportion():
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 90 + [3] * 10)
    idx = stratified_subset(labels, 100, seed=3)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert torch.bincount(labels[idx]).tolist() == [60, 30, 9, 1]
    assert torch.equal(idx, stratified_subset(labels, 100, seed=3))  # seeded
    assert not torch.equal(idx, stratified_subset(labels, 100, seed=4))
    assert torch.bincount(labels[stratified_subset(labels, 4)]).tolist() == [1, 1, 1, 1]
    assert torch.equal(stratified_subset(labels, 0), torch.arange(1000))  # 0 = all
    unlabeled = stratified_subset(torch.full((50,), -1), 10)
    assert len(unlabeled) == 10


def test_holdout_split_is_disjoint_stratified_and_seeded():
    labels = torch.tensor([0] * 50 + [1] * 20 + [2] * 1)
    train, test = holdout_split(labels, 0.1)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert len(train) + len(test) == len(labels)
    assert torch.bincount(labels[test], minlength=3).tolist() == [5, 2, 0]  # a lone image trains
    assert torch.equal(test, holdout_split(labels, 0.1)[1])
    with pytest.raises(ValueError, match="eval.holdout"):
        holdout_split(labels, 1.5)


def test_channels_are_colour_unless_every_image_is_grayscale(tmp_path):
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(gray / f"{i}.png")
    Image.fromarray(np.full((8, 8), 9, np.uint16)).save(gray / "deep.png")  # 16-bit gray
    paths = sorted(gray.iterdir())
    assert detect_channels(paths) == 1
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(gray / "rgb.jpg")
    assert detect_channels(sorted(gray.iterdir())) == 3


def _cfg(data, ev: EvalConfig | None = None) -> TrainConfig:
    ev = ev or EvalConfig(dataset="auto")
    return TrainConfig(method=get_recipe("mae_fmnist").method, data=data, eval=ev)


def test_auto_evaluation_follows_the_folder_layout(tmp_path):
    split = colour_folder(tmp_path / "split", split=True)
    cfg = resolve_data(_cfg(DataConfig(dataset=str(split), channels=0, num_workers=-1)))
    assert cfg.data.dataset == str(split / "train") and cfg.eval.dataset == str(split)
    assert cfg.data.channels == 3 and cfg.data.num_workers >= 1 and cfg.eval.holdout == 0
    classes = colour_folder(tmp_path / "classes")
    cfg = resolve_data(_cfg(DataConfig(dataset=str(classes), channels=0)))
    assert cfg.eval.dataset == str(classes) and cfg.eval.holdout == 0.1
    flat = colour_folder(tmp_path / "flat", labelled=False)
    assert resolve_data(_cfg(DataConfig(dataset=str(flat)))).eval.dataset == ""
    fm = resolve_data(_cfg(DataConfig(dataset="fashion_mnist", channels=0, num_workers=-1)))
    assert (fm.eval.dataset, fm.data.channels, fm.data.num_workers) == ("fashion_mnist", 1, 0)
    explicit = _cfg(DataConfig(dataset=str(classes)), EvalConfig(dataset="fashion_mnist"))
    assert resolve_data(explicit).eval.dataset == "fashion_mnist"  # asked for: kept


def _png(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, **kw).save(buf, format="PNG")
    return buf.getvalue()


def test_one_decoder_handles_16_bit_palette_alpha_and_refuses_bombs():
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # 0 .. 63000
    x = decode_bytes(_png(deep), 3)
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(x[0], torch.from_numpy((deep >> 8).astype(np.uint8)))
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert decode_bytes(_png(rgba), 3).min() == 255  # composited on white
    buf = io.BytesIO()
    Image.new("1", (10_000, MAX_PIXELS // 10_000 + 1)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000  # a small file declaring a huge image
    with pytest.raises(ValueError, match="pixel limit"):
        decode_bytes(buf.getvalue(), 3)


def _run(tmp_path, folder, **changes):
    cfg = smoke(get_recipe("mae_fmnist"))
    cfg = replace(cfg, **{"data.dataset": str(folder), "data.channels": 0, "data.img_size": 32,
                          "data.limit": 0, "eval.dataset": "auto", "eval.every_epochs": 0,
                          "eval.limit_train": 0, "eval.limit_test": 0, "eval.linear_epochs": 3,
                          "optim.batch_size": 4, "optim.epochs": 1,
                          "run.out_dir": str(tmp_path / "run"), "run.threads": 1, **changes})  # fmt: skip
    metrics = train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    report = (tmp_path / "run" / "report.md").read_text()
    return metrics, saved, report


@requires_fmnist  # the smoke recipe; no Fashion-MNIST image is used
def test_a_labelled_colour_folder_is_evaluated_on_its_own_holdout(tmp_path):
    folder = colour_folder(tmp_path / "images")
    metrics, saved, report = _run(tmp_path, folder)
    assert saved["data"]["channels"] == 3 and saved["eval"]["holdout"] == 0.1
    assert metrics["eval_dataset"] == str(folder)
    # 24 images, 3 held out (1 per class at 10%, at least 1): 21 train = 5 steps of 4
    assert metrics["knn_n_test"] == 3 and metrics["knn_n_train"] == 21
    for k in ("raw_knn_top1", "init_knn_top1", "raw_linear_top1", "init_linear_top1"):
        assert 0 <= metrics[k] <= 1, k
    assert "pre-training" in report and "raw pixels" in report
    assert (tmp_path / "run" / "reconstruction.png").stat().st_size > 1000


@requires_fmnist
def test_a_split_folder_trains_on_train_and_tests_on_val(tmp_path):
    folder = colour_folder(tmp_path / "images", split=True)
    metrics, saved, _ = _run(tmp_path, folder)
    assert saved["data"]["dataset"] == str(folder / "train")
    assert metrics["knn_n_test"] == 6 and metrics["knn_n_train"] == 18  # val/ has 3+2+1


@requires_fmnist
def test_an_unlabeled_folder_gets_a_label_free_report(tmp_path):
    folder = colour_folder(tmp_path / "images", labelled=False)
    metrics, saved, report = _run(tmp_path, folder)
    assert saved["eval"]["dataset"] == ""
    assert "knn_top1" not in metrics
    assert 0 < metrics["label_free_feature_std"] < 1 and metrics["label_free_effective_rank"] > 1
    assert "label_free_init_effective_rank" in metrics and "No labels" in report
    assert (tmp_path / "run" / "neighbours.png").stat().st_size > 1000


def test_build_folder_from_the_emoji_package_is_a_split_colour_folder(tmp_path):
    from test_caption_sources import REAL_EMOJI

    from visrep.data.build_folder import build_emoji_folder

    if not REAL_EMOJI.exists():
        pytest.skip("npm pack emoji-datasource-google@16.0.0")
    report = build_emoji_folder(tmp_path / "emoji", str(REAL_EMOJI), val=0.2)
    assert len(report["classes"]) == 9 and report["train"] + report["val"] > 1800
    assert 0.19 < report["val"] / (report["train"] + report["val"]) < 0.21
    one = next((tmp_path / "emoji" / "val" / "flags").iterdir())
    with Image.open(one) as im:
        assert im.mode == "RGB" and im.size == (64, 64)
    again = build_emoji_folder(tmp_path / "again", str(REAL_EMOJI), val=0.2)
    assert again["per_class"] == report["per_class"]  # seeded: the same folder everywhere


@requires_fmnist  # the smoke recipe; no Fashion-MNIST image is used
def test_image_only_webdataset_shards_train_and_resume_exactly(tmp_path):
    from visrep.checkpoint import load_checkpoint

    shards = image_shards(tmp_path / "shards")
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{
        "data.dataset": str(shards), "data.channels": 0, "data.img_size": 16, "data.limit": 0,
        "eval.dataset": "auto", "eval.final": False, "eval.every_epochs": 0,
        "optim.batch_size": 8, "optim.epochs": 2, "run.threads": 1})  # fmt: skip
    whole = tmp_path / "whole"
    train(replace(cfg, **{"run.out_dir": str(whole)}))
    saved = json.loads((whole / "config.json").read_text())
    assert saved["data"]["channels"] == 3 and saved["eval"]["dataset"] == ""
    part = tmp_path / "part"
    train(replace(cfg, **{"run.out_dir": str(part), "run.max_steps": 5}))
    train(replace(cfg, **{"run.out_dir": str(part)}), resume=True)
    a, b = load_checkpoint(whole), load_checkpoint(part)
    assert a["step"] == b["step"] == 12  # 48 images / 8 = 6 steps x 2 epochs
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
