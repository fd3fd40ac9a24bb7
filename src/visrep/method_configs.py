"""Every method's own hyper-parameters: one frozen dataclass per method, without torch.

A method's config is read by its model (`visrep.methods.<name>`, which imports it from here),
by the recipes (`visrep.configs`) and by the command line. It lives apart from the model so
that `visrep recipes`, `visrep show` and config files build and print whole run configs
without importing torch (under a second instead of ~4 s); the method module re-exports it,
so `from visrep.methods.mae import MAEConfig` still works. The comment on (or above) each
field is its documentation: `visrep show` prints it (`visrep.config.field_comments`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


# visrep.methods.mae
@dataclass(frozen=True)
class MAEConfig:
    """MAE hyper-parameters (paper defaults: 75% masking, 8×512 decoder, norm-pix loss)."""

    mask_ratio: float = 0.75
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True
    # Baseline of the paper's Table 1c ("encoder w/ [M]"): the encoder processes all tokens,
    # masked ones replaced by a learned mask token. Only for the speed benchmark.
    encoder_mask_tokens: bool = False
    # Long-sequence MAE: mask k×k units of patches (official --mask_downsampling);
    # 1 = ordinary per-patch MAE masking.
    mask_unit: int = 1
    # Attention with q and v biases but no k bias, in encoder and decoder (official
    # --no_k_bias_in_vit, to match TF/JAX ViTs): the k slice of timm's fused qkv bias is
    # held at zero, so the weights still load into timm strictly.
    no_k_bias_in_vit: bool = False


# visrep.methods.mae_st
@dataclass(frozen=True)
class MAESTConfig:
    """MAE-ST hyper-parameters (paper / PRETRAIN.md: 90% spacetime masking, 4×512 decoder,
    8 predicted frames, norm-pix loss). The clip (data.frames, data.frame_stride) and the
    spacetime patch (backbone.t_patch_size × backbone.patch_size²) are the data's and the
    backbone's settings."""

    mask_ratio: float = 0.9  # random over all spacetime tokens (agnostic, not tube)
    decoder_dim: int = 512
    decoder_depth: int = 4  # PRETRAIN.md (the argparse default is 8)
    decoder_heads: int = 16
    # frames the decoder predicts: indices linspace(0, T-1, pred_t_dim) truncated
    # ([0, 2, ..., 12, 15] for T = 16, 8); each token predicts t_patch*pred_t_dim/T of them
    pred_t_dim: int = 8
    norm_pix_loss: bool = True
    # the paper's speed baseline ("encoder w/ [M]", MAE Table 1c / MAE-ST Sec. 5): the
    # encoder processes every token, removed ones as a learned mask token. Speed benchmark only
    encoder_mask_tokens: bool = False


# visrep.methods.maskfeat
@dataclass(frozen=True)
class MaskFeatConfig:
    """MaskFeat hyper-parameters (paper: 40% block-wise masking, HOG 9 bins, 8 px cells).

    `cell_size` must divide the patch size: each token predicts the HOG of its
    (patch / cell)² cells, K = nbins · (patch / cell)² · channels (108 at ViT-B/16 RGB).
    """

    mask_ratio: float = 0.4  # target round(L · ratio) masked tokens; can end below (BEiT)
    min_mask_patches: int = 0  # smallest block area; 0 = SlowFast's num_masked // 5
    mask_min_aspect: float = 0.3  # block aspect in [0.3, 1/0.3], log-uniform
    nbins: int = 9
    cell_size: int = 8
    # "slowfast": trunc_normal(0.02) on the patch projection too, as the official code
    # (SlowFast `MViT._init_weights`); "xavier": MAE's xavier_uniform on the flattened
    # projection, whose scale follows the patch size (trunc_normal(0.02) is ~7x smaller than
    # xavier for 4×4×1 patches)
    patch_embed_init: str = "slowfast"


