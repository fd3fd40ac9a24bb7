"""The masked-dense ConvNeXt equals a sparse computation on visible sites (ConvNeXt-V2
`TRAINING.md`, "Implementing FCMAE with Masked Convolution in JAX").

The reference below never builds a dense feature map after the stem: it keeps a list of
active sites (batch, row, column) with their feature vectors, as MinkowskiEngine does,
and implements each layer from its formula: submanifold depthwise conv (outputs at active
sites, inputs from active sites), per-site LayerNorm / Linear / GELU, GRN pooled over a
sample's sites (or all sites of the batch, as `MinkowskiGRN`), 2×2 stride-2 conv onto the coarser
active set. Only the parameters are taken from the timm model.
"""

import pytest
import torch
import torch.nn.functional as F
from timm.layers.grn import GlobalResponseNorm
from timm.models.convnext import ConvNeXt

from visrep.parts.sparse import SparseConvNeXt, upsample_mask


def tiny_convnext(conv_mlp: bool, patch_size: int, use_grn: bool = True) -> ConvNeXt:
    torch.manual_seed(0)
    ls = None if use_grn else 0.5  # V2 blocks have no layer scale; V1 blocks do
    model = ConvNeXt(in_chans=3, num_classes=0, depths=(1, 1, 2, 1), dims=(8, 16, 24, 32),
                     patch_size=patch_size, use_grn=use_grn, ls_init_value=ls,
                     conv_mlp=conv_mlp)  # fmt: skip
    with torch.no_grad():  # O(1) branches, GRN, norm affines and biases: a leak would show
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0, 1.5 / p[0].numel() ** 0.5)
            else:
                p.add_(torch.randn_like(p) * (2.0 if "grn" in name else 0.5))
    return model.eval()


def linear(module, x):  # a 1×1 Conv2d or a Linear on per-site features [S, C_in]
    return F.linear(x, module.weight.reshape(module.weight.shape[0], -1), module.bias)


def layer_norm(norm, x):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def lookup(coords, shape):
    """Dense index grid (-1 = inactive) over [N, H, W] for neighbour search."""
    table = torch.full(shape, -1, dtype=torch.long)
    table[coords[:, 0], coords[:, 1], coords[:, 2]] = torch.arange(len(coords))
    return table


def sparse_dwconv(conv, coords, x, shape):
    k = conv.weight.shape[-1]
    r = k // 2
    n, h, w = shape
    table = F.pad(lookup(coords, shape), (r, r, r, r), value=-1)
    out = conv.bias.expand(len(coords), -1).clone()
    for u in range(k):
        for v in range(k):
            nb = table[coords[:, 0], coords[:, 1] + u, coords[:, 2] + v]  # site at offset
            hit = nb >= 0
            out[hit] += x[nb[hit]] * conv.weight[:, 0, u, v]
    return out


def sparse_grn(grn, coords, x, stats):
    groups = [torch.ones(len(x), dtype=torch.bool)] if stats == "batch" else [
        coords[:, 0] == i for i in coords[:, 0].unique()]  # fmt: skip
    out = torch.empty_like(x)
    for sel in groups:
        g = x[sel].norm(dim=0)  # L2 over this group's active sites, per channel
        nx = g / (g.mean() + grn.eps)
        out[sel] = grn.weight * (x[sel] * nx) + grn.bias + x[sel]
    return out


