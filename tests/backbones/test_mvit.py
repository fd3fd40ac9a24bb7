"""MViTv2 for clips (SlowFast `video_model_builder.py` MViT, `attention.py`):
the MViTv2-S block schedule (widths, heads, strides, token grids) of the fine-tuning and the
MaskFeat pre-training variants, relative-position table lengths and the decomposed bias by
hand, residual pooling, init, parameter counts, fine-tuning conversion, layer decay, clear
errors. MViTv2-S/L are only built on the meta device (shapes) or read from the schedule; the
forward passes run on the 5-block CPU size."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visrep.backbones import VideoMViT, build_backbone
from visrep.backbones.mvit import (
    MVIT_ARCHS,
    BlockSpec,
    PoolingAttention,
    block_schedule,
    pool_tokens,
    rel_pos_index,
    resize_rel_pos,
)
from visrep.backbones.video_export import backbone_block
from visrep.config import BackboneConfig, DataConfig
from visrep.parts.layer_decay import layer_decay_scale, no_weight_decay_names, vit_layer_id

S_GRID = (8, 56, 56)  # 16 × 224² through the (3, 7, 7) / (2, 4, 4) patch embedding


def tiny(**kw) -> VideoMViT:
    torch.manual_seed(0)
    return VideoMViT("mvitv2_tiny", **({"img_size": 32, "frames": 8} | kw))


def test_mvitv2_s_widths_heads_and_token_grids_per_block():
    sched = block_schedule(MVIT_ARCHS["mvitv2_s"], S_GRID)  # fine-tuning (k400_..._FT.yaml)
    # DIM_MUL_IN_ATT False: the width doubles out of the block *before* each stage start
    assert [(s.dim, s.dim_out) for s in sched] == (
        [(96, 192)] + [(192, 192), (192, 384)] + [(384, 384)] * 10 + [(384, 768)]
        + [(768, 768)] * 2
    )  # fmt: skip
    assert [s.heads for s in sched] == [1, 2, 2] + [4] * 11 + [8, 8]
    assert all(s.dim // s.heads == 96 for s in sched)  # head width constant
    assert [i for i, s in enumerate(sched) if s.stride_q != (1, 1, 1)] == [1, 3, 14]
    assert all(s.stride_q == (1, 2, 2) for s in (sched[1], sched[3], sched[14]))
    # adaptive key/value stride (1, 8, 8) divided by each query stride: keys at 7 × 7
    assert [s.stride_kv for s in sched] == (
        [(1, 8, 8)] + [(1, 4, 4)] * 2 + [(1, 2, 2)] * 11 + [(1, 1, 1)] * 2
    )  # fmt: skip
    # keys at 7 × 7, 14 × 14 in a stage's first block (the stride is divided before it reads)
    assert [s.grid_in[1] // s.stride_kv[1] for s in sched] == [7, 14, 7, 14] + [7] * 10 + [14, 7]
    grids = [s.grid_out for s in sched]
    assert grids[0] == S_GRID and grids[1] == grids[2] == (8, 28, 28)
    assert grids[3] == grids[13] == (8, 14, 14) and grids[14] == grids[15] == (8, 7, 7)


def test_pretraining_variant_keeps_the_last_stage_at_14x14():
    ft = block_schedule(MVIT_ARCHS["mvitv2_s"], S_GRID, last_pool=True)
    pt = block_schedule(MVIT_ARCHS["mvitv2_s"], S_GRID, last_pool=False)
    assert ft[-1].grid_out == (8, 7, 7) and pt[-1].grid_out == (8, 14, 14)
    assert pt[14].stride_q == (1, 1, 1) and pt[14].stride_kv == pt[15].stride_kv == (1, 2, 2)
    assert pt[:14] == ft[:14]  # only the last stage differs
    assert [(s.dim, s.dim_out, s.heads) for s in pt] == [(s.dim, s.dim_out, s.heads) for s in ft]
    with torch.device("meta"):  # shapes only: the networks and their output geometry
        s_pt, s_ft = VideoMViT("mvitv2_s", last_pool=False), VideoMViT("mvitv2_s")
    assert s_pt.out_grid == (8, 14, 14) and s_pt.out_stride == 16 and s_pt.feature_dim == 768
    assert s_ft.out_grid == (8, 7, 7) and s_ft.out_stride == 32 and s_ft.grid == S_GRID
    # every block pools q, k and v with a depthwise 3x3x3 conv (POOL_KVQ_KERNEL), whatever
    # the stride; the block-14 query conv has the same shape in both variants (checkpoints load)
    for a, b in zip(s_pt.blocks, s_ft.blocks):
        for name in ("pool_q", "pool_k", "pool_v"):
            pa, pb = getattr(a.attn, name), getattr(b.attn, name)
            assert pa.weight.shape == pb.weight.shape == (96, 1, 3, 3, 3) and pa.groups == 96
    assert s_pt.blocks[14].attn.pool_q.stride == (1, 1, 1)
    assert s_ft.blocks[14].attn.pool_q.stride == (1, 2, 2)
    assert s_pt.blocks[14].pool_skip is None and s_ft.blocks[14].pool_skip.stride == (1, 2, 2)
    # MViTv2-L pre-training: blocks 2 and 8 pooled, 44 left at 14 × 14 (PRETRAIN_DEPTH [47])
    pt_l = block_schedule(MVIT_ARCHS["mvitv2_l"], S_GRID, last_pool=False)
    assert [i for i, s in enumerate(pt_l) if s.stride_q != (1, 1, 1)] == [2, 8]
    assert len(pt_l) == 48 and pt_l[-1].grid_out == (8, 14, 14) and pt_l[-1].dim_out == 1152


def test_relative_position_table_lengths():
    with torch.device("meta"):
        ft, pt = VideoMViT("mvitv2_s"), VideoMViT("mvitv2_s", last_pool=False)
    # 2·max(q side, kv side) − 1 from each block's input grid; time 2·8 − 1
    expect = [111, 55, 55] + [27] * 12 + [13]
    assert [b.attn.rel_pos_h.shape[0] for b in ft.blocks] == expect
    assert [b.attn.rel_pos_w.shape[0] for b in ft.blocks] == expect
    assert [b.attn.rel_pos_h.shape[0] for b in pt.blocks] == expect[:-1] + [27]  # 27 -> 13 at FT
    assert all(b.attn.rel_pos_t.shape == (15, 96) for b in ft.blocks)


def test_rel_pos_index_measures_offsets_on_the_finer_grid():
    assert rel_pos_index(3, 3).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]
    # 4 queries, 2 keys (a pooled key grid): key j sits at fine position 2j
    assert rel_pos_index(4, 2).tolist() == [[2, 0], [3, 1], [4, 2], [5, 3]]
    assert rel_pos_index(2, 4).tolist() == [[3, 2, 1, 0], [5, 4, 3, 2]]
    assert rel_pos_index(56, 7).max() == 103 < 111 and rel_pos_index(56, 7).min() == 0


def test_attention_logits_are_qk_plus_the_decomposed_bias_by_hand():
    torch.manual_seed(0)
    # 2 heads of 4 dims on a 2 × 4 × 4 grid, keys pooled (1, 2, 2) to 2 × 2 × 2
    spec = BlockSpec(8, 8, 2, (1, 1, 1), (1, 2, 2), (2, 4, 4), (2, 4, 4))
    attn = PoolingAttention(spec)
    assert attn.rel_pos_h.shape == (7, 4) and attn.rel_pos_t.shape == (3, 4)
    for p in (attn.rel_pos_h, attn.rel_pos_w, attn.rel_pos_t):
        nn.init.normal_(p)
    x = torch.randn(1, 1 + 32, 8)
    q, k, _, q_grid, k_grid = attn.pooled_qkv(x, (2, 4, 4))
    assert q_grid == (2, 4, 4) and k_grid == (2, 2, 2) and k.shape == (1, 2, 9, 4)
    logits = attn.scores(q, k, q_grid, k_grid)
    scale = 4**-0.5
    cells_q = [(t, i, j) for t in range(2) for i in range(4) for j in range(4)]
    cells_k = [(t, i, j) for t in range(2) for i in range(2) for j in range(2)]
    for n in range(2):
        for a, (t, i, j) in enumerate(cells_q):
            qa = q[0, n, 1 + a]
            assert torch.allclose(logits[0, n, 1 + a, 0], scale * qa @ k[0, n, 0])  # cls key
            for b, (u, r, c) in enumerate(cells_k):
                # time: same size, offset t − u + 1; space: key r at fine position 2r,
                # offset i − 2r + (2 − 1)·2
                bias = (qa @ attn.rel_pos_t[t - u + 1] + qa @ attn.rel_pos_h[i - 2 * r + 2]
                        + qa @ attn.rel_pos_w[j - 2 * c + 2])  # fmt: skip
                want = scale * qa @ k[0, n, 1 + b] + bias
                torch.testing.assert_close(logits[0, n, 1 + a, 1 + b], want)
        # the cls query gets no bias either
        torch.testing.assert_close(logits[0, n, 0], scale * k[0, n] @ q[0, n, 0])


def test_residual_pooling_adds_the_pooled_query_to_every_token_but_cls():
    torch.manual_seed(0)
    spec = BlockSpec(8, 8, 2, (1, 2, 2), (1, 2, 2), (2, 4, 4), (2, 2, 2))
    attn = PoolingAttention(spec)
    x = torch.randn(3, 1 + 32, 8)
    out, grid = attn(x, (2, 4, 4))
    assert grid == (2, 2, 2) and out.shape == (3, 1 + 8, 8)
    q, k, v, q_grid, k_grid = attn.pooled_qkv(x, (2, 4, 4))
    weights = attn.scores(q, k, q_grid, k_grid).softmax(-1)
    res = weights @ v  # [3, 2, 9, 4]
    res[:, :, 1:] += q[:, :, 1:]  # pooled (and normed) query
    torch.testing.assert_close(out, attn.proj(res.transpose(1, 2).reshape(3, 9, 8)))
    # the query pooling itself: a stride-(1, 2, 2) depthwise conv over the grid, then the norm
    qkv = attn.qkv(x).reshape(3, 33, 3, 2, 4).permute(2, 0, 3, 1, 4)
    vol = qkv[0][:, :, 1:].reshape(6, 2, 4, 4, 4).permute(0, 4, 1, 2, 3)
    pooled = F.conv3d(vol, attn.pool_q.weight, stride=(1, 2, 2), padding=1, groups=4)
    manual = torch.cat([qkv[0][:, :, :1], pooled.reshape(3, 2, 4, 8).transpose(2, 3)], dim=2)
    torch.testing.assert_close(q, attn.norm_q(manual))


def test_block_projects_the_normed_residual_when_the_width_changes_and_pools_it_at_a_stride():
    m = tiny()
    b0, b1 = m.blocks[0], m.blocks[1]  # 32 -> 64 in block 0's MLP; block 1 pools (1, 2, 2)
    assert b0.proj.in_features == 32 and b0.proj.out_features == 64
    assert b0.mlp.fc1.in_features == 32 and b0.mlp.fc2.out_features == 64 and b1.proj is None
    x = torch.randn(2, 1 + 4 * 8 * 8, 32)
    out, grid = b0(x, (4, 8, 8))
    att, _ = b0.attn(b0.norm1(x), (4, 8, 8))
    mid = x + att
    torch.testing.assert_close(out, b0.proj(b0.norm2(mid)) + b0.mlp(b0.norm2(mid)))
    assert b1.pool_skip.kernel_size == (1, 3, 3) and b1.pool_skip.padding == (0, 1, 1)
    y, grid = b1(out, grid)
    assert grid == (4, 4, 4) and y.shape == (2, 1 + 64, 64)
    skip, _ = pool_tokens(out, b1.pool_skip, (4, 8, 8))
    assert torch.equal(skip[:, 0], out[:, 0])  # the cls token bypasses the max pool


def test_forward_grids_features_and_tokens_on_the_cpu_size():
    m = tiny()
    seen = []
    for blk in m.blocks:
        blk.register_forward_hook(lambda mod, args, out: seen.append((out[0].shape, out[1])))
    clip = torch.randn(2, 3, 8, 32, 32)
    assert m(clip).shape == (2, 128) and m.feature_dim == 128 and m.embed_dim == 32
    assert [g for _, g in seen] == [(4, 8, 8), (4, 4, 4), (4, 4, 4), (4, 2, 2), (4, 2, 2)]
    assert [s[-1] for s, _ in seen] == [64, 64, 128, 128, 128]
    assert m.encode(clip).shape == (2, 1 + 16, 128)
    pt = tiny(last_pool=False)
    assert pt.encode(clip).shape == (2, 1 + 64, 128) and pt.out_stride == 8
    token = tiny(pool="token")
    x = token._blocks(clip)
    torch.testing.assert_close(token(clip), token.norm(x[:, 0]))
    torch.testing.assert_close(m(clip), m.norm(m._blocks(clip)[:, 1:].mean(1)))


def test_init_follows_slowfast():
    m = VideoMViT("mvitv2_tiny", img_size=64, frames=8)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    norms = [mod for mod in m.modules() if isinstance(mod, nn.LayerNorm)]
    assert all(torch.all(mod.bias == 0.02) for mod in linears + norms)
    assert all(torch.all(mod.weight == 1) for mod in norms)
    assert not torch.all(m.patch_embed.proj.bias == 0.02)  # conv biases keep PyTorch's default
    # trunc_normal(std 0.02) (its default bounds ±2 are absolute: no visible truncation)
    w = torch.cat([mod.weight.flatten() for mod in linears])
    assert 0.018 < w.std() < 0.022 and w.mean().abs() < 0.002
    for t in (m.cls_token, m.blocks[0].attn.rel_pos_h, m.blocks[2].attn.pool_k.weight,
              m.patch_embed.proj.weight):  # fmt: skip
        assert 0.012 < t.std() < 0.028


def test_parameter_counts_match_the_readme():
    """Counted on the meta device (shapes only): the fine-tuning MViTv2-S with its 768 × 400
    classifier vs the README's 36 M, MViTv2-L vs 218 M."""
    with torch.device("meta"):
        s, big = VideoMViT("mvitv2_s"), VideoMViT("mvitv2_l")
    n_s = sum(p.numel() for p in s.parameters()) + 768 * 400 + 400
    n_l = sum(p.numel() for p in big.parameters()) + big.feature_dim * 400 + 400
    assert n_s == 36_475_120 and round(n_s / 1e6) == 36
    assert round(n_l / 1e6) == 218


