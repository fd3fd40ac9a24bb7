"""Long-sequence MAE masking (long_seq_mae `util/long_seq_patch_loader.py`) and MAE with
`mask_unit` > 1."""

import pytest
import torch

from visrep.backbones import ViT
from visrep.methods.mae import MAE, MAEConfig
from visrep.parts.masking import (
    random_masking,
    unit_anchors,
    unit_masking,
    unit_order,
    unit_shuffle,
)
from visrep.parts.patches import patchify


def reference_shuffle(perm: list[int], grid: tuple[int, int], k: int) -> list[int]:
    """The official loader's expansion written as plain loops: for each unit in `perm`, its
    patches with column offset outer, row offset inner; out-of-grid patches dropped."""
    gh, gw = grid
    uw = -(-gw // k)
    out = []
    for u in perm:
        y0, x0 = u // uw * k, u % uw * k
        for rx in range(k):
            for ry in range(k):
                if y0 + ry < gh and x0 + rx < gw:
                    out.append((y0 + ry) * gw + x0 + rx)
    return out


def test_golden_ids_shuffle_4x4_grid_unit_2():
    # units on the 2×2 unit grid: 0 = rows 0-1/cols 0-1, 1 = rows 0-1/cols 2-3,
    # 2 = rows 2-3/cols 0-1, 3 = rows 2-3/cols 2-3; inside a unit (0,0),(1,0),(0,1),(1,1)
    m = unit_masking(1, (4, 4), 2, 0.75, perm=torch.tensor([[3, 0, 2, 1]]))
    golden = [10, 14, 11, 15, 0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7]
    assert torch.argsort(m.ids_restore, dim=1).tolist() == [golden]
    assert m.ids_keep.tolist() == [[10, 14, 11, 15]]  # int(16 · 0.25) = 4: unit 3
    assert m.mask.view(4, 4).tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert unit_order(2) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert unit_order(3)[:4] == [(0, 0), (1, 0), (2, 0), (0, 1)]


def test_kept_tokens_are_whole_units_and_restore_inverts_shuffle():
    torch.manual_seed(0)
    grid, k = (8, 8), 2
    m = unit_masking(16, grid, k, 0.75)
    ids_shuffle = torch.argsort(m.ids_restore, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, m.ids_restore), torch.arange(64).expand(16, -1))
    assert m.ids_keep.shape == (16, 16) and (m.mask.sum(1) == 48).all()
    for i in range(16):
        units = {(j // 8 // k, j % 8 // k) for j in m.ids_keep[i].tolist()}
        assert len(units) == 4  # 16 kept patches = 4 whole 2×2 units
        mask = m.mask[i].view(8, 8)
        blocks = mask.view(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(16, 4)
        assert ((blocks == 0).all(1) | (blocks == 1).all(1)).all()  # no unit is split


@pytest.mark.parametrize("grid", [(3, 3), (5, 7), (7, 7)])
def test_non_divisible_grid_drops_out_of_range_patches(grid):
    g = torch.Generator().manual_seed(1)
    uh, uw = -(-grid[0] // 2), -(-grid[1] // 2)
    perm = torch.stack([torch.randperm(uh * uw, generator=g) for _ in range(3)])
    ids = unit_shuffle(perm, grid, 2)
    for row, p in zip(ids.tolist(), perm.tolist()):
        assert row == reference_shuffle(p, grid, 2)
        assert sorted(row) == list(range(grid[0] * grid[1]))  # still a permutation
    # hand-traced 3×3: units 0 = {0,3,1,4}, 1 = {2,5}, 2 = {6,7}, 3 = {8}
    assert unit_shuffle(torch.tensor([[3, 1, 0, 2]]), (3, 3), 2).tolist() == [
        [8, 2, 5, 0, 3, 1, 4, 6, 7]
    ]
    m = unit_masking(3, grid, 2, 0.75, perm=perm)
    assert m.ids_keep.shape[1] == int(grid[0] * grid[1] * 0.25)


def test_unit_1_is_standard_masking_with_the_same_permutation():
    noise = torch.rand(4, 49)
    ours = unit_masking(4, (7, 7), 1, 0.75, perm=noise.argsort(dim=1))
    ref = random_masking(4, 49, 0.75, noise=noise)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


def test_default_draw_is_injectable():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = unit_masking(2, (6, 6), 2, 0.75, generator=g1)
    b = unit_masking(2, (6, 6), 2, 0.75, perm=torch.rand(2, 9, generator=g2).argsort(1))
    assert torch.equal(a.ids_restore, b.ids_restore)
    with pytest.raises(ValueError, match="perm must have shape"):
        unit_masking(2, (6, 6), 2, 0.75, perm=torch.arange(36).expand(2, -1))
    with pytest.raises(ValueError, match="mask unit"):
        unit_masking(2, (6, 6), 0, 0.75)


def tiny_mae(**kw) -> MAE:
    torch.manual_seed(0)
    cfg = MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2, **kw)
    return MAE(cfg, ViT("vit_tiny", img_size=32, patch_size=4, in_chans=1, depth=1))


def test_mae_with_unit_2_loss_from_the_formula():
    model = tiny_mae(mask_unit=2)
    x = torch.randn(2, 1, 32, 32)
    perm = torch.stack([torch.randperm(16), torch.randperm(16)])  # 4×4 units on the 8×8 grid
    out = model({"images": x}, masking=unit_masking(2, (8, 8), 2, 0.75, perm=perm))
    # the same model fed the official loader's (ids_keep, ids_restore), built by hand
    ids_shuffle = torch.tensor([reference_shuffle(p, (8, 8), 2) for p in perm.tolist()])
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(2, 64)
    mask[:, :16] = 0
    mask = torch.gather(mask, 1, ids_restore)
    pred = model.decode(model.backbone.encode(x, ids_shuffle[:, :16]), ids_restore)
    target = patchify(x, 4)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    expected = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(out["loss"], expected)
    assert torch.equal(out["mask"], mask)
    # noise [N, L] (MAE's shape): units rank by their top-left patch's noise
    anchors = unit_anchors((8, 8), 2)
    assert anchors.tolist() == [0, 2, 4, 6, 16, 18, 20, 22, 32, 34, 36, 38, 48, 50, 52, 54]
    noise = torch.rand(2, 64)
    noise[:, anchors] = torch.argsort(perm, dim=1).float() / 16  # argsort = perm
    torch.testing.assert_close(model({"images": x}, noise=noise)["loss"], expected)
    torch.manual_seed(7)
    drawn = model({"images": x})["mask"]
    torch.manual_seed(7)
    assert torch.equal(drawn, model({"images": x}, noise=torch.rand(2, 64))["mask"])


def test_mae_mask_unit_1_unchanged():
    x, noise = torch.randn(2, 1, 32, 32), torch.rand(2, 64)
    a = tiny_mae()({"images": x}, noise=noise)["loss"]
    b = tiny_mae(mask_unit=1)({"images": x}, noise=noise)["loss"]
    assert torch.equal(a, b)


def test_no_k_bias_stays_zero_through_adamw():
    model = tiny_mae(no_k_bias_in_vit=True, mask_unit=2)
    qkvs = [m.qkv for m in model.modules() if hasattr(m, "qkv")]
    assert len(qkvs) == 2  # one encoder block, one decoder block
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    for _ in range(2):
        for q in qkvs:  # a k bias would be a constant shift of each query's logits
            with torch.no_grad():
                q.bias.add_(0.1)
                q.bias[q.out_features // 3 : 2 * q.out_features // 3] = 0
        model({"images": torch.randn(2, 1, 32, 32)})["loss"].backward()
        for q in qkvs:
            d = q.out_features // 3
            assert q.bias.grad[d : 2 * d].abs().max() == 0 and q.bias.grad[:d].abs().max() > 0
        opt.step()
        opt.zero_grad()
    for q in qkvs:
        d = q.out_features // 3
        assert q.bias[d : 2 * d].abs().max() == 0 and q.bias[2 * d :].abs().max() > 0
