"""Supervised training of a classifier: end-to-end fine-tuning of a pre-trained backbone
(facebookresearch/mae `main_finetune.py`, facebookresearch/ConvNeXt-V2 `main_finetune.py` and
`TRAINING.md`), run by the one training loop.

`visrep eval finetune --ckpt RUN_DIR` builds a `TrainConfig[SupervisedConfig]` whose
`method.source` is that run (`visrep.finetune`); the loop gives AdamW, warmup +
cosine, accumulation, clipping, checkpoints, exact resume, DDP and the logs. This module
adds what fine-tuning needs on top of a pre-training method:

* the classifier (`backbones/pretrained.py`: MAE's `fc_norm` global pool, head init 2e-5),
  held as `backbone` (timm model without head: what eval and export use) + `head`;
* layer-wise lr decay and MAE's no-weight-decay names, read by the loop's `param_groups`
  through `lr_scale(name)` and `no_decay_names` (`parts/layer_decay.py`);
* Mixup/CutMix with label smoothing inside (`timm.data.Mixup`, `SoftTargetCrossEntropy`),
  `LabelSmoothingCrossEntropy` without mixup, drop path; RandomErasing and RandAugment are
  in the labelled data (`data/labelled.py`, `train_data`).

Video (a `VideoViT`, `VideoMViT` or `SlowResNet` backbone: `visrep eval finetune` of a
video run; MAE-ST, Feichtenhofer et al., 2022, facebookresearch/mae_st `models_vit.py` /
`main_finetune.py`; the ρ study's UCF101 protocol, SlowFast `ResNetBasicHead`; MViTv2,
SlowFast `MViT` with USE_MEAN_POOLING): the backbone's own pooled features (ViTs: mean of the
patch tokens through the pre-trained final LayerNorm, which is mae_st's classifier norm,
loaded from the checkpoint; Slow ResNet: global average pool of res5) → dropout
(`dropout`) → Linear; drop path rebuilt into the ViTs' blocks (an MViTv2 pre-trained without
its last query pooling gets it back, `VideoMViT.finetuning_trunk`), their layer-wise lr
decay and no-weight-decay names as mae_st `util/lr_decay.py` (MViTv2: none spared, SlowFast
ZERO_DECAY_POS_CLS False); no layer decay for the ResNet. Mixup/CutMix act on the clip as on
an image of C·T channels (one box for every frame, mae_st `util/decoder/mixup.py`);
RandAugment (`auto_augment`) and RandomErasing (`reprob`) of clips draw once per clip and
apply to every frame (`visrep.data.clip_augment`). Batches are labelled clips
(`visrep.data.video_source.labelled_clips`), on the class labels or, with
`labels="direction"`, on Moving Fashion-MNIST's motion directions; the final evaluation is the
multi-view clip-level top-1/top-5 on the same label family
(`visrep.evals.video.video_classifier_accuracy`).

timm's Mixup draws from numpy's global RNG; `forward` seeds numpy (and `random`) from the
seed the loop gave torch for this step (`torch.initial_seed()`), or from `mix_seed`, so a
resumed run replays the same mixes.

Model EMA (`ema_decay` > 0; the ConvNeXt V2 presets use 0.9999 with `--model_ema_eval`):
timm's `ModelEmaV3` holds a copy of backbone + head, initialised as the model and updated
after every optimizer step (the loop's `on_step_end`) as ema <- d·ema + (1 − d)·model, with
a fixed d and buffers included, as ConvNeXt V2's `ModelEma`. It is part of the state dict
(checkpoints, exact resume) but not of the optimizer; the final evaluation reports the
classifier and its EMA; export writes the trained backbone, not the EMA.
MaskFeat's HEAD_INIT_SCALE 0.001 on its trunc_normal(0.02) head is the same head std
2e-5 (its bias, 0.02 × 0.001, starts at 0 here).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import Tensor, nn

from visrep.backbones.mvit import VideoMViT
from visrep.backbones.pretrained import (
    Pretrained,
    TimmFeatures,
    build_classifier,
    classifier_kwargs,
    from_backbone,
)
from visrep.backbones.slow_resnet import SlowResNet
from visrep.backbones.video_vit import VideoViT
from visrep.data.labelled import train_batches
from visrep.method_configs import SupervisedConfig
from visrep.parts.layer_decay import layer_decay_scale, no_weight_decay_names


def criterion(cfg: SupervisedConfig) -> tuple[Mixup | None, nn.Module]:
    """Mixup/CutMix with label smoothing inside -> soft-target CE (MAE / ConvNeXt V2
    `main_finetune.py`); else label-smoothing CE; else plain CE."""
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            mode=cfg.mixup_mode,
            label_smoothing=cfg.smoothing,
            num_classes=cfg.num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    if cfg.smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    return None, nn.CrossEntropyLoss()


class Supervised(nn.Module):
    """Cross-entropy training of `head(backbone(images))` on labelled batches."""

    def __init__(self, cfg: SupervisedConfig, backbone: nn.Module | Pretrained) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError("method.num_classes must be set (>= 1) for a supervised run")
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise ValueError(f"method.ema_decay must be in [0, 1) (0 = off), got {cfg.ema_decay}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"method.dropout must be in [0, 1), got {cfg.dropout}")
        self.cfg = cfg
        # the run's seed again (train() set it; loading may have drawn): the head init is
        # then a function of the seed only, as in a fine-tuning run started on its own
        torch.manual_seed(torch.initial_seed())
        if isinstance(backbone, VideoViT | VideoMViT | SlowResNet):
            model, prefix = self._video(cfg, backbone), "backbone."
        else:
            model, prefix = self._image(cfg, backbone), "backbone.model."
        self._prefix = prefix
        self._scale = layer_decay_scale(model, cfg.layer_decay, cfg.layer_decay_type)
        self.no_decay_names = {f"{prefix}{n}" for n in no_weight_decay_names(model)}
        self.dropout = nn.Dropout(cfg.dropout)
        self.mixup, self.criterion = criterion(cfg)
        if cfg.ema_decay > 0:  # a copy of the model at init, outside the optimizer
            self.model_ema = ModelEmaV3(self._classifier(), decay=cfg.ema_decay)
            self.model_ema.requires_grad_(False)
        else:
            self.model_ema = None

    def _image(self, cfg: SupervisedConfig, backbone: nn.Module | Pretrained) -> nn.Module:
        """A timm classifier (`build_classifier`): its head taken out as `head`, the rest the
        `backbone` (`TimmFeatures`); returns the timm model (layer-decay names)."""
        # a fine-tuning run gets the source's weights from `visrep.runs.build_model`; a run
        # of its own trains its backbone from that backbone's init
        pre = backbone if isinstance(backbone, Pretrained) else from_backbone(backbone)
        model, self.load_report = build_classifier(pre, cfg, cfg.num_classes)
        self.img_size = cfg.img_size or pre.timm_kwargs.get("img_size", 0)
        self.arch = pre.timm_name
        self.head = model.get_classifier()  # nn.Linear [D -> K]: timm's head / head.fc / fc
        model.reset_classifier(0)  # the head lives beside the backbone (export: features)
        self.backbone = TimmFeatures(model, pre, classifier_kwargs(pre, cfg, cfg.num_classes))
        return model

    def _video(
        self, cfg: SupervisedConfig, backbone: VideoViT | VideoMViT | SlowResNet
    ) -> nn.Module:
        """The video backbone (the ViT rebuilt with drop path, weights strictly kept; an
        MViTv2 also with its last query pooling back, as SlowFast fine-tunes MaskFeat's
        pre-training variant) and a new Linear head, trunc_normal(`head_init_std`), bias 0;
        returns the backbone."""
        if isinstance(backbone, VideoViT):
            backbone = backbone.with_drop_path(cfg.drop_path)
        elif isinstance(backbone, VideoMViT):
            backbone = backbone.finetuning_trunk(cfg.drop_path)
        if cfg.img_size and cfg.img_size != backbone.img_size:
            raise ValueError(f"method.img_size={cfg.img_size} but the video backbone takes "
                             f"{backbone.img_size} px clips: fine-tune a video run at its own "
                             "data.img_size")  # fmt: skip
        self.img_size, self.arch = backbone.img_size, backbone.arch
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=cfg.head_init_std)
        nn.init.zeros_(self.head.bias)
        self.load_report = {"missing": ["head.bias", "head.weight"], "dropped": []}
        return backbone

    def _classifier(self) -> nn.ModuleDict:
        """Backbone + head as one module (the structure the EMA copy mirrors)."""
        return nn.ModuleDict({"backbone": self.backbone, "head": self.head})

    def on_step_end(self, progress: float) -> None:
        """After each optimizer step: ema <- d·ema + (1 − d)·model (fixed d)."""
        if self.model_ema is not None:
            self.model_ema.update(self._classifier())

    def ema_logits(self, images: Tensor) -> Tensor:
        ema = self.model_ema.module
        return ema["head"](ema["backbone"](images)).float()  # [B, K]

    def lr_scale(self, name: str) -> float:
        """Layer-wise lr decay factor of parameter `name` (the head and fc_norm get 1)."""
        return self._scale(name.removeprefix(self._prefix))

    def logits(self, images: Tensor) -> Tensor:
        """[B, K] of images [B, C, H, W] or clips [B, C, T, H, W] (dropout in train mode)."""
        return self.head(self.dropout(self.backbone(images))).float()

    def forward(self, batch: dict[str, Tensor], mix_seed: int | None = None) -> dict[str, Any]:
        x, y = batch["images"], batch["labels"]  # [B, C, H, W], [B]
        target = y
        if self.mixup is not None:  # numpy/random seeded from the loop's per-step torch seed
            seed = torch.initial_seed() if mix_seed is None else mix_seed
            np.random.seed(seed % 2**32)
            random.seed(seed)
            # a clip [B, C, T, H, W] mixes as an image of C·T channels: one box per clip
            x, target = self.mixup(x.flatten(1, 2) if x.ndim == 5 else x, y)
            x = x.view(batch["images"].shape)  # mixed images, soft targets [B, K]
        logits = self.logits(x)
        loss = self.criterion(logits, target)
        top1 = (logits.detach().argmax(1) == y).float().mean()  # against the unmixed labels
        return {"loss": loss, "top1": top1}

    def train_data(self, cfg: Any, *, rank: int, world_size: int, device: torch.device) -> Any:
        """The loop's data: the eval dataset's labelled train split, augmented
        (`data/labelled.py`; clips for a video run); `cfg` is the whole `TrainConfig`."""

        if cfg.data.limit:  # the labelled split is eval.dataset's, subset by eval.limit_train
            raise ValueError(f"data.limit={cfg.data.limit} has no effect on a supervised run: it "
                             f"trains on eval.dataset's labelled train split; use "
                             f"eval.limit_train={cfg.data.limit} instead")  # fmt: skip
        if self.img_size and cfg.data.img_size != self.img_size:
            raise ValueError(
                f"data.img_size={cfg.data.img_size} but the classifier takes {self.img_size} px "
                f"images; set method.img_size={cfg.data.img_size} too"
            )
        if self.mixup is not None and cfg.optim.batch_size % 2:
            raise ValueError(
                f"Mixup/CutMix need an even optim.batch_size, got {cfg.optim.batch_size}"
            )
        data, k = train_batches(cfg, rank=rank, world_size=world_size, device=device,
                                family=self.cfg.labels)  # fmt: skip
        if k > self.cfg.num_classes:
            raise ValueError(f"{cfg.eval.dataset} has {k} {self.cfg.labels} labels, "
                             f"method.num_classes is {self.cfg.num_classes}")  # fmt: skip
        return data
