"""Detection transfer: the built COCO sets (`visrep data build-detection`), their reader and
batches (flips; ViTDet's large-scale jitter against hand computations), COCO AP with
pycocotools (a perfect prediction scores 1.0), and tiny Mask R-CNN runs through `visrep eval
detect` on the Fashion-MNIST variant (MAE ViT: train, report, resume; SimCLR ResNet-18 +
FPN with large-scale jitter)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, requires_fmnist
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.transforms.v2 import functional as TF

from visrep.checkpoint import load_checkpoint
from visrep.config import replace
from visrep.configs import get_recipe, smoke
from visrep.data.build_detection import build_detection, tuxpaint_items
from visrep.data.build_folder import emoji_items, emoji_split
from visrep.data.caption_shards import TUXPAINT_ROOT
from visrep.data.coco import (
    CocoSet,
    DetectionBatches,
    annotation_file,
    hflip_sample,
    lsj_sample,
    mask_boxes,
    resize_scale_size,
)
from visrep.detect import run_detect_cli
from visrep.evals.detection import coco_results, coco_scores
from visrep.export import export_backbone
from visrep.logger import read_log
from visrep.loop import train

EMOJI = REPO / "emoji-datasource-google-16.0.0.tgz"


@pytest.fixture(scope="module")
def fmnist_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "fm"
    build_detection(out, "fmnist", n_train=16, n_val=6, size=32, per_image=(1, 3), seed=3)
    return out


@requires_fmnist
def test_fmnist_set_loads_in_pycocotools_and_masks_match_boxes(fmnist_set):
    for split, n in (("train", 16), ("val", 6)):
        coco = COCO(str(annotation_file(fmnist_set, split)))
        assert len(coco.imgs) == n and len(coco.cats) == 10 and coco.anns
        for a in coco.anns.values():
            m = coco.annToMask(a)
            ys, xs = np.nonzero(m)
            assert a["area"] == m.sum() > 0
            x, y, w, h = a["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    report = json.loads((fmnist_set / "build_report.json").read_text())
    assert report["objects"] == {"train": 60000, "val": 10000}  # train vs test items


@requires_fmnist
def test_the_build_is_a_function_of_the_seed(fmnist_set, tmp_path):
    again = tmp_path / "again"
    build_detection(again, "fmnist", n_train=16, n_val=6, size=32, per_image=(1, 3), seed=3)
    for split in ("train", "val"):
        assert (
            annotation_file(again, split).read_bytes()
            == annotation_file(fmnist_set, split).read_bytes()
        )
        assert (again / split / "000000.png").read_bytes() == (
            fmnist_set / split / "000000.png"
        ).read_bytes()
    with pytest.raises(FileExistsError, match="another --out"):
        build_detection(again, "fmnist", n_train=2, n_val=2)


@pytest.mark.skipif(
    not EMOJI.is_file(), reason="emoji tarball missing: npm pack emoji-datasource-google@16.0.0"
)
def test_emoji_set_splits_objects_and_backgrounds(tmp_path):
    items = emoji_items(str(EMOJI))
    classes, tr, va = emoji_split(items, 0.2, 0)
    assert not set(tr.tolist()) & set(va.tolist()) and len(tr) + len(va) == len(items)
    report = build_detection(tmp_path / "e", "emoji", n_train=3, n_val=2, emoji_root=str(EMOJI))
    assert report["objects"] == {"train": len(tr), "val": len(va)}
    bg = report["backgrounds"]
    assert bg["train"] and bg["val"] and not set(bg["train"]) & set(bg["val"])
    data = CocoSet(tmp_path / "e", "val")
    assert data.num_classes == len(classes) == 9
    assert data.image(0).shape == (3, 128, 128) and data.image(0).dtype == torch.uint8


def _stamp(path, size, opaque=False):
    """An RGBA ellipse filling a `size` (w, h) image: a cut-out of that aspect ratio."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", size, (0, 0, 0, 255 if opaque else 0))
    ImageDraw.Draw(im).ellipse([0, 0, size[0] - 1, size[1] - 1], fill=(200, 40, 40, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_tuxpaint_stamps_keep_their_aspect_and_split_by_stamp(tmp_path):
    root = tmp_path / "stamps"
    for k in range(4):  # two categories of 4 cut-outs, wide and tall; the rest is skipped
        _stamp(root / "animals" / "birds" / f"bird{k}.png", (60, 20))
        _stamp(root / "food" / f"pear{k}.png", (20, 60))
    _stamp(root / "animals" / "photo.png", (30, 30), opaque=True)  # no transparency
    (root / "food" / "broken.png").write_bytes(b"not a png")
    _stamp(root / "space" / "moon.png", (30, 30))  # a folder under min_per_class
    _stamp(root / "loose.png", (30, 30))  # outside any category folder
    items, skipped = tuxpaint_items(str(root), max_side=32, min_per_class=3)
    assert skipped == {"outside_a_category": 1, "unreadable": 1, "no_cut_out": 1,
                       "in_a_small_folder": 1}  # fmt: skip
    assert max(items[0][2].size) == 32 and items[0][2].size[0] > 2.5 * items[0][2].size[1]
    out = tmp_path / "det"
    report = build_detection(out, "tuxpaint", n_train=8, n_val=4, size=48, per_image=(2, 2),
                             scale=(0.6, 0.6), min_visible=0.0, photo_dirs=(),
                             tuxpaint_root=str(root), min_per_class=3)  # fmt: skip
    assert report["objects"] == {"train": 6, "val": 2}  # one of each category held out
    assert {v.split("/")[0] for v in report["val_stamps"]} == {"animals", "food"}
    assert set(report["val_stamps"]) < {stem for _, stem, _ in items}
    assert len(set(report["val_stamps"])) == 2
    coco = COCO(str(annotation_file(out, "train")))
    assert [c["name"] for c in coco.cats.values()] == ["animals", "food"]
    whole = 0
    for a in coco.anns.values():  # whole objects (side 29 px): the box keeps the aspect
        _, _, w, h = a["bbox"]
        if a["area"] > 0.9 * np.pi / 4 * w * h:  # not covered by the other object
            assert (w > 2.5 * h) if a["category_id"] == 1 else (h > 2.5 * w)
            whole += 1
    assert whole >= 4


@pytest.mark.skipif(not Path(TUXPAINT_ROOT).is_dir(),
                    reason="apt-get install tuxpaint-stamps-default")  # fmt: skip
def test_the_tuxpaint_set_builds_from_the_package(tmp_path):
    report = build_detection(tmp_path / "t", "tuxpaint", n_train=4, n_val=2, size=64)
    data = CocoSet(tmp_path / "t", "val")
    assert data.num_classes >= 8 and data.image(0).shape == (3, 64, 64)
    assert report["objects"]["val"] > 0 and report["train"]["instances"] > 0


@requires_fmnist
def test_a_perfect_prediction_scores_ap_one(fmnist_set):
    data = CocoSet(fmnist_set, "val", channels=1)
    results = []
    for i in range(len(data)):
        t = data.target(i)
        pred = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                "masks": t["masks"][:, None].float()}  # fmt: skip
        results += coco_results(pred, data.images[i]["id"], data)
    scores = coco_scores(data.path, results)
    for k in ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50", "mask_AP75"):
        assert scores[k] == pytest.approx(1.0), k
    # every category wrong: class AP falls to 0, class-agnostic AP (localisation) stays 1
    k = len(data.categories)
    wrong = [r | {"category_id": data.category_id(k - data.cat_ids.index(r["category_id"]))}
             for r in results]  # fmt: skip
    assert coco_scores(data.path, wrong, iou_types=("bbox",))["box_AP"] < 0.5
    agn = coco_scores(data.path, wrong, use_cats=False)
    assert agn["agnostic_box_AP"] == pytest.approx(1.0) == agn["agnostic_mask_AP"]
    # one box shifted by half its width: AP drops below 1
    results[0]["bbox"][0] += results[0]["bbox"][2] / 2
    assert coco_scores(data.path, results, iou_types=("bbox",))["box_AP"] < 1.0
    assert coco_scores(data.path, [])["mask_AP"] == 0.0  # no detection at all


@requires_fmnist
def test_batches_are_seeded_and_flips_move_boxes_with_masks(fmnist_set):
    data = CocoSet(fmnist_set, "train", channels=1)
    a = DetectionBatches(data, 4, seed=1).batch(5)
    b = DetectionBatches(data, 4, seed=1).batch(5)  # a resumed run: the same batch
    assert a["images"].shape == (4, 1, 32, 32) and 0 <= a["images"].min() and a["images"].max() <= 1
    torch.testing.assert_close(a["images"], b["images"])
    image, target = data.image(0), data.target(0)
    fi, ft = hflip_sample(image, target)
    assert torch.equal(fi, image.flip(-1))
    for box, m in zip(ft["boxes"], ft["masks"]):
        rle = mask_utils.encode(np.asfortranarray(m.numpy()))
        x, y, w, h = mask_utils.toBbox(rle)
        assert box.tolist() == [x, y, x + w, y + h]


TINY = ["optim.batch_size=2", "run.threads=1", "run.progress=false", "method.window_size=2",
        "method.fpn_dim=16", "method.box_head_dim=32", "method.mask_head_dim=16",
        "method.rois_per_image=32", "method.proposals=50"]  # fmt: skip


@requires_fmnist
def test_eval_detect_trains_reports_and_resumes(fmnist_set, tmp_path):
    src = tmp_path / "mae"
    cfg = replace(smoke(get_recipe("mae_fmnist")), **{"run.out_dir": str(src), "run.threads": 1,
                  "eval.final": False, "optim.epochs": 1, "data.limit": 64})  # fmt: skip
    train(cfg)
    out = tmp_path / "det"
    m = run_detect_cli(str(src), str(fmnist_set), [*TINY, f"run.out_dir={out}"], steps=3)
    assert m["train_steps"] == 3 and m["detect_n_val"] == 6
    for k in ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_APs"):
        assert -1 <= m[k] <= 1, k
    for f in ("checkpoint.pt", "config.json", "log.jsonl", "report.md", "detections.png"):
        assert (out / f).is_file(), f
    assert json.loads((src / "eval_detect.json").read_text())["box_AP"] == m["box_AP"]
    assert "![detections](detections.png)" in (out / "report.md").read_text()
    cfg = m["config"]["method"]
    assert (cfg["num_classes"], cfg["img_size"], cfg["channels"]) == (10, 32, 1)
    rows = [r for r in read_log(out) if "train/loss" in r]
    assert all(np.isfinite(r["train/loss"]) for r in rows) and "train/mask" in rows[-1]
    m2 = run_detect_cli(str(src), "", [f"run.out_dir={out}", "run.max_steps=4"], resume=True)
    assert m2["train_steps"] == 4 and read_log(out)[-1]["step"] >= 4
    with pytest.raises(ValueError, match="detection run"):  # timm has no Mask R-CNN
        export_backbone(out, tmp_path / "export")
    with pytest.raises(Exception, match="run.key=value"):
        run_detect_cli(str(src), "", ["method.fpn_dim=8"], resume=True)


def test_the_loops_param_groups_get_vitdets_layer_decay_and_no_decay_names():
    from visrep.backbones import build_backbone
    from visrep.config import BackboneConfig, DataConfig, OptimConfig
    from visrep.loop import build_optimizer
    from visrep.methods.detect import Detect, DetectConfig

    vit = build_backbone(BackboneConfig("vit_tiny", patch_size=8, depth=2), DataConfig(img_size=32))
    cfg = DetectConfig(num_classes=2, img_size=32, window_size=2, fpn_dim=8, box_head_dim=8,
                       mask_head_dim=8, layer_decay=0.5)  # fmt: skip
    model = Detect(cfg, vit)
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1), lr=1.0)
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    g = where[id(params["detector.backbone.trunk.pos_embed"])]
    assert g["weight_decay"] == 0.0 and g["lr_scale"] == 0.5**3  # id 0: decay^(depth + 1)
    g = where[id(params["detector.backbone.trunk.patch_embed.proj.weight"])]
    assert g["weight_decay"] == 0.1 and g["lr_scale"] == 0.5**3
    assert where[id(params["detector.backbone.trunk.blocks.1.attn.qkv.weight"])]["lr_scale"] == 0.5
    assert where[id(params["detector.rpn.head.conv.0.0.weight"])]["lr_scale"] == 1.0
    assert where[id(params["detector.backbone.pyramid.stages.p2.0.weight"])]["lr_scale"] == 1.0


