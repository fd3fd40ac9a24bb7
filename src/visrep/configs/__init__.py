"""Recipes: functions returning a `TrainConfig`. `RECIPES` maps a name to its function.

Every recipe has a smoke mode (`smoke(cfg)`): the same code path at tiny sizes on
Fashion-MNIST, a few steps on a CPU; the tests run every recipe that way.
"""

from __future__ import annotations

from collections.abc import Callable

from visrep.config import TrainConfig, replace
from visrep.configs.cit import cit_fmnist
from visrep.configs.clip import (
    clip_bow_fmnist,
    clip_fmnist,
    clip_vit_base_yfcc,
    flip_fmnist,
    flip_vit_large_laion,
    lit_fmnist,
    slip_fmnist,
    slip_vit_base_yfcc,
)
from visrep.configs.dit import dit_fmnist, dit_s2_in1k
from visrep.configs.fcmae import (
    fcmae_convnextv2_atto_in1k,
    fcmae_convnextv2_base_in1k,
    fcmae_fmnist,
)
from visrep.configs.joint_embedding import (
    mocov3_fmnist,
    mocov3_resnet50_in1k,
    mocov3_vit_base_in1k,
    mocov3_vit_fmnist,
    mocov3_vit_small_in1k,
    simclr_fmnist,
    simclr_vit_base,
    simsiam_fmnist,
    simsiam_resnet50_in1k,
)
from visrep.configs.mae import mae_fmnist, mae_vit_base_in1k, mae_vit_huge_in1k, mae_vit_large_in1k
from visrep.configs.mae_longseq import (
    mae_longseq_fmnist,
    mae_longseq_vit_base_448,
    mae_longseq_vit_large_448,
)
from visrep.configs.mae_st import mae_st_mfmnist, mae_st_vit_large_k400
from visrep.configs.maskfeat import maskfeat_fmnist, maskfeat_vit_base_in1k
from visrep.configs.maskfeat_video import (
    maskfeat_video_mfmnist,
    maskfeat_video_mvit_mfmnist,
    maskfeat_video_mvit_s_k400,
    maskfeat_video_vit_base_k400,
)
from visrep.configs.own import mae_own, mae_vit_small_224, simclr_resnet18_own
from visrep.configs.rcg import gen_reference_fmnist, rcg_fmnist
from visrep.configs.rho import (
    rho_byol_k400,
    rho_byol_mfmnist,
    rho_moco_k400,
    rho_moco_mfmnist,
    rho_simclr_k400,
    rho_simclr_mfmnist,
    rho_swav_k400,
    rho_swav_mfmnist,
)
from visrep.configs.spark import spark_convnext_small_in1k, spark_fmnist, spark_resnet50_in1k
from visrep.method_configs import SupervisedConfig

RECIPES: dict[str, Callable[[], TrainConfig]] = {
    "mae_fmnist": mae_fmnist,
    "mae_own": mae_own,  # your own images (configs/own.py)
    "mae_vit_small_224": mae_vit_small_224,
    "simclr_resnet18_own": simclr_resnet18_own,
    "mae_vit_base_in1k": mae_vit_base_in1k,
    "mae_vit_large_in1k": mae_vit_large_in1k,
    "mae_vit_huge_in1k": mae_vit_huge_in1k,
    "mae_longseq_fmnist": mae_longseq_fmnist,
    "mae_longseq_vit_base_448": mae_longseq_vit_base_448,
    "mae_longseq_vit_large_448": mae_longseq_vit_large_448,
    "maskfeat_fmnist": maskfeat_fmnist,
    "mae_st_mfmnist": mae_st_mfmnist,  # video: Moving Fashion-MNIST (configs/mae_st.py)
    "mae_st_vit_large_k400": mae_st_vit_large_k400,
    "maskfeat_video_mfmnist": maskfeat_video_mfmnist,  # video (configs/maskfeat_video.py)
    "maskfeat_video_vit_base_k400": maskfeat_video_vit_base_k400,
    "maskfeat_video_mvit_mfmnist": maskfeat_video_mvit_mfmnist,  # video, MViTv2
    "maskfeat_video_mvit_s_k400": maskfeat_video_mvit_s_k400,
    "rho_moco_mfmnist": rho_moco_mfmnist,  # video, ρ clips per video (configs/rho.py)
    "rho_byol_mfmnist": rho_byol_mfmnist,
    "rho_simclr_mfmnist": rho_simclr_mfmnist,
    "rho_swav_mfmnist": rho_swav_mfmnist,
    "rho_moco_k400": rho_moco_k400,
    "rho_byol_k400": rho_byol_k400,
    "rho_simclr_k400": rho_simclr_k400,
    "rho_swav_k400": rho_swav_k400,
    "maskfeat_vit_base_in1k": maskfeat_vit_base_in1k,
    "fcmae_fmnist": fcmae_fmnist,
    "fcmae_convnextv2_atto_in1k": fcmae_convnextv2_atto_in1k,
    "fcmae_convnextv2_base_in1k": fcmae_convnextv2_base_in1k,
    "spark_fmnist": spark_fmnist,
    "spark_resnet50_in1k": spark_resnet50_in1k,
    "spark_convnext_small_in1k": spark_convnext_small_in1k,
    "simsiam_fmnist": simsiam_fmnist,
    "simsiam_resnet50_in1k": simsiam_resnet50_in1k,
    "mocov3_fmnist": mocov3_fmnist,
    "mocov3_vit_fmnist": mocov3_vit_fmnist,
    "mocov3_vit_small_in1k": mocov3_vit_small_in1k,
    "mocov3_vit_base_in1k": mocov3_vit_base_in1k,
    "mocov3_resnet50_in1k": mocov3_resnet50_in1k,
    "simclr_fmnist": simclr_fmnist,
    "simclr_vit_base": simclr_vit_base,
    "clip_fmnist": clip_fmnist,
    "cit_fmnist": cit_fmnist,
    "clip_bow_fmnist": clip_bow_fmnist,
    "slip_fmnist": slip_fmnist,
    "flip_fmnist": flip_fmnist,
    "lit_fmnist": lit_fmnist,
    "clip_vit_base_yfcc": clip_vit_base_yfcc,
    "slip_vit_base_yfcc": slip_vit_base_yfcc,
    "flip_vit_large_laion": flip_vit_large_laion,
    "dit_fmnist": dit_fmnist,
    "dit_s2_in1k": dit_s2_in1k,
    "rcg_fmnist": rcg_fmnist,  # needs method.encoder=RUN (configs/rcg.py)
    "gen_reference_fmnist": gen_reference_fmnist,  # visrep eval generation's reference
}


