"""Video MaskFeat recipes (Wei et al., "Masked Feature Prediction for Self-Supervised Visual
Pre-Training", CVPR 2022, Sec. 4; facebookresearch/SlowFast
`configs/masked_ssl/k400_MVITv2_S_16x4_MaskFeat_PT.yaml`). Each docstring gives the command
and what to expect."""

from __future__ import annotations

from visrep.config import (
    BackboneConfig,
    EvalConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from visrep.configs.video import kinetics_clips, moving_fmnist_clips
from visrep.method_configs import MaskFeatVideoConfig

# the MViT-S pre-training schedule (`k400_MVITv2_S_16x4_MaskFeat_PT.yaml`): 4 clips per GPU,
# lr 1e-4 per 32 clips (blr 8e-4), warmup 10 epochs from 1e-6, cosine to 1e-6 over 300
K400_PT_OPTIM = OptimConfig(
    epochs=300,
    batch_size=4,
    blr=8e-4,
    warmup_epochs=10,
    warmup_start=0.01,
    min_lr_ratio=0.01,
    weight_decay=0.05,
    betas=(0.9, 0.999),
    clip_grad=0.02,
)


def maskfeat_video_mfmnist() -> TrainConfig:
    """Video MaskFeat on Moving Fashion-MNIST with a video ViT-Tiny on a 2-core CPU.

    Command: `visrep train maskfeat_video_mfmnist` (videos made on the fly), or on the mp4s of
    `visrep data build-video --out data/mfmnist` with `data.dataset=data/mfmnist`. Clips of
    T = 8 frames at τ = 2, 64 px, 2×8×8 tubelets (4 × 8 × 8 = 256 tokens, all encoded); HOG
    with 4 px cells on frames 0, 2, 4, 6 (a token holds 2 × 2 cells: K = 9·4·3 = 108, as
    ViT-B/16 at 224 with 8 px cells); cube masking on a (4, 4, 4) window of 2 × 2-token units
    (16 px, the official 32 px geometry scaled by ½), 40% → 26 units. AdamW (0.9, 0.999),
    wd 0.05, clip 0.02, fp32 as the MViT-S recipe; the schedule is shortened to the budget
    (2 epochs of 64 clips or 10 minutes, whichever first) and the lr raised for it, to blr
    4e-3 (five times the official 8e-4; ρBYOL's, ρSimCLR's and ρSwAV's). No flip (it would
    mirror the motion direction). Then the video k-NN (class and direction) beside the
    untrained encoder.
    Not measured as shipped: docs/results.md ran it with the ρ recipes' smaller encoder
    (2×16×16 tubelets, 6 blocks, 4 × 4 × 4 tokens: `backbone.patch_size=16 backbone.depth=6
    method.cell_size=8 method.mask_unit=1`). At blr 1e-3 (the recipe until then) 60 steps of
    32 clips left it at or below its initial encoder ("Video methods side by side"), and after
    625 steps it fine-tuned as its init did; at 4e-3, 625 steps lead that init on direction
    and class by fine-tuning in 8 of 8 pairs each, and 1e-3 by +0.107 and +0.089 (7 and 8 of
    8; "Video MaskFeat: what its pre-training learns").
    """
    return TrainConfig(
        recipe="maskfeat_video_mfmnist",
        method=MaskFeatVideoConfig(mask_ratio=0.4, mask_unit=2, nbins=9, cell_size=4),
        backbone=BackboneConfig(
            name="vit_tiny", patch_size=8, t_patch_size=2, pool="avg", pos_embed="learn"
        ),  # fmt: skip
        data=moving_fmnist_clips(),
        optim=OptimConfig(
            epochs=2,
            batch_size=64,
            blr=4e-3,
            warmup_epochs=0.5,
            weight_decay=0.05,
            betas=(0.9, 0.999),
            clip_grad=0.02,
        ),
        eval=EvalConfig(dataset="auto", every_epochs=0, limit_train=400, limit_test=240),
        run=RunConfig(out_dir="runs/maskfeat_video_mfmnist", precision="fp32", budget_minutes=10),
    )


def maskfeat_video_vit_base_k400() -> TrainConfig:
    """Derived recipe: no official ViT-MaskFeat video recipe exists (the released video
    configs are MViTv2-S/L); this transfers the MViT-S one (`k400_MVITv2_S_16x4_MaskFeat_PT`)
    unchanged to a video ViT-B/16: 16 frames at τ = 4, 2×16×16 tubelets (8 × 14 × 14 tokens),
    cube masking 40% on the official [8, 7, 7] window (32 × 32 px units), HOG 9 bins × 8 px
    cells on frames 0, 2, …, 14 (K = 108), random resized crop (0.5, 1) on frames decoded at
    short side 256 with flip, AdamW (0.9, 0.999) wd 0.05, lr 1e-4 per 32 clips (blr 8e-4 per
    256), warmup 10 from 1e-6 of 300 epochs, cosine to 1e-6, clip 0.02, fp32.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train maskfeat_video_vit_base_k400
    data.dataset=/data/kinetics400/train` (8 GPUs × 4 clips = 32 per machine). Expected: the
    MaskFeat paper reports MViTv2-S 82.2 / MViTv2-L 84.3 K400 top-1 after fine-tuning; no
    figure exists for this ViT variant (MAE-ST's target ablation puts HOG on a ViT-L close to
    pixels); `visrep eval finetune --ckpt RUN eval.dataset=KINETICS_DIR` fine-tunes it (no
    MaskFeat-specific preset).
    """
    return TrainConfig(
        recipe="maskfeat_video_vit_base_k400",
        method=MaskFeatVideoConfig(mask_ratio=0.4, mask_unit=2, nbins=9, cell_size=8),
        backbone=BackboneConfig(
            name="vit_base", patch_size=16, t_patch_size=2, pool="avg", pos_embed="learn"
        ),  # fmt: skip
        data=kinetics_clips(16, 4),
        optim=K400_PT_OPTIM,
        eval=EvalConfig(dataset="", every_epochs=0),
        run=RunConfig(out_dir="runs/maskfeat_video_vit_base_k400", precision="fp32"),
    )


def maskfeat_video_mvit_s_k400() -> TrainConfig:
    """Official recipe (SlowFast `configs/masked_ssl/k400_MVITv2_S_16x4_MaskFeat_PT.yaml`): video
    MaskFeat on MViTv2-S. 16 frames at τ = 4, 224 px, random resized crop (0.5, 1) with flip
    on frames decoded at short side 256, Kinetics mean/std; the pre-training variant of
    MViTv2-S (`backbone.mvit_last_pool=false`: block 14's query stride (1, 1, 1), so blocks
    14-15 stay at 8 × 14 × 14, stride 16 px); cube masking 40% on the [8, 7, 7] window (32 px
    units: 2 × 2 output tokens, 8 × 8 patch tokens of the 56 × 56 grid); HOG 9 bins × 8 px
    cells on frames 0, 2, …, 14 (K = 108 per output token); LayerNorm → Linear on block 15;
    AdamW (0.9, 0.999) wd 0.05 (none on 1-D tensors; cls token, mask token and relative
    position tables decayed), lr 1e-4 per 32 clips (blr 8e-4 per 256), warmup 10 epochs from
    1e-6, cosine to 1e-6 at 300 epochs, per step; clip 0.02; drop path 0; fp32.

    Command: `torchrun --nproc_per_node=8 -m visrep.cli train maskfeat_video_mvit_s_k400
    data.dataset=/data/kinetics400/train` (8 GPUs × 4 clips = the yaml's 32 per machine).
    Expected (SlowFast `projects/maskfeat/README.md`): 82.2% Kinetics-400 top-1 after
    fine-tuning (`k400_MVITv2_S_16x4_FT.yaml`, 10 temporal × 1 spatial views, 71 GFLOPs a
    view, 36 M parameters; this backbone with a 400-way head counts 36.5 M). `visrep eval
    finetune --ckpt RUN eval.dataset=/data/kinetics400` fine-tunes it with block 14's query
    pooling restored (8 × 7 × 7; block 15's relative-position tables interpolated 27 → 13
    rows, as SlowFast's `get_rel_pos` resamples a table; its checkpoint loader would keep
    them at init instead, `visrep.backbones.mvit`).

    `--preset maskfeat_mvit_s_k400` is that fine-tuning recipe (lr 6e-4 per 16 videos, layer
    decay 0.75, drop path 0.1, 100 epochs, RandAugment, Mixup/CutMix, random erasing, 2
    samples per video; `visrep.finetune.PRESETS`); `visrep export --ckpt RUN` writes the
    pre-trained MViTv2 in visrep's layout (docs/export.md, "MViTv2"). Not ported: masks come
    from the forward pass (seeded per step) instead of loader workers, with the same
    generator; clips are decoded with PyAV, not SlowFast's torchvision backend. Not run here:
    no figure from visrep exists for it.
    """
    return TrainConfig(
        recipe="maskfeat_video_mvit_s_k400",
        method=MaskFeatVideoConfig(mask_ratio=0.4, mask_unit=2, nbins=9, cell_size=8),
        backbone=BackboneConfig(name="mvitv2_s", pool="avg", mvit_last_pool=False),
        data=kinetics_clips(16, 4),
        optim=K400_PT_OPTIM,
        eval=EvalConfig(dataset="", every_epochs=0),
        run=RunConfig(out_dir="runs/maskfeat_video_mvit_s_k400", precision="fp32"),
    )


def maskfeat_video_mvit_mfmnist() -> TrainConfig:
    """Video MaskFeat on Moving Fashion-MNIST with a small MViTv2 on a 2-core CPU.

    Command: `visrep train maskfeat_video_mvit_mfmnist` (videos made on the fly), or on the
    mp4s of `visrep data build-video --out data/mfmnist` with `data.dataset=data/mfmnist`.
    The official MViTv2-S geometry scaled by ½ (as `maskfeat_video_mfmnist` scales the ViT's):
    clips of T = 8 frames at τ = 2, 64 px, the same (3, 7, 7) / (2, 4, 4) patch embedding
    (4 × 16 × 16 tokens), `mvitv2_tiny` (5 blocks, widths 32 → 64 → 128, heads 1, 2, 4; keys
    pooled to 4 × 4 in the first stage) in its pre-training variant (one query pooling: the
    last stage stays at 4 × 8 × 8, stride 8 px); HOG with 4 px cells on frames 0, 2, 4, 6
    (2 × 2 cells per output token: K = 108); cube masking on a (4, 4, 4) window of 16 px
    units (2 × 2 output, 4 × 4 patch tokens), 40% → 26 units. AdamW (0.9, 0.999), wd 0.05,
    clip 0.02, fp32 as the MViT-S recipe; the schedule is shortened to the budget (2 epochs
    of 64-clip steps or 10 minutes, whichever first) and the lr raised for it, to blr 4e-3
    (as the ViT recipe). No flip (it would mirror the motion direction). Then the video k-NN
    (class and direction) beside the untrained encoder. 0.58 M encoder parameters; a 64-clip
    step (forward + backward) costs about a quarter of `maskfeat_video_mfmnist`'s 12-block
    ViT-Tiny (5.0 s vs 18.3 s on one thread, measured side by side on a busy host).

    Measured in docs/results.md ("Video MaskFeat: what its pre-training learns", "On its
    official backbone family, the MViTv2"; 625 steps of 32 clips, `data.limit=4000
    optim.batch_size=32 optim.epochs=5 optim.warmup_epochs=0.5`, about 17 minutes on one
    thread): at blr 4e-3 (the recipe's lr since), three pre-training seeds, its masked HOG MSE
    ends at 0.71 of the per-position-mean predictor's (the ViT recipe's: 1.00), and it
    fine-tunes above the same MViTv2 at random init on class (+0.025 top-1 after 100 steps,
    9 of 12 seed pairs) but not on motion direction (−0.060, 4 of 12); after 2,500 steps (one
    seed) 0.63, class +0.066 (4 of 4), direction −0.095 (2 of 4). At blr 1e-3 (the lr until
    then), one seed: 0.82, and below random init on both. At 60 steps and blr 1e-3
    ("Video methods side by side", row `maskfeat_video_mvit`) it was no better than its
    initialisation.
    """
    return TrainConfig(
        recipe="maskfeat_video_mvit_mfmnist",
        method=MaskFeatVideoConfig(mask_ratio=0.4, mask_unit=2, nbins=9, cell_size=4),
        backbone=BackboneConfig(name="mvitv2_tiny", pool="avg", mvit_last_pool=False),
        data=moving_fmnist_clips(),
        optim=OptimConfig(
            epochs=2,
            batch_size=64,
            blr=4e-3,
            warmup_epochs=0.5,
            weight_decay=0.05,
            betas=(0.9, 0.999),
            clip_grad=0.02,
        ),
        eval=EvalConfig(dataset="auto", every_epochs=0, limit_train=400, limit_test=240),
        run=RunConfig(
            out_dir="runs/maskfeat_video_mvit_mfmnist", precision="fp32", budget_minutes=10
        ),  # fmt: skip
    )
