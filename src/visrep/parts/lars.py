"""LARS optimizer as used by MoCo v3 pre-training and the MAE linear probe.

Reference: You et al., "Large Batch Training of Convolutional Networks" (2017),
in the simplified form of moco-v3 ``moco/optimizer.py`` and mae ``util/lars.py``.
Differences from the paper's LARS worth knowing:

- 1-D parameters (biases, norm affine) are excluded from *both* weight decay and
  the trust ratio; they are updated by plain heavy-ball momentum SGD.
- The trust ratio has no epsilon and no clipping (contrast apex ``LARC`` used by
  SimSiam's linear probe, which also adapts biases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling with heavy-ball momentum (moco-v3 `moco/optimizer.py`).

    For every parameter ``p`` with gradient ``g``:

    - if ``p.ndim > 1``: ``g <- g + weight_decay * p``; ``q = trust * ||p|| / ||g||``
      when both norms are positive, else ``q = 1``; ``g <- q * g``;
    - ``mu <- momentum * mu + g`` (``mu`` starts at zero, so the first ``mu`` is
      ``g``; no dampening, no Nesterov);
    - ``p <- p - lr * mu``.

    Param groups may carry extra keys (e.g. ``lr_scale`` for an lr schedule that
    multiplies it into ``lr``); they are kept and ignored here.

    Args:
        params: Parameters or param-group dicts.
        lr: Learning rate (usually overwritten by a per-iteration schedule).
        weight_decay: Coupled L2 coefficient, applied to >1-D parameters only.
        momentum: Heavy-ball momentum coefficient.
        trust_coefficient: LARS trust coefficient ``eta`` (0.001 in MoCo v3 / MAE).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0,
        weight_decay: float = 0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr < 0 or weight_decay < 0 or momentum < 0 or trust_coefficient <= 0:
            raise ValueError(
                f"LARS needs lr, weight_decay, momentum >= 0 and trust_coefficient > 0; got "
                f"lr={lr}, weight_decay={weight_decay}, momentum={momentum}, "
                f"trust_coefficient={trust_coefficient}"
            )
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Performs one optimisation step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                # Only weight matrices/kernels are adapted: scaling a bias or a norm
                # gain by its own tiny norm would freeze it (MoCo v3 / MAE choice).
                if p.ndim > 1:
                    dp = dp.add(p, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(p)
                    update_norm = torch.linalg.vector_norm(dp)
                    one = torch.ones_like(param_norm)
                    # torch.where keeps this on-device (no .item() sync per parameter).
                    q = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * param_norm / update_norm,
                        one,
                    )
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(dp)
                p.add_(mu, alpha=-group["lr"])
        return loss
