"""Moving Fashion-MNIST: a CPU-sized video set with an appearance and a motion label.

Each video is one (or two) 28×28 Fashion-MNIST images moving on a black
S×S canvas for F frames. The *class* label (the garment) is visible in any single frame; the
*direction* label (one of K = 8 headings, only with "wrap" motion) is visible in no single
frame, so video k-NN / linear results on it show whether a representation uses time.

Video i is a pure function of (seed, split, i): its numpy PCG64 generator is seeded by
`SeedSequence([seed, split_id, i])`, so the set does not depend on generation order, worker
count or how many videos are generated. Labels are balanced without randomness: class
c0 = i mod 10, direction d = ⌊i / 10⌋ mod K, so any multiple of 10·K videos is exactly
balanced. Train videos use only the train images, test videos only the t10k images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPLIT_IDS = {"train": 0, "test": 1}
OBJECT = 28  # Fashion-MNIST side; objects are pasted at their own size (no rescaling)
# normalisation constants measured on 800 train videos (N = 1, either motion)
MEAN, STD = 0.0553, 0.1920


@dataclass(frozen=True)
class MovingSpec:
    """How videos are generated (the defaults)."""

    frames: int = 32  # F
    size: int = 64  # canvas S
    motion: str = "wrap"  # "wrap" (direction labels defined) or "bounce"
    directions: int = 8  # K
    objects: int = 1  # N (1 or 2)
    policy: str = "same"  # second object: "same" class (other image) or "distractor"
    speed: tuple[float, float] = (1.0, 3.0)  # px / frame
    jitter: float = 0.25  # angle jitter, fraction of half a direction bin

    def __post_init__(self) -> None:
        if self.motion not in ("wrap", "bounce"):
            raise ValueError(f"motion must be 'wrap' or 'bounce', got {self.motion!r}")
        if self.policy not in ("same", "distractor"):
            raise ValueError(f"policy must be 'same' or 'distractor', got {self.policy!r}")
        if self.size < OBJECT:
            raise ValueError(f"canvas size must be >= {OBJECT}, got {self.size}")
        if self.objects not in (1, 2):
            raise ValueError(f"objects must be 1 or 2, got {self.objects}")


@dataclass(frozen=True)
class MovingVideo:
    """One generated video: uint8 frames [F, S, S] and what produced them."""

    frames: np.ndarray
    label: int  # class c0 of object 0
    direction: int  # d (meaningful only for wrap motion)
    sources: tuple[int, ...]  # index into the source split, per object
    speeds: tuple[float, ...]
    angles: tuple[float, ...]  # θ, counter-clockwise on screen (0 = right, π/2 = up)


def class_index(labels: np.ndarray, classes: int = 10) -> list[np.ndarray]:
    """Ascending source indices of each class (the lists step 3 draws from)."""
    return [np.flatnonzero(labels == c) for c in range(classes)]


def generate(
    i: int,
    images: np.ndarray,
    by_class: list[np.ndarray],
    spec: MovingSpec = MovingSpec(),
    *,
    seed: int = 0,
    split: str = "train",
) -> MovingVideo:
    """Video `i` of `split` (steps 1-6 below). `images` [N, 28, 28] uint8 of that split,
    `by_class` its `class_index`."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SPLIT_IDS[split], i])))
    k, s_ = spec.directions, spec.size
    c0, d = i % 10, (i // 10) % k
    wrap = spec.motion == "wrap"
    span = s_ if wrap else s_ - OBJECT  # A: range of the top-left corner
    objects = []
    for j in range(spec.objects):
        c = c0
        if j >= 1 and spec.policy == "distractor":
            c = (c0 + 1 + int(rng.integers(9))) % 10
        src = int(by_class[c][int(rng.integers(len(by_class[c])))])
        x, y = rng.uniform(0, span, size=2)
        speed = float(rng.uniform(*spec.speed))
        if wrap:
            theta = 2 * math.pi * d / k + float(rng.uniform(-1, 1)) * spec.jitter * math.pi / k
        else:
            theta = float(rng.uniform(0, 2 * math.pi))
        objects.append((src, float(x), float(y), speed, theta))
    frames = np.zeros((spec.frames, s_, s_), dtype=np.uint8)
    limit = s_ - OBJECT  # L for bounce
    for src, x, y, speed, theta in objects:
        pos = [x, y]
        vel = [speed * math.cos(theta), -speed * math.sin(theta)]
        patch = images[src]
        for t in range(spec.frames):
            if t:
                for a in (0, 1):
                    q = pos[a] + vel[a]
                    if wrap:
                        q = q % s_
                    elif q < 0:
                        q, vel[a] = -q, -vel[a]
                    elif q > limit:
                        q, vel[a] = 2 * limit - q, -vel[a]
                    pos[a] = q
            r, c = math.floor(pos[1] + 0.5), math.floor(pos[0] + 0.5)
            if wrap:
                rows = (np.arange(r, r + OBJECT) % s_)[:, None]
                cols = (np.arange(c, c + OBJECT) % s_)[None, :]
                frames[t][rows, cols] = np.maximum(frames[t][rows, cols], patch)
            else:
                view = frames[t, r : r + OBJECT, c : c + OBJECT]
                np.maximum(view, patch, out=view)
    return MovingVideo(
        frames=frames,
        label=c0,
        direction=d,
        sources=tuple(o[0] for o in objects),
        speeds=tuple(o[3] for o in objects),
        angles=tuple(o[4] for o in objects),
    )


class MovingFashionMNIST:
    """Generator of one split, videos made on demand (`video(i)`), nothing cached.

    Args:
        images: uint8 [N, 1, 28, 28] or [N, 28, 28] Fashion-MNIST images of the split.
        labels: int [N] their classes.
    """

    def __init__(self, images, labels, spec: MovingSpec = MovingSpec(), *, seed: int = 0,
                 split: str = "train") -> None:  # fmt: skip
        images = np.asarray(images, dtype=np.uint8)
        self.images = images.reshape(len(images), OBJECT, OBJECT)
        self.by_class = class_index(np.asarray(labels))
        self.spec, self.seed, self.split = spec, seed, split

    def video(self, i: int) -> MovingVideo:
        return generate(i, self.images, self.by_class, self.spec, seed=self.seed, split=self.split)