# visrep.methods.maskfeat_video
@dataclass(frozen=True)
class MaskFeatVideoConfig:
    """Video MaskFeat on MViTv2 or a plain video ViT (MaskFeat paper Sec. 4; SlowFast
    `k400_MVITv2_S_16x4_MaskFeat_PT.yaml`): 40% cube masking of mask units of 2×2 output
    tokens × one temporal slot, per-frame HOG (9 bins) of frames 0, u, 2u, … (u = the
    temporal patch stride), K = nbins · (stride / cell)² · channels per output token (stride:
    the ViT's patch size, MViTv2's output stride)."""

    mask_ratio: float = 0.4  # target round(T'·H'·W'·r) mask units; can end below
    # mask unit side in output tokens: the cube generator's window is (T', h / unit, w / unit)
    # (official [8, 7, 7] for 8 × 14 × 14 output tokens: 32 × 32 px units at stride 16)
    mask_unit: int = 2
    min_mask_patches: int = 0  # smallest box area in units; 0 = SlowFast's H'·W' // 5
    mask_min_aspect: float = 0.3
    nbins: int = 9
    cell_size: int = 8
    patch_embed_init: str = "slowfast"  # slowfast | xavier (as image MaskFeat)
    # ViT encoder: "slowfast" re-initialises it (SlowFast `MViT._init_weights`, the official
    # one); "backbone" keeps the video ViT's own init (MAE-ST's), that of method.init=random
    encoder_init: str = "slowfast"


# visrep.methods.fcmae
@dataclass(frozen=True)
class FCMAEConfig:
    """FCMAE hyper-parameters (paper: 60% masking, 1×512 decoder, raw-pixel loss)."""

    mask_ratio: float = 0.6
    decoder_dim: int = 512
    decoder_depth: int = 1
    norm_pix_loss: bool = False  # off in the documented command (ConvNeXt-V2 `TRAINING.md`)
    # "sample": per image (paper Sec. 3; ConvNeXt-V2 `models/utils.py` GRN, JAX); "batch":
    # `MinkowskiGRN` of the same file, which pools over the whole sparse batch
    grn_stats: str = "sample"
    # "fcmae": the official override, `FCMAE._init_weights` in `models/fcmae.py`;
    # "timm": timm's own init
    init: str = "fcmae"


# visrep.methods.spark
@dataclass(frozen=True)
class SparKConfig:
    """SparK hyper-parameters (paper: 60% masking, decoder width 768)."""

    mask_ratio: float = 0.6
    decoder_dim: int = 768  # the LightDecoder's first width W_0, halved per block
    # (`pretrain/decoder.py`)
    densify_norm: str = "auto"  # auto (bn for ResNet, ln for ConvNeXt) | bn | ln | none


# visrep.methods.simsiam
@dataclass(frozen=True)
class SimSiamConfig:
    """SimSiam hyper-parameters (paper: 2048-d projector, 512-d predictor bottleneck)."""

    proj_dim: int = 2048
    pred_dim: int = 512
    fix_pred_lr: bool = True  # predictor lr not decayed (the README command, Table 1)
    # False removes the stop-gradient: the paper's collapse ablation (Sec. 4.1, Fig. 2)
    stop_gradient: bool = True


# visrep.methods.mocov3
@dataclass(frozen=True)
class MoCoV3Config:
    """MoCo v3 hyper-parameters (ViT recipe defaults: τ 0.2, m0 0.99 → 1)."""

    dim: int = 256
    mlp_dim: int = 4096
    tau: float = 0.2  # 0.2 for ViTs, 1.0 for ResNet-50
    m0: float = 0.99
    momentum_cosine: bool = True  # --moco-m-cos
    stop_grad_conv1: bool = True  # ViT: frozen random patch projection
    # ViT: log the gradient norm of the patch projection, the first and the last block every
    # step (the paper's Sec. 4 reading of instability; visrep.parts.grad_probe)
    log_grad_norms: bool = False


# visrep.methods.simclr
@dataclass(frozen=True)
class SimCLRConfig:
    """SLIP's SimCLR head and temperature."""

    mlp_dim: int = 4096
    dim: int = 256
    tau: float = 0.1


