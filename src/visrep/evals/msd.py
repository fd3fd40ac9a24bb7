"""Minimal Sample Distance between an augmentation distribution and a corruption (Mintun,
Kirillov and Xie, "On Interaction Between Augmentations and Corruptions in Natural
Corruption Robustness", NeurIPS 2021, §3; facebookresearch/augmentation-corruption
`minimal_sample_distance.ipynb`, `experiments/feature_corrupt_error.py`,
`experiments/overlap/extract_features.py`).

A transform t is one fully drawn operation (every random parameter and noise seed fixed).
It is embedded by a frozen image network f̂ averaged over a fixed set D_S of clean
training images:  f(t) = mean_{x ∈ D_S} f̂(t(x)).  With augmentation samples a_1..a_N and
corruption samples c_1..c_M:

    MSD = min_i ‖f(a_i) − mean_j f(c_j)‖₂        (nearest augmentation to the corruption mean)
    MMD = ‖mean_i f(a_i) − mean_j f(c_j)‖₂        (distance between the means; the code's name)

Transforms here are (apply, seed) pairs: `apply(images uint8 [S, C, H, W], seed)` returns
float images in 0..255 units with one draw — fixed by `seed` — applied to all of D_S, so a
test can reproduce a hand computation exactly; the encoder normalises them with its own
statistics after the transform (never before, pitfall 2 of the reference).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from timm.data.random_erasing import RandomErasing
from torch import Tensor
from tqdm.auto import tqdm

from visrep.data.augment import normalize, random_resized_crop_params, resized_crop
from visrep.data.corruptions import corrupt
from visrep.data.photometric import Photometric
from visrep.evals.robustness import from_numpy_images, to_numpy_images

Apply = Callable[[Tensor, int], Tensor]


@torch.no_grad()
def transform_embedding(
    encoder: Callable[[Tensor], Tensor],
    images: Tensor,
    apply: Apply,
    seeds: Sequence[int],
    *,
    progress: bool = False,
    desc: str = "transforms",
) -> Tensor:
    """f(t) for each transform t = (apply, seed): the encoder's features [S, d] of the
    transformed image set averaged over the S images -> [len(seeds), d] (float64).
    Batched by transform (one forward of the S images per transform)."""
    rows = [encoder(apply(images, int(s))).double().mean(dim=0)
            for s in tqdm(seeds, desc=desc, disable=not progress, leave=False)]  # fmt: skip
    return torch.stack(rows) if rows else torch.zeros(0, 0, dtype=torch.float64)


def msd(aug_emb: Tensor, corr_emb: Tensor) -> float:
    """min_i ‖aug_emb[i] − mean(corr_emb)‖₂ (aug_emb [N, d], corr_emb [M, d])."""
    if len(aug_emb) == 0 or len(corr_emb) == 0:
        raise ValueError("MSD needs at least one augmentation and one corruption sample")
    return float(torch.linalg.vector_norm(aug_emb - corr_emb.mean(0), dim=1).min())


def mmd(aug_emb: Tensor, corr_emb: Tensor) -> float:
    """‖mean(aug_emb) − mean(corr_emb)‖₂."""
    return float(torch.linalg.vector_norm(aug_emb.mean(0) - corr_emb.mean(0)))


def corruption_apply(name: str, severity: int) -> Apply:
    """The corruption as a transform family: seed -> the same draw on every image
    (`visrep.data.corruptions.corrupt`)."""

    def apply(images: Tensor, seed: int) -> Tensor:
        return from_numpy_images(corrupt(to_numpy_images(images), name, severity, seed)).float()

    return apply


def training_apply(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop_scale: tuple[float, float] = (1.0, 1.0),
    hflip: bool = False,
    reprob: float = 0.0,
    remode: str = "pixel",
    recount: int = 1,
    photometric: str = "",
) -> Apply:
    """The in-memory training augmentation of a classifier run (`visrep.data.labelled`
    `TensorBatches`): RandomResizedCrop(crop_scale) + horizontal flip (p = ½) on 0..255, the
    `photometric` ops (`visrep.data.photometric`: noise, blur, contrast, AugMix), normalisation,
    timm RandomErasing(reprob, remode, recount) in normalised units (as in training), back to
    0..255 units — with one draw per seed applied to every image (the box, flip and
    photometric draw, noise field included, drawn once; erasing re-seeded per image)."""
    extra = Photometric(photometric)
    erase = (
        RandomErasing(reprob, mode=remode, max_count=recount, device="cpu") if reprob > 0 else None
    )

    def apply(images: Tensor, seed: int) -> Tensor:
        n, _, h, w = images.shape
        g = torch.Generator().manual_seed(seed)
        box = random_resized_crop_params(1, h, w, crop_scale, generator=g)
        flip = (torch.rand(1, generator=g) < 0.5) if hflip else torch.zeros(1, dtype=torch.bool)
        x = resized_crop(images, box.expand(n, 4), img_size, flip.expand(n))
        if extra.ops:  # one draw, expanded to the n images
            x = extra.apply(x, extra.sample(1, generator=g))
        if erase is None:
            return x
        x = normalize(x, mean, std)
        out = []
        for img in x:  # timm draws boxes from `random` and noise from torch: same seed each
            random.seed(seed)
            torch.manual_seed(seed)
            out.append(erase(img[None].clone())[0])
        m = torch.tensor(mean).view(-1, 1, 1)
        s = torch.tensor(std).view(-1, 1, 1)
        return (torch.stack(out) * s + m) * 255

    return apply


def mixture_apply(
    parts: Sequence[tuple[Apply, float]], mix_seed: int = 0
) -> Callable[[int], Apply]:
    """A mixture of transform families with the given fractions (the notebook's augmentation
    = impulse noise with probability p, motion blur otherwise): returns seed -> family, the
    family chosen by a draw from `mix_seed` and the seed (so the choice is reproducible)."""
    weights = np.array([w for _, w in parts], dtype=np.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"mixture fractions must be >= 0 and not all 0, got {weights.tolist()}")
    cum = np.cumsum(weights / weights.sum())

    def pick(seed: int) -> Apply:
        u = np.random.default_rng([mix_seed, seed]).random()
        return parts[int(min(np.searchsorted(cum, u, side="right"), len(parts) - 1))][0]

    return pick


def embed_mixture(
    encoder: Callable[[Tensor], Tensor], images: Tensor, pick: Callable[[int], Apply],
    seeds: Sequence[int],
) -> Tensor:  # fmt: skip
    """`transform_embedding` where each seed's family comes from `pick(seed)`."""
    rows = [transform_embedding(encoder, images, pick(int(s)), [int(s)]) for s in seeds]
    return torch.cat(rows)


