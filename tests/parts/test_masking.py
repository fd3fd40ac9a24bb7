import pytest
import torch

from visrep.parts.masking import gather_tokens, num_keep, random_masking


@pytest.mark.parametrize(
    ("L", "r", "keep"), [(196, 0.75, 49), (49, 0.6, 19), (1568, 0.9, 156), (49, 0.75, 12)]
)
def test_num_keep_uses_floor(L, r, keep):
    assert num_keep(L, r) == keep


def test_masking_that_keeps_nothing_is_refused():
    # e.g. a stride-32 CNN on 32 px images: one cell, floor(1 × 0.4) = 0 kept
    with pytest.raises(ValueError, match="leaves no visible token or cell of 1.*data.img_size"):
        num_keep(1, 0.6)
    assert num_keep(3, 0.6) == 1  # the smallest grid that keeps one


def test_masking_matches_argsort_formula():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    m = random_masking(2, 4, 0.5, noise=noise)
    # small noise is kept, in ascending-noise (shuffled) order
    assert m.ids_keep.tolist() == [[1, 3], [0, 2]]
    assert m.mask.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    ids_shuffle = torch.argsort(noise, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, m.ids_restore), torch.arange(4).expand(2, 4))


def test_mask_counts_and_restore_roundtrip():
    torch.manual_seed(0)
    m = random_masking(8, 49, 0.75)
    assert (m.mask.sum(1) == 37).all()
    x = torch.randn(8, 49, 5)
    kept = gather_tokens(x, m.ids_keep)
    # kept tokens are exactly the ones with mask == 0
    for i in range(8):
        assert set(m.ids_keep[i].tolist()) == set(torch.nonzero(m.mask[i] == 0).flatten().tolist())
        assert torch.equal(kept[i], x[i, m.ids_keep[i]])


def test_default_noise_is_torch_rand_like_official():
    torch.manual_seed(3)
    official = torch.rand(4, 16)
    torch.manual_seed(3)
    ours = random_masking(4, 16, 0.75)
    assert torch.equal(ours.mask, random_masking(4, 16, 0.75, noise=official).mask)


def test_bad_ratio_and_noise_shape():
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(2, 4, 1.0)
    with pytest.raises(ValueError, match="shape"):
        random_masking(2, 4, 0.5, noise=torch.rand(2, 5))
