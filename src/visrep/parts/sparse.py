"""A timm ConvNeXt (V1 or V2) run as a sparse encoder by dense convolutions with masks.

FCMAE's encoder (ConvNeXt V2 paper Sec. 2; ConvNeXt-V2 `models/convnextv2_sparse.py`) is a
sparse ConvNeXt V2 (MinkowskiEngine): features exist only at visible sites, a 7×7 depthwise
conv reads and writes visible sites only (submanifold), GRN pools over visible sites only.
The paper's Sec. 2 gives the dense equivalent, its own JAX formulation ("numerically
identical to sparse conv"), with V_s = 1 - mask upsampled to the resolution of stage s:

1. stem output · V;
2. in every block the input is zero at masked sites, the depthwise conv output · V,
   GRN statistics over visible sites only (its input · V), block output · V;
3. downsampler: LayerNorm output · V, 2×2 stride-2 conv output · V;
4. encoder output · V (densified zeros at masked sites).

LayerNorm, the pointwise Linears/1×1 convs and GELU act per position, so they need no
change. The mask unit is the encoder's total stride (32 px for a standard ConvNeXt;
8 px with a stride-1 stem, `patch_size=1`), so every 2×2 downsampling window lies
inside one mask unit and the visible set at each stage is exactly the upsampled mask.

`SparseConvNeXt` does this with forward hooks on timm's own modules: the model keeps
its timm classes, parameter names and state dict, and computes exactly as timm when no
mask is active (evaluation, export).

GRN statistics (paper Sec. 3; ConvNeXt-V2 `models/utils.py`): "sample" (default) pools per
image over its visible sites — the paper / JAX form, and what dense GRN computes at
fine-tuning; "batch" pools per channel over the visible sites of the whole batch, as the
official PyTorch code's MinkowskiGRN does (one statistic shared by all images of a per-GPU
batch). Neither adds the JAX code's eps inside the square root: dense timm GRN (what the
exported weights run in) has none.

`SparseResNet` is SparK's sparse ResNet (keyu-tian/SparK `pretrain/encoder.py`) the same
way: every conv and pooling output · V at its resolution; every BatchNorm normalizes the
feature vectors at visible positions only (gathered, BatchNorm1d statistics over them,
scattered back, zeros elsewhere, running statistics from visible positions only). timm's
ConvNeXt under SparK is `SparseConvNeXt` as above: LayerNorm at visible positions followed
by · V equals SparK's sparse LayerNorm there, and its masked positions are zero either way.
Both give the four stage outputs (`features`), SparK's hierarchical encoder output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from timm.layers.grn import GlobalResponseNorm
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

GRN_STATS = ("sample", "batch")


def upsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, gh, gw] -> [N, H, W] by repetition (nearest), H and W multiples of gh and gw."""
    gh, gw = mask.shape[-2:]
    h, w = size
    if h % gh or w % gw:
        raise ValueError(f"a {h}x{w} feature map is not a whole multiple of the {gh}x{gw} mask")
    return mask.repeat_interleave(h // gh, dim=-2).repeat_interleave(w // gw, dim=-1)


def grn_batch_stats(grn: GlobalResponseNorm, x: Tensor) -> Tensor:
    """GRN with one statistic per channel over every (visible, non-zero) position of the
    batch, as `MinkowskiGRN` (ConvNeXt-V2 `models/utils.py`): G_c = ‖x[:, ..., c]‖₂ over
    N·H·W, Nx = G / (mean_c G + eps), y = γ·(x·Nx) + β + x."""
    dims = (0, *grn.spatial_dim)
    g = x.norm(p=2, dim=dims, keepdim=True)
    nx = g / (g.mean(dim=grn.channel_dim, keepdim=True) + grn.eps)
    shape = grn.wb_shape
    return x + torch.addcmul(grn.bias.view(shape), grn.weight.view(shape), x * nx)


def sparse_batch_norm(bn: _BatchNorm, x: Tensor, visible: Tensor) -> Tensor:
    """SparK's sparse BatchNorm (`pretrain/encoder.py` `SparseBatchNorm2d`): the feature vectors
    at visible positions are gathered into [K, C], normalized by `bn` as BatchNorm1d would
    (batch statistics over the K visible vectors in training, running statistics updated from
    them), and scattered back; masked positions are zero. `visible` [N, 1, H, W] (or
    broadcastable), non-zero = visible. With no visible position at all (a 1×1 mask grid fully
    masked) the output is zero and the statistics are left alone. Calls `bn`'s own class
    forward, so a SyncBatchNorm (DDP) syncs the visible statistics across processes."""
    idx = visible.expand(x.shape[0], 1, *x.shape[-2:])[:, 0].nonzero(as_tuple=True)  # (n, i, j)
    if idx[0].numel() == 0:
        return torch.zeros_like(x)
    nhwc = x.permute(0, 2, 3, 1)
    flat = type(bn).forward(bn, nhwc[idx][:, :, None, None])[:, :, 0, 0]  # [K, C]
    out = nhwc.new_zeros(nhwc.shape, dtype=flat.dtype).index_put(idx, flat)
    return out.permute(0, 3, 1, 2)


class _MaskedCNN:
    """The mask state shared by the masked-dense encoders: V at any resolution while a
    `masking` block runs, and the hook that multiplies a module's output by it."""

    model: nn.Module
    stride: int

    def __init__(self) -> None:
        self._mask: Tensor | None = None  # [N, gh, gw] visible = 1, while a forward runs
        self._cache: dict[tuple[int, int], Tensor] = {}
        self.handles: list = []

    def visible(self, size: tuple[int, int], channels_last: bool = False) -> Tensor:
        """V at a resolution: [N, 1, H, W] (or [N, H, W, 1] for channels-last tensors)."""
        assert self._mask is not None
        if size not in self._cache:
            self._cache[size] = upsample_mask(self._mask, size)
        v = self._cache[size]
        return v.unsqueeze(-1) if channels_last else v.unsqueeze(1)

    def _zero_masked(self, module: nn.Module, inputs: tuple, out: Tensor) -> Tensor | None:
        if self._mask is None:
            return None
        return out * self.visible(out.shape[-2:]).to(out.dtype)

    @contextmanager
    def masking(self, mask: Tensor) -> Iterator[None]:
        """Within the block, the model's forward is the sparse-equivalent one.
        `mask` [N, gh, gw]: 1 = removed (MAE's convention), at the final-stage grid."""
        self._mask, self._cache = 1.0 - mask.float(), {}
        try:
            yield
        finally:
            self._mask, self._cache = None, {}

    def check(self, images: Tensor, mask: Tensor) -> None:
        grid = (images.shape[-2] // self.stride, images.shape[-1] // self.stride)
        if images.shape[-2] % self.stride or images.shape[-1] % self.stride:
            raise ValueError(
                f"image size {tuple(images.shape[-2:])} must be a multiple of the encoder's "
                f"total stride {self.stride} (the mask unit)"
            )
        if tuple(mask.shape) != (images.shape[0], *grid):
            raise ValueError(f"mask must be [N, {grid[0]}, {grid[1]}], got {tuple(mask.shape)}")

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class SparseConvNeXt(_MaskedCNN):
    """Masked-dense (sparse-equivalent) forward of a timm ConvNeXt, installed as hooks.

    Not an `nn.Module`: it owns no parameters, so a method holding it keeps one copy of
    the encoder weights (under its `backbone`).

    Args:
        model: a timm `ConvNeXt` (V2 blocks with GRN, or V1 blocks without).
        grn_stats: "sample" (per image, paper) or "batch" (per batch, official PyTorch).
    """

    def __init__(self, model: ConvNeXt, grn_stats: str = "sample") -> None:
        super().__init__()
        if not isinstance(model, ConvNeXt):
            raise ValueError(f"SparseConvNeXt needs a timm ConvNeXt, got {type(model).__name__}")
        if grn_stats not in GRN_STATS:
            raise ValueError(f"grn_stats must be one of {GRN_STATS}, got {grn_stats!r}")
        if not isinstance(model.stem[0], nn.Conv2d) or len(model.stem) != 2:
            raise ValueError("only the 'patch' stem (one strided conv + LayerNorm) is supported")
        self.model = model
        self.grn_stats = grn_stats
        self.stride: int = model.feature_info[-1]["reduction"]
        self.handles = [model.stem.register_forward_hook(self._zero_masked)]
        for stage in model.stages:
            if isinstance(stage.downsample, nn.Sequential):  # LayerNorm, 2×2 stride-2 conv
                self.handles.append(stage.downsample[0].register_forward_hook(self._zero_masked))
                self.handles.append(stage.downsample.register_forward_hook(self._zero_masked))
            for block in stage.blocks:
                if not isinstance(block, ConvNeXtBlock) or not isinstance(
                    block.shortcut, nn.Identity
                ):
                    raise ValueError("unsupported ConvNeXt block (strided or widening block)")
                self.handles.append(block.conv_dw.register_forward_hook(self._zero_masked))
                self.handles.append(block.register_forward_hook(self._zero_masked))
                grn = getattr(block.mlp, "grn", None)
                if grn is not None:
                    self.handles.append(grn.register_forward_pre_hook(self._grn_input))
                    if grn_stats == "batch":
                        self.handles.append(grn.register_forward_hook(self._grn_batch))

    def _grn_input(self, grn: GlobalResponseNorm, inputs: tuple) -> tuple | None:
        """Zero masked positions before GRN so its L2 statistics see visible sites only."""
        if self._mask is None:
            return None
        (x,) = inputs
        cl = grn.channel_dim == -1
        return (x * self.visible(x.shape[1:3] if cl else x.shape[-2:], cl).to(x.dtype),)

    def _grn_batch(self, grn: GlobalResponseNorm, inputs: tuple, out: Tensor) -> Tensor | None:
        return None if self._mask is None else grn_batch_stats(grn, inputs[0])

    def __call__(self, images: Tensor, mask: Tensor) -> Tensor:
        """[N, C, H, W], mask [N, H/s, W/s] (s = total stride) -> [N, D, H/s, W/s], zero at
        masked positions. No final norm (the official sparse encoder has none)."""
        self.check(images, mask)
        with self.masking(mask):
            x = self.model.forward_features(images)  # stem -> stages -> norm_pre (Identity)
            return x * self.visible(x.shape[-2:]).to(x.dtype)

    def features(self, images: Tensor, mask: Tensor) -> list[Tensor]:
        """The four stage outputs (SparK's hierarchical encoder, `SparseEncoder`), zero at masked
        positions: [N, C_i, H/s_i, W/s_i] for s_i = stride/8, stride/4, stride/2, stride."""
        self.check(images, mask)
        feats = []
        with self.masking(mask):
            x = self.model.stem(images)
            for stage in self.model.stages:
                x = stage(x)  # every block's output · V (hook)
                feats.append(x)
        return feats


class SparseResNet(_MaskedCNN):
    """SparK's sparse timm ResNet (`pretrain/encoder.py`) as hooks on timm's own modules.

    Every Conv2d, MaxPool2d and AvgPool2d output is multiplied by V at its resolution
    (forward hooks, installed once); while `masking` runs, every BatchNorm normalizes
    visible positions only (`sparse_batch_norm`). The BatchNorm forwards are swapped per
    call on whatever BatchNorm modules the model holds then, so a model whose BNs were
    converted to SyncBatchNorm after this was built (the loop does so under DDP) still
    gets the sparse form, with statistics synced across processes, as SparK's `--sbn`.
    ReLU keeps zeros zero and the residual adds two maps that are zero at masked
    positions, so masked positions stay exactly zero. Outside `masking` the model is
    plain timm.

    Args:
        model: a timm `ResNet` with Basic or Bottleneck blocks, no attention layers.
        stride: its total stride (the mask unit; `CNN.stride` knows the small stems).
    """

    def __init__(self, model: ResNet, stride: int) -> None:
        super().__init__()
        if not isinstance(model, ResNet):
            raise ValueError(f"SparseResNet needs a timm ResNet, got {type(model).__name__}")
        for block in (b for layer in self.layers(model) for b in layer):
            attn = [getattr(block, k, None) for k in ("se", "aa")]
            if not isinstance(block, BasicBlock | Bottleneck) or any(
                a is not None and not isinstance(a, nn.Identity) for a in attn
            ):
                raise ValueError("only ResNet blocks without attention or anti-aliasing pooling")
        self.model, self.stride = model, stride
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
                self.handles.append(m.register_forward_hook(self._zero_masked))

    @staticmethod
    def layers(model: ResNet) -> list[nn.Module]:
        return [model.layer1, model.layer2, model.layer3, model.layer4]

    def _sparse_bn(self, bn: _BatchNorm, x: Tensor) -> Tensor:
        return sparse_batch_norm(bn, x, self.visible(x.shape[-2:]))

    @contextmanager
    def masking(self, mask: Tensor) -> Iterator[None]:
        bns = [m for m in self.model.modules() if isinstance(m, _BatchNorm)]
        with super().masking(mask):
            for bn in bns:
                bn.forward = partial(self._sparse_bn, bn)  # instance attribute: per call
            try:
                yield
            finally:
                for bn in bns:
                    del bn.forward

    def features(self, images: Tensor, mask: Tensor) -> list[Tensor]:
        """Four stage outputs (layer1..layer4, as SparK's `SparseEncoder`), zero at masked
        positions. The input is expected already multiplied by the pixel-level visible map
        (SparK does so)."""
        self.check(images, mask)
        m, feats = self.model, []
        with self.masking(mask):
            x = m.maxpool(m.act1(m.bn1(m.conv1(images))))
            for layer in self.layers(m):
                x = layer(x)
                feats.append(x)
        return feats
