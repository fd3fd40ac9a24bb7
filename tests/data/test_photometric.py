"""visrep.data.photometric: the corruption-like training augmentations of the MSD
experiment (noise, blur, contrast, AugMix) against hand computations, their per-sample and
shared draws, and their place in the supervised batches and in the MSD transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_fmnist
from scipy.ndimage import gaussian_filter

from visrep.config import replace
from visrep.configs import get_recipe
from visrep.data.photometric import BLUR_KERNEL, MAX, OPS, Photometric, parse_ops


def _draw(op: str, level: float, seed: int = 0) -> dict:
    return {op: {"level": torch.tensor([level], dtype=torch.float64),
                 "seed": torch.tensor([seed])}}  # fmt: skip


def _image(n: int = 1, side: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, side, side), generator=g).float()


def test_contrast_is_the_blend_with_the_image_mean():
    x = _image()
    out = Photometric("contrast").apply(x, _draw("contrast", 5.0))  # c = 1 − 5·0.8/10 = 0.6
    mean = x.mean()
    hand = ((x - mean) * 0.6 + mean).clamp(0, 255)
    torch.testing.assert_close(out, hand, atol=1e-3, rtol=0)


def test_blur_is_a_gaussian_filter_of_the_level_sigma():
    x = _image()
    out = Photometric("blur").apply(x, _draw("blur", 6.0))  # σ = 6·1.5/10 = 0.9 px
    # torchvision pads by reflection without the edge pixel: scipy's "mirror"
    hand = gaussian_filter(x[0, 0].double().numpy(), 0.9, mode="mirror",
                           truncate=(BLUR_KERNEL // 2) / 0.9)  # fmt: skip
    np.testing.assert_allclose(out[0, 0].numpy(), hand, atol=2e-3)


def test_noise_has_the_level_sigma_and_a_seeded_field():
    x = torch.full((1, 1, 96, 96), 128.0)  # mid grey: no clipping
    p = Photometric("noise")
    out = p.apply(x, _draw("noise", 5.0, seed=3))  # σ = 5·0.12/10 = 0.06 of the range
    resid = (out - x) / 255
    assert resid.std().item() == pytest.approx(0.06, rel=0.05)
    assert abs(resid.mean().item()) < 0.006
    torch.testing.assert_close(p.apply(x, _draw("noise", 5.0, seed=3)), out)
    assert not torch.equal(p.apply(x, _draw("noise", 5.0, seed=4)), out)


def test_every_op_keeps_shape_and_range_and_level_zero_is_near_identity():
    x = _image(4)
    for op in OPS:
        out = Photometric(op)(x, torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 255
    for op in ("noise", "blur", "contrast"):  # ℓ = 0.1: a mild draw changes little
        out = Photometric(op).apply(x[:1], _draw(op, 0.1))
        assert (out - x[:1]).abs().mean() < 0.05 * 255


def test_draws_are_per_sample_in_a_batch_and_shared_when_expanded():
    img = _image()
    two = torch.cat([img, img])
    for op in OPS:
        p = Photometric(op)
        batch = p(two, torch.Generator().manual_seed(0))
        assert not torch.equal(batch[0], batch[1]), op  # two samples, two draws
        torch.testing.assert_close(p(two, torch.Generator().manual_seed(0)), batch)
        shared = p.apply(two, p.sample(1, torch.Generator().manual_seed(0)))
        torch.testing.assert_close(shared[0], shared[1])  # one draw, one noise field
    levels = Photometric("noise").sample(1000, torch.Generator().manual_seed(0))["noise"]["level"]
    assert 0.1 <= levels.min() and levels.max() <= 10 and 4.5 < levels.mean() < 5.6


def test_global_rng_is_left_alone():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    Photometric("noise,augmix")(_image(2), torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), before)


def test_unknown_op_is_a_clear_error():
    assert parse_ops("") == () and parse_ops("noise, blur") == ("noise", "blur")
    with pytest.raises(ValueError, match="comma list of"):
        Photometric("jitter")
    assert MAX["noise"] > 0


def test_folders_refuse_photometric():
    from visrep.data.labelled import FolderBatches

    cfg = replace(get_recipe("gen_reference_fmnist"), **{"method.photometric": "noise",
                  "eval.dataset": "/nonexistent"})  # fmt: skip
    with pytest.raises(ValueError, match="in-memory"):
        FolderBatches(cfg, device=torch.device("cpu"))


@requires_fmnist
def test_supervised_batches_apply_it_reproducibly():
    from visrep.data.labelled import train_batches

    over = {"eval.limit_train": 256, "data.crop_scale": (1.0, 1.0), "data.hflip": False}
    plain_cfg = replace(get_recipe("gen_reference_fmnist"), **over)
    noisy_cfg = replace(plain_cfg, **{"method.photometric": "noise"})
    plain, _ = train_batches(plain_cfg, device=torch.device("cpu"))
    noisy, _ = train_batches(noisy_cfg, device=torch.device("cpu"))
    a, b = plain.batch(1)["images"], noisy.batch(1)["images"]
    assert a.shape == b.shape and not torch.equal(a, b)
    torch.testing.assert_close(noisy.batch(1)["images"], b)  # a step fixes its batch
    assert (b - a).std() < 0.2 * a.std()  # noise on top of the same crop, not other images


def test_msd_transform_and_spec_carry_it():
    from visrep.evals.msd import training_apply
    from visrep.robustness import parse_augment, run_augmentation

    img = _image().to(torch.uint8)
    two = torch.cat([img, img])
    aug = training_apply(28, (0.3,), (0.3,), photometric="noise")
    out = aug(two, 7)
    torch.testing.assert_close(out[0], out[1])  # one draw for the image set
    assert not torch.equal(out, two.float()) and torch.equal(aug(two, 7), out)
    assert parse_augment("hflip=true photometric=noise,blur") == {
        "hflip": True, "photometric": "noise,blur"}  # fmt: skip
    cfg = replace(get_recipe("gen_reference_fmnist"), **{"method.photometric": "augmix"})
    assert run_augmentation(cfg)["photometric"] == "augmix"
