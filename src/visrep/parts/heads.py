"""Projector and predictor MLPs of the joint-embedding methods (facebookresearch/moco-v3
`moco/builder.py` `_build_mlp`, facebookresearch/simsiam `simsiam/builder.py`,
facebookresearch/SLIP `models.py` SIMCLR `image_mlp`).

One builder covers every paper's head: hidden layers are Linear → BatchNorm1d (affine) →
ReLU; the last layer is a Linear, optionally followed by an affine-free BatchNorm1d.

| head                          | call                                                    |
|-------------------------------|---------------------------------------------------------|
| MoCo v3 projector (ViT/ResNet) | `mlp([D, 4096, 4096, 256], bias=False, last_bn=True)` (ResNet: 2 layers) |
| MoCo v3 predictor, ViT         | `mlp([256, 4096, 256], bias=False, last_bn=True)`       |
| MoCo v3 predictor, ResNet      | `mlp([256, 4096, 256], bias=False, last_bn=False)`      |
| SimSiam projector              | `mlp([D, 2048, 2048, 2048], bias=False, last_bn=True, last_bias=True)` + `freeze_last_bias` |
| SimSiam predictor              | `mlp([2048, 512, 2048], bias=False, last_bn=False, last_bias=True)` |
| SLIP/SimCLR head               | `mlp([D, 4096, 4096, 256], bias=True, last_bn=False)`   |
| ρMoCo / ρSimCLR projector      | `mlp([D, 2048, 2048, 128], bias=True, last_bn=False, hidden_bn=False)` |
| ρBYOL projector / predictor    | `mlp([D, 4096, 256], bias=False, last_bn=False, last_bias=True)` |
| ρSwAV projector                | `mlp([D, 2048, 2048, 128], bias=False, last_bn=False, last_bias=True)` |

(ρ heads: SlowFast `slowfast/models/head_helper.py` `MLPHead`.)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(
    dims: Sequence[int],
    *,
    bias: bool,
    last_bn: bool,
    last_bias: bool | None = None,
    hidden_bn: bool = True,
) -> nn.Sequential:
    """MLP `dims[0] → … → dims[-1]`.

    Args:
        dims: layer widths, input first (at least two entries).
        bias: whether the hidden Linears have a bias (MoCo v3, SimSiam: no; SLIP: yes).
        last_bn: end with BatchNorm1d(dims[-1], affine=False) (MoCo v3 `last_bn`, SimSiam
            projector).
        last_bias: bias of the last Linear (default: `bias`).
        hidden_bn: BatchNorm1d after the hidden Linears (SlowFast's ρMoCo / ρSimCLR heads
            have none).
    """
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least input and output widths, got {list(dims)}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=(bias if last_bias is None else last_bias)
                                if last else bias))  # fmt: skip
        if not last:
            layers += [nn.BatchNorm1d(d_out)] if hidden_bn else []
            layers.append(nn.ReLU(inplace=True))
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


def last_linear(head: nn.Sequential) -> nn.Linear:
    return [m for m in head if isinstance(m, nn.Linear)][-1]


def freeze_last_bias(head: nn.Sequential) -> None:
    """SimSiam's projector reuses torchvision's fc as its last Linear and freezes its bias
    (requires_grad False; it keeps its random init and is cancelled by the following BN in
    training, but shifts the BN running mean; simsiam `simsiam/builder.py`: "hack: not use
    bias as it is followed by BN")."""
    lin = last_linear(head)
    if lin.bias is None:
        raise ValueError("the head's last Linear has no bias to freeze")
    lin.bias.requires_grad_(False)
