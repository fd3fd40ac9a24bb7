"""Detection transfer: torchvision's Mask R-CNN on a pre-trained visrep backbone, trained by
the one loop (`visrep eval detect`, `visrep.detect`).

He, Gkioxari, Dollár, Girshick, "Mask R-CNN" (ICCV 2017), as torchvision implements it
(`torchvision.models.detection.MaskRCNN`: RPN, RoI heads, anchor generator); the backbone is
ViTDet's plain ViT + simple feature pyramid for ViT runs, or an FPN over a ResNet / ConvNeXt
(`visrep.backbones.vitdet`; Li et al., ECCV 2022, detectron2 `projects/ViTDet`). Anchors: one
size per level, `anchor_scale` × stride (32..512 at strides 4..64 in ViTDet), aspect ratios
0.5, 1, 2; RoIAlign 7×7 (boxes) and 14×14 (masks) over p2..p5.

The loop gives AdamW, warmup + cosine, clipping, checkpoints, exact resume and logs; this
module adds the per-parameter layer-wise lr decay and ViTDet's no-weight-decay `pos_embed`
(`LayerDecay`), the COCO batches (`OwnData`, `visrep.data.coco`: flips, and ViTDet's
large-scale jitter with `method.lsj=true`) and `detect(images)` for
the final COCO evaluation (`Detects`, `visrep.evals.detection`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from visrep.backbones.pretrained import Pretrained, from_backbone
from visrep.backbones.vitdet import LEVELS, detection_backbone
from visrep.data.coco import CocoSet, DetectionBatches
from visrep.method_configs import DetectConfig


class Detect(nn.Module):
    """Mask R-CNN whose `backbone` is the detection backbone of a pre-trained run."""

    def __init__(self, cfg: DetectConfig, backbone: nn.Module | Pretrained) -> None:
        super().__init__()
        if cfg.num_classes < 1 or cfg.img_size < 1:
            raise ValueError("method.num_classes and method.img_size must be set (>= 1): "
                             "`visrep eval detect` reads them from the COCO folder")  # fmt: skip
        if cfg.lsj and not 0 < cfg.lsj_scale[0] <= cfg.lsj_scale[1]:
            raise ValueError(f"method.lsj_scale={cfg.lsj_scale} must be (min, max) with "
                             "0 < min <= max, e.g. ViTDet's [0.1,2.0]")  # fmt: skip
        pre = backbone if isinstance(backbone, Pretrained) else from_backbone(backbone)
        torch.manual_seed(torch.initial_seed())  # new layers: a function of the run's seed
        body = detection_backbone(
            pre, cfg.img_size, window_size=cfg.window_size, global_blocks=cfg.global_blocks or None,
            rel_pos=cfg.rel_pos, drop_path=cfg.drop_path, out_channels=cfg.fpn_dim,
        )  # fmt: skip
        sizes = tuple((int(cfg.anchor_scale * s),) for s in body.strides)
        c, k = body.out_channels, cfg.num_classes + 1  # + background
        heads = dict(
            box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_dim),
            box_predictor=FastRCNNPredictor(cfg.box_head_dim, k),
            mask_head=MaskRCNNHeads(c, [cfg.mask_head_dim] * 4, 1),
            mask_predictor=MaskRCNNPredictor(cfg.mask_head_dim, cfg.mask_head_dim, k),
            rpn_pre_nms_top_n_train=2 * cfg.proposals, rpn_pre_nms_top_n_test=cfg.proposals,
            rpn_post_nms_top_n_train=2 * cfg.proposals, rpn_post_nms_top_n_test=cfg.proposals,
            box_batch_size_per_image=cfg.rois_per_image,
        )  # fmt: skip
        self.detector = MaskRCNN(
            body, **heads,
            rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
            box_roi_pool=MultiScaleRoIAlign(list(LEVELS), 7, 2),
            mask_roi_pool=MultiScaleRoIAlign(list(LEVELS), 14, 2),
            min_size=cfg.img_size, max_size=cfg.img_size, image_mean=list(cfg.mean),
            image_std=list(cfg.std), size_divisible=body.strides[-1],
            box_score_thresh=cfg.score_thresh, box_detections_per_img=cfg.detections_per_img,
        )  # fmt: skip
        self.cfg = cfg
        self.no_decay_names = {f"detector.backbone.{n}" for n in body.no_decay_names()}

    @property
    def backbone(self) -> nn.Module:
        """The detection backbone (trunk + pyramid)."""
        return self.detector.backbone

    def lr_scale(self, name: str) -> float:
        """Layer-wise lr decay factor (the pyramid, RPN and heads get 1)."""
        if not name.startswith("detector.backbone."):
            return 1.0
        return self.backbone.lr_scale(name.removeprefix("detector.backbone."), self.cfg.layer_decay)

    def train_data(
        self, cfg: Any, *, rank: int, world_size: int, device: torch.device
    ) -> DetectionBatches:
        data = CocoSet(self.cfg.data, "train", channels=self.cfg.channels)
        return DetectionBatches(
            data, cfg.optim.batch_size, seed=cfg.run.seed, hflip=self.cfg.hflip,
            lsj_size=self.cfg.img_size if self.cfg.lsj else 0, lsj_scale=self.cfg.lsj_scale,
            fill=self.cfg.mean, rank=rank, world_size=world_size, device=device,
        )  # fmt: skip

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Sum of Mask R-CNN's five losses (RPN objectness and box, RoI class, box, mask)."""
        self.detector.train(self.training)
        losses = self.detector(list(batch["images"]), batch["targets"])  # [B, C, H, W] in [0, 1]
        return {
            "loss": sum(losses.values()),
            **{k.removeprefix("loss_"): v.detach() for k, v in losses.items()},
        }

    @torch.no_grad()
    def detect(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections per image ([C, H, W] in [0, 1]): boxes [N, 4] (x1, y1, x2, y2), labels
        [N] (1..K), scores [N], masks [N, 1, H, W] (probabilities)."""
        was = self.training
        self.detector.eval()
        out = self.detector(images)
        self.detector.train(was)
        return out
