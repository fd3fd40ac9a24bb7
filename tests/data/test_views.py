"""Multi-view augmentation: the papers' presets, each op against its formula and
torchvision, per-sample parameters, seeding, grayscale and small-image rules."""

import dataclasses

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from visrep.data.views import (
    LUMA,
    VIEW_PRESETS,
    BatchedViews,
    ViewAug,
    ViewParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_view,
    blur_kernel_size,
    color_jitter,
    draw_view_params,
    folder_views_transform,
    for_image_size,
    gaussian_blur,
    grayscale,
    solarize,
    view_preset,
)

# Float32 ops on the 0..255 scale; torchvision works on 0..1 and is compared after x255.
ATOL = 2e-3
# torchvision's luma is 0.2989 R (PIL and ITU-R 601: 0.299): contrast and saturation
# differ by at most 1e-4 * 255 * |1 - f| per op.
LUMA_ATOL = 0.05


def rgb(b=6, c=3, h=12, w=10, seed=0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def identity_params(n: int, h: int, w: int, **changes) -> ViewParams:
    """Full-image crop, nothing else applied; override fields with tensors."""
    p = ViewParams(
        boxes=torch.tensor([[0.0, 0.0, h, w]]).repeat(n, 1),
        flip=torch.zeros(n, dtype=torch.bool),
        jitter=torch.zeros(n, dtype=torch.bool),
        factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(n, 1),
        order=torch.arange(4).repeat(n, 1),
        gray=torch.zeros(n, dtype=torch.bool),
        blur=torch.zeros(n, dtype=torch.bool),
        sigma=torch.ones(n),
        solarize=torch.zeros(n, dtype=torch.bool),
    )
    return dataclasses.replace(p, **changes)


# --- presets ----------------------------------------------------------------------------


def test_presets_are_the_papers_values():
    """moco-v3 `main_moco.py` (BYOL pair), simsiam `main_simsiam.py`, SLIP `datasets.py` (SimCLR
    views)."""
    for name, crop_min in [("mocov3", 0.08), ("mocov3_resnet", 0.2)]:
        v1, v2 = VIEW_PRESETS[name]
        for v in (v1, v2):
            assert v.crop_scale == (crop_min, 1.0) and v.crop_ratio == (3 / 4, 4 / 3)
            assert (v.brightness, v.contrast, v.saturation, v.hue) == (0.4, 0.4, 0.2, 0.1)
            assert (v.jitter_p, v.grayscale_p, v.hflip_p) == (0.8, 0.2, 0.5)
            assert v.blur_sigma == (0.1, 2.0) and v.solarize_threshold == 128
        assert (v1.blur_p, v1.solarize_p) == (1.0, 0.0)
        assert (v2.blur_p, v2.solarize_p) == (0.1, 0.2)
    for name, crop_min in [("simsiam", 0.2), ("simclr", 0.08)]:
        views = VIEW_PRESETS[name]
        assert len(views) == 2 and views[0] == views[1]
        v = views[0]
        assert v.crop_scale == (crop_min, 1.0) and v.crop_ratio == (3 / 4, 4 / 3)
        assert (v.brightness, v.contrast, v.saturation, v.hue) == (0.4, 0.4, 0.4, 0.1)
        assert (v.jitter_p, v.grayscale_p, v.blur_p, v.hflip_p) == (0.8, 0.2, 0.5, 0.5)
        assert v.blur_sigma == (0.1, 2.0) and v.solarize_p == 0.0
    assert set(VIEW_PRESETS) == {"mocov3", "mocov3_resnet", "simsiam", "simclr"}


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="mocov3, mocov3_resnet, simsiam, simclr"):
        view_preset("byol")
    assert view_preset("simsiam") is VIEW_PRESETS["simsiam"]


def test_viewaug_validates():
    with pytest.raises(ValueError, match="jitter_p"):
        ViewAug(jitter_p=1.5)
    with pytest.raises(ValueError, match="hue"):
        ViewAug(hue=0.7)
    with pytest.raises(ValueError, match="0..255"):
        ViewAug(solarize_threshold=300)


def test_small_image_blur_rule():
    mocov3 = VIEW_PRESETS["mocov3"]
    assert [a.blur_p for a in for_image_size(mocov3, 28)] == [0.0, 0.0]  # default "drop"
    assert for_image_size(mocov3, 64) == mocov3  # 64 px and up: the paper's values
    assert for_image_size(mocov3, 28, "keep") == mocov3
    scaled = for_image_size(mocov3, 28, "scale")
    assert scaled[0].blur_p == 1.0 and scaled[0].blur_sigma == pytest.approx((0.0125, 0.25))
    assert [a.blur_p for a in BatchedViews(32, mocov3, 3).augs] == [0.0, 0.0]
    with pytest.raises(ValueError, match="drop"):
        for_image_size(mocov3, 28, "blur")