# visrep.methods.rho
@dataclass(frozen=True)
class RhoMoCoConfig:
    """ρMoCo (SlowFast `MoCo_SlowR50_8x8.yaml`): 3-layer projector without BN, τ 0.1, a
    per-process queue of 65,536 keys, momentum 0.994 → 1 (cosine). ρ is data.clips."""

    mlp_dim: int = 2048
    dim: int = 128
    tau: float = 0.1
    m0: float = 0.994
    queue_len: int = 65536  # per process; every clip's keys are enqueued each step
    # optimizer steps whose gradients are zeroed while the queue fills (official: queue_len
    # / global batch = 65,536 / 64 = 1,024, `contrastive_parameter_surgery`)
    freeze_steps: int = 1024


# visrep.methods.rho
@dataclass(frozen=True)
class RhoBYOLConfig:
    """ρBYOL (SlowFast `BYOL_SlowR50_8x8.yaml`): 2-layer BN projector and predictor
    (4096 hidden, 256 out), τ 0.5, momentum 0.996 → 1 (cosine). ρ is data.clips."""

    mlp_dim: int = 4096
    dim: int = 256
    tau: float = 0.5
    m0: float = 0.996


# visrep.methods.rho
@dataclass(frozen=True)
class RhoSimCLRConfig:
    """ρSimCLR (SlowFast `SimCLR_SlowR50_8x8.yaml`): 3-layer projector without BN, τ 0.1,
    NT-Xent on the ρ − 1 chained pairs (clip k, clip k + 1). ρ is data.clips."""

    mlp_dim: int = 2048
    dim: int = 128
    tau: float = 0.1


# visrep.methods.rho
@dataclass(frozen=True)
class RhoSwAVConfig:
    """ρSwAV (SlowFast `SwAV_Slow_R50_8x8.yaml`): 3-layer BN projector, 1000 prototypes,
    τ 0.1, Sinkhorn ε 0.05 × 3 iterations on clips 0 and 1. ρ is data.clips."""

    mlp_dim: int = 2048
    dim: int = 128
    prototypes: int = 1000
    tau: float = 0.1
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 3
    # optimizer steps whose prototype gradients are zeroed (official: the first epoch,
    # `contrastive_parameter_surgery`); recipes set the steps of one epoch
    freeze_prototypes_steps: int = 0


# visrep.methods.clip
@dataclass(frozen=True)
class CLIPConfig:
    """CLIP/SLIP sizes (CLIP paper Sec. 2.4; SLIP `models.py`): E = 512, text 12 × 512,
    8 heads, context 77, vocab 49408."""

    embed_dim: int = 512
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408
    logit_scale_init: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    # "clip": the causal transformer above, trained from scratch; "minilm": the pretrained
    # all-MiniLM-L6-v2 (visrep.backbones.text_pretrained; text_width/layers/heads unused)
    text_tower: str = "clip"
    lock_text: bool = False  # LiT: freeze the pretrained text tower, train its projection


# visrep.methods.clip
@dataclass(frozen=True)
class FLIPConfig(CLIPConfig):
    """FLIP: CLIP with `mask_ratio` of the image patch tokens dropped in training (0.5 in the
    paper, 0.75 studied; 0 = the unmasked-tuning phase)."""

    mask_ratio: float = 0.5


# visrep.methods.slip
@dataclass(frozen=True)
class SLIPConfig(CLIPConfig):
    """SLIP: CLIP sizes plus SimCLR's head (4096-4096-256), τ = 0.1, ssl_scale 1.0."""

    ssl_scale: float = 1.0
    mlp_dim: int = 4096
    ssl_dim: int = 256
    tau: float = 0.1


# visrep.methods.cit
@dataclass(frozen=True)
class CiTConfig(CLIPConfig):
    """CiT's curation knobs (reference defaults: t 0.55 on YFCC15M, 0.7 on YFCC100M;
    γ 0.003 / 0.01; one round per 100 steps of batch 1024; bare class names)."""

    metadata: str = "fashion_mnist"  # built-in class names, or a text file (one per line)
    # templates with "{}", or names of visrep.data.templates sets ("imagenet"); the CLI
    # splits a plain value at spaces: pass sentences as a JSON list ('["a photo of a {}."]')
    metadata_templates: tuple[str, ...] = ("{}",)
    threshold: float = 0.55  # t: keep a caption whose max cosine to the metadata exceeds t
    min_ratio: float = 0.003  # γ: when fewer pass in a chunk, keep its top ⌊γ·chunk⌋
    curate_every: int = 100  # s: training steps per round; a round keeps s × batch pairs
    scan_chunk: int = 0  # pool pairs scored at once (γ's unit); 0 = 2 × optim.batch_size
    project: bool = False  # curate in the projected space (the reference: pooled)
    freeze_image: bool = False  # the paper's locked image tower (backbone + image projection)


