"""extract_features: chunking, dtype conversion, preprocess, eval-mode handling."""

import pytest
import torch
from torch import nn

from visrep.evals.features import extract_features


def _images(n=10, c=1, h=4, w=4):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)


class ModeRecorder(nn.Module):
    """Flattens its input and records the training flag seen by each forward."""

    def __init__(self):
        super().__init__()
        self.seen_training = []
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        self.seen_training.append(self.training)
        return self.drop(x.flatten(1))


def test_chunks_match_one_pass_and_uint8_is_scaled_to_unit_range():
    images = _images(10)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    feats = extract_features(encoder, images, batch_size=3)
    assert feats.shape == (10, 3) and feats.dtype == torch.float32
    expected = encoder(images.float() / 255)
    torch.testing.assert_close(feats, expected)
    torch.testing.assert_close(extract_features(encoder, images, batch_size=100), feats)


def test_preprocess_is_applied_after_float_conversion():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    feats = extract_features(lambda x: x.flatten(1), images, preprocess=lambda x: 2 * x - 1)
    torch.testing.assert_close(feats, torch.tensor([[-1.0], [-0.6], [1.0]]))
    # Float input is taken as already scaled.
    floats = torch.tensor([[[[0.25]]]])
    assert extract_features(lambda x: x.flatten(1), floats).item() == 0.25


def test_module_runs_in_eval_mode_and_mode_is_restored():
    enc = ModeRecorder().train()
    images = _images(5)
    extract_features(enc, images, batch_size=2)
    assert enc.seen_training == [False, False, False] and enc.training
    # Dropout is off in eval mode, so the features are exactly the scaled pixels.
    torch.testing.assert_close(extract_features(enc, images), images.flatten(1).float() / 255)
    enc.eval()
    extract_features(enc, images)
    assert not enc.training


def test_mode_is_restored_when_the_encoder_fails():
    enc = ModeRecorder().train()
    with pytest.raises(ValueError, match=r"features \[B, D\]"):
        extract_features(lambda x: enc(x).unsqueeze(1), _images(3))  # plain callable
    bad = nn.Sequential(ModeRecorder(), nn.Unflatten(1, (4, 4))).train()
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        extract_features(bad, _images(3))
    assert bad.training and bad[0].training


def test_progress_bar_and_input_validation(capsys):
    feats = extract_features(lambda x: x.mean((2, 3)), _images(4), progress=True, desc="probe")
    assert feats.shape == (4, 1)
    assert "probe" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unsqueeze"):
        extract_features(lambda x: x, torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        extract_features(lambda x: x, torch.zeros(0, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(lambda x: x, _images(2), batch_size=0)


def _store_round_trip(feats, **kw):
    from visrep.evals.features import FeatureStore

    store = FeatureStore(len(feats) + 3, **kw)  # capacity above what is written (skips)
    for chunk in feats.split(4):
        store.append(chunk)
    return store


def test_feature_store_is_float16_and_spills_to_an_unlinked_memory_map(tmp_path):
    feats = torch.randn(10, 6)
    in_ram = _store_round_trip(feats)
    assert in_ram.tensor().dtype == torch.float16 and not in_ram.on_disk
    assert in_ram.tensor().shape == (10, 6)
    torch.testing.assert_close(in_ram.tensor().float(), feats, atol=2e-3, rtol=1e-3)
    on_disk = _store_round_trip(feats, memory_mb=0, dir=str(tmp_path))
    assert on_disk.on_disk and list(tmp_path.iterdir()) == []  # mapped, already unlinked
    assert torch.equal(on_disk.tensor(), in_ram.tensor())


def test_feature_store_promotes_to_float32_instead_of_overflowing(tmp_path):
    feats = torch.randn(10, 6)
    feats[7, 2] = 1e6  # beyond float16's 65504
    for kw in ({}, {"memory_mb": 0, "dir": str(tmp_path)}):
        got = _store_round_trip(feats, **kw).tensor()
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert got[7, 2] == 1e6
        torch.testing.assert_close(got[:4], feats[:4], atol=2e-3, rtol=1e-3)  # fp16-written rows


def test_feature_store_without_capacity_concatenates():
    from visrep.evals.features import FeatureStore

    store = FeatureStore(None)
    assert store.tensor().numel() == 0
    store.append(torch.ones(2, 3))
    store.append(torch.zeros(1, 3))
    assert store.tensor().tolist() == [[1.0] * 3, [1.0] * 3, [0.0] * 3]


def test_extract_features_many_writes_into_the_store_and_drops_skipped_rows():
    from visrep.evals.features import extract_features_many

    images = _images(7)
    batches = [(images[:4], torch.arange(4)), (images[4:], torch.arange(3))]
    feats, labels = extract_features_many(
        {"a": nn.Flatten(), "b": lambda x: x.mean((1, 2, 3)).unsqueeze(1)}, batches, total=9
    )  # total counts 2 images a loader would skip
    assert feats["a"].shape == (7, 16) and feats["a"].dtype == torch.float16
    assert feats["b"].shape == (7, 1) and labels.tolist() == [0, 1, 2, 3, 0, 1, 2]
    torch.testing.assert_close(
        feats["a"].float(), images.flatten(1).float() / 255, atol=1e-3, rtol=0
    )
