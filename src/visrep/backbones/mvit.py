"""MViTv2 for clips: the backbone of video MaskFeat's released recipes.

Li, Wu, Fan, Mangalam, Xiong, Malik, Feichtenhofer, "MViTv2: Improved Multiscale Vision
Transformers for Classification and Detection", CVPR 2022 (Sec. 3: pooling attention,
decomposed relative positions, residual pooling); facebookresearch/SlowFast
`slowfast/models/video_model_builder.py` (`MViT`, `_init_weights`),
`slowfast/models/attention.py` (`MultiScaleBlock`, `MultiScaleAttention`, `attention_pool`,
`cal_rel_pos_spatial`, `cal_rel_pos_temporal`), configs
`configs/masked_ssl/k400_MVITv2_{S,L}_16x4_{MaskFeat_PT,FT}.yaml`.

- Patch embedding: Conv3d(C → D, kernel (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3)):
  a 16 × 224² clip gives an 8 × 56 × 56 token grid, flattened (t, h, w); a cls token first.
  No absolute position table (`USE_ABS_POS: False`).
- Blocks (pre-norm, LayerNorm eps 1e-6, MLP ratio 4, GELU, qkv bias): at each stage start
  (`MViTArch.stages`) the heads double and the query is pooled with stride (1, 2, 2). With
  `DIM_MUL_IN_ATT: False` the width doubles one block *earlier*, in the MLP of the block before
  the stage start, whose residual is then a Linear projection of its normed input
  (`MultiScaleBlock.forward`). MViTv2-S: widths 96 → 192 (out of block 0) → 384 (out of 2)
  → 768 (out of 13); heads 1, 2 (blocks 1-2), 4 (3-13), 8 (14-15); head width always 96.
- Pooling attention ("conv" mode): q, k and v each go through a depthwise Conv3d (kernel
  3 × 3 × 3, shared across heads, no bias) and a LayerNorm over the head width, the cls
  token bypassing the convolution but not the norm. Every block pools all three (the
  configs list a query stride for every block and set `POOL_KVQ_KERNEL: [3, 3, 3]`): the
  query with stride (1, 1, 1) except at a stage start; key/value with the adaptive stride
  (1, 8, 8) divided by every query stride so far (`POOL_KV_STRIDE_ADAPTIVE`), so keys are
  7 × 7 per frame at 224 px (14 × 14 in a stage's first block, which reads the finer grid).
  The residual of a block whose query is strided is max-pooled (kernel s + 1, stride s, cls
  untouched).
- Decomposed relative positions: attention logits (q·k)/√d get q·R_t[Δt] + q·R_h[Δh] +
  q·R_w[Δw] added (q unscaled, cls rows and columns get nothing), with Δ the offset of a
  query and a key cell measured on the finer of the two grids; tables of 2·max(q, kv) − 1
  rows per spatial axis and 2·T − 1 in time (`rel_pos_h`, `rel_pos_w`, `rel_pos_t`).
- Residual pooling: the attention output of every non-cls token gets its pooled query added
  before the output projection.
- Features (`forward`): "avg" = LayerNorm of the mean of the last block's non-cls tokens
  (SlowFast `USE_MEAN_POOLING`, the fine-tuning configs); "token" = the normed cls token.
- Init (`_init_weights`): Linear and Conv weights trunc_normal(0.02), Linear and LayerNorm
  biases 0.02 (sic), conv biases PyTorch's default; cls token and tables trunc_normal(0.02); the
  biases are 0.02 in SlowFast at commit ad73dcf and 0 at adc55ca (a version with the
  masked_ssl configs): which one trained the released MaskFeat models is not known.

The pre-training variant (`last_pool=False`, MaskFeat's `k400_MVITv2_*_MaskFeat_PT.yaml`:
"[14, 1, 1, 1] instead of [14, 1, 2, 2] for 14x14 output") keeps the query stride of the
last stage start at (1, 1, 1), so MViTv2-S ends at 8 × 14 × 14 (stride 16 px) instead of
8 × 7 × 7. `finetuning_trunk` turns it back into the fine-tuning network: the same tensors
but for relative-position tables whose length changed (block 15 of MViTv2-S: 27 → 13 rows),
linearly interpolated, as SlowFast's attention resamples a table of another length at run
time (`attention.py` `get_rel_pos`). SlowFast's `utils/checkpoint.py` as read here (commit
058922e) loads only tensors whose shape matches, which would leave those tables at their
init; whether the released fine-tuning used a loader that interpolates is not known.

State-dict names are SlowFast's (`patch_embed.proj`, `cls_token`, `blocks.{i}.{norm1,
attn.{qkv, proj, pool_q, norm_q, pool_k, norm_k, pool_v, norm_v, rel_pos_h, rel_pos_w,
rel_pos_t}, norm2, mlp.{fc1, fc2}, proj}`, `norm`), without the classifier head (not
checked against a released checkpoint: none can be fetched here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from visrep.parts.masking import replace_masked

Grid = tuple[int, int, int]  # (t, h, w) token grid

PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING = (3, 7, 7), (2, 4, 4), (1, 3, 3)
POOL_KERNEL = (3, 3, 3)  # POOL_KVQ_KERNEL
STAGE_STRIDE = (1, 2, 2)  # the query stride at a stage start


@dataclass(frozen=True)
class MViTArch:
    """One MViTv2 size: first-stage width and heads, depth, the blocks that start a stage
    (heads ×2, query stride (1, 2, 2); the width doubles in the block before) and the
    adaptive key/value stride at the first block."""

    dim: int
    heads: int
    depth: int
    stages: tuple[int, ...]
    kv_stride: Grid = (1, 8, 8)


MVIT_ARCHS: dict[str, MViTArch] = {
    # CPU size (tests, Moving Fashion-MNIST at 64 px), MViTv2-S's layout in 5 blocks: 16 × 16
    # tokens per frame -> 8 × 8 -> 4 × 4 (fine-tuning) or 8 × 8 (pre-training); keys at 4 × 4
    "mvitv2_tiny": MViTArch(dim=32, heads=1, depth=5, stages=(1, 3), kv_stride=(1, 4, 4)),
    # k400_MVITv2_S_16x4_{MaskFeat_PT,FT}.yaml
    "mvitv2_s": MViTArch(dim=96, heads=1, depth=16, stages=(1, 3, 14)),
    # k400_MVITv2_L_16x4_{MaskFeat_PT,FT}.yaml
    "mvitv2_l": MViTArch(dim=144, heads=2, depth=48, stages=(2, 8, 44)),
}


@dataclass(frozen=True)
class BlockSpec:
    """One block's shape: input and output width, heads, query and key/value strides, and
    the token grid it reads and the one it writes."""

    dim: int
    dim_out: int
    heads: int
    stride_q: Grid
    stride_kv: Grid
    grid_in: Grid
    grid_out: Grid

    @property
    def rel_pos_lengths(self) -> tuple[int, int]:
        """(spatial, temporal) table rows, as SlowFast sizes them from the block's input:
        2·max(h // s_q, h // s_kv) − 1 and 2·t − 1."""
        t, h, _ = self.grid_in
        q, kv = h // self.stride_q[1], h // self.stride_kv[1]
        return 2 * max(q, kv) - 1, 2 * t - 1


def block_schedule(arch: MViTArch, grid: Grid, last_pool: bool = True) -> list[BlockSpec]:
    """Every block's shape for a patch grid `grid` (SlowFast `MViT.__init__` with
    DIM_MUL_IN_ATT False and POOL_KV_STRIDE_ADAPTIVE). `last_pool=False` leaves the last
    stage start unpooled (MaskFeat pre-training)."""
    pooled = set(arch.stages if last_pool else arch.stages[:-1])
    dim, heads, kv, specs = arch.dim, arch.heads, arch.kv_stride, []
    for i in range(arch.depth):
        heads = heads * 2 if i in arch.stages else heads
        dim_out = dim * 2 if i + 1 in arch.stages else dim
        stride_q = STAGE_STRIDE if i in pooled else (1, 1, 1)
        kv = tuple(max(k // s, 1) for k, s in zip(kv, stride_q))
        out = tuple(g // s for g, s in zip(grid, stride_q))
        specs.append(BlockSpec(dim, dim_out, heads, stride_q, kv, grid, out))
        grid, dim = out, dim_out
    return specs


def pool_tokens(
    x: Tensor, pool: nn.Module, grid: Grid, norm: nn.Module | None = None
) -> tuple[Tensor, Grid]:
    """SlowFast `attention_pool`: [B, (heads,) 1+L, C] -> the cls token kept aside, the
    L = t·h·w tokens pooled as a [t, h, w] volume, then `norm` over all (cls included);
    returns the tokens and their new grid."""
    squeeze = x.ndim == 3
    x = x.unsqueeze(1) if squeeze else x  # [B, n, 1+L, C]
    cls, tok = x[:, :, :1], x[:, :, 1:]
    b, n, _, c = tok.shape
    vol = tok.reshape(b * n, *grid, c).permute(0, 4, 1, 2, 3)  # [B·n, C, t, h, w]
    vol = pool(vol)
    grid = tuple(vol.shape[2:])
    tok = vol.reshape(b, n, c, -1).transpose(2, 3)  # [B, n, L', C]
    x = torch.cat([cls, tok], dim=2)
    x = norm(x) if norm is not None else x
    return (x.squeeze(1) if squeeze else x), grid


def rel_pos_index(q_size: int, k_size: int, device: torch.device | None = None) -> Tensor:
    """Table row of each (query, key) offset along one axis, [q, k]: offsets measured on the
    finer grid (SlowFast `cal_rel_pos_spatial`: a coarse side's index is scaled up by the
    size ratio), shifted to start at 0. Made on `device` (no host-to-GPU copy per step)."""
    q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size, device=device)[:, None] * q_ratio
    dist = q_pos - torch.arange(k_size, device=device)[None, :] * k_ratio
    return (dist + (k_size - 1) * k_ratio).long()


def rel_pos_bias(
    q: Tensor, q_grid: Grid, k_grid: Grid, tables: tuple[Tensor, Tensor, Tensor]
) -> Tensor:
    """Decomposed relative-position bias [B, n, Lq, Lk] of the non-cls queries q
    [B, n, Lq, d] (unscaled): bias[(t, i, j), (t', i', j')] = q·R_t[Δt] + q·R_h[Δi] + q·R_w[Δj]
    (MViTv2 Eq. 4; SlowFast `cal_rel_pos_spatial` + `cal_rel_pos_temporal`); `tables` =
    (rel_pos_t, rel_pos_h, rel_pos_w)."""
    b, n, _, d = q.shape
    r = q.reshape(b, n, *q_grid, d)
    per_axis = []
    for axis, (table, qs, ks) in enumerate(zip(tables, q_grid, k_grid)):
        if table.shape[0] != 2 * max(qs, ks) - 1:
            raise ValueError(f"relative-position table of {table.shape[0]} rows for a {qs}-query"
                             f" {ks}-key axis: the clip does not match the network's size")  # fmt: skip
        rows = table[rel_pos_index(qs, ks, table.device)]  # [qs, ks, d]
        spec = ("bnthwd,tkd->bnthwk", "bnthwd,hkd->bnthwk", "bnthwd,wkd->bnthwk")[axis]
        per_axis.append(torch.einsum(spec, r, rows))
    bt, bh, bw = per_axis  # [B, n, qt, qh, qw, k_axis]
    bias = bt[..., :, None, None] + bh[..., None, :, None] + bw[..., None, None, :]
    return bias.reshape(b, n, math.prod(q_grid), math.prod(k_grid))


class PoolingAttention(nn.Module):
    """MViTv2 multi-head pooling attention with decomposed relative positions and residual
    pooling (module docstring); `forward(x [B, 1+L, C], grid) -> ([B, 1+L', C], grid')`."""

    def __init__(self, spec: BlockSpec, qkv_bias: bool = True) -> None:
        super().__init__()
        dim, self.heads = spec.dim, spec.heads
        if dim % spec.heads:
            raise ValueError(f"width {dim} does not split into {spec.heads} heads")
        hd = dim // spec.heads
        self.scale = hd**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        pad = tuple(k // 2 for k in POOL_KERNEL)
        for name, stride in (("q", spec.stride_q), ("k", spec.stride_kv), ("v", spec.stride_kv)):
            self.add_module(f"pool_{name}", nn.Conv3d(hd, hd, POOL_KERNEL, stride, pad,
                                                      groups=hd, bias=False))  # fmt: skip
            self.add_module(f"norm_{name}", _ln(hd))
        spatial, temporal = spec.rel_pos_lengths
        self.rel_pos_h = nn.Parameter(torch.zeros(spatial, hd))
        self.rel_pos_w = nn.Parameter(torch.zeros(spatial, hd))
        self.rel_pos_t = nn.Parameter(torch.zeros(temporal, hd))

    def pooled_qkv(self, x: Tensor, grid: Grid) -> tuple[Tensor, Tensor, Tensor, Grid, Grid]:
        """q, k, v [B, n, 1+L_*, d] after projection, pooling and norm; the q and k grids."""
        b, n_tok, _ = x.shape
        qkv = self.qkv(x).reshape(b, n_tok, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, q_grid = pool_tokens(qkv[0], self.pool_q, grid, self.norm_q)
        k, k_grid = pool_tokens(qkv[1], self.pool_k, grid, self.norm_k)
        v, _ = pool_tokens(qkv[2], self.pool_v, grid, self.norm_v)
        return q, k, v, q_grid, k_grid

    def scores(self, q: Tensor, k: Tensor, q_grid: Grid, k_grid: Grid) -> Tensor:
        """Attention logits [B, n, 1+Lq, 1+Lk]: (q/√d)·k plus the relative-position bias
        between non-cls tokens."""
        attn = (q * self.scale) @ k.transpose(-2, -1)
        tables = (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)
        # in place, as SlowFast: the logits are the largest tensor (matmul's backward does
        # not need its output)
        attn[:, :, 1:, 1:] += rel_pos_bias(q[:, :, 1:], q_grid, k_grid, tables)
        return attn

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        b = x.shape[0]
        q, k, v, q_grid, k_grid = self.pooled_qkv(x, grid)
        out = self.scores(q, k, q_grid, k_grid).softmax(dim=-1) @ v  # [B, n, 1+Lq, d]
        out = torch.cat([out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]], dim=2)  # residual pooling
        return self.proj(out.transpose(1, 2).reshape(b, out.shape[2], -1)), q_grid


class MultiScaleBlock(nn.Module):
    """Pre-norm pooling-attention block (SlowFast `MultiScaleBlock`, DIM_MUL_IN_ATT False)."""

    def __init__(self, spec: BlockSpec, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.norm1 = _ln(spec.dim)
        self.attn = PoolingAttention(spec)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _ln(spec.dim)
        self.mlp = Mlp(spec.dim, int(spec.dim * mlp_ratio), spec.dim_out)
        self.proj = nn.Linear(spec.dim, spec.dim_out) if spec.dim != spec.dim_out else None
        # a strided query pools the residual too: max over kernel s + 1 (SlowFast `pool_skip`)
        kernel = tuple(s + 1 if s > 1 else s for s in spec.stride_q)
        padding = tuple(k // 2 for k in kernel)
        self.pool_skip = (
            nn.MaxPool3d(kernel, spec.stride_q, padding) if math.prod(spec.stride_q) > 1 else None
        )

    def forward(self, x: Tensor, grid: Grid) -> tuple[Tensor, Grid]:
        x_att, grid_out = self.attn(self.norm1(x), grid)
        skip = x if self.pool_skip is None else pool_tokens(x, self.pool_skip, grid)[0]
        x = skip + self.drop_path(x_att)
        x_norm = self.norm2(x)
        if self.proj is not None:  # the width changes in the MLP: project the residual
            x = self.proj(x_norm)
        return x + self.drop_path(self.mlp(x_norm)), grid_out


class VideoMViT(nn.Module):
    """MViTv2 on clips [B, C, T, H, W] (module docstring)."""

    # SlowFast ZERO_DECAY_POS_CLS is False in every MViTv2 MaskFeat config: the cls token and
    # relative-position tables are weight-decayed (only 1-D tensors are not)
    decay_pos_cls = True

    def __init__(
        self,
        arch: str = "mvitv2_s",
        *,
        img_size: int = 224,
        in_chans: int = 3,
        frames: int = 16,
        pool: str = "avg",
        last_pool: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in MVIT_ARCHS:
            raise ValueError(f"unknown MViT arch {arch!r}; choose one of {sorted(MVIT_ARCHS)}")
        if pool not in ("token", "avg"):
            raise ValueError(f"pool must be 'token' or 'avg', got {pool!r}")
        spec = MVIT_ARCHS[arch]
        self.arch, self.pool_mode, self.last_pool = arch, pool, last_pool
        self.img_size, self.in_chans, self.frames = img_size, in_chans, frames
        self.drop_path_rate = drop_path_rate
        self.t_patch_size = PATCH_STRIDE[0]  # temporal token stride: token t centres on frame 2t
        self.grid: Grid = (frames // 2, img_size // 4, img_size // 4)  # the patch grid
        self.schedule = block_schedule(spec, self.grid, last_pool)
        _check_sizes(arch, self.schedule, frames, img_size)
        self.out_grid: Grid = self.schedule[-1].grid_out
        self.out_stride = img_size // self.out_grid[1]  # pixels per output token side
        self.embed_dim, self.feature_dim = spec.dim, self.schedule[-1].dim_out
        self.patch_embed = PatchEmbed(in_chans, spec.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        rates = torch.linspace(0, drop_path_rate, spec.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            MultiScaleBlock(s, drop_path=r) for s, r in zip(self.schedule, rates)
        )
        self.norm = _ln(self.feature_dim)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """SlowFast `MViT.__init__` + `_init_weights` (module docstring)."""
        for name, p in self.named_parameters():
            if name == "cls_token" or ".rel_pos_" in name:
                nn.init.trunc_normal_(p, std=0.02)
        slowfast_init(self)

    def init_kwargs(self) -> dict:
        """The constructor arguments that rebuild this network (`VideoMViT(**init_kwargs())`)."""
        return {"arch": self.arch, "img_size": self.img_size, "in_chans": self.in_chans,
                "frames": self.frames, "pool": self.pool_mode, "last_pool": self.last_pool,
                "drop_path_rate": self.drop_path_rate}  # fmt: skip

    def finetuning_trunk(self, drop_path_rate: float) -> VideoMViT:
        """This network as SlowFast fine-tunes it: the last stage's query pooling restored
        (a no-op for a network built with it), stochastic depth `drop_path_rate` (linear over
        the blocks), every tensor kept; relative-position tables whose length changes are
        linearly interpolated (SlowFast `attention.py` `get_rel_pos`; the module docstring says
        how this differs from SlowFast's checkpoint loader), all others load strictly."""
        net = VideoMViT(**(self.init_kwargs() | {"last_pool": True,
                                                 "drop_path_rate": drop_path_rate}))  # fmt: skip
        target = net.state_dict()
        state = {k: resize_rel_pos(v, target[k].shape[0]) if ".rel_pos_" in k else v
                 for k, v in self.state_dict().items()}  # fmt: skip
        net.load_state_dict(state, strict=True)
        return net.to(self.cls_token.device)

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    def check_input(self, video: Tensor) -> None:
        expected = (self.in_chans, self.frames, self.img_size, self.img_size)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(
                f"video backbone expects clips [B, {', '.join(map(str, expected))}] (B, C, T, H, "
                f"W), got {list(video.shape)}; set data.frames / data.img_size / data.channels"
            )

    def encode(
        self, video: Tensor, *, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> Tensor:
        """Normed tokens [N, 1+L_out, D_out] (cls first) of the last block. With `mask`
        [N, L] (1 = masked, on the patch grid `grid`) and `mask_token` [1, 1, D], masked
        patch embeddings are replaced by the token before the blocks (video MaskFeat,
        SlowFast `masked.py` `_maskfeat_forward`)."""
        return self.norm(self._blocks(video, mask, mask_token))

    def _blocks(
        self, video: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> Tensor:
        self.check_input(video)
        x = self.patch_embed(video)  # [N, L, D]
        if mask is not None:
            x = replace_masked(x, mask, mask_token)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        grid = self.grid
        for blk in self.blocks:
            x, grid = blk(x, grid)
        return x  # [N, 1+L_out, D_out]

    def forward(self, video: Tensor) -> Tensor:
        """Clip features [N, D_out] (module docstring)."""
        x = self._blocks(video)
        return self.norm(x[:, 1:].mean(dim=1)) if self.pool_mode == "avg" else self.norm(x[:, 0])


class PatchEmbed(nn.Module):
    """Overlapping Conv3d patches: [N, C, T, H, W] -> [N, T/2 · H/4 · W/4, D], (t, h, w) order."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """A relative-position table [L, d] linearly resampled to `length` rows (SlowFast
    `attention.py` `get_rel_pos`: `F.interpolate(mode="linear")`, align_corners False)."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.T.unsqueeze(0), size=length, mode="linear")[0].T.contiguous()


def _check_sizes(arch: str, schedule: list[BlockSpec], frames: int, img_size: int) -> None:
    """Every pooling stride must divide the grid it pools (a clear error, not a shape one)."""
    even = frames > 0 and frames % 2 == 0 and img_size > 0 and img_size % 4 == 0
    divides = all(g >= 1 and g % sq == 0 and g % skv == 0 for s in schedule
                  for g, sq, skv in zip(s.grid_in, s.stride_q, s.stride_kv))  # fmt: skip
    if not (even and divides):
        n_pools = sum(math.prod(s.stride_q) > 1 for s in schedule)
        unit = 4 * max(2**n_pools, MVIT_ARCHS[arch].kv_stride[1])
        raise ValueError(f"{arch} cannot pool a {frames}-frame {img_size} px clip evenly: "
                         f"data.frames must be even and data.img_size a multiple of {unit}")  # fmt: skip


def slowfast_init(module: nn.Module) -> None:
    """SlowFast's encoder init (`slowfast/models/video_model_builder.py` `MViT._init_weights`,
    also MaskFeat's ViT): trunc_normal(0.02) Linear and conv weights, Linear and LayerNorm
    biases 0.02 (sic; conv biases keep PyTorch's default), LayerNorm weights 1."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv3d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.constant_(m.bias, 0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, 0.02)


def _ln(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)