def get_recipe(name: str) -> TrainConfig:
    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, list(RECIPES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown recipe {name!r}.{hint} Available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]()


def resolved_recipe(name: str) -> TrainConfig:
    """`get_recipe(name)` with its automatic data settings made explicit (channels, workers,
    `eval.dataset="auto"`; `visrep.data.resolve`), as `visrep train` starts it."""
    # imported here, not above: resolving reads the data with torch, and `visrep recipes` /
    # `visrep show` import this package only to print configs (no torch: under a second)
    from visrep.data.resolve import resolve_data

    return resolve_data(get_recipe(name))


def smoke(cfg: TrainConfig) -> TrainConfig:
    """Tiny version of a recipe: 2 blocks, ≤32 px (≤64 for masked CNNs), 256 Fashion-MNIST
    images, a few steps."""
    tiny = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2,  # MAE
            "mlp_dim": 256, "proj_dim": 128, "pred_dim": 32,  # joint-embedding heads
            "embed_dim": 32, "text_width": 32, "text_layers": 1, "text_heads": 2,  # text tower
            "curate_every": 4,  # CiT: several curation rounds
            "queue_len": 256, "prototypes": 32, "freeze_steps": 2,  # ρMoCo, ρSwAV
            "freeze_prototypes_steps": 2,
            "latent": False,  # DiT: pixel space (no VAE offline)
            "rdm_steps": 4, "rdm_width": 32, "rdm_depth": 2}  # RCG: both stages  # fmt: skip
    method_changes = {f"method.{k}": v for k, v in tiny.items() if hasattr(cfg.method, k)}
    is_vit = cfg.backbone.name.startswith("vit")
    mvit = cfg.backbone.name.startswith("mvit")  # video MViTv2: 32 px pools to 4 × 4 (or 2 × 2)
    # a CNN masked at its stride-32 grid (FCMAE, SparK) needs 2×2 cells to keep one visible
    masked_cnn = hasattr(cfg.method, "mask_ratio") and not (is_vit or mvit)
    size = min(cfg.data.img_size, 64 if masked_cnn else 32)
    patch = cfg.backbone.patch_size if size % cfg.backbone.patch_size == 0 else 8
    patch = max(patch, 4) if is_vit else patch  # ≤ 64 tokens (DiT-S/2 would have 256)
    video = {}
    if cfg.data.frames:  # video recipes: Moving Fashion-MNIST made on the fly, 8-frame clips
        video = {"data.frames": min(cfg.data.frames, 8),
                 "data.frame_stride": min(cfg.data.frame_stride, 2), "data.short_side": 0,
                 "data.channels": 3, "eval.dataset": "", "eval.every_epochs": 0}  # fmt: skip
        if hasattr(cfg.method, "pred_t_dim"):
            method_changes["method.pred_t_dim"] = min(cfg.method.pred_t_dim, 4)
        if hasattr(cfg.method, "mask_unit"):  # video MaskFeat: a 2 x 2 token grid at 32 px
            method_changes["method.mask_unit"] = 1
        if cfg.data.clips:  # the ρ study: 2 clips per video
            video["data.clips"] = min(cfg.data.clips, 2)
        if cfg.backbone.name.startswith("slow_"):  # Slow R-50 -> its CPU-size variant
            video["backbone.name"] = "slow_r26"
        if mvit:  # MViTv2-S/L -> the 5-block CPU size, same pooling variant
            video["backbone.name"] = "mvitv2_tiny"
    return replace(
        cfg,
        **method_changes,
        **{
            "backbone.depth": 2 if is_vit else 0,
            "backbone.patch_size": patch,
            "data.dataset": "fashion_mnist",
            "data.img_size": size,
            # a supervised run's images are eval.dataset's train split (eval.limit_train)
            "data.limit": 0 if isinstance(cfg.method, SupervisedConfig) else 256,
            "data.num_workers": 0,
            "data.mean": (),
            "data.std": (),
            "optim.epochs": 2,
            "optim.batch_size": 32,
            "optim.warmup_epochs": 1.0,
            "optim.accum_steps": 1,
            "eval.dataset": "fashion_mnist",
            "eval.every_epochs": 1,
            "eval.periodic_limit": 200,
            "eval.limit_train": 500,
            "eval.limit_test": 200,
            "eval.linear_epochs": 2,
            "run.out_dir": cfg.run.out_dir + "_smoke",
            "run.log_every": 2,
            "run.progress": False,
            "run.budget_minutes": 0.0,  # steps, not the clock: exact resume, torchrun
            "eval.budget_minutes": 0.0,
        }
        | video,
    )
