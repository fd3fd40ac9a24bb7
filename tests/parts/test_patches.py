import pytest
import torch

from visrep.parts.patches import normalize_patches, patchify, unpatchify


def test_patch_order_is_row_col_channel_with_channel_fastest():
    n, c, p = 2, 3, 4
    img = torch.randn(n, c, 8, 12)
    x = patchify(img, p)
    assert x.shape == (n, 2 * 3, p * p * c)
    for i in range(2):
        for j in range(3):
            for u in range(p):
                for v in range(p):
                    for ch in range(c):
                        assert (
                            x[1, i * 3 + j, (u * p + v) * c + ch]
                            == img[1, ch, i * p + u, j * p + v]
                        )


def test_patch_order_differs_from_unfold():
    img = torch.randn(1, 3, 8, 8)
    unfold = torch.nn.functional.unfold(img, 4, stride=4).transpose(1, 2)
    assert not torch.equal(unfold, patchify(img, 4))


def test_unpatchify_inverts():
    img = torch.randn(2, 3, 12, 8)
    assert torch.equal(unpatchify(patchify(img, 4), 4, 3, (3, 2)), img)


def test_norm_pix_uses_unbiased_variance_and_eps_inside_sqrt():
    t = torch.tensor([[[1.0, 2.0, 3.0, 6.0]]])
    mean = 3.0
    var_unbiased = ((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3  # = 14/3
    expected = (t - mean) / (var_unbiased + 1e-6) ** 0.5
    torch.testing.assert_close(normalize_patches(t), expected, rtol=0, atol=1e-7)
    const = torch.full((1, 1, 4), 5.0)
    torch.testing.assert_close(normalize_patches(const), torch.zeros(1, 1, 4))  # eps: no div by 0


def test_patch_must_divide_image():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 1, 28, 28), 8)