def test_finetuning_trunk_restores_the_last_pooling_and_interpolates_changed_tables():
    pt = tiny(last_pool=False, img_size=64)
    ft = pt.finetuning_trunk(0.2)
    assert pt.out_grid == (4, 8, 8) and ft.out_grid == (4, 4, 4) and ft.last_pool
    a, b = pt.state_dict(), ft.state_dict()
    assert a.keys() == b.keys()
    changed = {k for k in a if a[k].shape != b[k].shape}
    # the block after the last stage start (MViTv2-S: block 15, 27 -> 13 rows)
    assert changed == {"blocks.4.attn.rel_pos_h", "blocks.4.attn.rel_pos_w"}
    assert all(torch.equal(a[k], b[k]) for k in a if k not in changed)
    old, new = a["blocks.4.attn.rel_pos_h"], b["blocks.4.attn.rel_pos_h"]
    assert old.shape[0] == 15 and new.shape[0] == 7
    torch.testing.assert_close(new, resize_rel_pos(old, 7))
    rates = [getattr(blk.drop_path, "drop_prob", 0.0) for blk in ft.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.2, 5).tolist())
    assert ft(torch.randn(1, 3, 8, 64, 64)).shape == (1, 128)
    # linear resampling (align_corners False) of a ramp samples it at (i + ½)·L/L' − ½
    ramp = torch.arange(27.0)[:, None].repeat(1, 3)
    want = (torch.arange(13.0) + 0.5) * 27 / 13 - 0.5
    torch.testing.assert_close(resize_rel_pos(ramp, 13), want[:, None].repeat(1, 3))