# visrep.methods.supervised
@dataclass(frozen=True)
class SupervisedConfig:
    """Classifier, layer decay, Mixup/CutMix and the labelled-data augmentation. Defaults suit
    the Fashion-MNIST demo models (a short schedule: no Mixup/CutMix, which need ~100 epochs
    to pay off); `visrep.finetune.PRESETS` hold the papers'."""

    source: str = ""  # run or exported-backbone folder to start from ("" = the run's backbone)
    init: str = "pretrained"  # "pretrained" or "random" (same architecture, untrained)
    num_classes: int = 0  # 0: `visrep eval finetune` counts the eval dataset's classes
    layer_decay: float = 0.75  # 1.0 = off
    # ConvNeXt ids (ConvNeXt-V2 `optim_factory.py`): single | group | auto (group when the
    # third stage has 27 blocks)
    layer_decay_type: str = "auto"
    drop_path: float = 0.1
    pool: str = "avg"  # ViT: "avg" (fc_norm on mean patch token, MAE default) or "token"
    img_size: int = 0  # 0 = the source's size; else its pos embed is interpolated (= data.img_size)
    head_init_std: float = 2e-5
    # dropout before the head (mae_st `models_vit.py`: 0.5 by default, 0.3 in its
    # FINETUNE.md; image MAE has none); `visrep eval finetune` of a video run sets 0.5
    dropout: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    smoothing: float = 0.1
    # RandAugment: image folders and video clips (one draw per clip); not in-memory images
    auto_augment: str = "rand-m9-mstd0.5-inc1"  # ("" = off)
    color_jitter: float = 0.0  # folders only; MAE leaves it off (None) with RandAugment
    reprob: float = 0.25  # RandomErasing
    remode: str = "pixel"
    recount: int = 1
    # corruption-like augmentation after the crop, in-memory data only: a comma list of
    # visrep.data.photometric.OPS (noise, blur, contrast, augmix); "" = none
    photometric: str = ""
    ema_decay: float = 0.0  # model EMA of backbone + head (ConvNeXt V2: 0.9999); 0 = off
    # video runs: the label family trained and scored, "class" (appearance) or "direction"
    # (motion: Moving Fashion-MNIST, or a `visrep data build-video` folder's labels.csv)
    labels: str = "class"


# visrep.methods.dit
@dataclass(frozen=True)
class DiTConfig:
    """DiT hyper-parameters (paper defaults: 1000 classes + a null class, label dropout 0.1,
    1000 linear-β steps, learned variance with the hybrid loss, EMA 0.9999)."""

    num_classes: int = 1000  # class-conditional on this many classes; 0 = unconditional
    class_dropout: float = 0.1  # p of a label replaced by the null class (guidance)
    diffusion_steps: int = 1000  # T of the linear β schedule (1e-4 -> 0.02, scaled by 1000/T)
    # model EMA (official train.py: 0.9999, initialised as a copy, updated after every step);
    # `visrep sample` uses it. 0 = none
    ema_decay: float = 0.9999
    # classifier-free guidance on the first N ε channels (official `forward_with_cfg`: 3, so
    # the 4th latent channel is unguided "for exact reproducibility"); 0 = every ε channel.
    # Variance channels are never guided
    cfg_channels: int = 3
    # latent DiT: diffuse VAE latents (posterior sample × latent_scale, 4 channels at 1/8
    # of data.img_size) instead of pixels; needs `vae`
    latent: bool = False
    # a diffusers AutoencoderKL folder (the paper's sd-vae-ft-ema/mse; not shipped offline)
    vae: str = ""
    latent_scale: float = 0.18215  # latents = VAE posterior sample × this (train.py)


