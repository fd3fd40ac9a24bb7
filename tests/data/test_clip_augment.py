"""RandAugment and RandomErasing of video clips, one draw per clip (mae_st `util/kinetics.py`
`_aug_frame`; `visrep.data.clip_augment`): the same ops and magnitudes on every frame, one
erased box in every frame, every draw from the clip's injected `random.Random`, the global
RNGs untouched, shapes and dtypes kept, off when not asked for."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.data.clip_augment import ClipAugment
from visrep.data.video import augment_clip, clip_indices
from visrep.data.video_source import normalize_clips

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def _video(frames=4, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, h, w, 3), generator=g, dtype=torch.uint8)


def _spy(aug: ClipAugment, h: int, w: int) -> list:
    """Record (op name, level args) of every op application of the (h, w) policy."""
    calls = []
    for op in aug.policy(h, w).ops:

        def record(img, *args, _name=op.name, _fn=op.aug_fn, **kw):
            calls.append((_name, args))
            return _fn(img, *args, **kw)

        op.aug_fn = record
    return calls


def test_rand_augment_applies_one_draw_to_every_frame():
    """Per frame the same ops with the same magnitudes (spy), and each output frame equals
    the policy applied alone to that frame with Python's and numpy's RNGs at the clip's
    seed (one getrandbits(63) of the clip's rng): the hand computation."""
    aug = ClipAugment("rand-m9-n3-mstd0.5-inc1")
    video = _video()
    calls = _spy(aug, 32, 40)
    out = aug.frames(video, random.Random(7))
    assert out.shape == video.shape and out.dtype == torch.uint8
    # frame by frame, in order: the first len/4 calls are frame 0's, and so on
    n = len(calls) // 4
    assert len(calls) == 4 * n and n >= 1
    first = calls[:n]
    assert [calls[i * n : (i + 1) * n] for i in range(4)] == [first] * 4
    seed = random.Random(7).getrandbits(63)
    for t in range(4):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        hand = np.asarray(aug.policy(32, 40)(Image.fromarray(video[t].numpy())))
        assert np.array_equal(out[t].numpy(), hand), t
    # another clip draw: other ops or magnitudes
    calls.clear()
    aug.frames(video, random.Random(8))
    assert calls[: len(calls) // 4] != first


def test_augmenting_leaves_the_global_rngs_alone():
    aug = ClipAugment("rand-m9-mstd0.5-inc1", reprob=1.0, mean=MEAN, std=STD)
    video, clip = _video(), torch.full((3, 4, 16, 16), 9.0)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    assert not torch.equal(aug.clip(clip, random.Random(0)), clip)  # it erased
    aug.frames(video, random.Random(0))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


def test_random_erasing_one_box_in_every_frame():
    """reprob 1: one rectangle, the same in every frame and channel, area in timm's
    [0.02, 1/3] of the frame; inside it the normalised values are per-pixel N(0, 1) draws
    that differ between frames; outside it the clip is unchanged; the same rng gives the
    same erasure."""
    aug = ClipAugment(reprob=1.0, mean=MEAN, std=STD)
    clip = torch.rand(3, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    out = aug.clip(clip.clone(), random.Random(3))
    assert out.shape == clip.shape and out.dtype == torch.float32
    changed = out != clip
    box = changed[0, 0]
    assert all(torch.equal(changed[c, t], box) for c in range(3) for t in range(4))
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    h, w = len(rows), len(cols)
    assert box.sum() == h * w and torch.equal(rows, torch.arange(rows[0], rows[0] + h))
    assert 0.02 * 32 * 32 - 32 <= h * w <= 32 * 32 / 3 + 32  # rounding of the sides
    z = normalize_clips(out[None], MEAN, STD)[0][:, :, box]  # [3, 4, h·w]
    assert abs(z.mean().item()) < 0.25 and 0.75 < z.std().item() < 1.25
    assert not torch.allclose(z[:, 0], z[:, 1])  # new values in each frame
    torch.testing.assert_close(out, aug.clip(clip.clone(), random.Random(3)), rtol=0, atol=0)
    assert not torch.equal(out, aug.clip(clip.clone(), random.Random(4)))


def test_off_by_default_and_clear_errors():
    video = _video(8, 32, 32)
    idx = clip_indices(8, 0.0, 8, 4)
    kw = dict(size=16, scale=(0.5, 1.0), hflip=True, channels=3)
    plain = augment_clip(video, idx, rng=random.Random(0), **kw)
    off = ClipAugment()
    assert not off
    assert torch.equal(augment_clip(video, idx, rng=random.Random(0), augment=off, **kw), plain)
    on = ClipAugment("rand-m7-mstd0.5-inc1", reprob=0.25, mean=MEAN, std=STD)
    x = augment_clip(video, idx, rng=random.Random(0), augment=on, **kw)
    assert x.shape == plain.shape == (3, 4, 16, 16) and x.dtype == plain.dtype == torch.float32
    with pytest.raises(ValueError, match="RandAugment policies"):
        ClipAugment("v0")
    with pytest.raises(ValueError, match="normalisation mean/std"):
        ClipAugment(reprob=0.25)
