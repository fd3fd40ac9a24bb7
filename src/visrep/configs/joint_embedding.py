"""Joint-embedding recipes: SimSiam, MoCo v3, SimCLR. Each docstring gives the command and
what to expect.

The Fashion-MNIST recipes use a ResNet-18 whose stem is a 3×3 stride-2 conv without
max-pool (`backbone.patch_size=2`): on this 2-core CPU it trains two views at ~3× the
rate of a ViT-Tiny/4 (measured: 115 vs 33 img/s for SimSiam) and keeps a 14×14 map
after the stem. Their schedules are shortened for a CPU budget (1 epoch, short warmup);
the paper recipes below keep the papers' settings for GPU machines.
"""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    replace,
)
from visrep.method_configs import MoCoV3Config, SimCLRConfig, SimSiamConfig

_FMNIST_RESNET = BackboneConfig(name="resnet18", patch_size=2, pool="avg")
_FMNIST_EVAL = EvalConfig(dataset="auto", every_epochs=1, periodic_limit=2000, limit_train=20000)
_IN1K_EVAL = EvalConfig(dataset="")  # set eval.dataset=/path/to/imagenet (train/ and val/)


def _fmnist_data(views: str) -> DataConfig:
    return DataConfig(dataset="fashion_mnist", img_size=28, channels=0, num_workers=-1, views=views)


def _in1k_data(views: str) -> DataConfig:
    return DataConfig(dataset="path/to/imagenet/train", img_size=224, channels=3, views=views,
                      num_workers=8)  # fmt: skip


def simsiam_fmnist() -> TrainConfig:
    """SimSiam on Fashion-MNIST, ResNet-18 (3×3 stride-2 stem), 1 epoch on a CPU.

    Command: `visrep train simsiam_fmnist` (~9 minutes on 2 cores). The paper's recipe
    (Sec. 3, "Baseline settings"): SGD momentum 0.9, blr 0.05, weight decay 1e-4 on every
    parameter, cosine without warmup (per iteration here: a per-epoch step would hold the lr
    constant over a 1-epoch run), fixed predictor lr, SimSiam's augmentation. The collapse
    ablation is `method.stop_gradient=False` (docs/results.md).
    """
    return TrainConfig(
        recipe="simsiam_fmnist",
        method=SimSiamConfig(),
        backbone=_FMNIST_RESNET,
        data=_fmnist_data("simsiam"),
        optim=OptimConfig(
            optimizer="sgd",
            epochs=1,
            batch_size=256,
            blr=0.05,
            warmup_epochs=0,
            weight_decay=1e-4,
            decay_all=True,
            lr_per_epoch=False,
        ),
        eval=_FMNIST_EVAL,
        run=RunConfig(out_dir="runs/simsiam_fmnist"),
    )


def mocov3_fmnist() -> TrainConfig:
    """MoCo v3 on Fashion-MNIST, ResNet-18 (3×3 stride-2 stem), 1 epoch on a CPU.

    Command: `visrep train mocov3_fmnist` (~12 minutes on 2 cores). The ResNet recipe
    (moco-v3 `CONFIG.md`): LARS, blr 0.6, weight decay 1e-6, τ = 1.0, m0 0.99 → 1 (cosine),
    BYOL's asymmetric views with crop scale (0.2, 1); warmup shortened to 0.1 epoch.
    """
    return TrainConfig(
        recipe="mocov3_fmnist",
        method=MoCoV3Config(tau=1.0, m0=0.99),
        backbone=_FMNIST_RESNET,
        data=_fmnist_data("mocov3_resnet"),
        optim=OptimConfig(
            optimizer="lars",
            epochs=1,
            batch_size=256,
            blr=0.6,
            warmup_epochs=0.1,
            weight_decay=1e-6,
        ),
        eval=_FMNIST_EVAL,
        run=RunConfig(out_dir="runs/mocov3_fmnist"),
    )


def mocov3_vit_fmnist() -> TrainConfig:
    """MoCo v3's ViT recipe on Fashion-MNIST at a CPU size: ViT-Tiny/4 at 28 px (49 tokens)
    with 4 blocks, 1 epoch.

    Command: `visrep train mocov3_vit_fmnist` (~25 minutes at the 43 img/s one thread gave
    for a step of 128 on a shared host; benchmarks/mocov3_stability.py ran at 25–40). The
    ViT recipe below (moco-v3 `CONFIG.md`: AdamW, weight decay 0.1 on every parameter,
    τ = 0.2, m0 0.99 → 1, BYOL's views with crop scale (0.08, 1), MoCo v3's ViT init and a
    frozen random patch projection), changed for a CPU: 4 blocks, projector/predictor hidden
    width 1024 (4096), warmup 0.1 epoch, and blr 5e-4 instead of 1.5e-4 for a short run at
    batch 256 (1.5e-4 gives an absolute lr of 1.5e-4, a sixteenth of the paper's 2.4e-3).
    The paper's stability study (trained vs frozen patch projection at a high lr, gradient
    norms per layer) is benchmarks/mocov3_stability.py.
    """
    paper = _mocov3_vit("vit_tiny")
    return replace(
        paper,
        recipe="mocov3_vit_fmnist",
        backbone=BackboneConfig(name="vit_tiny", patch_size=4, depth=4, pool="token"),
        data=_fmnist_data("mocov3"),
        eval=_FMNIST_EVAL,
        run=RunConfig(out_dir="runs/mocov3_vit_fmnist"),
        **{
            "method.mlp_dim": 1024,
            "optim.epochs": 1,
            "optim.batch_size": 256,
            "optim.blr": 5e-4,
            "optim.warmup_epochs": 0.1,
        },  # fmt: skip
    )


