"""Where a ViT looks: the class token's attention in the last block, per head (DINO, Caron
et al., 2021, Fig. 1 and facebookresearch/dino `visualize_attention.py`), and attention
rollout over all blocks (Abnar and Zuidema, "Quantifying Attention Flow in Transformers",
ACL 2020, §3: Ã_l = ½(A_l + I) row-normalised, rollout = Ã_L ··· Ã_1, heads averaged).

timm's `Attention` uses fused scaled-dot-product attention and never materialises the
weights, so they are recomputed from each block's own public modules: a forward hook on
`blk.attn` records its input x (after `norm1`), and softmax(q·kᵀ·scale) is rebuilt from
`attn.qkv`, `attn.q_norm`, `attn.k_norm` and `attn.scale` — the same arithmetic as the
non-fused branch of timm's `Attention.forward`, with no patched private method.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from visrep.io import atomic_write


def vit_of(model: nn.Module) -> VisionTransformer | None:
    """The timm VisionTransformer inside a backbone or method model, or None."""
    return next((m for m in model.modules() if isinstance(m, VisionTransformer)), None)


def find_vit(model: nn.Module) -> VisionTransformer:
    """`vit_of`, or a clear error for a model without a ViT."""
    vit = vit_of(model)
    if vit is not None:
        return vit
    raise ValueError(
        "attention maps need a ViT run (a timm VisionTransformer backbone); this model has "
        f"none ({type(model).__name__}): pick a run whose backbone.name is a vit_*"
    )


def attention_weights(attn: nn.Module, x: Tensor) -> Tensor:
    """softmax(q kᵀ · scale) of timm `Attention` module `attn` on its input x [B, N, D]
    -> [B, heads, N, N]."""
    b, n, _ = x.shape
    h = attn.num_heads
    qkv = attn.qkv(x).reshape(b, n, 3, h, -1).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d]
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@torch.no_grad()
def all_attentions(vit: VisionTransformer, images: Tensor) -> list[Tensor]:
    """Attention weights of every block, [B, heads, N, N] each, on normalised images."""
    inputs: list[Tensor] = []
    hooks = [blk.attn.register_forward_hook(lambda mod, args, out: inputs.append(args[0]))
             for blk in vit.blocks]  # fmt: skip
    try:
        vit.forward_features(images)
    finally:
        for hk in hooks:
            hk.remove()
    return [attention_weights(blk.attn, x) for blk, x in zip(vit.blocks, inputs)]


def rollout(attentions: list[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout: heads averaged, Ã = (1 − r)·A + r·I rows renormalised, then the
    product Ã_L ··· Ã_1 -> [B, N, N] (row i: how much output token i draws on input j)."""
    out = None
    for a in attentions:
        a = a.mean(dim=1)  # [B, N, N]
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (1 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        out = a if out is None else a @ out
    if out is None:
        raise ValueError("rollout needs at least one block's attention")
    return out


def attention_maps(vit: VisionTransformer, images: Tensor) -> dict[str, Tensor]:
    """{"heads": [B, heads, gh, gw] the class token's last-block attention to each patch
    (renormalised over patches), "rollout": [B, gh, gw] the class token's rollout over
    patches (renormalised)}. Without a class token, the mean over query tokens is used."""
    atts = all_attentions(vit, images)
    p = vit.num_prefix_tokens
    gh, gw = vit.patch_embed.grid_size

    def cls_row(a: Tensor) -> Tensor:  # [..., N, N] -> [..., patches]
        row = a[..., 0, p:] if p > 0 else a[..., :, :].mean(dim=-2)
        return row / row.sum(dim=-1, keepdim=True)

    heads = cls_row(atts[-1])  # [B, h, P]
    roll = cls_row(rollout(atts))  # [B, P]
    return {"heads": heads.reshape(*heads.shape[:2], gh, gw),
            "rollout": roll.reshape(roll.shape[0], gh, gw)}  # fmt: skip


def plot_attention(
    images: Tensor, maps: dict[str, Tensor], path: str | Path,
    to_pixels: Callable[[Tensor], Tensor] | None = None, title: str = "",
) -> None:  # fmt: skip
    """One row per image: the image, the rollout over it, then each head's map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads, roll = maps["heads"].float().cpu(), maps["rollout"].float().cpu()
    b, h = heads.shape[:2]
    pics = to_pixels(images) if to_pixels is not None else images
    pics = pics.float().cpu()
    fig, axes = plt.subplots(b, h + 2, figsize=(1.3 * (h + 2), 1.3 * b + 0.4), squeeze=False)
    for i in range(b):
        img = (pics[i].permute(1, 2, 0).squeeze(-1).clamp(0, 255) / 255).numpy()
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 1].imshow(img, cmap="gray" if img.ndim == 2 else None)
        side = img.shape[0]
        up = torch.nn.functional.interpolate(roll[i][None, None], size=(side, side), mode="nearest")
        axes[i, 1].imshow(up[0, 0].numpy(), cmap="inferno", alpha=0.6)
        for j in range(h):
            axes[i, 2 + j].imshow(heads[i, j].numpy(), cmap="inferno")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=7)
    axes[0, 1].set_title("rollout", fontsize=7)
    for j in range(h):
        axes[0, 2 + j].set_title(f"head {j}", fontsize=7)
    fig.suptitle(title or "class-token attention: last block per head, rollout", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def draw_attention(
    model: nn.Module, images: Tensor, preprocess: Callable[[Tensor], Tensor],
    path: str | Path, title: str = "",
) -> Path:  # fmt: skip
    """Maps of uint8 `images` [B, C, H, W] (`preprocess`: float 0..255 -> model input)
    through the ViT inside `model`, drawn to `path` (`plot_attention`)."""
    vit = find_vit(model)
    was_training = vit.training
    vit.eval()  # no drop path / dropout in the maps; the caller's mode is restored
    try:
        with torch.no_grad():
            maps = attention_maps(vit, preprocess(images.float()))
    finally:
        vit.train(was_training)
    plot_attention(images, maps, path, title=title)
    return Path(path)
