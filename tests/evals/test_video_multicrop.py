"""3-crop spatial testing of videos (SlowFast `datasets/transform.py` `uniform_crop`, mae_st
`util/kinetics.py` test mode): the short side scaled to the crop size, then left / centre /
right (top / centre / bottom) crops along the long side, every temporal clip × every crop;
the clip-level score is the softmax averaged over all of them (`eval.spatial_crops=3`)."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fmnist

from visrep.backbones import VideoViT
from visrep.config import ConfigError, DataConfig, EvalConfig, TrainConfig, replace
from visrep.data.video import multiview_clips
from visrep.data.video_eval import VideoEvalSet, video_eval_sets
from visrep.evals.classifier import classifier_eval
from visrep.evals.video import video_scores
from visrep.methods.supervised import Supervised, SupervisedConfig


def _ramp(frames: int, h: int, w: int, along: str) -> torch.Tensor:
    """uint8 [F, H, W, 3] whose value is the column (along="x") or row index, + 100·frame."""
    x = torch.arange(w).view(1, 1, w) if along == "x" else torch.arange(h).view(1, h, 1)
    f = torch.arange(frames).view(frames, 1, 1) * 100
    return (x + f).expand(frames, h, w).unsqueeze(-1).expand(-1, -1, -1, 3).to(torch.uint8)


@pytest.mark.parametrize("along", ["x", "y"])
def test_three_crops_sit_at_the_hand_computed_offsets(along):
    """48 × 32 frames (short side already 32): crop offsets 0, ⌈(48 − 32)/2⌉ = 8 and
    48 − 32 = 16 along the long side, 0 on the short one; views are clip-major."""
    h, w = (32, 48) if along == "x" else (48, 32)
    video = _ramp(2, h, w, along)  # 2 frames: temporal clips of 1 frame at 0 and 1
    views = multiview_clips(video, None, frames=1, stride=1, size=32, temporal_views=2,
                            spatial_views=3)  # fmt: skip
    assert views.shape == (6, 3, 1, 32, 32) and views.dtype == torch.float32
    for t in range(2):
        for s, offset in enumerate([0, math.ceil((48 - 32) / 2), 48 - 32]):
            view = views[3 * t + s, 0, 0]  # [32, 32]
            first = view[0, 0].item() - 100 * t
            assert first == offset, (t, s)
            other = view[0] if along == "y" else view[:, 0]  # the short axis starts at 0
            assert torch.equal(other, torch.full_like(other, 100 * t + offset))
    one = multiview_clips(video, None, frames=1, stride=1, size=32, temporal_views=2)
    assert torch.equal(one, views[1::3])  # 1 crop = the centre crop


def test_the_short_side_is_scaled_before_cropping():
    """40 × 60 frames to 32 px: bilinear to 32 × 48 (align_corners False), then the crops at
    0 / 8 / 16 of the scaled frames."""
    video = torch.randint(0, 256, (4, 40, 60, 3), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)  # fmt: skip
    views = multiview_clips(video, None, frames=4, stride=1, size=32, temporal_views=1,
                            spatial_views=3)  # fmt: skip
    clip = video.permute(3, 0, 1, 2).float()  # [3, 4, 40, 60]
    scaled = F.interpolate(clip.transpose(0, 1), size=(32, 48), mode="bilinear",
                           align_corners=False).transpose(0, 1)  # fmt: skip
    for s, x in enumerate([0, 8, 16]):
        torch.testing.assert_close(views[s], scaled[..., x : x + 32])


def test_score_is_the_softmax_mean_over_clips_and_crops():
    """Two non-square videos, 2 temporal clips × 3 crops: each video's score is the mean of
    the 6 views' softmax (the crops differ, so a 1-crop score differs)."""
    data = DataConfig(dataset="folder", frames=2, frame_stride=1, img_size=32, mean=(0.5,) * 3,
                      std=(0.25,) * 3)  # fmt: skip
    videos = [_ramp(8, 32, 48, "x"), _ramp(8, 32, 48, "x").flip(2)]
    labels = {"class": torch.tensor([0, 1])}
    three = VideoEvalSet(lambda i: (videos[i], None), 2, labels, data, views=2, crops=3)
    one = VideoEvalSet(lambda i: (videos[i], None), 2, labels, data, views=2, crops=1)
    w = torch.randn(3 * 2 * 32, 4, generator=torch.Generator().manual_seed(0))

    def logits(x):  # [B, 4] from the column means of every channel and frame
        return x.mean(dim=3).flatten(1) @ w

    scores, kept = video_scores({"m": logits}, three, batch_size=4)
    assert kept.tolist() == [0, 1]
    for i in range(2):
        views = three.views(i)
        assert views.shape == (6, 3, 2, 32, 32)
        assert not torch.equal(views[0], views[2])  # left != right
        hand = sum(F.softmax(logits(v[None])[0], dim=0) for v in views) / 6
        torch.testing.assert_close(scores["m"][i], hand)
        torch.testing.assert_close(views[1::3], one.views(i))
    assert not torch.allclose(scores["m"], video_scores({"m": logits}, one)[0]["m"])


def test_spatial_crops_config():
    assert EvalConfig().spatial_crops == 1 and EvalConfig().temporal_views == 2
    with pytest.raises(ConfigError, match="eval.spatial_crops must be 1.*or 3"):
        EvalConfig(spatial_crops=2)
    with pytest.raises(ConfigError, match="eval.temporal_views must be >= 1"):
        EvalConfig(temporal_views=0)


@requires_fmnist
def test_fine_tuned_score_with_three_crops_on_square_frames():
    """classifier_eval with eval.spatial_crops=3 records the protocol; Moving Fashion-MNIST's
    frames are square, so its three crops coincide and the score equals the 1-crop score."""
    vit = VideoViT("vit_tiny", img_size=32, patch_size=8, frames=4, depth=1)
    torch.manual_seed(0)
    model = Supervised(SupervisedConfig(num_classes=10, head_init_std=0.5), vit)
    cfg = TrainConfig(method=SupervisedConfig(num_classes=10),
                      data=DataConfig(frames=4, frame_stride=2, img_size=32, hflip=False),
                      eval=EvalConfig(dataset="fashion_mnist", limit_test=10, spatial_crops=3))  # fmt: skip
    m3 = classifier_eval(model, cfg, torch.device("cpu"))
    m1 = classifier_eval(model, replace(cfg, **{"eval.spatial_crops": 1}), torch.device("cpu"))
    assert (m3["finetune_views"], m3["finetune_spatial_crops"]) == (2, 3)
    assert m1["finetune_spatial_crops"] == 1 and m3["finetune_n_test"] == 10
    assert m3["finetune_top1"] == m1["finetune_top1"]
    assert m3["finetune_test_loss"] == pytest.approx(m1["finetune_test_loss"], rel=1e-5)
    _, test = video_eval_sets(cfg.data, cfg.eval)
    assert test.views(0).shape == (6, 3, 4, 32, 32)
