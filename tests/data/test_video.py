"""Video data : Moving Fashion-MNIST, PyAV decoding, clip sampling and
transforms, the folder / list training source."""

import csv
import dataclasses
import hashlib
import math
import random

import numpy as np
import pytest
import torch
from conftest import requires_fmnist

from visrep.config import ConfigError, DataConfig
from visrep.data.build_video import build_moving_fmnist
from visrep.data.fashion_mnist import load_fashion_mnist
from visrep.data.moving_fmnist import MovingFashionMNIST, MovingSpec
from visrep.data.video import (
    clip_indices,
    clip_start,
    clip_window,
    decode_video,
    find_videos,
    multiview_clips,
    rrc_params,
    train_clip,
    write_video,
)
from visrep.data.video_source import VideoTrainData


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny Moving Fashion-MNIST folder, built twice from the same seed."""
    if requires_fmnist.args[0]:
        pytest.skip(requires_fmnist.kwargs["reason"])
    a, b = tmp_path_factory.mktemp("mv_a"), tmp_path_factory.mktemp("mv_b")
    for out in (a, b):
        build_moving_fmnist(out, n=20, n_val=10, frames=12, size=40, seed=3)
    return a, b


@requires_fmnist
def test_moving_fmnist_reproduces_the_spec_test_vectors():
    """Moving Fashion-MNIST test vectors (seed 0, N = 1): labels, source image, speed, angle, sha256."""
    sha = lambda v: hashlib.sha256(v.frames.tobytes()).hexdigest()[:16]  # noqa: E731
    train = load_fashion_mnist(split="train")
    bounce = MovingFashionMNIST(*train, MovingSpec(motion="bounce"))
    v = bounce.video(0)
    assert (v.label, v.sources, int(v.frames[0].sum())) == (0, (51253,), 77684)
    assert (round(v.speeds[0], 6), round(v.angles[0], 6)) == (1.033055, 5.109928)
    assert sha(v) == "08ab3b614b444746" and sha(bounce.video(1)) == "3ab8a69124804534"
    wrap = MovingFashionMNIST(*train, MovingSpec(motion="wrap"))
    assert sha(wrap.video(0)) == "47548b5cebf88da5" and round(wrap.video(0).angles[0], 6) == 0.06151
    v = wrap.video(11)
    assert (v.label, v.direction, v.sources, sha(v)) == (1, 1, (32778,), "b129fdf81a1586b4")
    # the object is always fully drawn: the same pixel sum in every frame
    assert len({int(f.sum()) for f in v.frames}) == 1
    test = load_fashion_mnist(split="test")
    v = MovingFashionMNIST(*test, MovingSpec(motion="bounce"), split="test").video(0)
    assert (v.sources, sha(v)) == ((5136,), "351cb67f1553058d")
    v = MovingFashionMNIST(*test, MovingSpec(motion="wrap"), split="test").video(0)
    assert (round(v.angles[0], 6), sha(v)) == (-0.086666, "69a4c05d2ac19af7")


def _displacement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) moving frame a onto frame b, by phase correlation (wrap motion is circular)."""
    fa, fb = np.fft.fft2(a.astype(float)), np.fft.fft2(b.astype(float))
    r = np.fft.ifft2(fb * np.conj(fa) / (np.abs(fb * np.conj(fa)) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(r), r.shape)
    n = a.shape[0]
    return (dx - n if dx > n // 2 else dx), (dy - n if dy > n // 2 else dy)


def test_build_video_same_seed_same_frames_and_labels_follow_the_motion(built):
    a, b = built
    rows = list(csv.DictReader((a / "labels.csv").open()))
    assert len(rows) == 30 and {r["split"] for r in rows} == {"train", "val"}
    assert (a / "build_report.json").is_file() and (a / "train.csv").is_file()
    paths, labels, classes = find_videos(a / "train")
    assert len(paths) == 20 and len(classes) == 10
    by_path = {r["path"]: r for r in rows}
    for path, label in zip(paths, labels):
        rel = path.relative_to(a).as_posix()
        fa, fps = decode_video(path)
        fb, _ = decode_video(b / rel)
        assert torch.equal(fa, fb) and fps == 30.0  # same seed: identical decoded frames
        row = by_path[rel]
        assert int(row["class"]) == label  # class folder = appearance label
        dx, dy = _displacement(fa[0, ..., 0].numpy(), fa[6, ..., 0].numpy())
        heading = math.atan2(-dy, dx) % (2 * math.pi)  # counter-clockwise on screen
        assert round(heading / (2 * math.pi / 8)) % 8 == int(row["direction"]), (rel, dx, dy)


def test_decode_round_trip_shapes_and_values(tmp_path):
    frames = torch.zeros(10, 24, 32, dtype=torch.uint8)
    for k in range(10):
        frames[k] = 20 * k  # frame k filled with intensity 20 k
    write_video(tmp_path / "x.mkv", frames, codec="ffv1")
    video, fps = decode_video(tmp_path / "x.mkv")
    assert video.dtype == torch.uint8 and video.shape == (10, 24, 32, 3) and fps == 30.0
    assert torch.equal(video[..., 0], frames)  # ffv1 is lossless
    write_video(tmp_path / "x.mp4", frames)
    video, _ = decode_video(tmp_path / "x.mp4")
    assert video.shape == (10, 24, 32, 3)
    assert (video.int() - frames.unsqueeze(-1).int()).abs().max() <= 2  # codec tolerance
    small, _ = decode_video(tmp_path / "x.mp4", short_side=12)
    assert small.shape == (10, 12, 16, 3)


class _Draws(random.Random):
    """Injected draws: uniform returns the queued values, randint its lower bound + 1."""

    def __init__(self, uniforms):
        super().__init__(0)
        self.uniforms = list(uniforms)

    def uniform(self, a, b):
        return self.uniforms.pop(0)


def test_clip_sampler_indices_follow_the_spec():
    # SlowFast clip-sampling examples (s = 0, fps = target fps)
    assert clip_indices(64, 0, clip_window(8, 8, None), 8).tolist() == [0, 9, 18, 27, 36, 45,
                                                                          54, 63]  # fmt: skip
    assert clip_indices(64, 0, clip_window(8, 2, 30.0), 8).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]
    assert clip_indices(64, 0, clip_window(4, 4, None), 4).tolist() == [0, 5, 10, 15]
    assert clip_indices(64, 0, 64, 16).tolist() == [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46,
                                                    50, 54, 58, 63]  # fmt: skip
    # training start: the injected uniform draw, on U(0, V - W)
    start = clip_start(40, 16.0, rng=_Draws([7.25]))
    assert start == 7.25
    idx = clip_indices(40, start, 16.0, 8)
    assert idx.tolist() == torch.linspace(7.25, 22.25, 8).long().tolist()
    assert clip_start(40, 16.0, rng=random.Random(5)) == random.Random(5).uniform(0, 24)
    # testing: default s = (V - W) i / N; offset sampling covers the whole video
    assert [clip_start(40, 16.0, view=i, num_views=4) for i in range(4)] == [0, 6, 12, 18]
    assert [clip_start(40, 16.0, view=i, num_views=4, offset=True) for i in range(4)] == [
        0, 8, 16, 24]  # fmt: skip
    assert clip_start(40, 16.0, view=0, num_views=1, offset=True) == 12
    # fewer frames than the window: start 0, indices clamped to the last frame
    assert clip_indices(10, clip_start(10, 16.0, rng=random.Random(0)), 16.0, 8).max() == 9
    # fps metadata stretches the window (W = tau T fps / 30)
    assert clip_window(8, 2, 60.0) == 32.0


def test_clip_transforms_are_reproducible_from_the_injected_rng():
    video = torch.randint(0, 256, (32, 48, 64, 3), dtype=torch.uint8)
    kw = dict(frames=8, stride=2, size=32, scale=(0.5, 1.0), hflip=True)
    a = train_clip(video, None, rng=random.Random(11), **kw)
    b = train_clip(video, None, rng=random.Random(11), **kw)
    c = train_clip(video, None, rng=random.Random(12), **kw)
    assert a.shape == (3, 8, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    # the crop box: area in scale x H x W, aspect in [3/4, 4/3], inside the frame
    for seed in range(20):
        i, j, h, w = rrc_params(48, 64, (0.5, 1.0), rng=random.Random(seed))
        assert 0 <= i <= 48 - h and 0 <= j <= 64 - w
        assert 0.45 * 48 * 64 <= h * w <= 1.02 * 48 * 64 and 0.7 < w / h < 1.4
    # no accepted try (area > frame): the centre crop clamped to the aspect range
    assert rrc_params(48, 100, (5.0, 5.0), rng=random.Random(0)) == (0, 18, 48, 64)
    views = multiview_clips(video, None, frames=8, stride=2, size=32, temporal_views=3)
    assert views.shape == (3, 3, 8, 32, 32)
    gray = train_clip(video, None, rng=random.Random(11), channels=1, **kw)
    assert gray.shape == (1, 8, 32, 32)


def test_an_undecodable_video_is_skipped_and_counted(built, tmp_path):
    a, _ = built
    root = tmp_path / "videos"
    for k, path in enumerate(find_videos(a / "train")[0][:3]):
        (root / "c").mkdir(parents=True, exist_ok=True)
        (root / "c" / f"{k}.mp4").write_bytes(path.read_bytes())
    (root / "c" / "broken.mp4").write_bytes(b"not a video at all")
    data = DataConfig(dataset=str(root), img_size=32, channels=3, frames=4, frame_stride=2)
    source = VideoTrainData(data, 4, seed=0)
    (batch,) = list(source.batches(0, 1))
    assert source.n_skipped == 1 and batch["images"].shape == (3, 3, 4, 32, 32)
    # the same files as a list (CSV with a path column; relative to the list's folder)
    (root / "list.csv").write_text("path,label\n" + "".join(f"c/{k}.mp4,{k}\n" for k in range(3)))
    paths, labels, _ = find_videos(root / "list.csv")
    assert paths == [root / "c" / f"{k}.mp4" for k in range(3)] and labels == [0, 1, 2]
    (root / "list.txt").write_text("".join(f"c/{k}.mp4 7\n" for k in range(3)))
    assert find_videos(root / "list.txt")[1] == [7, 7, 7]


def test_the_recipe_normalises_folders_like_the_generated_set():
    from visrep.configs.mae_st import mae_st_mfmnist
    from visrep.data.moving_fmnist import MEAN, STD

    data = mae_st_mfmnist().data
    assert data.mean == (MEAN,) * 3 and data.std == (STD,) * 3


def test_repeated_augmentation_gives_r_independent_clips_per_video_with_its_label(built):
    """MAE-ST's repeat_aug: r clips of each decoded video, each with its own draws in turn from
    the video's rng (the first is the r = 1 clip), flattened video by video with the label."""
    from visrep.data.video_source import MovingTrainData, sample_clips

    video = torch.randint(0, 256, (32, 40, 40, 3), dtype=torch.uint8)
    data = DataConfig(img_size=16, channels=3, frames=4, frame_stride=2, repeat_aug=3)
    kw = dict(frames=4, stride=2, size=16, scale=data.crop_scale, hflip=True, channels=3)
    rng = random.Random(5)
    expected = torch.stack([train_clip(video, None, rng=rng, **kw) for _ in range(3)])
    clips = sample_clips(video, None, data, random.Random(5))
    assert clips.shape == (3, 3, 4, 16, 16) and torch.equal(clips, expected)
    assert not torch.equal(clips[0], clips[1])  # independent positions / crops
    single = sample_clips(video, None, dataclasses.replace(data, repeat_aug=1), random.Random(5))
    assert torch.equal(single, clips[0])

    a, _ = built
    folder = DataConfig(dataset=str(a / "train"), img_size=16, channels=3, frames=4,
                        frame_stride=2, repeat_aug=2)  # fmt: skip
    one = dataclasses.replace(folder, repeat_aug=1)
    (rep,) = list(VideoTrainData(folder, 4, seed=0, labels=True).batches(0, 1))
    (base,) = list(VideoTrainData(one, 4, seed=0, labels=True).batches(0, 1))
    assert rep["images"].shape == (8, 3, 4, 16, 16) and base["images"].shape == (4, 3, 4, 16, 16)
    assert torch.equal(rep["labels"], base["labels"].repeat_interleave(2))
    assert torch.equal(rep["images"][0::2], base["images"])  # clip 1 of each video = r = 1's

    if not requires_fmnist.args[0]:  # Moving Fashion-MNIST made on the fly, the same contract
        moving = DataConfig(img_size=32, channels=1, frames=4, frame_stride=2, repeat_aug=2,
                            limit=8)  # fmt: skip
        b = MovingTrainData(moving, 4, seed=0, labels=True).batch(0)
        assert b["images"].shape == (8, 1, 4, 32, 32)
        assert torch.equal(b["labels"][0::2], b["labels"][1::2])


def test_repeated_augmentation_is_refused_where_it_would_mean_nothing():
    with pytest.raises(ConfigError, match="data.frames > 0"):
        DataConfig(repeat_aug=2)  # images
    with pytest.raises(ConfigError, match="data.clips = 0"):
        DataConfig(frames=4, clips=2, repeat_aug=2)  # the ρ methods' own positives
    with pytest.raises(ConfigError, match="repeat_aug"):
        DataConfig(frames=4, repeat_aug=0)


def test_short_side_jitter_and_random_crop_follow_slowfast():
    """SlowFast `random_short_side_scale_jitter` (round(U[min, max])) then `random_crop`
    (offsets y, x in [0, side − size), end excluded), each draw from the injected rng."""
    from visrep.data.video import jitter_crop, random_crop, short_side_scale

    clip = torch.rand(3, 4, 48, 64) * 255
    rng = random.Random(7)
    side = round(rng.uniform(64, 80))
    scaled = short_side_scale(clip, side)
    assert scaled.shape[2:] == (side, math.floor(64 / 48 * side))
    y, x = rng.randrange(side - 32), rng.randrange(scaled.shape[3] - 32)
    expected = scaled[:, :, y : y + 32, x : x + 32]
    assert torch.equal(jitter_crop(clip, (64, 80), 32, random.Random(7)), expected)
    # one side equal to the crop: its offset is 0 and takes no draw; the end is excluded
    assert {random_crop(clip[:, :, :33], 32, random.Random(s)).shape for s in range(5)} == {
        (3, 4, 32, 32)}  # fmt: skip
    offsets = {int((random_crop(torch.arange(33.0).view(1, 1, 33, 1).expand(1, 1, 33, 32), 32,
                                random.Random(s)))[0, 0, 0, 0]) for s in range(30)}  # fmt: skip
    assert offsets == {0}  # randrange(1): never the last row
    video = torch.randint(0, 256, (32, 48, 64, 3), dtype=torch.uint8)
    kw = dict(frames=8, stride=2, size=32, scale=(0.5, 1.0), hflip=True, jitter=(40, 56))
    a = train_clip(video, None, rng=random.Random(3), **kw)
    assert a.shape == (3, 8, 32, 32) and torch.equal(a, train_clip(video, None,
                                                                   rng=random.Random(3), **kw))  # fmt: skip


def test_finetune_colour_jitters_every_clip_per_pixel_with_grayscale_one_in_five():
    """data.color_jitter: SlowFast's colour augmentation without SSL_MOCOV2_AUG (the ρ
    study's UCF101 fine-tuning): always jittered, grayscale p 0.2, no blur; the same
    parameters for every frame."""
    from visrep.data.video import CLIP_COLOUR, ssl_colour

    clip = torch.zeros(3, 4, 16, 16)
    clip[:, :, 8, 8] = torch.tensor([250.0, 40.0, 90.0]).view(3, 1)
    clip[:, :, :4, :4] = torch.tensor([60.0, 160.0, 30.0]).view(3, 1, 1, 1)
    gray = 0
    for seed in range(100):
        out = ssl_colour(clip, random.Random(seed), **CLIP_COLOUR["finetune"])
        assert not torch.equal(out, clip)  # jitter always applied
        # no blur: the black neighbours of the bright pixel stay the far black pixels' value
        assert torch.equal(out[:, :, 8, 7], out[:, :, 15, 15])
        assert torch.equal(out[:, 0], out[:, 3])  # one draw for the whole clip
        gray += bool(torch.equal(out[0], out[1]) and torch.equal(out[1], out[2]))
    assert 10 <= gray <= 30  # p 0.2 of 100


def test_clip_augmentations_refused_where_they_mean_nothing():
    with pytest.raises(ConfigError, match="need data.frames > 0"):
        DataConfig(color_jitter=True)
    with pytest.raises(ConfigError, match="data.ssl_color"):
        DataConfig(frames=4, clips=2, color_jitter=True)
    with pytest.raises(ConfigError, match=r"img_size \(64\) <= min <= max"):
        DataConfig(frames=4, img_size=64, short_side_jitter=(48, 80))
    with pytest.raises(ConfigError, match="short_side_jitter"):
        DataConfig(frames=4, img_size=64, short_side_jitter=(80, 70))
