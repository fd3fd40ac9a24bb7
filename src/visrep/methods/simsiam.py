"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He, 2021).

Follows the paper's Sec. 3 and Algorithm 1 (facebookresearch/simsiam `simsiam/builder.py`,
`main_simsiam.py`): encoder
f = backbone + 3-layer projector (last Linear's bias frozen, affine-free BN at the output),
predictor h = 2-layer bottleneck MLP; L = ½[D(p1, z2) + D(p2, z1)] with
D(p, z) = −cos(p, stopgrad(z)); the two views go through the encoder in separate
forward passes (per-view BN statistics). With `fix_pred_lr` the predictor keeps the
peak lr while the encoder follows the cosine schedule.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from visrep.method_configs import SimSiamConfig
from visrep.methods.views import two_views
from visrep.parts.heads import freeze_last_bias, mlp
from visrep.parts.losses import negative_cosine


class SimSiam(nn.Module):
    def __init__(self, cfg: SimSiamConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        d, e = backbone.feature_dim, cfg.proj_dim
        self.projector = mlp([d, e, e, e], bias=False, last_bn=True, last_bias=True)
        freeze_last_bias(self.projector)
        self.predictor = mlp([e, cfg.pred_dim, e], bias=False, last_bn=False, last_bias=True)
        self.fixed_lr_prefixes = ("predictor.",) if cfg.fix_pred_lr else ()

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x1, x2 = two_views(batch, "SimSiam")
        z1 = self.projector(self.backbone(x1))  # [N, E], separate passes: per-view BN
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)  # [N, E]
        if self.cfg.stop_gradient:
            loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        else:  # ablation: gradients also flow through the targets
            loss = -(F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean()) / 2
        return {"loss": loss, "z_std": output_std(z1)}


def output_std(z: Tensor) -> Tensor:
    """SimSiam Fig. 2 (middle): per-channel std of the L2-normalised output, averaged over
    channels. ≈ 1/√d for well-spread outputs, 0 when they collapse to a constant vector."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()