# --- single ops against formulas and torchvision -----------------------------------------


def test_solarize_threshold_on_255_scale():
    x = torch.tensor([0.0, 100.0, 127.0, 127.9, 128.0, 200.0, 255.0]).view(1, 1, 1, -1)
    want = torch.tensor([0.0, 100.0, 127.0, 127.9, 127.0, 55.0, 0.0]).view(1, 1, 1, -1)
    torch.testing.assert_close(solarize(x), want)
    torch.testing.assert_close(solarize(x, 200), torch.where(x >= 200, 255 - x, x))
    ref = TF.solarize(x.to(torch.uint8), 128).float()
    torch.testing.assert_close(solarize(x.to(torch.uint8).float()), ref)


def test_grayscale_is_itu_601_luma_replicated():
    x = torch.tensor([[255.0, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]).T.reshape(1, 3, 1, 4)
    g = grayscale(x)
    want = torch.tensor(
        [255 * LUMA[0], 255 * LUMA[1], 255 * LUMA[2], 0.299 * 10 + 0.587 * 20 + 3.42]
    )
    assert LUMA == (0.299, 0.587, 0.114)
    for c in range(3):
        torch.testing.assert_close(g[0, c, 0], want)


def test_flip_and_full_crop():
    x = rgb(3, 3, 8, 8)
    p = identity_params(3, 8, 8, flip=torch.tensor([True, False, True]))
    out = apply_view(x, ViewAug(), p, 8)
    torch.testing.assert_close(out[1], x[1], atol=ATOL, rtol=0)
    torch.testing.assert_close(out[[0, 2]], x[[0, 2]].flip(-1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_contrast_match_torchvision(channels):
    x = rgb(6, channels) / 255  # torchvision float images are 0..1
    f = torch.tensor([0.0, 0.6, 1.0, 1.3, 1.4, 2.0])
    atol = ATOL if channels == 1 else LUMA_ATOL
    for ours, ref in [
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
    ]:
        want = torch.stack([ref(x[i], float(f[i])) for i in range(6)]) * 255
        torch.testing.assert_close(ours(x * 255, f), want, atol=atol, rtol=0)


def test_contrast_and_saturation_formulas():
    x = rgb(3)
    f = torch.tensor([0.5, 1.2, 1.4])
    lum = (LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]).unsqueeze(1)
    fb = f.view(-1, 1, 1, 1)
    want_c = (fb * x + (1 - fb) * lum.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 255)
    want_s = (fb * x + (1 - fb) * lum).clamp(0, 255)
    torch.testing.assert_close(adjust_contrast(x, f), want_c, atol=ATOL, rtol=0)
    torch.testing.assert_close(adjust_saturation(x, f), want_s, atol=ATOL, rtol=0)


def test_saturation_and_hue_match_torchvision():
    x = rgb(6) / 255
    # Pixels with ties between channels (max of two channels) exercise the hue branches.
    x[0, :, 0, :3] = torch.tensor([[0.5, 0.5, 0.2], [0.5, 0.2, 0.5], [0.3, 0.5, 0.5]]).T
    f = torch.tensor([0.0, 0.6, 1.0, 1.3, 1.4, 2.0])
    want = torch.stack([TF.adjust_saturation(x[i], float(f[i])) for i in range(6)]) * 255
    torch.testing.assert_close(adjust_saturation(x * 255, f), want, atol=LUMA_ATOL, rtol=0)
    h = torch.tensor([-0.5, -0.1, 0.0, 0.05, 0.3, 0.5])
    want = torch.stack([TF.adjust_hue(x[i], float(h[i])) for i in range(6)]) * 255
    torch.testing.assert_close(adjust_hue(x * 255, h), want, atol=ATOL, rtol=0)


def test_gray_images_pass_saturation_hue_grayscale_unchanged():
    x = rgb(4, 1)
    torch.testing.assert_close(adjust_saturation(x, torch.full((4,), 1.4)), x)
    torch.testing.assert_close(adjust_hue(x, torch.full((4,), 0.1)), x)
    p = identity_params(4, 12, 10, jitter=torch.ones(4, dtype=torch.bool),
                        factors=torch.tensor([[1.0, 1.0, 0.3, 0.2]]).repeat(4, 1),
                        gray=torch.ones(4, dtype=torch.bool))  # fmt: skip
    out = apply_view(x, ViewAug(saturation=0.4, hue=0.1, grayscale_p=1.0), p, (12, 10)[0])
    torch.testing.assert_close(out, apply_view(x, ViewAug(), identity_params(4, 12, 10), 12))


def test_blur_matches_torchvision_per_sample_sigma():
    x = rgb(6, 3, 20, 17)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0, 3.3])
    want = torch.stack(
        [TF.gaussian_blur(x[i], [blur_kernel_size(float(s))] * 2, [float(s)] * 2)
         for i, s in enumerate(sigma)]
    )  # fmt: skip
    torch.testing.assert_close(gaussian_blur(x, sigma), want, atol=ATOL, rtol=0)
    assert [blur_kernel_size(s) for s in (0.1, 0.34, 1.0, 2.0)] == [3, 5, 7, 13]
    # Radius capped at size - 1 on a tiny image (reflect padding needs it).
    tiny = rgb(2, 1, 4, 4)
    big = torch.tensor([2.0, 2.0])
    want = TF.gaussian_blur(tiny[0], [7, 7], [2.0, 2.0])
    torch.testing.assert_close(gaussian_blur(tiny, big)[0], want, atol=ATOL, rtol=0)


