"""ρ-spatiotemporal recipes (Feichtenhofer et al., "A Large-Scale Study on Unsupervised
Spatiotemporal Representation Learning", CVPR 2021; facebookresearch/SlowFast
`configs/contrastive_ssl/*_SlowR50_8x8.yaml`). Each docstring gives the command and what to
expect.

CPU recipes (`rho_*_mfmnist`) on Moving Fashion-MNIST (`visrep data build-video`), with
encoder and schedule derived for a 2-core CPU:
- encoder: a video ViT-Tiny with 2×16×16 tubelets and 6 blocks on 8 × 64 × 64 clips
  (4 × 4 × 4 = 64 tokens, mean-pooled): the 256-token ViT-Tiny/8 of `mae_st_mfmnist` trains
  ~4× slower per clip, too slow for ρ forwards per video here;
- ρ = data.clips (2: the paper's smallest ρ > 1; `data.clips=1` is the image-style
  baseline, two augmentations of one clip), T = 8 at τ = 2, random resized crop (0.2, 0.766)
  as the official SSL crop, no flip (it would teach invariance to left/right motion and
  break the direction labels), no SSL colour augmentation (`data.ssl_color=true` adds
  it; the k400 recipes have it);
- hidden head widths 1024 (official 2048 for MoCo / SimCLR / SwAV, 4096 for BYOL), AdamW at
  lr 4e-3 × 32 / 256 = 5e-4 (ρMoCo: blr 1e-3, its recipe says why) with a 6-step warmup,
  global-norm clip 1.0, instead of the official Nesterov SGD + LARS over 200 epochs (this is
  a minutes-long run);
- 60 steps of 32 videos (1,920 videos, 3,840 clips), then the video k-NN (class and
  direction) beside the untrained encoder. The online kNN monitor of the official code is
  `eval.every_epochs=N` (with `optim.epochs` > 1): the same clip-level video k-NN every N
  epochs on at most `eval.periodic_limit` videos, on backbone features (the official monitor
  reads the projector output).

GPU recipes (`rho_*_k400`): the official Slow-only ResNet-50 (`backbones.slow_resnet`),
losses, heads, ρ, τ and momenta on Kinetics-400, 8 × 8 clips at 224. [Deviations] visrep's
LARS is the moco-v3 form, not SlowFast's LARC-style variant, and the SGD inside it has no
Nesterov (ρMoCo's plain SGD has it, `optim.nesterov`, as SOLVER.NESTEROV);
BatchNorm is synchronised on GPUs for every method (official ρMoCo: per-GPU BN with
shuffle-BN).
"""

from __future__ import annotations

from dataclasses import replace

from visrep.config import BackboneConfig, EvalConfig, OptimConfig, RunConfig, TrainConfig
from visrep.configs.video import kinetics_clips, moving_fmnist_clips
from visrep.method_configs import RhoBYOLConfig, RhoMoCoConfig, RhoSimCLRConfig, RhoSwAVConfig

SSL_CROP = (0.2, 0.766)  # official area fraction U(0.2, 0.766) ≈ (224/256)² at the top
CPU_STEPS, CPU_BATCH = 60, 32
CPU_VIDEOS = CPU_STEPS * CPU_BATCH  # one epoch = the steps


def _mfmnist(name: str, method, rho: int = 2, blr: float = 4e-3) -> TrainConfig:
    return TrainConfig(
        recipe=name,
        method=method,
        backbone=BackboneConfig(
            name="vit_tiny", patch_size=16, t_patch_size=2, depth=6, pool="avg", pos_embed="learn"
        ),  # fmt: skip
        data=moving_fmnist_clips(clips=rho, crop_scale=SSL_CROP, limit=CPU_VIDEOS),
        optim=OptimConfig(
            epochs=1,
            batch_size=CPU_BATCH,
            blr=blr,
            warmup_epochs=0.1,
            weight_decay=0.05,
            clip_grad=1.0,
        ),  # fmt: skip
        eval=EvalConfig(dataset="auto", every_epochs=0, limit_train=400, limit_test=240),
        run=RunConfig(out_dir=f"runs/{name}", precision="fp32"),
    )


