"""Label-free looks at a representation, for data without labels: how spread the features
are, and which images an encoder puts next to each other.

- Per-dimension standard deviation of the L2-normalised features, averaged over dimensions
  (SimSiam, Chen & He 2021, §4.1 and Fig. 2: it drops to 0 when the output collapses to a
  constant, and is about 1/√D when the features spread over the sphere).
- Effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): exp of the entropy of
  the normalised singular values of the feature matrix, between 1 (every feature on one
  line) and min(N, D).
- Nearest neighbours by cosine similarity, for a picture of query images and their closest
  images (DINO's "retrieval" view of a representation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.config import DataConfig
from visrep.data.images import sample_folder
from visrep.data.preprocess import eval_preprocess
from visrep.evals.features import extract_features_many


def feature_statistics(features: Tensor) -> dict[str, float]:
    """`features` [N, D] -> mean per-dimension std of the L2-normalised rows, its reference
    1/√D, and the effective rank of the (centred) feature matrix."""
    z = F.normalize(features.float(), dim=1)
    n, d = z.shape
    std = z.std(dim=0).mean().item() if n > 1 else 0.0
    s = torch.linalg.svdvals(z - z.mean(0))  # [min(N, D)]
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum().item()
    return {
        "feature_std": std,
        "feature_std_uniform": 1 / math.sqrt(d),
        "effective_rank": math.exp(entropy),
        "feature_dim": d,
        "feature_n": n,
    }


def nearest_neighbours(queries: Tensor, bank: Tensor, k: int = 5, exclude_self: bool = True):
    """(similarities [Q, k], indices [Q, k]) of the k rows of `bank` [N, D] closest (cosine)
    to each row of `queries` [Q, D]; with `exclude_self`, a bank row identical to the query
    (the query itself, when it is in the bank) is skipped."""
    sim = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T  # [Q, N]
    if exclude_self:
        sim = sim.masked_fill(sim > 1 - 1e-6, -2.0)
    top = sim.topk(min(k, bank.shape[0]), dim=1)
    return top.values, top.indices


def label_free_eval(
    backbone: nn.Module,
    init_backbone: nn.Module | None,
    data: DataConfig,
    *,
    n: int = 2000,
    holdout: float = 0.0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float | int], Tensor, Tensor]:
    """Feature statistics of a seeded sample of `n` training images (`init_*`: the same for
    the untrained encoder), and the sample itself (uint8 [N, C, S, S]) with its features
    [N, D] for a nearest-neighbour picture."""
    images, _ = sample_folder(data.dataset, data.channels, data.img_size, n, holdout=holdout)
    encoders = {"": backbone} | ({"init": init_backbone.to(device)} if init_backbone else {})
    batches = ((images[i : i + batch_size], images.new_zeros(0))
               for i in range(0, len(images), batch_size))  # fmt: skip
    feats, _ = extract_features_many(
        encoders, batches, preprocess=eval_preprocess(data), device=device
    )  # one pass feeds both encoders
    out = feature_statistics(feats[""])
    if "init" in feats:
        stats = feature_statistics(feats["init"])
        out |= {f"init_{k}": stats[k] for k in ("feature_std", "effective_rank")}
    return out, images, feats[""]