def simclr_fmnist() -> TrainConfig:
    """SimCLR (SLIP's formulation) on Fashion-MNIST, ResNet-18 (3×3 stride-2 stem), 1 epoch.

    Command: `visrep train simclr_fmnist` (~9 minutes on 2 cores). SLIP's SimCLR (SLIP README):
    AdamW betas (0.9, 0.98), weight decay 0.1, τ = 0.1, 3-layer head; SimCLR views. The
    base lr is raised from SLIP's 2e-4 (3.2e-3 at batch 4096) to 1e-3 for a 1-epoch run.
    """
    return TrainConfig(
        recipe="simclr_fmnist",
        method=SimCLRConfig(mlp_dim=2048, dim=128),
        backbone=_FMNIST_RESNET,
        data=_fmnist_data("simclr"),
        optim=OptimConfig(
            epochs=1,
            batch_size=256,
            blr=1e-3,
            warmup_epochs=0.1,
            weight_decay=0.1,
            betas=(0.9, 0.98),
        ),
        eval=_FMNIST_EVAL,
        run=RunConfig(out_dir="runs/simclr_fmnist"),
    )


def simsiam_resnet50_in1k() -> TrainConfig:
    """Paper setting (SimSiam paper Sec. 3; simsiam README): SimSiam ResNet-50, 100 epochs,
    batch 512, fp32.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train simsiam_resnet50_in1k
    data.dataset=/data/imagenet/train` (8 GPUs × 64). Expected (paper): 68.1 linear top-1.
    """
    return TrainConfig(
        recipe="simsiam_resnet50_in1k",
        method=SimSiamConfig(proj_dim=2048, pred_dim=512, fix_pred_lr=True),
        backbone=BackboneConfig(name="resnet50", patch_size=4, pool="avg"),
        data=_in1k_data("simsiam"),
        optim=OptimConfig(
            optimizer="sgd",
            epochs=100,
            batch_size=64,
            blr=0.05,
            warmup_epochs=0,
            weight_decay=1e-4,
            decay_all=True,
            lr_per_epoch=True,
        ),
        eval=_IN1K_EVAL,
        run=RunConfig(out_dir="runs/simsiam_resnet50_in1k", precision="fp32"),
    )


def _mocov3_vit(arch: str) -> TrainConfig:
    return TrainConfig(
        recipe=f"mocov3_{arch}_in1k",
        method=MoCoV3Config(tau=0.2, m0=0.99, stop_grad_conv1=True),
        # MoCo v3's ViT-S has 12 heads (timm's has 6); features = cls token after the norm
        backbone=BackboneConfig(
            name=arch, patch_size=16, pool="token", num_heads=12 if arch == "vit_small" else 0
        ),
        data=_in1k_data("mocov3"),
        # 128 per GPU × 32 GPUs = 4096; AdamW decays every parameter
        # (moco-v3 `main_moco.py` builds it on `model.parameters()`)
        optim=OptimConfig(
            epochs=300,
            batch_size=128,
            blr=1.5e-4,
            warmup_epochs=40,
            weight_decay=0.1,
            decay_all=True,
            betas=(0.9, 0.999),
        ),
        eval=_IN1K_EVAL,
        run=RunConfig(out_dir=f"runs/mocov3_{arch}_in1k"),
    )


def mocov3_vit_small_in1k() -> TrainConfig:
    """Paper setting (moco-v3 `CONFIG.md`): MoCo v3 ViT-S/16, 300 epochs, batch 4096
    (32 GPUs × 128).

    Expected (paper): 73.2 linear top-1.
    """
    return _mocov3_vit("vit_small")


def mocov3_vit_base_in1k() -> TrainConfig:
    """Paper setting (moco-v3 `CONFIG.md`): MoCo v3 ViT-B/16, 300 epochs. Expected (paper):
    76.7 linear."""
    return _mocov3_vit("vit_base")


def mocov3_resnet50_in1k() -> TrainConfig:
    """Paper setting (moco-v3 `CONFIG.md`): MoCo v3 ResNet-50, 100 epochs, LARS blr 0.6, wd
    1e-6, τ = 1.0.

    Expected (paper): 68.9 linear top-1 (100 epochs).
    """
    return TrainConfig(
        recipe="mocov3_resnet50_in1k",
        method=MoCoV3Config(tau=1.0, m0=0.99),
        backbone=BackboneConfig(name="resnet50", patch_size=4, pool="avg"),
        data=_in1k_data("mocov3_resnet"),
        optim=OptimConfig(
            optimizer="lars",
            epochs=100,
            batch_size=128,
            blr=0.6,
            warmup_epochs=10,
            weight_decay=1e-6,
        ),
        eval=_IN1K_EVAL,
        run=RunConfig(out_dir="runs/mocov3_resnet50_in1k"),
    )


def simclr_vit_base() -> TrainConfig:
    """SLIP's SimCLR ViT-B/16 recipe (SLIP README): AdamW lr 3.2e-3 at batch 4096 (blr 2e-4), wd
    0.1, betas (0.9, 0.98), 25 epochs, 1 warmup epoch, cosine to 1e-5. SLIP trains it on
    YFCC15M images; point data.dataset at your image folder."""
    return TrainConfig(
        recipe="simclr_vit_base",
        method=SimCLRConfig(mlp_dim=4096, dim=256, tau=0.1),
        backbone=BackboneConfig(name="vit_base", patch_size=16, pool="token", pos_embed="learn"),
        data=_in1k_data("simclr"),
        optim=OptimConfig(
            epochs=25,
            batch_size=64,
            blr=2e-4,
            warmup_epochs=1,
            min_lr=1e-5,
            weight_decay=0.1,
            betas=(0.9, 0.98),
        ),
        eval=_IN1K_EVAL,
        run=RunConfig(out_dir="runs/simclr_vit_base"),
    )
