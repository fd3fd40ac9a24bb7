"""Recipes for the user's own images: `visrep train RECIPE data.dataset=DIR`.

Channels, loader workers and the evaluation come from the folder (`visrep.data.resolve`):
a folder with `train/` + `val/` is evaluated on `val/`, class folders without a split on a
10% stratified hold-out, an unlabeled folder by nearest neighbours and feature statistics.
Every report puts the accuracies beside raw pixels and the untrained encoder.
"""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.method_configs import MAEConfig, SimCLRConfig

# a small labelled set needs more probe steps than ImageNet's 90 epochs at blr 0.1 (LARS moves
# a weight by ~lr × 0.001 of its norm per step): 200 epochs at blr 1.0 for ~1,500 images
_OWN_EVAL = EvalConfig(dataset="auto", every_epochs=5, periodic_limit=2000, linear_epochs=200,
                       linear_blr=1.0)  # fmt: skip


def _own_data(img_size: int, views: str = "", workers: int = -1) -> DataConfig:
    return DataConfig(dataset="path/to/your/images", img_size=img_size, channels=0,
                      num_workers=workers, views=views, crop_scale=(0.35, 1.0))  # fmt: skip


def mae_own() -> TrainConfig:
    """MAE on your images at 64 px, ViT-Tiny/8 (64 patches), sized for a CPU.

    Command: `visrep train mae_own data.dataset=DIR` (docs/results.md "Own colour images":
    the Noto emoji folder of `visrep data build-folder`, 1,524 training images, measured
    there). The decoder is 2 blocks of 128 (the paper's 8×512 would be 93% of the compute
    with a tiny encoder); 75% masking, normalised-pixel loss, AdamW (0.9, 0.95).
    """
    return TrainConfig(
        recipe="mae_own",
        method=MAEConfig(mask_ratio=0.75, decoder_dim=128, decoder_depth=2, decoder_heads=4),
        backbone=BackboneConfig(name="vit_tiny", patch_size=8, pool="avg"),
        data=_own_data(64),
        optim=OptimConfig(
            epochs=20, batch_size=64, blr=1.5e-3, warmup_epochs=2, weight_decay=0.05
        ),  # fmt: skip
        eval=_OWN_EVAL,
        run=RunConfig(out_dir="runs/mae_own"),
    )


def mae_vit_small_224() -> TrainConfig:
    """MAE on your images at 224 px, ViT-S/16, for a GPU (`run.device=auto` finds it).

    Command: `visrep train mae_vit_small_224 data.dataset=DIR` (or under torchrun). MAE's
    pre-training schedule (blr 1.5e-4, 40 warmup epochs, cosine, AdamW (0.9, 0.95), wd 0.05)
    with a 4×256 decoder for the smaller encoder; 400 epochs suit 10k–1M images. Expect
    several hours per 100k images × 100 epochs on one recent GPU; not for a CPU.
    """
    return TrainConfig(
        recipe="mae_vit_small_224",
        method=MAEConfig(mask_ratio=0.75, decoder_dim=256, decoder_depth=4, decoder_heads=8),
        backbone=BackboneConfig(name="vit_small", patch_size=16, pool="avg"),
        data=_own_data(224, workers=-1),
        optim=OptimConfig(
            epochs=400, batch_size=256, blr=1.5e-4, warmup_epochs=40, weight_decay=0.05
        ),  # fmt: skip
        eval=EvalConfig(dataset="auto", every_epochs=20, periodic_limit=10000),
        run=RunConfig(out_dir="runs/mae_vit_small_224"),
    )


def simclr_resnet18_own() -> TrainConfig:
    """SimCLR (SLIP's formulation) on your images at 64 px, ResNet-18 with a stride-2 stem.

    Command: `visrep train simclr_resnet18_own data.dataset=DIR` (docs/results.md "Own
    colour images"). Two SimCLR views per image (crop, flip, colour jitter, grayscale, blur),
    NT-Xent τ = 0.1, AdamW (0.9, 0.98), wd 0.1; a two-view method sees each image twice
    per step, so a step costs about twice MAE's at the same size.
    """
    return TrainConfig(
        recipe="simclr_resnet18_own",
        method=SimCLRConfig(mlp_dim=2048, dim=128),
        backbone=BackboneConfig(name="resnet18", patch_size=2, pool="avg"),
        data=_own_data(64, views="simclr"),
        optim=OptimConfig(
            epochs=20,
            batch_size=128,
            blr=1e-3,
            warmup_epochs=1,
            weight_decay=0.1,
            betas=(0.9, 0.98),
        ),  # fmt: skip
        eval=_OWN_EVAL,
        run=RunConfig(out_dir="runs/simclr_resnet18_own"),
    )