def sparse_downsample(ds, coords, x, shape):
    norm, conv = ds[0], ds[1]
    x = layer_norm(norm, x)
    table = lookup(coords, shape)
    out_coords = torch.unique(
        torch.stack([coords[:, 0], coords[:, 1] // 2, coords[:, 2] // 2], 1), dim=0
    )
    out = conv.bias.expand(len(out_coords), -1).clone()
    for u in range(2):
        for v in range(2):
            nb = table[out_coords[:, 0], 2 * out_coords[:, 1] + u, 2 * out_coords[:, 2] + v]
            hit = nb >= 0
            out[hit] += x[nb[hit]] @ conv.weight[:, :, u, v].T
    return out_coords, out, (shape[0], shape[1] // 2, shape[2] // 2)


def sparse_block(block, coords, x, shape, stats):
    y = sparse_dwconv(block.conv_dw, coords, x, shape)
    y = layer_norm(block.norm, y)
    y = F.gelu(linear(block.mlp.fc1, y))
    if hasattr(block.mlp, "grn"):
        y = sparse_grn(block.mlp.grn, coords, y, stats)
    y = linear(block.mlp.fc2, y)
    if block.gamma is not None:
        y = y * block.gamma
    return x + y


@torch.no_grad()
def sparse_reference(model, images, mask, stats="sample"):
    """Sparse ConvNeXt on visible sites; densified [N, D, gh, gw] (zeros where removed)."""
    x = model.stem(images)  # the official encoder runs the stem densely, then sparsifies
    n, _, h, w = x.shape
    shape = (n, h, w)
    coords = (upsample_mask(1 - mask, (h, w)) > 0).nonzero()  # [S, 3] (n, i, j)
    feats = x[coords[:, 0], :, coords[:, 1], coords[:, 2]]  # [S, C]
    for stage in model.stages:
        if isinstance(stage.downsample, torch.nn.Sequential):
            coords, feats, shape = sparse_downsample(stage.downsample, coords, feats, shape)
        for block in stage.blocks:
            feats = sparse_block(block, coords, feats, shape, stats)
    dense = feats.new_zeros(shape[0], feats.shape[1], shape[1], shape[2])
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2]] = feats
    return dense


def random_mask(n, grid, keep, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, grid * grid, generator=g)
    mask = torch.ones(n, grid * grid)
    mask.scatter_(1, noise.argsort(1)[:, :keep], 0.0)
    return mask.view(n, grid, grid)


CASES = [  # (conv_mlp, patch_size, image px): atto-style 1×1 convs and tiny+-style Linears
    (True, 4, 64),  # stride 32: 2×2 grid
    (False, 4, 64),
    (True, 1, 32),  # stride-1 stem, stride 8 (fcmae_fmnist): 4×4 grid, no stage-0 downsample
    (False, 2, 64),  # stride-2 stem: stage 0 downsamples too
]


@pytest.mark.parametrize(("conv_mlp", "patch", "px"), CASES)
@pytest.mark.parametrize("stats", ["sample", "batch"])
def test_masked_dense_encoder_equals_sparse_reference(conv_mlp, patch, px, stats):
    model = tiny_convnext(conv_mlp, patch)
    enc = SparseConvNeXt(model, grn_stats=stats)
    grid = px // enc.stride
    images = torch.randn(3, 3, px, px)
    mask = random_mask(3, grid, keep=max(1, grid * grid * 2 // 5))
    with torch.no_grad():
        dense = enc(images, mask)
    ref = sparse_reference(model, images, mask, stats)
    assert dense.shape == ref.shape == (3, 32, grid, grid)
    torch.testing.assert_close(dense, ref, rtol=1e-4, atol=1e-4)


def test_v1_blocks_without_grn_equal_sparse_reference():
    model = tiny_convnext(True, 4, use_grn=False)
    enc = SparseConvNeXt(model)
    images, mask = torch.randn(2, 3, 64, 64), random_mask(2, 2, keep=2)
    with torch.no_grad():
        torch.testing.assert_close(enc(images, mask), sparse_reference(model, images, mask))


def test_one_block_visible_outputs_do_not_depend_on_masked_pixels():
    """A 1-block case: scrambling the pixels of removed cells changes nothing."""
    model = tiny_convnext(False, 1)
    enc = SparseConvNeXt(model)
    images = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 4, keep=6, seed=1)
    scrambled = torch.where(upsample_mask(mask, (32, 32)).unsqueeze(1) > 0, 100.0, images)
    with torch.no_grad(), enc.masking(mask):
        a = model.stages[0].blocks[0](model.stem(images))
        b = model.stages[0].blocks[0](model.stem(scrambled))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_masked_positions_stay_exactly_zero():
    model = tiny_convnext(True, 1)
    enc = SparseConvNeXt(model)
    mask = random_mask(2, 4, keep=6)
    seen = []
    for stage in model.stages:
        for block in stage.blocks:
            block.register_forward_hook(lambda m, i, o: seen.append(o))
            block.conv_dw.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        enc(torch.randn(2, 3, 32, 32), mask)
    assert len(seen) == 2 * 5
    for out in seen:
        removed = upsample_mask(mask, out.shape[-2:]).unsqueeze(1).expand_as(out) > 0
        assert torch.all(out[removed] == 0)
        assert torch.all(out[~removed] != 0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_grn_statistics_over_visible_positions_equal_grn_on_gathered_sites(channels_last):
    model = tiny_convnext(not channels_last, 1)
    enc = SparseConvNeXt(model)
    grn = model.stages[0].blocks[0].mlp.grn
    assert isinstance(grn, GlobalResponseNorm) and (grn.channel_dim == -1) == channels_last
    mask = random_mask(2, 4, keep=6)
    x = torch.randn(2, 32, 32, 32) + 1.0  # [N, H, W, C] or [N, C, H, W]
    with torch.no_grad(), enc.masking(mask):
        out = grn(x)
    vis = upsample_mask(1 - mask, (32, 32)) > 0
    for i in range(2):
        if channels_last:
            sites = x[i][vis[i]]  # [S, C]
            ref = grn(sites[None, None])[0, 0]  # plain timm GRN on the gathered visible sites
            torch.testing.assert_close(out[i][vis[i]], ref)
        else:
            sites = x[i][:, vis[i]]  # [C, S]
            ref = grn(sites[None, :, None])[0, :, 0]
            torch.testing.assert_close(out[i][:, vis[i]], ref)


def test_without_a_mask_the_model_is_plain_timm():
    model = tiny_convnext(True, 4)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        enc = SparseConvNeXt(model, grn_stats="batch")
        with enc.masking(random_mask(2, 2, keep=1)):
            pass
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        enc.remove()
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_bad_sizes_raise_clear_errors():
    enc = SparseConvNeXt(tiny_convnext(True, 4))
    with pytest.raises(ValueError, match="multiple of the encoder's total stride 32"):
        enc(torch.randn(1, 3, 48, 48), torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match="mask must be"):
        enc(torch.randn(1, 3, 64, 64), torch.zeros(1, 3, 3))
