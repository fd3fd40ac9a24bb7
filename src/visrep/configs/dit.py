"""DiT recipes (Peebles & Xie, ICCV 2023; facebookresearch/DiT `train.py`). Each docstring
gives the command and what to expect. Sample a run with `visrep sample --ckpt RUN`."""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.method_configs import DiTConfig

# DiT's optimizer (`train.py`): AdamW at a constant lr (no warmup, no decay: the cosine's
# floor is the peak), betas (0.9, 0.999), no weight decay
CONSTANT_LR = dict(warmup_epochs=0.0, min_lr_ratio=1.0, weight_decay=0.0, betas=(0.9, 0.999))
# Fashion-MNIST pixels in [-1, 1] as DiT/ADM; no crop (scale 1 of a square image), random flip
FMNIST_PIXELS = DataConfig(
    dataset="fashion_mnist", img_size=28, channels=1, mean=(0.5,), std=(0.5,), crop_scale=(1.0, 1.0)
)
FMNIST_TRUNK = BackboneConfig(name="vit_tiny", patch_size=4, depth=6)  # 49 tokens of 4 px


def dit_fmnist() -> TrainConfig:
    """Class-conditional pixel DiT on Fashion-MNIST, 10 minutes on a 2-core CPU.

    28 px, patch 4 (49 tokens), a ViT-Tiny trunk of 6 blocks (D 192, 3 heads): 4.2 M
    parameters with the adaLN and embedding layers.

    Command: `visrep train dit_fmnist` (unconditional: add `method.num_classes=0`), then
    `visrep sample --ckpt runs/dit_fmnist --n 64 --cfg 1.5 --steps 100 --out samples/`.
    Training stops after 10 minutes (`run.budget_minutes`). Every token goes through every
    block (nothing is masked), so the CPU is slow: 32 img/s measured with one thread at the
    start of a run on a shared host, 6-30 img/s while other jobs ran (0.1-0.5 steps of 64
    per second), i.e. a few hundred steps, well under one epoch. Expect the loss
    (L_simple + L_vlb) to fall from ~1 to ~0.1 within 100 steps and samples that are
    patchy garment-shaped blobs, not clean Fashion-MNIST; the DiT paper trains 400k steps
    (docs/results.md, "Generation: DiT", shows what a longer CPU run gives). The EMA decay
    is 0.995 instead of the paper's 0.9999, which would keep the EMA near its
    initialisation for the few hundred steps a CPU trains. No evaluation runs
    (`eval.final=false`); eval.dataset names the labelled split the class labels come from.
    """
    return TrainConfig(
        recipe="dit_fmnist",
        method=DiTConfig(num_classes=10, ema_decay=0.995),
        backbone=FMNIST_TRUNK,
        data=FMNIST_PIXELS,
        optim=OptimConfig(epochs=20, batch_size=64, lr=5e-4, clip_grad=1.0, **CONSTANT_LR),
        eval=EvalConfig(dataset="fashion_mnist", final=False, every_epochs=0, baselines=False),
        run=RunConfig(out_dir="runs/dit_fmnist", budget_minutes=10, log_every=10),
    )


def dit_s2_in1k() -> TrainConfig:
    """Paper setting, DiT-S/2 on ImageNet 256² latents (needs a user-supplied SD-VAE), GPUs.

    32×32×4 latents, patch 2 (256 tokens); D 384, 12 blocks, 6 heads; 400k steps of global
    batch 256, AdamW lr 1e-4 constant, EMA 0.9999 (DiT `train.py`).

    Latent space needs the VAE the paper uses (stabilityai/sd-vae-ft-ema, diffusers
    AutoencoderKL), which visrep does not ship and cannot download offline: pass its folder
    as `method.vae=PATH` (and `pip install diffusers`), or this recipe stops with an error
    saying so; `method.latent=false` trains in pixel space instead (256 px with patch 2
    would be 16,384 tokens: set data.img_size and backbone.patch_size to match). Labels
    come from `eval.dataset`'s train/ class folders.
    Command: `torchrun --nproc_per_node=8 -m visrep.cli train dit_s2_in1k
    method.vae=/models/sd-vae-ft-ema data.dataset=/data/imagenet/train
    eval.dataset=/data/imagenet optim.epochs=80` (8 × 32 = 256; 400k steps ≈ 80 epochs).
    Expected (paper, Table 4): FID-50K 68.4 at 400k steps without guidance.
    """
    return TrainConfig(
        recipe="dit_s2_in1k",
        method=DiTConfig(num_classes=1000, latent=True, vae=""),
        backbone=BackboneConfig(name="vit_small", patch_size=2),
        data=DataConfig(
            dataset="path/to/imagenet/train",
            img_size=256,
            channels=3,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            crop_scale=(1.0, 1.0),
            num_workers=8,
        ),  # fmt: skip
        optim=OptimConfig(epochs=80, batch_size=32, lr=1e-4, **CONSTANT_LR),
        eval=EvalConfig(dataset="path/to/imagenet", final=False, every_epochs=0, baselines=False),
        run=RunConfig(out_dir="runs/dit_s2_in1k"),
    )
