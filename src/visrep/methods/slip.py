"""SLIP: Self-supervision meets Language-Image Pre-training (Mu et al., 2022), as
facebookresearch/SLIP `models.py` SLIP and `losses.py` SLIPLoss.

CLIP on the (image, caption) pair plus SimCLR on two extra augmented views of the same
image: L = L_clip + ssl_scale · L_ssl. Three separate image-tower passes (the CLIP image
and each view, as SLIP's forward does; per-view BN statistics). The SSL head and NT-Xent
loss are SimCLR's (`visrep.methods.simclr`, gathered with gradient). The views come from
`data.views` (the "simclr" preset is SLIP's SSL augmentation).
"""

from __future__ import annotations

from torch import Tensor, nn

from visrep.method_configs import SLIPConfig
from visrep.methods.clip import CLIP
from visrep.methods.views import two_views
from visrep.parts.heads import mlp
from visrep.parts.losses import nt_xent


class SLIP(CLIP):
    def __init__(self, cfg: SLIPConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        self.image_mlp = mlp([backbone.feature_dim, cfg.mlp_dim, cfg.mlp_dim, cfg.ssl_dim],
                             bias=True, last_bn=False)  # fmt: skip

    def forward(self, batch: dict, noise: Tensor | None = None) -> dict[str, Tensor]:
        x1, x2 = two_views(batch, "SLIP")
        out = self.clip_outputs(batch, noise)
        a = self.image_mlp(self.backbone(x1))  # [N, ssl_dim]
        b = self.image_mlp(self.backbone(x2))
        ssl = nt_xent(a, b, self.cfg.tau)
        return out | {"loss": out["loss"] + self.cfg.ssl_scale * ssl, "ssl_loss": ssl.detach()}