def rho_moco_mfmnist() -> TrainConfig:
    """ρMoCo, ρ = 2, on Moving Fashion-MNIST (module docstring for the shared settings).

    Command: `visrep train rho_moco_mfmnist` (`data.clips=1` for the ρ = 1 baseline).
    Queue of 1,024 keys (16 steps of 2 × 32 keys fill it), gradients zeroed for the first
    1,024 / 32 = 32 steps as the official queue_len / batch rule, τ 0.1, m 0.994 → 1.
    blr 1e-3, a quarter of the other ρ recipes': at their 4e-3 this ViT's ρMoCo loss rose
    once the queue filled and its frozen direction k-NN ended below the untrained encoder's
    in two of three seeds (MoCo v3, Chen, Xie, He, ICCV 2021, Sec. 4: ViT contrastive
    training is unstable at high lr). Measured: docs/results.md, "ρMoCo's learning rate"
    (benchmarks/video_finetune.py) and, at blr 4e-3, "Video methods side by side"
    (benchmarks/video_methods.py).
    """
    return _mfmnist("rho_moco_mfmnist", RhoMoCoConfig(mlp_dim=1024, queue_len=1024,
                                                      freeze_steps=1024 // CPU_BATCH),
                    blr=1e-3)  # fmt: skip


def rho_byol_mfmnist() -> TrainConfig:
    """ρBYOL, ρ = 2, on Moving Fashion-MNIST: τ 0.5, m 0.996 → 1, BN projector/predictor.

    Command: `visrep train rho_byol_mfmnist` (`data.clips=1` for the ρ = 1 baseline).
    Measured: docs/results.md, "Video methods side by side".
    """
    return _mfmnist("rho_byol_mfmnist", RhoBYOLConfig(mlp_dim=1024))


def rho_simclr_mfmnist() -> TrainConfig:
    """ρSimCLR, ρ = 2, on Moving Fashion-MNIST: τ 0.1, projector without BN, NT-Xent on the
    ρ − 1 chained pairs. Command: `visrep train rho_simclr_mfmnist`."""
    return _mfmnist("rho_simclr_mfmnist", RhoSimCLRConfig(mlp_dim=1024))


def rho_swav_mfmnist() -> TrainConfig:
    """ρSwAV, ρ = 2, on Moving Fashion-MNIST: the official 1,000 prototypes, τ 0.1, ε 0.05,
    prototype gradients zeroed during the first 10% of the run (official: epoch 0 of 200).
    Command: `visrep train rho_swav_mfmnist`.

    With 100 prototypes (the set's 10 × 8 labels rounded up; `method.prototypes=100`) its
    encoders, fine-tuned 100 steps, were level with random init on the class labels (+0.003,
    5 of 8 pairs, also at blr 1e-3); with 1,000 they lead on both families (class +0.027, 8
    of 8; direction +0.574, 8 of 8): docs/results.md, "Every video method by fine-tuning
    after 625 pre-training steps" (benchmarks/video_finetune.py, `rho_swav_k1000`).
    """
    return _mfmnist("rho_swav_mfmnist", RhoSwAVConfig(mlp_dim=1024, prototypes=1000,
                                                      freeze_prototypes_steps=CPU_STEPS // 10))  # fmt: skip


def _k400(name: str, method, rho: int, blr: float, wd: float, short_side: int,
          precision: str = "fp32") -> TrainConfig:  # fmt: skip
    """8 GPUs × 8 clips = 64 per machine; BASE_LR per machine = blr × 64 / 256 here."""
    return TrainConfig(
        recipe=name,
        method=method,
        backbone=BackboneConfig(name="slow_r50", pool="avg"),
        data=kinetics_clips(
            8, 8, clips=rho, crop_scale=SSL_CROP, short_side=short_side, ssl_color=True
        ),  # fmt: skip
        optim=OptimConfig(
            optimizer="lars",
            epochs=200,
            batch_size=8,
            blr=blr,
            warmup_epochs=35,
            warmup_start=0.001 / (blr * 64 / 256),
            weight_decay=wd,
            momentum=0.9,
        ),  # fmt: skip
        eval=EvalConfig(dataset="", every_epochs=0),
        run=RunConfig(out_dir=f"runs/{name}", precision=precision),  # AMP: MoCo only
    )


def rho_moco_k400() -> TrainConfig:
    """ρMoCo, ρ = 4 (`MoCo_SlowR50_8x8.yaml`): BASE_LR 0.1 per 64 clips, wd 1e-4, AMP,
    decoded short side 256. Command: `torchrun --nproc_per_node=8 -m visrep.cli train
    rho_moco_k400 data.dataset=/data/kinetics400/train`. Expected (README, Slow R-50, 200
    epochs): 71.0 K400 linear at ρ = 4. The official MoCo recipe has no LARS (plain SGD with
    Nesterov momentum, SlowFast's SOLVER.NESTEROV default)."""
    cfg = _k400("rho_moco_k400", RhoMoCoConfig(), 4, 0.4, 1e-4, 256, "bf16")
    return replace(cfg, optim=replace(cfg.optim, optimizer="sgd", nesterov=True))


def rho_byol_k400() -> TrainConfig:
    """ρBYOL, ρ = 2 (`BYOL_SlowR50_8x8.yaml`): BASE_LR 0.6 per 64 clips, wd 1e-6, LARS,
    fp32, short side 256. Expected (README, Slow R-50): 67.4 K400 linear at ρ = 2."""
    return _k400("rho_byol_k400", RhoBYOLConfig(), 2, 2.4, 1e-6, 256)


def rho_simclr_k400() -> TrainConfig:
    """ρSimCLR, ρ = 4 (`SimCLR_SlowR50_8x8.yaml`): BASE_LR 1.2 per 64 clips, wd 1e-6, LARS,
    short side 224. Expected (README, Slow R-50, ρ = 2): 61.5 K400 linear."""
    return _k400("rho_simclr_k400", RhoSimCLRConfig(), 4, 4.8, 1e-6, 224)


def rho_swav_k400() -> TrainConfig:
    """ρSwAV, ρ = 2 (`SwAV_Slow_R50_8x8.yaml`): BASE_LR 0.6 per 64 clips, wd 1e-6, LARS,
    short side 224, prototypes frozen in epoch 0 (240k videos / 64 = 3,750 steps on one
    machine). Expected (README, Slow R-50): 62.6."""
    return _k400("rho_swav_k400", RhoSwAVConfig(freeze_prototypes_steps=3750), 2, 2.4, 1e-6, 224)
