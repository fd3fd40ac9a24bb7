"""SimCLR (Chen et al., 2020) as in SLIP (facebookresearch/SLIP `models.py` SIMCLR,
`losses.py` SIMCLRLoss).

Two views through the backbone in separate passes, a 3-layer MLP head (biases everywhere,
BN + ReLU on the hidden layers, no BN on the 256-d output), NT-Xent with τ = 0.1 over
2nW − 1 negatives gathered with gradient across processes.
"""

from __future__ import annotations

from torch import Tensor, nn

from visrep.method_configs import SimCLRConfig
from visrep.methods.simsiam import output_std
from visrep.methods.views import two_views
from visrep.parts.heads import mlp
from visrep.parts.losses import nt_xent


class SimCLR(nn.Module):
    def __init__(self, cfg: SimCLRConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.head = mlp([backbone.feature_dim, cfg.mlp_dim, cfg.mlp_dim, cfg.dim], bias=True,
                        last_bn=False)  # fmt: skip

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x1, x2 = two_views(batch, "SimCLR")
        a = self.head(self.backbone(x1))  # [N, dim]
        b = self.head(self.backbone(x2))
        return {"loss": nt_xent(a, b, self.cfg.tau), "z_std": output_std(a)}
