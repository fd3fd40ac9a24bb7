"""Image↔text retrieval R@K with several captions per image (COCO/Flickr protocol)."""

import io
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist
from PIL import Image

from visrep.evals.retrieval import load_pairs, recall_at_k, retrieval_recall

# 4 images (image 3 has no caption: a distractor only), 5 captions
CAPTION_IMAGE = torch.tensor([0, 0, 1, 2, 2])
SIM = torch.tensor(
    [
        [0.90, 0.65, 0.80, 0.30, 0.20],  # img 0: own caption 0 is first -> rank 0
        [0.70, 0.60, 0.50, 0.40, 0.90],  # img 1: own caption 2 has 3 above -> rank 3
        [0.95, 0.10, 0.20, 0.30, 0.10],  # img 2: best own caption 3 (0.30), 1 above -> rank 1
        [0.00, 0.00, 0.00, 0.00, 0.00],
    ]
)


def test_recall_golden_values_multiple_captions_per_image():
    r = recall_at_k(SIM, CAPTION_IMAGE, ks=(1, 2, 3, 4))
    # image queries (3 with captions): ranks 0, 3, 1
    assert r["i2t_R@1"] == pytest.approx(1 / 3)
    assert r["i2t_R@2"] == pytest.approx(2 / 3) and r["i2t_R@3"] == pytest.approx(2 / 3)
    assert r["i2t_R@4"] == 1.0
    # caption queries: ranks 1 (0.95 > 0.90), 0, 1 (0.80 > 0.50), 1 (0.40 > 0.30; tie 0.30
    # not counted), 2 (0.20, 0.90 > 0.10)
    assert r["t2i_R@1"] == pytest.approx(1 / 5) and r["t2i_R@2"] == pytest.approx(4 / 5)
    assert r["t2i_R@3"] == 1.0


def test_any_caption_counts_for_an_image_query():
    sim = SIM.clone()
    sim[2, 4] = 0.99  # image 2's *other* caption is now its top text
    assert recall_at_k(sim, CAPTION_IMAGE, ks=(1,))["i2t_R@1"] == pytest.approx(2 / 3)


def test_chunked_equals_full_matrix():
    gen = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(7, 8, generator=gen), dim=1)
    txt = F.normalize(torch.randn(15, 8, generator=gen), dim=1)
    owner = torch.randint(7, (15,), generator=gen)
    assert retrieval_recall(img, txt, owner, chunk=2) == recall_at_k(img @ txt.T, owner)


def _png(color, size=(20, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _pair_csv(tmp_path, n=6):
    for i in range(n):
        (tmp_path / f"{i}.png").write_bytes(_png((40 * i, 255 - 40 * i, 0)))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [f"{i}.png,a photo of item {i}" for i in range(n)]
    rows += [f"{i}.png,another caption of item {i}" for i in range(n)]  # 2 captions each
    rows += ["bad.png,corrupt", "missing.png,no file", "0.png,"]
    (tmp_path / "held.csv").write_text("image_path,caption\n" + "\n".join(rows) + "\n")
    return tmp_path / "held.csv"


def test_load_pairs_groups_captions_and_skips_bad_rows(tmp_path):
    ds = load_pairs(str(_pair_csv(tmp_path)), channels=1, img_size=8)
    assert ds.images.shape == (6, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert len(ds.captions) == 12 and ds.skipped == 2  # corrupt + missing (empty dropped)
    assert torch.bincount(ds.caption_image).tolist() == [2] * 6
    jl = tmp_path / "held.jsonl"
    jl.write_text(json.dumps({"image_path": "1.png", "caption": ["one", "two", " "]}) + "\n")
    ds = load_pairs(str(jl), channels=3, img_size=8)
    assert ds.captions == ["one", "two"] and ds.caption_image.tolist() == [0, 0]


def test_load_pairs_from_shards_one_caption_per_line(tmp_path):
    from webdataset import TarWriter

    with TarWriter(str(tmp_path / "h-000000.tar")) as w:
        w.write({"__key__": "a", "png": _png("red"), "txt": "red box\na red square"})
        w.write({"__key__": "b", "png": _png("blue"), "txt": "blue box"})
        w.write({"__key__": "c", "png": b"\x89PNG broken", "txt": "broken"})
    ds = load_pairs(str(tmp_path), channels=3, img_size=8)
    assert ds.captions == ["red box", "a red square", "blue box"] and ds.skipped == 1
    assert ds.caption_image.tolist() == [0, 0, 1]


@requires_fmnist
def test_bow_smoke_run_periodic_zeroshot_retrieval_cli_and_pseudo_bow(tmp_path):
    from visrep.cli import main
    from visrep.config import replace
    from visrep.configs import get_recipe, smoke
    from visrep.logger import read_log
    from visrep.loop import train

    held = _pair_csv(tmp_path)
    run = tmp_path / "run"
    cfg = replace(smoke(get_recipe("clip_bow_fmnist")), **{
        "run.out_dir": str(run), "run.threads": 1, "eval.final": False, "optim.epochs": 1,
        "eval.every_epochs": 1, "eval.periodic_limit": 100, "eval.retrieval_pairs": str(held),
    })  # fmt: skip
    train(cfg)
    evals = [r for r in read_log(run) if "eval/zeroshot_top1" in r]
    assert len(evals) == 1 and 0 <= evals[0]["eval/zeroshot_top1"] <= 1
    assert evals[0]["eval/zeroshot_n_test"] == 100 and "eval/knn_top1" in evals[0]
    assert 0 <= evals[0]["eval/i2t_R@1"] <= evals[0]["eval/i2t_R@5"] <= 1
    assert main(["eval", "retrieval", "--ckpt", str(run), "--pairs", str(held)]) == 0
    got = json.loads((run / "eval_retrieval.json").read_text())
    assert got["retrieval_n_images"] == 6 and got["retrieval_n_captions"] == 12
    assert got["retrieval_caption_style"] == "bow" and got["retrieval_skipped"] == 2
    assert set(got) >= {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    out = tmp_path / "r.json"  # without --pairs: the run's eval.retrieval_pairs
    assert main(["eval", "retrieval", "--ckpt", str(run), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["retrieval_pairs"] == str(held)
    # pseudo-BoW captions for uncaptioned images, readable as training pairs
    pseudo = tmp_path / "pseudo.jsonl"
    args = ["data", "pseudo-bow", "--ckpt", str(run), "--images", str(tmp_path / "imgs"),
            "--out", str(pseudo), "--k", "3"]  # fmt: skip
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(_png((80 * i, 0, 0)))
    assert main(args) == 0
    rows = [json.loads(line) for line in pseudo.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["caption"].split()) == 3 for r in rows)
    assert load_pairs(str(pseudo), channels=1, img_size=8).images.shape[0] == 3