# visrep.methods.rcg
@dataclass(frozen=True)
class RCGConfig:
    """RCG hyper-parameters (LTH14/rcg: `config/rdm/mocov3vitb_simplemlp_l12_w1536.yaml`,
    `main_rdm.py`, `pixel_generator/dit/models.py`). Two stages in one run: the RDM for
    `rdm_steps` optimizer steps, then the pixel generator for the rest."""

    # the visrep run whose frozen backbone + projection head give the representation
    # (MoCo v3: its projector; SimCLR: its head)
    encoder: str = ""
    rdm_steps: int = 1000  # optimizer steps of stage 1 (the RDM); the rest train the generator
    rdm_width: int = 1536  # SimpleMLP model_channels (= bottleneck channels)
    rdm_depth: int = 12  # SimpleMLP residual blocks
    rdm_time_dim: int = 256  # SimpleMLP time_embed_dim
    rdm_diffusion_steps: int = 1000  # LDM "linear" schedule (√0.0015 -> √0.0195)²
    # the RDM's lr = optim.lr × this (RCG: blr 1e-6 × batch, no /256); its weight decay is
    # optim.weight_decay, the pixel generator's 0 (DiT)
    rdm_lr_scale: float = 1.0
    rdm_sample_steps: int = 250  # DDIM steps when sampling representations
    rdm_eta: float = 1.0  # DDIM η of the RDM sampler (RCG's rdm_eta)
    rep_dropout: float = 0.1  # p of a representation replaced by the learned fake latent
    diffusion_steps: int = 1000  # the pixel generator's (DiT's) linear β schedule
    ema_decay: float = 0.9999  # EMA of the RDM and of the generator (0 = none)
    cfg_channels: int = 3  # guidance on the first N ε channels (as DiT); 0 = all


# visrep.methods.detect
@dataclass(frozen=True)
class DetectConfig:
    """Mask R-CNN on a pre-trained backbone (`visrep eval detect`): ViTDet for ViTs (window
    attention, simple feature pyramid), an FPN for ResNet / ConvNeXt. Defaults follow ViTDet's
    ViT-B recipe where they do not depend on the image size (window 14, drop path 0.1, layer
    decay 0.7, 256-channel pyramid)."""

    source: str = ""  # run or exported-backbone folder whose backbone is fine-tuned
    init: str = "pretrained"  # "pretrained" or "random" (same architecture, untrained)
    data: str = ""  # COCO-format folder (annotations/instances_{train,val}.json)
    num_classes: int = 0  # categories without the background (0: `visrep eval detect` counts them)
    img_size: int = 0  # detector input side (0: the first training image's longer side)
    channels: int = 3  # the backbone's input channels (images are converted to it)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # the source's input normalization
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    window_size: int = 14  # ViT: attention window side in tokens
    # ViT: blocks with global attention (() = each quarter's last)
    global_blocks: tuple[int, ...] = ()
    rel_pos: bool = False  # ViT: decomposed relative position biases (zero init)
    drop_path: float = 0.1
    layer_decay: float = 0.7  # 1.0 = off (ViTDet: 0.7 B, 0.8 L, 0.9 H)
    fpn_dim: int = 256  # pyramid channels (and RPN / RoI head input)
    anchor_scale: float = 8.0  # anchor side = this x the level's stride (ViTDet: 32 at stride 4)
    # RoI heads (torchvision's defaults; smaller values suit small images on a CPU): box head
    # MLP width, mask head conv width, RoIs sampled per training image, RPN proposals kept
    box_head_dim: int = 1024
    mask_head_dim: int = 256
    rois_per_image: int = 512
    proposals: int = 1000  # after NMS, per image (torchvision: 2000 training, 1000 testing)
    hflip: float = 0.5  # training flip probability
    # ViTDet's large-scale jitter after the flip (resize by U(lsj_scale) to fit img_size², crop
    # or pad to img_size²); off by default: the committed detection tables were trained without
    lsj: bool = False
    lsj_scale: tuple[float, float] = (0.1, 2.0)
    score_thresh: float = 0.05  # detections kept for evaluation (torchvision's default)
    detections_per_img: int = 100
