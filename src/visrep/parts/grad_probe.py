"""Per-module gradient norms, for reading training stability.

MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", Sec. 4, Fig. 4) finds that the instability of ViT training shows first as
spikes in the gradient magnitude of the first layer (the patch projection), before the last
layer and before the loss and accuracy dip. `GradNormProbe` measures that: the L2 norm of
the gradient of each named module's trainable parameters, as the backward pass leaves it.

A method holds a probe and returns `probe.values()` in its output dict; the tensors are
filled during the backward of that same output, and the training loop logs a step's output
after its backward and optimizer step, so the logged value is the step's gradient norm (raw:
before any clipping; with gradient accumulation, the sum over the micro-batches so far; under
DistributedDataParallel, this process's gradient before the all-reduce).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GradNormProbe(nn.Module):
    """‖∂L/∂θ_m‖₂ per named module m, over its parameters that require a gradient.

    A module itself only for its state: the squared gradient norms and the norms are
    non-persistent buffers (not in a checkpoint), so they follow the method to its device
    and a step's hooks never synchronise with the host; the probed modules are not
    registered here (their parameters belong to the method).

    Args:
        modules: name -> module. A module without trainable parameters (a frozen patch
            projection) has no gradient and no value.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.names: list[str] = []
        for name, module in modules.items():
            params = [p for p in module.parameters() if p.requires_grad]
            if not params:
                continue
            # ‖grad‖² of each parameter from the latest backward; the norm is NaN until then
            self.register_buffer(f"squares_{name}", torch.zeros(len(params)), persistent=False)
            self.register_buffer(f"norm_{name}", torch.full((), float("nan")), persistent=False)
            for i, p in enumerate(params):
                p.register_post_accumulate_grad_hook(self._hook(name, i))
            self.names.append(name)

    def values(self) -> dict[str, Tensor]:
        """`grad_norm_<name>` -> 0-d tensor, updated in place by every backward."""
        return {f"grad_norm_{name}": getattr(self, f"norm_{name}") for name in self.names}

    def _hook(self, name: str, i: int):
        @torch.no_grad()
        def hook(p: Tensor) -> None:
            # looked up at call time: `.to(device)` replaces the buffers
            squares = getattr(self, f"squares_{name}")
            squares[i] = p.grad.detach().float().pow(2).sum()
            getattr(self, f"norm_{name}").copy_(squares.sum().sqrt())

        return hook
