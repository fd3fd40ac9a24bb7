"""Long-sequence MAE recipes ("Exploring Long-Sequence Masked Autoencoders", Hu et al., 2022;
facebookresearch/long_seq_mae `PRETRAIN_LONG_SEQ_GPU.md`). Each docstring gives the command
and what to expect.

The paper's move: double the input side (224 → 448 px) at the same 16-px patch, so the
encoder sees 4× the tokens (784 instead of 196), and mask 2×2 units of patches (32 px) so
the masked regions cover the same part of the image as MAE's 16-px patches at 224 px.
Everything else is MAE: 75% masking, norm-pix loss, blr 1.5e-4, wd 0.05, warmup 40.
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
from visrep.method_configs import MAEConfig


def mae_longseq_fmnist() -> TrainConfig:
    """Long-sequence MAE on Fashion-MNIST upsampled 2× (56 px), ViT-Tiny/4, 2×2-patch units.

    Command: `visrep train mae_longseq_fmnist`. The same model as the `mae_fmnist` demo
    (ViT-Tiny/4, 1 channel, 2×128 decoder, batch 128) on images resized to 56 px, the
    paper's 2× input at the same patch size: 14×14 = 196 tokens instead of 7×7 = 49, and
    masks drawn on the 7×7 grid of 8-px units (each unit = 2×2 patches, the footprint of
    one demo patch), so the encoder sees 49 + 1 tokens and the decoder 197. A step costs
    3.9× the demo's FLOPs (2.07 vs 0.535 GFLOP per image, forward + backward;
    benchmarks/results/throughput_methods.md), so this recipe runs 1 epoch (468 steps)
    and evaluates on a 10,000-image memory bank / probe set and the full test set at 56 px.
    Expected: ~57 img/s on a quiet 2-core CPU (3.7× slower per image than the demo), so
    ~18 minutes of training plus the evaluation; not run end to end yet. Fixed-step
    check (docs/results.md, 50 steps of 128 compressed into one epoch): loss 1.285 ->
    0.700, 20-NN top-1 0.625 vs 0.584 at random init (2,000/2,000-image subsets).
    """
    return TrainConfig(
        recipe="mae_longseq_fmnist",
        method=MAEConfig(
            mask_ratio=0.75, decoder_dim=128, decoder_depth=2, decoder_heads=4, mask_unit=2
        ),
        backbone=BackboneConfig(name="vit_tiny", patch_size=4, pool="avg"),
        data=DataConfig(
            dataset="fashion_mnist", img_size=56, channels=0, num_workers=-1, crop_scale=(0.35, 1.0)
        ),
        optim=OptimConfig(
            epochs=1, batch_size=128, blr=1.5e-3, warmup_epochs=0.25, weight_decay=0.05
        ),
        eval=EvalConfig(dataset="auto", every_epochs=0, limit_train=10000),
        run=RunConfig(out_dir="runs/mae_longseq_fmnist"),
    )


def _longseq_448(arch: str, decoder: tuple[int, int, int]) -> TrainConfig:
    dim, heads, depth = decoder
    return TrainConfig(
        recipe=f"mae_longseq_{arch}_448",
        method=MAEConfig(
            mask_ratio=0.75,
            decoder_dim=dim,
            decoder_heads=heads,
            decoder_depth=depth,
            norm_pix_loss=True,
            mask_unit=2,  # 32-px units: 14×14 units of 2×2 patches on the 28×28 grid
        ),
        backbone=BackboneConfig(name=arch, patch_size=16, pool="token"),
        data=DataConfig(
            dataset="path/to/imagenet/train",  # the paper also uses COCO train+unlabeled ×5
            img_size=448,
            channels=3,
            crop_scale=(0.2, 1.0),
            num_workers=8,
        ),
        # 4096 = 64 per GPU × 64 GPUs (use optim.accum_steps on fewer); lr = 1.5e-4·4096/256
        optim=OptimConfig(
            epochs=800, batch_size=64, blr=1.5e-4, warmup_epochs=40, weight_decay=0.05
        ),
        eval=EvalConfig(dataset=""),  # set eval.dataset=/path/to/imagenet (train/ and val/)
        run=RunConfig(out_dir=f"runs/mae_longseq_{arch}_448"),
    )


def mae_longseq_vit_base_448() -> TrainConfig:
    """Paper setting (long_seq_mae PRETRAIN_LONG_SEQ_GPU.md): ViT-B/16 at 448 px (L = 784),
    2×2-patch mask units, decoder "dec384d12h8b" (width 384, 12 heads, 8 blocks), 800
    epochs, batch 4096.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train mae_longseq_vit_base_448
    data.dataset=/data/imagenet/train optim.accum_steps=8` (8 GPUs × 64 × 8 = 4096).
    Expected (paper, Hu et al. 2022): better transfer to COCO detection than 224-px MAE
    pre-training (the paper's metric; ImageNet figures depend on the fine-tuning size).
    """
    return _longseq_448("vit_base", (384, 12, 8))


def mae_longseq_vit_large_448() -> TrainConfig:
    """Paper setting: ViT-L/16 at 448 px, 2×2-patch units, decoder "dec512d16h8b" (width
    512, 16 heads, 8 blocks), 800 epochs, batch 4096. Command as for
    mae_longseq_vit_base_448 with this recipe name."""
    return _longseq_448("vit_large", (512, 16, 8))
