"""RCG recipes (Li, Katabi & He, "Return of Unconditional Generation", NeurIPS 2024;
LTH14/rcg) and the reference classifier `visrep eval generation` reads features from. Each
docstring gives the command and what to expect."""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.configs.dit import CONSTANT_LR, FMNIST_PIXELS, FMNIST_TRUNK
from visrep.method_configs import RCGConfig, SupervisedConfig


def rcg_fmnist() -> TrainConfig:
    """Unconditional RCG on Fashion-MNIST from a visrep encoder, pixel space, CPU-sized.

    Command: `visrep train mocov3_fmnist` (the encoder), then `visrep train rcg_fmnist
    method.encoder=runs/mocov3_fmnist`, then `visrep sample --ckpt runs/rcg_fmnist --n 64
    --cfg 1.0 --steps 100 --out samples/` and `visrep eval generation --ckpt runs/rcg_fmnist
    --reference runs/gen_reference_fmnist`.

    Stage 1 trains the RDM for `method.rdm_steps` = 300 steps on the encoder's standardised
    projection-head output (MoCo v3: the 256-d projector); stage 2 the pixel generator, the
    dit_fmnist trunk (ViT-Tiny, 6 blocks, patch 4 at 28 px) conditioned on the
    representation, until the 15-minute budget is spent (`run.budget_minutes`). The RDM is
    a narrow SimpleMLP (width 512, 6 blocks; the paper's is 1536 × 12) so that stage 1 costs
    little next to the generator. AdamW lr 5e-4 constant for both (RCG's RDM: blr 1e-6 × batch
    512 = 5.1e-4), weight decay 0.01 on the RDM only, EMA 0.995 (the paper's 0.9999 would
    stay near the initialisation over a CPU run). The paper's pixel generator works on
    VQGAN tokens (MAGE) or SD-VAE latents (DiT); neither is available offline, so this is
    RCG's DiT variant on pixels. No evaluation runs at the end (`eval.final=false`).
    Measured (docs/results.md, "Generation: RCG vs DiT"): 200 steps (40 RDM + 160
    generator) take ~7 minutes on a busy host with one thread and give patchy blobs; after
    so few steps the EMA still holds most of its zero-output initialisation (0.995^200 =
    37%), so sample the online weights (`visrep sample --online`).
    """
    return TrainConfig(
        recipe="rcg_fmnist",
        method=RCGConfig(rdm_steps=300, rdm_width=512, rdm_depth=6, ema_decay=0.995),
        backbone=FMNIST_TRUNK,
        data=FMNIST_PIXELS,
        # the RDM's weight decay (RCG main_rdm.py: 0.01); the generator's is 0 (method)
        optim=OptimConfig(
            epochs=20,
            batch_size=64,
            lr=5e-4,
            clip_grad=1.0,
            **(CONSTANT_LR | {"weight_decay": 0.01}),
        ),  # fmt: skip
        eval=EvalConfig(dataset="fashion_mnist", final=False, every_epochs=0, baselines=False),
        run=RunConfig(out_dir="runs/rcg_fmnist", budget_minutes=15, log_every=10),
    )


def gen_reference_fmnist() -> TrainConfig:
    """The reference network of `visrep eval generation` on Fashion-MNIST: a supervised
    ResNet-18 (3×3 stride-2 stem, as the joint-embedding recipes) trained from scratch.

    Command: `visrep train gen_reference_fmnist` (2 epochs over the 60,000 training images;
    about 30 minutes on one quiet thread). Its pooled 512-d features play the role
    Inception-v3's pool features play in FID (Inception weights cannot be downloaded here), so
    the distances it gives are "Fréchet distance in this classifier's features", not FID, and
    are comparable only with each other. The end of the run reports its test top-1
    (metrics.json), which every table should state. The images are not cropped (flip only):
    a classifier, not an SSL encoder, and short. With MAE's RandomResizedCrop (0.2-1) the
    same net learned far slower: on 10,000 images (78 steps) it reached 0.39 test top-1,
    0.51 with crops of 0.8-1 and 0.76 uncropped at a constant lr, against 0.79 for a plain
    AdamW loop over the same net, so nothing is broken but the crop.
    """
    return TrainConfig(
        recipe="gen_reference_fmnist",
        method=SupervisedConfig(
            num_classes=10,
            layer_decay=1.0,
            drop_path=0.0,
            smoothing=0.1,
            auto_augment="",
            reprob=0.0,
        ),  # fmt: skip
        backbone=BackboneConfig(name="resnet18", patch_size=2, pool="avg"),
        data=DataConfig(
            dataset="fashion_mnist", img_size=28, channels=1, num_workers=0, crop_scale=(1.0, 1.0)
        ),  # fmt: skip
        optim=OptimConfig(
            epochs=2, batch_size=128, blr=1e-3, warmup_epochs=0.1, weight_decay=0.05
        ),  # fmt: skip
        eval=EvalConfig(dataset="fashion_mnist", every_epochs=0, baselines=False),
        run=RunConfig(out_dir="runs/gen_reference_fmnist"),
    )
