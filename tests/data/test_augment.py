"""Batched random resized crop: box sampling, exact geometry against torchvision, seeding."""

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from visrep.data.augment import (
    FMNIST_MEAN,
    FMNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchedRandomResizedCrop,
    normalize,
    random_resized_crop_params,
    resized_crop,
)

# grid_sample works in float32: sample points carry ~1e-6 px of rounding, i.e. up to
# ~1e-3 on the [0, 255] scale (4e-6 relative) where neighbouring pixels differ by 255.
ATOL = 1e-3


def images(b=4, c=3, h=28, w=28, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize(
    "height,width,scale", [(28, 28, (0.2, 1.0)), (32, 48, (0.08, 1.0)), (8, 8, (0.5, 1.0))]
)
def test_boxes_fit_and_respect_scale(height, width, scale):
    boxes = random_resized_crop_params(
        5000, height, width, scale, generator=torch.Generator().manual_seed(0)
    )
    assert boxes.shape == (5000, 4) and boxes.dtype == torch.float32
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())  # whole pixels, as torchvision
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # Sides are rounded to whole pixels, which moves the area by at most (h + w) / 2 + 1/4.
    slack = (h + w) / 2 + 0.25
    area = h * w
    assert (area >= scale[0] * height * width - slack).all()
    assert (area <= scale[1] * height * width + slack).all()
    ratio = w / h
    assert (ratio > 3 / 4 * 0.7).all() and (ratio < 4 / 3 / 0.7).all()


def test_boxes_follow_torchvision_distribution():
    """Same distribution as RandomResizedCrop.get_params (not the same draws)."""
    torch.manual_seed(0)
    ref = torch.tensor(
        [
            v2.RandomResizedCrop.get_params(torch.empty(1, 24, 40), [0.2, 1.0], [3 / 4, 4 / 3])
            for _ in range(4000)
        ],
        dtype=torch.float32,
    )
    ours = random_resized_crop_params(4000, 24, 40, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ours.mean(0), ref.mean(0), atol=0.4)
    assert torch.allclose(ours.std(0), ref.std(0), atol=0.4)


def test_fallback_is_central_crop_clamped_to_ratio():
    # No box with area >= 50% of a 20x60 image has aspect ratio <= 4/3 and height <= 20.
    boxes = random_resized_crop_params(
        16, 20, 60, scale=(0.5, 1.0), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(boxes, torch.tensor([[0.0, 16.0, 20.0, 27.0]]).expand(16, 4))


def test_identity_box_reproduces_image():
    x = images()
    box = torch.tensor([[0.0, 0.0, 28.0, 28.0]]).expand(4, 4)
    out = resized_crop(x, box, 28)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, x, rtol=0, atol=ATOL)
    u8 = x.round().to(torch.uint8)  # uint8 in, exact pixels back after rounding
    assert torch.equal(resized_crop(u8, box, 28).round().to(torch.uint8), u8)


def test_flip_equals_torch_flip():
    x = images()
    boxes = torch.tensor(
        [
            [3.0, 5.0, 10.0, 12.0],
            [0.0, 0.0, 28.0, 28.0],
            [7.0, 1.0, 20.0, 9.0],
            [2.0, 2.0, 5.0, 5.0],
        ]
    )
    flip = torch.tensor([True, True, False, True])
    plain = resized_crop(x, boxes, 16)
    flipped = resized_crop(x, boxes, 16, flip=flip)
    torch.testing.assert_close(flipped[flip], plain[flip].flip(-1), rtol=0, atol=ATOL)
    torch.testing.assert_close(flipped[~flip], plain[~flip], rtol=0, atol=0)


@pytest.mark.parametrize(
    "box,size",
    [
        ((3, 5, 10, 12), 32),  # upsampled, interior: nothing outside the box may leak in
        ((0, 0, 28, 28), 56),
        ((10, 2, 7, 9), (20, 14)),  # non-square output
        ((18, 16, 10, 12), 24),  # touching the bottom-right border
        ((3, 5, 20, 18), 12),  # downsampled (both sides skip antialiasing)
    ],
)
def test_matches_torchvision_resized_crop(box, size):
    x = images()
    out_size = [size, size] if isinstance(size, int) else list(size)
    ref = TF.resized_crop(
        x, *box, out_size, interpolation=InterpolationMode.BILINEAR, antialias=False
    )
    out = resized_crop(x, torch.tensor([box], dtype=torch.float32).expand(4, 4), size)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=ATOL)


def test_per_sample_boxes_in_one_call():
    x = images(b=3, c=1, h=20, w=30)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 30.0], [4.0, 6.0, 8.0, 8.0], [1.0, 20.0, 19.0, 10.0]])
    out = resized_crop(x, boxes, 16)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(
            x[i],
            top,
            left,
            h,
            w,
            [16, 16],
            interpolation=InterpolationMode.BILINEAR,
            antialias=False,
        )
        torch.testing.assert_close(out[i], ref, rtol=0, atol=ATOL)


def test_bad_shapes_are_clear():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        resized_crop(torch.zeros(3, 8, 8), torch.zeros(1, 4), 4)
    with pytest.raises(ValueError, match="boxes"):
        resized_crop(torch.zeros(2, 3, 8, 8), torch.zeros(3, 4), 4)


def test_batched_crop_is_seeded():
    x = images(b=8).to(torch.uint8)
    aug = BatchedRandomResizedCrop(16)
    a = aug(x, generator=torch.Generator().manual_seed(0))
    b = aug(x, generator=torch.Generator().manual_seed(0))
    c = aug(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 255


def test_batched_crop_draws_boxes_then_flips():
    """The generator alone fixes the result: replaying its draws reproduces the call."""
    x = images(b=6)
    out = BatchedRandomResizedCrop(12, scale=(0.3, 0.9))(
        x, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    boxes = random_resized_crop_params(6, 28, 28, (0.3, 0.9), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    assert 0 < int(flip.sum()) < 6  # the seed exercises both branches
    torch.testing.assert_close(out, resized_crop(x, boxes, 12, flip), rtol=0, atol=0)
    no_flip = BatchedRandomResizedCrop(12, scale=(0.3, 0.9), hflip=False)(
        x, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(no_flip, resized_crop(x, boxes, 12), rtol=0, atol=0)


def test_bad_crop_arguments():
    with pytest.raises(ValueError, match="scale"):
        BatchedRandomResizedCrop(16, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="ratio"):
        BatchedRandomResizedCrop(16, ratio=(2.0, 1.0))


def test_normalize():
    x = torch.tensor([0.0, 51.0, 255.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    expected = (
        torch.tensor([(0 - 0.1) / 0.5, (0.2 - 0.2) / 0.25, (1 - 0.3) / 2.0])
        .view(1, 3, 1, 1)
        .expand(2, 3, 2, 2)
    )
    torch.testing.assert_close(normalize(x, mean, std), expected)
    torch.testing.assert_close(normalize(x[0], mean, std), expected[0])  # unbatched [C, H, W]
    assert normalize(x.to(torch.uint8), mean, std).dtype == torch.float32
    with pytest.raises(ValueError, match="3-channel images but 1 mean"):
        normalize(x, FMNIST_MEAN, FMNIST_STD)


def test_constants():
    assert IMAGENET_MEAN == pytest.approx((0.485, 0.456, 0.406))
    assert IMAGENET_STD == pytest.approx((0.229, 0.224, 0.225))
    assert len(FMNIST_MEAN) == len(FMNIST_STD) == 1