def test_layer_decay_ids_and_weight_decay_names():
    m = tiny()
    assert no_weight_decay_names(m) == set()  # SlowFast ZERO_DECAY_POS_CLS False
    depth = len(m.blocks)
    assert vit_layer_id("cls_token", depth) == vit_layer_id("patch_embed.proj.weight", depth) == 0
    assert vit_layer_id("blocks.2.attn.rel_pos_t", depth) == 3
    assert vit_layer_id("norm.bias", depth) == depth + 1 == 6
    scale = layer_decay_scale(m, 0.75)  # 0.75^(depth + 1 − id)
    assert scale("cls_token") == scale("patch_embed.proj.bias") == pytest.approx(0.75**6)
    assert scale("blocks.0.attn.qkv.weight") == pytest.approx(0.75**5)
    assert scale("blocks.4.mlp.fc2.weight") == pytest.approx(0.75) and scale("norm.weight") == 1


def test_build_backbone_and_clear_errors():
    data = DataConfig(img_size=32, frames=8, channels=3)
    m = build_backbone(BackboneConfig("mvitv2_tiny", pool="avg", mvit_last_pool=False), data)
    assert isinstance(m, VideoMViT) and m.out_grid == (4, 4, 4) and not m.last_pool
    with pytest.raises(ValueError, match="video backbone.*set data.frames"):
        build_backbone(BackboneConfig("mvitv2_s"), DataConfig(img_size=32))
    with pytest.raises(ValueError, match="backbone.depth"):
        build_backbone(BackboneConfig("mvitv2_tiny", depth=2), data)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_backbone(BackboneConfig("mvitv2_s"), DataConfig(img_size=48, frames=8))
    with pytest.raises(ValueError, match="frames must be even"):
        build_backbone(BackboneConfig("mvitv2_tiny"), DataConfig(img_size=32, frames=5))
    with pytest.raises(ValueError, match=r"expects clips \[B, 3, 8, 32, 32\]"):
        m(torch.randn(1, 3, 8, 64, 64))
    fmt, key, block = backbone_block(m)  # visrep's MViTv2 export layout
    assert (fmt, key, block["last_pool"], block["out_grid"]) == (
        "visrep-video-mvit", "video_mvit", False, [4, 4, 4])  # fmt: skip
    assert math.prod(m.grid) == m.num_patches == 4 * 8 * 8
