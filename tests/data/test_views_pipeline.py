"""data.views: the training data yields normalized multi-view batches, reproducibly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FMNIST, requires_fmnist
from PIL import Image

from visrep.config import DataConfig
from visrep.data.augment import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, normalize
from visrep.data.fashion_mnist import load_fashion_mnist
from visrep.data.folder import collate_skip_none
from visrep.data.images import FolderTrainData, TensorTrainData
from visrep.data.pipeline import build_train_data
from visrep.data.sampling import mix_seed
from visrep.data.views import VIEW_PRESETS, BatchedViews

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


@pytest.fixture(scope="module")
def fmnist_test() -> torch.Tensor:
    images, _ = load_fashion_mnist(str(FMNIST), "test")
    return images[:512]


def fmnist_cfg(**kw) -> DataConfig:
    return DataConfig(dataset="fashion_mnist", root=str(FMNIST), img_size=28, channels=1, **kw)


@requires_fmnist
def test_fashion_mnist_views_are_normalized_batched_views(fmnist_test):
    data = TensorTrainData(fmnist_test, fmnist_cfg(views="simsiam"), 64, seed=3)
    batch = data.batch(5)
    assert set(batch) == {"views"} and len(batch["views"]) == 2
    # Exactly: this step's images, BatchedViews with the step's generator, normalize.
    idx = data._perm[5 * 64 : 6 * 64]
    g = torch.Generator().manual_seed(mix_seed(3, 5, 0))
    raw = BatchedViews(28, VIEW_PRESETS["simsiam"], 1)(fmnist_test[idx], g)
    for v, r in zip(batch["views"], raw):
        assert v.shape == (64, 1, 28, 28) and v.dtype == torch.float32
        torch.testing.assert_close(v, normalize(r, FMNIST_MEAN, FMNIST_STD))
        assert -1.5 < v.mean() < 1.5 and 0.3 < v.std() < 2.0  # roughly standardized
    assert not torch.allclose(batch["views"][0], batch["views"][1])


@requires_fmnist
def test_fashion_mnist_views_replay_by_step(fmnist_test):
    """Resume replays the same views: a batch is a function of (seed, step, rank)."""
    cfg = fmnist_cfg(views="mocov3")
    a = TensorTrainData(fmnist_test, cfg, 32, seed=0)
    b = TensorTrainData(fmnist_test, cfg, 32, seed=0)
    later = list(b.batches(3, 5))  # a resumed run starts at step 3
    for step, got in zip((3, 4), later):
        for va, vb in zip(a.batch(step)["views"], got["views"]):
            assert torch.equal(va, vb)
    assert not torch.equal(a.batch(3)["views"][0], a.batch(4)["views"][0])
    other_rank = TensorTrainData(fmnist_test, cfg, 32, seed=0, rank=1, world_size=2)
    assert not torch.equal(other_rank.batch(3)["views"][0], a.batch(3)["views"][0])


@requires_fmnist
def test_build_train_data_with_views_and_without():
    views = build_train_data(fmnist_cfg(views="simclr", limit=256), 64, seed=0, rank=0,
                             world_size=1, device=torch.device("cpu")).batch(0)  # fmt: skip
    assert len(views["views"]) == 2 and views["views"][0].shape == (64, 1, 28, 28)
    one = build_train_data(fmnist_cfg(limit=256), 64, seed=0, rank=0, world_size=1,
                           device=torch.device("cpu")).batch(0)  # fmt: skip
    assert set(one) == {"images"} and one["images"].shape == (64, 1, 28, 28)


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown view preset 'byol'.*simsiam"):
        TensorTrainData(torch.zeros(8, 1, 28, 28, dtype=torch.uint8),
                        fmnist_cfg(views="byol"), 4, seed=0)  # fmt: skip
    save_folder(tmp_path, 2)
    with pytest.raises(ValueError, match="choose one of mocov3"):
        FolderTrainData(DataConfig(dataset=str(tmp_path), img_size=16, views="Simsiam"), 1, seed=0)


def save_folder(root: Path, n: int, corrupt: int = 0) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(root / f"img{i:02d}.png")
    for i in range(corrupt):
        (root / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_folder_yields_normalized_views_and_skips_corrupt_files(tmp_path):
    save_folder(tmp_path, 7, corrupt=1)  # 8 files, one unreadable
    cfg = DataConfig(dataset=str(tmp_path), img_size=16, channels=3, views="mocov3")
    data = FolderTrainData(cfg, 4, seed=1)
    batches = list(data.batches(0, 2))  # one epoch: every file once
    assert data.n_skipped == 1
    assert sorted(len(b["views"][0]) for b in batches) == [3, 4]
    for b in batches:
        assert set(b) == {"views"} and len(b["views"]) == 2
        for v in b["views"]:
            assert v.dtype == torch.float32 and v.shape[1:] == (3, 16, 16)
            lo = normalize(torch.zeros(1, 3, 1, 1), IMAGENET_MEAN, IMAGENET_STD)
            hi = normalize(torch.full((1, 3, 1, 1), 255.0), IMAGENET_MEAN, IMAGENET_STD)
            assert (v >= lo - 1e-5).all() and (v <= hi + 1e-5).all()
    # Same (seed, step): same views, as after a resume.
    again = list(FolderTrainData(cfg, 4, seed=1).batches(1, 2))[0]
    for va, vb in zip(batches[1]["views"], again["views"]):
        assert torch.equal(va, vb)


def test_collate_view_lists():
    a = ([torch.zeros(1, 4, 4, dtype=torch.uint8), torch.ones(1, 4, 4, dtype=torch.uint8)], 0)
    b = ([torch.ones(1, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, dtype=torch.uint8)], -1)
    out = collate_skip_none([a, None, b])
    assert out["n_skipped"] == 1 and out["labels"].tolist() == [0, -1]
    assert [v.shape for v in out["views"]] == [(2, 1, 4, 4)] * 2
    assert out["views"][0][:, 0, 0, 0].tolist() == [0, 1]
    assert collate_skip_none([None, None]) == {"images": None, "labels": None, "n_skipped": 2}
    odd = ([torch.zeros(1, 5, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, dtype=torch.uint8)], 0)
    with pytest.raises(ValueError, match="different shapes"):
        collate_skip_none([a, odd])