def _hand_sample():
    """A 4 × 8 (H × W) RGB image, pixel value = 10 × column, with two rectangle instances:
    rows 1-2 × columns 2-5 (label 3) and rows 0-3 × columns 0-1 (label 7)."""
    image = (torch.arange(8) * 10).to(torch.uint8).expand(3, 4, 8).clone()
    masks = torch.zeros(2, 4, 8, dtype=torch.uint8)
    masks[0, 1:3, 2:6] = 1
    masks[1, :, 0:2] = 1
    boxes = torch.tensor([[2.0, 1, 6, 3], [0, 0, 2, 4]])
    return image, {"boxes": boxes, "labels": torch.tensor([3, 7]), "masks": masks}


def test_lsj_scales_and_pads_a_hand_made_sample():
    image, target = _hand_sample()
    fill = (0.25, 0.5, 0.75)
    # S = 16, scale 1: factor min(16/4, 16/8) = 2 -> 8 × 16, no crop, pad rows 8..15
    out, t = lsj_sample(image, target, 16, 1.0, 0.7, fill)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert t["boxes"].tolist() == [[4, 2, 12, 6], [0, 0, 4, 8]]  # every coordinate × 2
    assert t["labels"].tolist() == [3, 7] and t["masks"].shape == (2, 16, 16)
    expect = torch.zeros(16, 16, dtype=torch.uint8)
    expect[2:6, 4:12] = 1  # nearest × 2 of rows 1-2, columns 2-5
    assert torch.equal(t["masks"][0], expect)
    for c, f in enumerate(fill):  # padding: the fill (the input mean), not 0
        assert torch.all(out[c, 8:] == f)
    # bilinear upsampling × 2 of a horizontal ramp: constant along a column, monotone across
    assert torch.allclose(out[:, :8], out[:, :1, :].expand(3, 8, 16))
    assert torch.all(out[0, 0, 1:] >= out[0, 0, :-1]) and out[0, 0, -1] == pytest.approx(70 / 255)
    assert resize_scale_size(4, 8, 16, 0.1) == (1, 2)  # round(0.8), round(1.6)