def test_color_jitter_applies_ops_in_each_samples_order():
    """torchvision ColorJitter semantics: each sample its own factors and op order."""
    x = rgb(5) / 255
    factors = torch.tensor(
        [[1.3, 0.7, 1.4, 0.1], [0.6, 1.4, 0.6, -0.1], [1.0, 1.2, 0.0, 0.05],
         [1.4, 1.4, 1.4, 0.0], [0.9, 0.6, 1.1, -0.08]]
    )  # fmt: skip
    order = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1], [4, 4, 4, 4]])
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    want = []
    for i in range(5):
        y = x[i]
        for op in order[i].tolist():
            if op < 4:
                y = ops[op](y, float(factors[i, op]))
        want.append(y)
    out = color_jitter(x * 255, factors, order)
    torch.testing.assert_close(out, torch.stack(want) * 255, atol=3 * LUMA_ATOL, rtol=0)
    torch.testing.assert_close(out[4], x[4] * 255)  # order 4 = not jittered
    # Disabled ops (strength 0) are skipped even if their factor is not the identity.
    only_b = color_jitter(x * 255, factors, order, (True, False, False, False))
    torch.testing.assert_close(only_b[0], (x[0] * 255 * 1.3).clamp(0, 255))


# --- drawing, seeding, the whole view ----------------------------------------------------


def test_draws_follow_the_configured_distributions():
    aug = VIEW_PRESETS["mocov3"][1]
    p = draw_view_params(aug, 20000, 32, 32, gen(0))
    assert p.jitter.float().mean() == pytest.approx(0.8, abs=0.02)
    assert p.gray.float().mean() == pytest.approx(0.2, abs=0.02)
    assert p.blur.float().mean() == pytest.approx(0.1, abs=0.02)
    assert p.solarize.float().mean() == pytest.approx(0.2, abs=0.02)
    assert p.flip.float().mean() == pytest.approx(0.5, abs=0.02)
    lo, hi = p.factors.min(0).values, p.factors.max(0).values
    torch.testing.assert_close(lo, torch.tensor([0.6, 0.6, 0.8, -0.1]), atol=1e-3, rtol=0)
    torch.testing.assert_close(hi, torch.tensor([1.4, 1.4, 1.2, 0.1]), atol=1e-3, rtol=0)
    assert (p.sigma >= 0.1).all() and (p.sigma <= 2.0).all()
    assert torch.equal(p.order.sort(1).values, torch.arange(4).expand(20000, 4))
    assert len({tuple(r) for r in p.order.tolist()}) == 24  # every permutation occurs


@pytest.mark.parametrize("channels,dtype", [(1, torch.uint8), (3, torch.uint8), (3, torch.float32)])
def test_views_shape_dtype_range(channels, dtype):
    x = rgb(8, channels, 40, 36).to(dtype)
    views = BatchedViews(64, VIEW_PRESETS["mocov3"], channels)(x, gen(0))
    assert len(views) == 2
    for v in views:
        assert v.shape == (8, channels, 64, 64) and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 255 and torch.isfinite(v).all()


def test_same_seed_same_views_other_seed_other_views():
    x = rgb(8, 3, 32, 32).to(torch.uint8)
    bv = BatchedViews(24, VIEW_PRESETS["simclr"], 3)
    a, b, c = bv(x, gen(5)), bv(x, gen(5)), bv(x, gen(6))
    for va, vb, vc in zip(a, b, c):
        assert torch.equal(va, vb)
        assert not torch.allclose(va, vc)
    assert not torch.allclose(a[0], a[1])  # the two views differ