def corruption_seeds(n_corr: int, seed: int = 0) -> range:
    """Corruption transform seeds: seed·10⁶ + 500000 + 0..n_corr−1 (disjoint from the
    augmentation's seed·10⁶ + 0..n_aug−1)."""
    base = seed * 1_000_000 + 500_000
    return range(base, base + n_corr)


def embed_families(
    encoder: Callable[[Tensor], Tensor], images: Tensor, families: dict[str, Apply],
    seeds: Sequence[int], progress: bool = False,
) -> dict[str, Tensor]:  # fmt: skip
    """{key: f(t) for t in that family's `seeds`} ([len(seeds), d] each)."""
    return {key: transform_embedding(encoder, images, apply, seeds)
            for key, apply in tqdm(families.items(), desc="corruptions", disable=not progress)}  # fmt: skip


def distances(aug_emb: Tensor, corr_embs: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """{key: {"msd", "mmd"}} of one augmentation's embeddings against each family's."""
    return {k: {"msd": msd(aug_emb, c), "mmd": mmd(aug_emb, c)} for k, c in corr_embs.items()}


def msd_table(
    encoder: Callable[[Tensor], Tensor],
    images: Tensor,
    augmentation: Apply,
    corruptions: dict[str, Apply],
    *,
    n_aug: int,
    n_corr: int,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """MSD and MMD of one augmentation against each corruption family ({key: apply}, e.g.
    "gaussian_noise-3"); augmentation seeds seed·10⁶ + 0..n_aug−1, corruption seeds
    `corruption_seeds`."""
    aug = transform_embedding(encoder, images, augmentation,
                              range(seed * 1_000_000, seed * 1_000_000 + n_aug),
                              progress=progress, desc="augmentation")  # fmt: skip
    corr = embed_families(encoder, images, corruptions, corruption_seeds(n_corr, seed), progress)
    return distances(aug, corr)