def test_lsj_crops_and_drops_an_instance_cropped_out():
    image, target = _hand_sample()
    # S = 16, scale 2: factor min(32/4, 32/8) = 4 -> 16 × 32; offset 1: ox = round(16) = 16
    out, t = lsj_sample(image, target, 16, 2.0, 1.0)
    assert resize_scale_size(4, 8, 16, 2.0) == (16, 32)
    # instance 1 (columns 0-1 -> 0-7) is cut off; instance 0: columns 8-23 -> 0-7 after the crop
    assert t["labels"].tolist() == [3] and t["boxes"].tolist() == [[0, 4, 8, 12]]
    assert t["masks"].shape == (1, 16, 16) and t["masks"].sum() == 8 * 8
    big = TF.resize(image, [16, 32], antialias=True)
    torch.testing.assert_close(out, big[:, :, 16:32].float() / 255)
    # offset 0.5: ox = 8, both instances stay; instance 1 clipped to columns 0..7 - 8 -> 0
    _, t = lsj_sample(image, target, 16, 2.0, 0.5)
    assert t["boxes"].tolist() == [[0, 4, 16, 12]] and t["labels"].tolist() == [3]
    assert mask_boxes(torch.zeros(1, 3, 3)).tolist() == [[0, 0, 0, 0]]