def test_call_is_draw_then_apply():
    """The draws can be taken out and injected (parity checks against other code)."""
    x = rgb(6, 3, 70, 70)
    bv = BatchedViews(64, VIEW_PRESETS["mocov3"], 3)
    params = bv.draw(6, 70, 70, gen(3))
    views = [apply_view(x, a, p, 64) for a, p in zip(bv.augs, params)]
    for v, w in zip(views, bv(x, gen(3))):
        assert torch.equal(v, w)


def test_parameters_differ_per_sample():
    """One image repeated: every sample gets its own crop, colours, blur."""
    x = rgb(1, 3, 48, 48).repeat(16, 1, 1, 1)
    bv = BatchedViews(64, VIEW_PRESETS["mocov3"], 3)
    p = bv.draw(16, 48, 48, gen(0))[0]
    assert len({tuple(b) for b in p.boxes.tolist()}) > 12
    assert len(set(p.factors[:, 0].tolist())) == 16 and len(set(p.sigma.tolist())) == 16
    v = bv(x, gen(0))[0].flatten(1)
    assert len({tuple(r) for r in v[:, :50].tolist()}) == 16
    # Colour ops on their own (crop fixed): per-sample factors give per-sample images.
    p = identity_params(16, 48, 48, jitter=torch.ones(16, dtype=torch.bool),
                        factors=draw_view_params(VIEW_PRESETS["simclr"][0], 16, 48, 48,
                                                 gen(1)).factors)  # fmt: skip
    out = apply_view(x, VIEW_PRESETS["simclr"][0], p, 48).flatten(1)
    assert len({round(float(m), 3) for m in out.mean(1)}) == 16


def test_blur_and_solarize_act_only_on_their_samples():
    x = rgb(4, 3, 16, 16)
    p = identity_params(4, 16, 16, blur=torch.tensor([True, False, False, False]),
                        sigma=torch.full((4,), 1.5),
                        solarize=torch.tensor([False, False, True, False]))  # fmt: skip
    out = apply_view(x, ViewAug(), p, 16)
    crop = apply_view(x, ViewAug(), identity_params(4, 16, 16), 16)
    torch.testing.assert_close(out[0], gaussian_blur(crop[:1], torch.tensor([1.5]))[0])
    torch.testing.assert_close(out[2], solarize(crop[2]))
    torch.testing.assert_close(out[[1, 3]], crop[[1, 3]])


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        BatchedViews(16, VIEW_PRESETS["simsiam"], 3)(torch.zeros(2, 1, 16, 16))


# --- per-sample torchvision pipeline for folders ------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_views_transform(channels):
    img = (rgb(1, channels, 50, 40)[0]).to(torch.uint8)
    t = folder_views_transform(32, VIEW_PRESETS["mocov3"], channels)
    torch.manual_seed(0)
    a = t(img)
    torch.manual_seed(0)
    b = t(img)
    assert len(a) == 2
    for va, vb in zip(a, b):
        assert va.shape == (channels, 32, 32) and va.dtype == torch.uint8
        assert torch.equal(va, vb)
    assert not torch.equal(a[0], a[1])
    names = [type(s).__name__ for s in t.transforms[1].transforms]
    assert "RandomGaussianBlur" not in names  # 32 px: blur dropped (small-image rule)
    assert ("RandomGrayscale" in names) == (channels == 3)
    big = folder_views_transform(64, VIEW_PRESETS["mocov3"], channels)
    names = [type(s).__name__ for s in big.transforms[1].transforms]
    assert names[-3:] == ["RandomGaussianBlur", "RandomSolarize", "RandomHorizontalFlip"]


def test_folder_blur_radius_capped_on_tiny_images():
    aug = ViewAug(crop_scale=(1.0, 1.0), blur_p=1.0, blur_sigma=(2.0, 2.0), hflip_p=0.0)
    img = (rgb(1, 3, 4, 4)[0]).to(torch.uint8)
    torch.manual_seed(0)
    out = folder_views_transform(4, (aug,), 3, small_image_blur="keep")(img)[0]
    want = TF.gaussian_blur(img, [7, 7], [2.0, 2.0])  # radius 6 capped at 3
    assert out.shape == (3, 4, 4) and torch.equal(out, want)
    assert blur_kernel_size(2.0, max_radius=3) == 7 and blur_kernel_size(2.0, max_radius=7) == 13
