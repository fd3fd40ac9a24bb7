"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers (Chen, Xie
& He, 2021). Follows the paper's Sec. 3 and Algorithm 1 (facebookresearch/moco-v3
`moco/builder.py`, `vits.py`, `main_moco.py`).

Base encoder = backbone + projector, predictor on top; a momentum copy of backbone +
projector gives the keys. L = ctr(q1, k2) + ctr(q2, k1), InfoNCE × 2τ over keys gathered
from every process. The momentum update θ_k ← m·θ_k + (1 − m)·θ_q runs in `on_step_end`
(right after the optimizer step, so before the next keys), with m on MoCo v3's cosine
schedule from m0 to 1. ViT backbones get MoCo v3's init, its sin-cos layout and, by
default, a frozen random patch projection (`stop_grad_conv1`, the paper's stability trick).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visrep.backbones.vit import ViT
from visrep.method_configs import MoCoV3Config
from visrep.methods.simsiam import output_std
from visrep.methods.views import two_views
from visrep.parts.ema import cosine_momentum, ema_update, frozen_copy
from visrep.parts.grad_probe import GradNormProbe
from visrep.parts.heads import mlp
from visrep.parts.losses import infonce_mocov3
from visrep.parts.pos_embed import sincos_2d


class MoCoV3(nn.Module):
    def __init__(self, cfg: MoCoV3Config, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        is_vit = isinstance(backbone, ViT)
        if is_vit:
            mocov3_vit_init(backbone, cfg.stop_grad_conv1)
        d, h, e = backbone.feature_dim, cfg.mlp_dim, cfg.dim
        # ViT: 3-layer projector, predictor ends with BN; ResNet: 2 layers, no final BN
        # (`moco/builder.py`)
        self.projector = mlp([d, h, h, e] if is_vit else [d, h, e], bias=False, last_bn=True)
        self.predictor = mlp([e, h, e], bias=False, last_bn=is_vit)
        self.momentum_backbone = frozen_copy(backbone)
        self.momentum_projector = frozen_copy(self.projector)
        self.momentum = cfg.m0
        # the logged momentum as a tensor: a Python float read in `forward` would make
        # torch.compile (`run.compile`) guard on its value and recompile after every step
        self.register_buffer("momentum_logged", torch.tensor(cfg.m0), persistent=False)
        self.grad_probe = _grad_probe(backbone) if cfg.log_grad_norms else None

    def forward(self, batch: dict) -> dict[str, Tensor]:
        x1, x2 = two_views(batch, "MoCo v3")
        q1 = self.predictor(self.projector(self.backbone(x1)))  # [N, dim]
        q2 = self.predictor(self.projector(self.backbone(x2)))
        with torch.no_grad():
            k1 = self.momentum_projector(self.momentum_backbone(x1))
            k2 = self.momentum_projector(self.momentum_backbone(x2))
        loss = infonce_mocov3(q1, k2, self.cfg.tau) + infonce_mocov3(q2, k1, self.cfg.tau)
        out = {"loss": loss, "z_std": output_std(q1), "momentum": self.momentum_logged.clone()}
        return out | (self.grad_probe.values() if self.grad_probe else {})

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """EMA update with m at the next step's progress e/epochs (`main_moco.py`
        `adjust_moco_momentum`)."""
        m0 = self.cfg.m0
        self.momentum = cosine_momentum(m0, progress) if self.cfg.momentum_cosine else m0
        self.momentum_logged.fill_(self.momentum)
        ema_update(self.momentum_backbone, self.backbone, self.momentum)
        ema_update(self.momentum_projector, self.projector, self.momentum)


def _grad_probe(backbone: nn.Module) -> GradNormProbe:
    """The layers whose gradient norms the paper's Fig. 4 follows: the patch projection (no
    value when frozen), the first and the last Transformer block."""
    if not isinstance(backbone, ViT):
        raise ValueError("method.log_grad_norms=true reads a ViT's patch projection and blocks; "
                         "use it with a ViT backbone (backbone.name=vit_tiny, ...)")  # fmt: skip
    blocks = backbone.model.blocks
    return GradNormProbe({"patch_embed": backbone.model.patch_embed, "block_first": blocks[0],
                          "block_last": blocks[-1]})  # fmt: skip


@torch.no_grad()
def mocov3_vit_init(vit: ViT, stop_grad_conv1: bool) -> None:
    """MoCo v3's ViT init (`vits.py` `VisionTransformerMoCo`): xavier-uniform Linears with the
    qkv bound computed as if Q, K, V were three D×D matrices, zero biases; cls token
    normal(1e-6); patch projection uniform(±√(6/(C·p²+D))), zero bias; fixed sin-cos table in
    the MoCo v3 (row-first) layout. `stop_grad_conv1` freezes the patch projection."""
    for name, m in vit.model.named_modules():
        if isinstance(m, nn.Linear):
            if "qkv" in name:
                bound = math.sqrt(6.0 / (m.weight.shape[0] // 3 + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.normal_(vit.model.cls_token, std=1e-6)
    proj = vit.model.patch_embed.proj
    bound = math.sqrt(6.0 / (vit.in_chans * vit.patch_size**2 + vit.embed_dim))
    nn.init.uniform_(proj.weight, -bound, bound)
    nn.init.zeros_(proj.bias)
    table = sincos_2d(vit.embed_dim, vit.grid_size, cls_token=True, layout="mocov3")
    vit.model.pos_embed.copy_(table.unsqueeze(0))
    if stop_grad_conv1:
        proj.weight.requires_grad_(False)
        proj.bias.requires_grad_(False)
