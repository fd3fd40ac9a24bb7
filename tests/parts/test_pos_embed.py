import math

import pytest
import torch

from visrep.parts.pos_embed import sincos_2d


def formula(dim, g, layout):
    m = dim // 4
    out = torch.zeros(g * g, dim, dtype=torch.float64)
    for r in range(g):
        for c in range(g):
            first, second = (c, r) if layout == "mae" else (r, c)
            for k in range(m):
                w = 10000 ** (-k / m)
                out[r * g + c, k] = math.sin(first * w)
                out[r * g + c, m + k] = math.cos(first * w)
                out[r * g + c, 2 * m + k] = math.sin(second * w)
                out[r * g + c, 3 * m + k] = math.cos(second * w)
    return out.float()


@pytest.mark.parametrize("dim", [16, 192, 768])
@pytest.mark.parametrize("layout", ["mae", "mocov3"])
def test_sincos_matches_formula(dim, layout):
    g = 7 if dim > 16 else 4
    table = sincos_2d(dim, g, layout=layout)
    assert table.shape == (g * g, dim)
    torch.testing.assert_close(table, formula(dim, g, layout), atol=1e-6, rtol=0)


def test_mae_first_half_encodes_column_and_cls_is_zero():
    t = sincos_2d(8, 3, cls_token=True)
    assert torch.equal(t[0], torch.zeros(8))
    # tokens 1 and 4 (row 0 col 0, row 1 col 0) share the column half
    assert torch.equal(t[1, :4], t[4, :4]) and not torch.equal(t[1, 4:], t[4, 4:])
    # the two layouts differ by a swap of halves
    assert torch.equal(sincos_2d(8, 3, layout="mocov3"), torch.cat([t[1:, 4:], t[1:, :4]], 1))


def test_dim_must_be_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 3)
