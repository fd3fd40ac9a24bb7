"""visrep.evals.msd: MSD / MMD by hand, transform embeddings of a hand-made encoder, one
draw per transform across D_S, and the notebook's mixture experiment in small (MSD stays
low while any impulse-noise samples remain in the augmentation; MMD grows steadily)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import requires_fmnist

from visrep.evals.msd import (
    corruption_apply,
    embed_mixture,
    mixture_apply,
    mmd,
    msd,
    msd_table,
    training_apply,
    transform_embedding,
)


def test_msd_and_mmd_by_hand():
    aug = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    corr = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # mean (2, 0)
    assert msd(aug, corr) == pytest.approx(2.0)  # nearest augmentation sample: (0, 0)
    assert mmd(aug, corr) == pytest.approx(math.sqrt(65) / 3)  # (13/3, 4/3) − (2, 0)
    with pytest.raises(ValueError):
        msd(aug[:0], corr)


def _mean_encoder(x: torch.Tensor) -> torch.Tensor:
    """f̂(x) = (mean, std) of each image's pixels (0..255 units)."""
    flat = x.flatten(1).double()
    return torch.stack([flat.mean(1), flat.std(1)], dim=1)


def test_transform_embedding_averages_over_the_image_set():
    images = torch.stack([torch.full((1, 4, 4), v, dtype=torch.uint8) for v in (10, 30)])

    def shift(x, seed):  # a toy transform family: add the seed to every pixel
        return x.float() + seed

    emb = transform_embedding(_mean_encoder, images, shift, [0, 5])
    torch.testing.assert_close(emb, torch.tensor([[20.0, 0.0], [25.0, 0.0]], dtype=torch.float64))


def test_training_augmentation_is_one_draw_for_all_images():
    img = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    two = torch.cat([img, img])
    ident = training_apply(28, (0.3,), (0.3,))  # crop scale (1, 1), no flip, no erasing
    torch.testing.assert_close(ident(two, 3), two.float(), atol=1e-3, rtol=0)  # grid_sample
    aug = training_apply(28, (0.3,), (0.3,), crop_scale=(0.2, 1.0), hflip=True, reprob=1.0)
    out = aug(two, 11)
    torch.testing.assert_close(out[0], out[1])  # same box, flip and erased noise
    torch.testing.assert_close(aug(two, 11), out)  # a seed fixes the transform
    assert not torch.equal(aug(two, 12), out)


def test_mixture_fractions():
    a = lambda x, s: x.float()  # noqa: E731
    b = lambda x, s: x.float() + 1  # noqa: E731
    only_a = mixture_apply([(a, 1.0), (b, 0.0)])
    assert all(only_a(s) is a for s in range(50))
    half = mixture_apply([(a, 0.5), (b, 0.5)])
    picks = [half(s) is a for s in range(400)]
    assert 0.4 < np.mean(picks) < 0.6 and picks == [half(s) is a for s in range(400)]


@requires_fmnist
def test_notebook_mixture_experiment_in_small():
    from visrep.data.fashion_mnist import load_fashion_mnist

    x, _ = load_fashion_mnist(split="train")
    images = x[:6]  # D_S
    target = corruption_apply("impulse_noise", 3)
    corr = transform_embedding(_mean_encoder, images, target, range(100, 110))
    parts = lambda p: [(target, p), (corruption_apply("motion_blur", 3), 1 - p)]  # noqa: E731
    res = {}
    for p in (0.0, 0.5, 0.9, 1.0):
        aug = embed_mixture(_mean_encoder, images, mixture_apply(parts(p)), range(40))
        res[p] = (msd(aug, corr), mmd(aug, corr))
    # MSD: as soon as some impulse-noise samples are in the augmentation, one lies near the
    # corruption's mean; with none (p = 0) it jumps. MMD falls steadily as p grows.
    assert res[0.5][0] < 0.3 * res[0.0][0] and res[1.0][0] < 0.3 * res[0.0][0]
    assert res[0.0][1] > res[0.5][1] > res[0.9][1] > res[1.0][1]
    table = msd_table(_mean_encoder, images, training_apply(28, (0.3,), (0.3,)),
                      {"impulse_noise-3": target}, n_aug=3, n_corr=4)  # fmt: skip
    assert table["impulse_noise-3"]["msd"] <= table["impulse_noise-3"]["mmd"] + 1e-9


def test_augment_spec():
    from visrep.config import ConfigError
    from visrep.robustness import parse_augment

    kw = parse_augment("crop_scale=0.35,1 hflip=true reprob=0.25 recount=2")
    assert kw == {"crop_scale": (0.35, 1.0), "hflip": True, "reprob": 0.25, "recount": 2}
    assert parse_augment("none") == {}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_augment("crop=0.2,1")
