"""Batches as a pure function of (seed, step, rank).

The sample order of epoch e is `randperm(N)` seeded by (seed, e) and every augmentation draw
is seeded by (seed, step, rank). Resuming at step s therefore replays exactly what an
uninterrupted run would have seen, without saving any RNG state.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (distinct tuples -> distinct streams)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


@contextmanager
def global_rng(seed: int) -> Iterator[None]:
    """Python's `random`, numpy's and torch's global RNGs seeded with `seed` inside the block
    and restored after it: for libraries that draw from them (timm's RandAugment and
    RandomErasing), so a draw is a function of `seed` and leaves the caller's streams as
    they were."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))


class StepBatchSampler(Sampler):
    """Yields, for steps [start, end), this rank's (index, augmentation seed) pairs."""

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int, world: int, start: int, end: int
    ):
        self.n, self.b, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.start, self.end = start, end
        self.steps_per_epoch = n // (batch_size * world)

    def __len__(self) -> int:
        return max(self.end - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm_epoch, perm = -1, None
        for step in range(self.start, self.end):
            epoch, i = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                perm_epoch, perm = epoch, epoch_permutation(self.n, self.seed, epoch)
            first = (i * self.world + self.rank) * self.b
            idx = perm[first : first + self.b].tolist()
            yield [(j, mix_seed(self.seed, step, self.rank, k)) for k, j in enumerate(idx)]


def ignore_sigint(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: Ctrl-C reaches the whole process group; workers leave it
    to the main process, which saves a checkpoint at the next step (a dead worker would abort
    the run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stratified_subset(labels: Tensor, limit: int, seed: int = 0) -> Tensor:
    """Indices (ascending) of a seeded random subset of `limit` rows that keeps every class
    in proportion (largest-remainder quotas, at least one per class while `limit` allows).

    `labels` [N] are class ids, -1 for unlabeled rows (then a plain random subset). The same
    rule serves every `limit`: periodic and final k-NN, linear probe, fine-tuning."""
    n = len(labels)
    if not limit or limit >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(mix_seed(seed, n, limit))
    perm = torch.randperm(n, generator=g)
    shuffled = labels[perm]
    classes, counts = torch.unique(shuffled, return_counts=True)
    if len(classes) == 1:
        return perm[:limit].sort().values
    quota = counts.double() * limit / n
    take = quota.floor().long()
    if limit >= len(classes):
        take = take.clamp(min=1)
    rest = limit - int(take.sum())
    if rest > 0:  # largest remainders first, ties to the larger class
        order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - quota[i].floor()),
                                                          -int(counts[i]), i))  # fmt: skip
        for i in order[:rest]:
            take[i] += 1
    while int(take.sum()) > limit:  # the at-least-one rule overshot: trim the largest
        take[int(torch.argmax(take))] -= 1
    keep = [perm[shuffled == c][: int(k)] for c, k in zip(classes, take)]
    return torch.cat(keep).sort().values


def holdout_split(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train, test) indices (ascending) of a seeded stratified hold-out: round(fraction × n_c)
    rows of each class c, at least one for classes with two or more rows, go to test."""
    if not 0 < fraction < 1:
        raise ValueError(f"eval.holdout must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(mix_seed(seed, len(labels), 7))
    perm = torch.randperm(len(labels), generator=g)
    test = []
    for c in torch.unique(labels):
        rows = perm[labels[perm] == c]
        k = max(1, round(fraction * len(rows))) if len(rows) >= 2 else 0
        test.append(rows[:k])
    test_idx = torch.cat(test).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[test_idx] = False
    return mask.nonzero().flatten(), test_idx
