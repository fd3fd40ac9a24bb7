"""Losses of the joint-embedding methods, written from the papers' formulas and checked
against the official code cited on each.

Each takes the local batch of one process; the cross-process negatives are gathered
inside (`visrep.parts.dist`), so the same call is right on 1 or N processes:
averaging the per-process losses (what DDP's gradient averaging does) equals the loss
of one process holding the whole global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visrep.parts.dist import gather_no_grad, gather_with_grad, rank_and_world


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's D(p, z) = −cos(p, stopgrad(z)), batch mean (SimSiam paper Sec. 3;
    simsiam `main_simsiam.py`: `nn.CosineSimilarity`).

    The stop-gradient is on the target z, not on the prediction p; eps 1e-8 as
    `nn.CosineSimilarity(dim=1)`.
    """
    return -F.cosine_similarity(p, z.detach(), dim=1, eps=1e-8).mean()


def _local_labels(n: int, device: torch.device) -> Tensor:
    """Positives of this process's rows inside the gathered batch: n·rank + arange(n)."""
    rank, _ = rank_and_world()
    return torch.arange(n, device=device) + n * rank


def infonce_mocov3(q: Tensor, k: Tensor, tau: float) -> Tensor:
    """MoCo v3's contrastive loss ctr(q, k) (MoCo v3 paper Algorithm 1; moco-v3
    `moco/builder.py` `ctr_loss`).

    q̂ = q/‖q‖, k̂ = k/‖k‖; the keys of every process are gathered without gradient
    (K ∈ R^{nW×d}); logits = q̂ K̂ᵀ / τ; labels = arange(n) + n·rank; the cross entropy
    is multiplied by 2τ. The method sums ctr(q1, k2) + ctr(q2, k1).

    Args:
        q: predictions of the base branch [n, d].
        k: momentum-encoder keys [n, d] (no gradient flows into them).
        tau: temperature (0.2 for ViT recipes, 1.0 for ResNet).
    """
    q = F.normalize(q, dim=1)
    keys = gather_no_grad(F.normalize(k, dim=1))  # [nW, d]
    logits = q @ keys.T / tau  # [n, nW]
    return F.cross_entropy(logits, _local_labels(q.shape[0], q.device)) * (2 * tau)


def nt_xent(a: Tensor, b: Tensor, tau: float = 0.1) -> Tensor:
    """SimCLR's NT-Xent (SimCLR paper Eq. 1) as SLIP's `losses.py` `SIMCLRLoss`.

    Both views are L2-normalised and gathered **with** gradient. With ℓ = n·rank +
    arange(n) and a −1e9 mask on each anchor's own column:
    L_a = CE([a Bᵀ | a Aᵀ − mask]/τ, ℓ), L_b = CE([b Aᵀ | b Bᵀ − mask]/τ, ℓ),
    loss = ½(L_a + L_b): 2nW − 1 negatives per anchor.

    Args:
        a, b: the two views' projections [n, d] on this process.
        tau: temperature (0.1 in SLIP).
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    all_a, all_b = gather_with_grad(a), gather_with_grad(b)  # [nW, d]
    labels = _local_labels(a.shape[0], a.device)
    mask = F.one_hot(labels, all_a.shape[0]).to(a.dtype) * 1e9  # [n, nW]
    logits_aa = a @ all_a.T / tau - mask
    logits_bb = b @ all_b.T / tau - mask
    logits_ab = a @ all_b.T / tau
    logits_ba = b @ all_a.T / tau
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
    return (loss_a + loss_b) / 2


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """CLIP's symmetric contrastive loss (CLIP paper Fig. 3) as SLIP's `losses.py` `CLIPLoss`.

    Image and text embeddings are L2-normalised and gathered from every process **without**
    gradient. With s = exp(logit_scale) and labels ℓ = n·rank + arange(n):
    L = ½[CE(s·I Tₐₗₗᵀ, ℓ) + CE(s·T Iₐₗₗᵀ, ℓ)].

    This process's own slice of the gathered matrices keeps its gradient (open_clip's rule;
    SLIP's plain all_gather drops it when W > 1, but keeps it on one process, where it does
    not gather): on one process the gradient is exactly that of the loss; with W processes
    only the other processes' columns carry no gradient. Loss values are identical in both.

    Args:
        image, text: this process's embeddings [n, E] (paired row by row).
        logit_scale: the learnable log-temperature (a 0-dim tensor); exponentiated here.
    """
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    all_image, all_text = _gather_keep_local(image), _gather_keep_local(text)  # [nW, E]
    labels = _local_labels(image.shape[0], image.device)
    scale = logit_scale.exp()
    logits_per_image = scale * image @ all_text.T  # [n, nW]
    logits_per_text = scale * text @ all_image.T
    return (
        F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
    ) / 2


def _gather_keep_local(x: Tensor) -> Tensor:
    """gather_no_grad, with this process's slice replaced by `x` itself (keeps its grad)."""
    rank, world = rank_and_world()
    if world == 1:
        return x
    gathered, n = gather_no_grad(x), x.shape[0]
    return torch.cat([gathered[: rank * n], x, gathered[(rank + 1) * n :]])
