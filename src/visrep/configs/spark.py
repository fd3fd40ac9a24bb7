"""SparK recipes (SparK paper; keyu-tian/SparK `pretrain/`). Each docstring gives the command
and what to expect."""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    DataConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.method_configs import SparKConfig


def spark_fmnist() -> TrainConfig:
    """SparK on Fashion-MNIST with a ResNet-18 (1 channel) on a 2-core CPU.

    Command: `visrep train spark_fmnist`. Images are resized 28 -> 32 px. A standard ResNet
    reduces by 32 (one mask cell per image), so the stem is the small-image 3×3 stride-1
    conv without max-pool (`backbone.patch_size=1`): the stages run at 32, 16, 8 and 4 px,
    and SparK masks 8×8 px cells of a 4×4 grid, round(16 × 0.4) = 6 visible, 10 masked (the
    paper: 20 of 49 visible). The decoder up-samples ×8, i.e. three UNet blocks (4 -> 8 ->
    16 -> 32 px) fed by the three smallest stage outputs; the stride-1 stage's map has no
    block of its resolution left (as in SparK's decoder loop, which only feeds as many maps
    as it has blocks). Decoder width 256 (256, 128, 64, 32) instead of 768, so the decoder
    costs ~40% of the encoder here (the paper's is larger than its encoder). Otherwise the
    paper's recipe (SparK `pretrain/utils/arg_util.py` defaults, crop in
    `pretrain/utils/imagenet.py`): LAMB (0.9, 0.95) with global-norm clip 5, weight decay
    rising 0.04 -> 0.2, crop scale 0.67-1, fp32; the schedule is shortened for the budget
    (one epoch, 0.1-epoch warmup, higher base lr). One epoch is ~470 steps at batch 128 (~38
    img/s on a quiet 2-core host, so ~25 minutes); not run end to end yet. Fixed-step check
    (docs/results.md, 30 steps of 128 compressed into one epoch, one thread): loss 0.850 ->
    0.753, 20-NN top-1 0.620 vs 0.590 for the same ResNet-18 at random init
    (2,000/2,000-image subsets).
    """
    return TrainConfig(
        recipe="spark_fmnist",
        method=SparKConfig(mask_ratio=0.6, decoder_dim=256),
        backbone=BackboneConfig(name="resnet18", patch_size=1, pool="avg"),
        data=DataConfig(
            dataset="fashion_mnist", img_size=32, channels=0, num_workers=-1, crop_scale=(0.67, 1.0)
        ),
        optim=OptimConfig(
            optimizer="lamb",
            epochs=1,
            batch_size=128,
            blr=4e-3,
            warmup_epochs=0.1,
            weight_decay=0.04,
            weight_decay_end=0.2,
            betas=(0.9, 0.95),
            clip_grad=5.0,
        ),
        eval=EvalConfig(dataset="auto", every_epochs=1, periodic_limit=2000, limit_train=20000),
        run=RunConfig(out_dir="runs/spark_fmnist", precision="fp32"),
    )


def _spark_in1k(arch: str, drop_path: float, betas: tuple[float, float]) -> TrainConfig:
    return TrainConfig(
        recipe=f"spark_{arch}_in1k",
        method=SparKConfig(),  # 60% of 7×7 cells of 32 px, decoder width 768
        backbone=BackboneConfig(name=arch, patch_size=4, pool="avg", drop_path_rate=drop_path),
        data=DataConfig(
            dataset="path/to/imagenet/train",
            img_size=224,
            channels=3,
            crop_scale=(0.67, 1.0),
            num_workers=8,
        ),
        # 64 per GPU × 64 GPUs = 4096 (8 GPUs: optim.accum_steps=8); base lr 2e-4 → 3.2e-3;
        # warmup from 0.005 × peak, cosine to 0.001 × peak (`lr_control.py`)
        optim=OptimConfig(
            optimizer="lamb",
            epochs=1600,
            batch_size=64,
            blr=2e-4,
            min_lr_ratio=0.001,
            warmup_epochs=40,
            warmup_start=0.005,
            weight_decay=0.04,
            weight_decay_end=0.2,
            betas=betas,
            clip_grad=5.0,
        ),
        eval=EvalConfig(dataset=""),  # set eval.dataset=/path/to/imagenet (train/ and val/)
        run=RunConfig(out_dir=f"runs/spark_{arch}_in1k", precision="fp32"),  # no AMP
    )


def spark_resnet50_in1k() -> TrainConfig:
    """Paper setting (keyu-tian/SparK `pretrain/utils/arg_util.py`, `utils/imagenet.py`)
    with ResNet-50: 224 px, RandomResizedCrop(0.67-1) + flip, LAMB (0.9, 0.95) eps 1e-6 with
    global-norm clip 5, weight decay cosine 0.04 -> 0.2, batch 4096, base lr 2e-4 (lr
    3.2e-3), 40 warmup epochs, cosine to 0.001 × peak, 1600 epochs, mask ratio 0.6, drop
    path 0.05, fp32; BN in encoder and densify layers over visible positions, SyncBN under
    torchrun.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train spark_resnet50_in1k
    data.dataset=/data/imagenet/train optim.accum_steps=8` (8 GPUs × 64 × 8 = 4096).
    Expected (paper, after its fine-tuning, which visrep does not run here): 80.6 top-1.

    The lr warms up linearly from 0.005 × peak (`optim.warmup_start`) and the cosine ends at
    0.001 × peak (`optim.min_lr_ratio`), as SparK's `lr_control.py`; the crop is bicubic
    (folders). Not reproduced: the cosine's progress is e / epochs, where SparK divides by
    max_it − 1 (one iteration's difference).
    """
    return _spark_in1k("resnet50", 0.05, (0.9, 0.95))


def spark_convnext_small_in1k() -> TrainConfig:
    """As `spark_resnet50_in1k` with ConvNeXt-S (V1, LayerScale 1e-6): LAMB betas
    (0.9, 0.999), drop path 0.2, LayerNorm densify; its last width is 768 = the decoder
    width, so the first densify projection is the identity (`SparK.__init__` in
    `pretrain/spark.py`). Expected (paper, after
    fine-tuning): 84.1 top-1.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train spark_convnext_small_in1k
    data.dataset=/data/imagenet/train optim.accum_steps=8`.
    """
    return _spark_in1k("convnext_small", 0.2, (0.9, 0.999))