@requires_fmnist
def test_lsj_batches_are_seeded_and_boxes_follow_masks(fmnist_set):
    data = CocoSet(fmnist_set, "train", channels=1)
    mk = lambda: DetectionBatches(data, 4, seed=1, lsj_size=32, fill=(0.3,))  # noqa: E731
    a, b = mk().batch(5), mk().batch(5)  # a resumed run: the same batch
    torch.testing.assert_close(a["images"], b["images"])
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a["targets"], b["targets"]))
    c = mk().batch(6)
    assert not torch.equal(a["images"], c["images"])
    # without LSJ the flips (drawn first from the same generator) are unchanged
    plain = DetectionBatches(data, 4, seed=1).batch(5)
    assert plain["images"].shape == a["images"].shape == (4, 1, 32, 32)
    # an instance fully inside the crop: its box (from its transformed mask) is the original
    # box scaled and shifted, within a pixel of nearest-neighbour rounding
    g = torch.Generator().manual_seed(0)
    checked = 0
    for i in range(len(data)):
        image, target = data.image(i), data.target(i)
        target["labels"] = torch.arange(len(target["labels"]))  # labels = instance ids
        scale = 0.6 + 1.2 * torch.rand(1, generator=g).item()
        offset = torch.rand(1, generator=g).item()
        h, w = image.shape[1:]
        nh, nw = resize_scale_size(h, w, 32, scale)
        oy, ox = round(max(nh - 32, 0) * offset), round(max(nw - 32, 0) * offset)
        moved = target["boxes"] * torch.tensor([nw / w, nh / h] * 2) - torch.tensor([ox, oy] * 2)
        inside = ((moved[:, :2] >= 0).all(1) & (moved[:, 2:] <= 32).all(1)).tolist()
        _, t = lsj_sample(image, target, 32, scale, offset)
        for box, m in zip(t["boxes"], t["masks"]):
            rle = mask_utils.encode(np.asfortranarray(m.numpy()))
            x, y, bw, bh = mask_utils.toBbox(rle)
            assert box.tolist() == [x, y, x + bw, y + bh]
        kept = t["labels"].tolist()
        for k in range(len(inside)):
            if inside[k]:
                torch.testing.assert_close(t["boxes"][kept.index(k)], moved[k], atol=1.0, rtol=0)
                checked += 1
    assert checked >= 10


