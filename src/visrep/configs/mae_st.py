"""MAE-ST recipes ("Masked Autoencoders As Spatiotemporal Learners", Feichtenhofer et al.,
NeurIPS 2022; facebookresearch/mae_st PRETRAIN.md). Each docstring gives the command and what
to expect."""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.configs.video import kinetics_clips, moving_fmnist_clips
from visrep.method_configs import MAESTConfig


def mae_st_mfmnist() -> TrainConfig:
    """MAE-ST on Moving Fashion-MNIST (`visrep data build-video`) with a ViT-Tiny on a 2-core CPU.

    Command: `visrep train mae_st_mfmnist` (the 4,000 train videos made on the fly from the
    Fashion-MNIST train images), or on the same videos as mp4 files through the PyAV decoding
    path: `visrep data build-video --out data/mfmnist && visrep train mae_st_mfmnist
    data.dataset=data/mfmnist`. Clips of T = 8 frames at stride τ = 2 (W = 16 of the 32 frames)
    at 64 px, 2×8×8 spacetime patches (4 × 8 × 8 = 256 tokens, 25 kept at 90% masking), a
    2-block 128-wide decoder predicting frames [0, 2, 4, 7], no flip (it would mirror the
    motion direction). Training ends after 2 epochs (124 steps of 64 clips) or 10 minutes,
    whichever comes first, with its schedule complete (`run.budget_minutes`, as mae_fmnist);
    then the video k-NN (2 temporal views, feature_mean, k = 20) on 400 train /
    240 test videos, for class and direction labels, beside the untrained encoder.
    Measured here with 4 other jobs on the 2 cores (load average 5-11; benchmarks/results/
    mae_st_mfmnist_busy_host): 3.6 clips/s, so the budget ended training at step 34 of 124
    (2,176 clips), norm-pix loss 0.95 -> 0.40 by step 20; the k-NN then took ~4 minutes per
    encoder: class 0.379 (untrained encoder 0.367, chance 0.10), direction 0.346 (untrained
    0.379, chance 0.125) -- at this budget MAE-ST has not yet learned more motion than a
    random encoder's features carry. A quiet host trains several times more clips.
    """
    return TrainConfig(
        recipe="mae_st_mfmnist",
        method=MAESTConfig(
            mask_ratio=0.9, decoder_dim=128, decoder_depth=2, decoder_heads=4, pred_t_dim=4
        ),  # fmt: skip
        backbone=BackboneConfig(
            name="vit_tiny", patch_size=8, t_patch_size=2, pool="avg", pos_embed="learn"
        ),  # fmt: skip
        data=moving_fmnist_clips(),  # no flip: it would mirror the motion direction
        optim=OptimConfig(
            epochs=2,
            batch_size=64,
            blr=1.6e-3,
            warmup_epochs=0.5,
            weight_decay=0.05,
            clip_grad=0.02,
        ),  # fmt: skip
        # video k-NN on 400 train / 240 test videos (balanced: multiples of 80), 2 views each
        eval=EvalConfig(dataset="auto", every_epochs=0, limit_train=400, limit_test=240),
        run=RunConfig(out_dir="runs/mae_st_mfmnist", precision="fp32", budget_minutes=10),
    )


def mae_st_vit_large_k400() -> TrainConfig:
    """Paper setting (PRETRAIN.md): ViT-L/16, 16 frames at stride 4, 2×16×16 patches, 90%
    masking, 4×512 decoder, 8 predicted frames, norm-pix loss, blr 1.6e-3, warmup 5, 100
    epochs, clip_grad 0.02, fp32, random resized crop of relative scale (0.5, 1) on frames
    decoded at short side 256.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train mae_st_vit_large_k400
    data.dataset=/data/kinetics400/train` (a folder of class folders of videos, or a list
    `path label` per line). Repeated augmentation as PRETRAIN.md's `--repeat_aug 4`
    (`data.repeat_aug`): each decoded video gives 4 clips, each with its own position and
    crop, so a step trains on 8 clips of 2 videos per GPU and the lr scales with the 2 videos;
    100 epochs over the videos are 400 "effective" epochs (the released checkpoints'
    `400ep_rep4`). Expected (paper, Table 1 / Sec. 5): 84.8 top-1 on Kinetics-400 after
    fine-tuning at 800 epochs (`visrep eval finetune --ckpt RUN --preset mae_st_vit_large
    eval.dataset=/data/kinetics400`, a folder of train/ and val/ class folders of videos:
    mae_st FINETUNE.md's recipe with its RandAugment, RandomErasing and repeated
    augmentation 2).
    """
    return TrainConfig(
        recipe="mae_st_vit_large_k400",
        method=MAESTConfig(),
        backbone=BackboneConfig(
            name="vit_large", patch_size=16, t_patch_size=2, pool="avg", pos_embed="learn"
        ),  # fmt: skip
        data=kinetics_clips(16, 4, num_workers=14, repeat_aug=4),
        optim=OptimConfig(
            epochs=100, batch_size=2, blr=1.6e-3, warmup_epochs=5, weight_decay=0.05, clip_grad=0.02
        ),  # fmt: skip
        # set eval.dataset=/data/kinetics400 (train/ and val/ class folders) for the video k-NN
        eval=EvalConfig(dataset="", every_epochs=0),
        run=RunConfig(out_dir="runs/mae_st_vit_large_k400", precision="fp32"),
    )
