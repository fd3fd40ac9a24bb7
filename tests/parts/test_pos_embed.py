import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from visrep.parts.pos_embed import interpolate_pos_embed, sincos_2d


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


def mae_resize(table, old, new, prefix):
    """MAE's `util/pos_embed.py` rule: prefix rows kept, grid resized bicubically with
    align_corners=False and no antialias."""
    grid = table[:, prefix:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return torch.cat([table[:, :prefix], grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("new", [8, 3, (6, 4), (4, 5)])
def test_interpolate_pos_embed_is_maes_bicubic_resize(prefix, new):
    torch.manual_seed(0)
    table = torch.randn(1, prefix + 16, 32)  # a 4x4 grid
    size = (new, new) if isinstance(new, int) else new
    out = interpolate_pos_embed(table, new, prefix)
    assert out.shape == (1, prefix + size[0] * size[1], 32)
    assert torch.equal(out, mae_resize(table, 4, size, prefix))
    assert torch.equal(out[:, :prefix], table[:, :prefix])


def test_interpolate_pos_embed_keeps_a_same_size_table_and_needs_a_square_grid():
    table = torch.randn(1, 1 + 16, 8)
    assert interpolate_pos_embed(table, 4) is table
    assert interpolate_pos_embed(table, (4, 4)) is table
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(torch.randn(1, 1 + 12, 8), 4)


def test_timms_default_antialias_would_differ_even_when_upsampling():
    """Why antialias=False is passed: timm's default antialiased bicubic uses PIL's kernel
    (a = -0.5), not PyTorch's (a = -0.75) that MAE's resize uses."""
    torch.manual_seed(0)
    table = torch.randn(1, 1 + 16, 32)
    timm_default = resample_abs_pos_embed(table, [8, 8], num_prefix_tokens=1)
    assert not torch.allclose(timm_default, interpolate_pos_embed(table, 8), atol=1e-3)