@requires_fmnist
def test_a_resnet_run_trains_a_detector_end_to_end_with_lsj(fmnist_set, tmp_path):
    """A joint-embedding ResNet-18 run (SimCLR smoke) through `visrep eval detect`: its stages
    through torchvision's FPN, ViTDet's large-scale jitter on, a few Mask R-CNN steps."""
    src = tmp_path / "simclr"
    cfg = replace(smoke(get_recipe("simclr_fmnist")), **{"run.out_dir": str(src), "run.threads": 1,
                  "eval.final": False, "eval.every_epochs": 0, "optim.epochs": 1,
                  "data.limit": 64})  # fmt: skip
    train(cfg)
    out = tmp_path / "det"
    tiny = [t for t in TINY if not t.startswith("method.window_size")]
    m = run_detect_cli(str(src), str(fmnist_set), [*tiny, "method.lsj=true", f"run.out_dir={out}",
                       "run.log_every=1"], steps=3)  # fmt: skip
    assert m["config"]["backbone"]["name"] == "resnet18" and m["config"]["method"]["lsj"]
    assert m["train_steps"] == 3 and m["detect_n_val"] == 6
    for k in ("box_AP", "box_AP50", "box_AP75", "box_APs", "mask_AP", "mask_AP50", "mask_AP75"):
        assert -1 <= m[k] <= 1, k
    assert json.loads((src / "eval_detect.json").read_text())["mask_AP"] == m["mask_AP"]
    assert (out / "checkpoint.pt").is_file() and (out / "detections.png").is_file()
    rows = [r for r in read_log(out) if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["train/loss"]) for r in rows)


@pytest.mark.slow
@requires_fmnist
def test_lsj_runs_resume_exactly(fmnist_set, tmp_path):
    """4 steps straight vs 2 steps then `--resume` to 4, large-scale jitter on: the same
    weights and the same per-step losses (the jitter draws are a function of seed and step)."""
    src = tmp_path / "simclr"
    train(replace(smoke(get_recipe("simclr_fmnist")), **{"run.out_dir": str(src), "run.threads": 1,
          "eval.final": False, "eval.every_epochs": 0, "optim.epochs": 1, "data.limit": 64}))  # fmt: skip
    tiny = [t for t in TINY if not t.startswith("method.window_size")]
    tiny += ["method.lsj=true", "run.log_every=1", "optim.epochs=1", "optim.warmup_epochs=0.025"]
    run_detect_cli(str(src), str(fmnist_set), [*tiny, f"run.out_dir={tmp_path / 'a'}",
                   "run.max_steps=4"], out=str(tmp_path / "a.json"))  # fmt: skip
    run_detect_cli(str(src), str(fmnist_set), [*tiny, f"run.out_dir={tmp_path / 'b'}",
                   "run.max_steps=2"], out=str(tmp_path / "b.json"))  # fmt: skip
    run_detect_cli(str(src), "", [f"run.out_dir={tmp_path / 'b'}", "run.max_steps=4"],
                   resume=True, out=str(tmp_path / "b.json"))  # fmt: skip
    a, b = load_checkpoint(tmp_path / "a")["model"], load_checkpoint(tmp_path / "b")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[(r["step"], r["train/loss"]) for r in read_log(tmp_path / d) if "train/loss" in r]
              for d in "ab"]  # fmt: skip
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [1, 2, 3, 4]
