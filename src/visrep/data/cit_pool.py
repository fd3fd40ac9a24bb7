"""The raw image-text pool that CiT curates, and the data source that trains on the curated
subset (CiT, Xu et al. 2023, §3, Algorithm 1; the selection rule is `visrep.curation.cit`).

Pools (random access: CiT trains on an arbitrary subset of the pool each round):

- `ShardPool`: WebDataset shards (`visrep data build-captions`). One pass over the tar
  headers indexes every sample (shard, byte offset and size of its image) and keeps the
  captions in memory; images are read from disk when a batch needs them. A sample's
  *source* is its key up to the first `_` (`fmnist_train_00012` → `fmnist`, `tux_…` → `tux`),
  used only to report the composition of each curated set, never to select.
- `FMNISTPool`: Fashion-MNIST train images, image i captioned once with a template of
  `data.captions` drawn from (seed, i), as `build-captions` does (smoke mode, tests).

`CiTData` is the training loop's data source: before the first batch of round r = step //
s it asks the bound CiT method to curate (`CiT.curate`), then batch j of the round is a
seeded shuffle of the kept pairs, cropped as SLIP's CLIP transform. The curated subset,
the stream position and the round's statistics live in the method's state dict, so a
checkpoint holds them and `--resume` continues exactly.
"""

from __future__ import annotations

import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from visrep.config import DataConfig
from visrep.data.augment import normalize
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import decode_bytes
from visrep.data.pairs import list_shards, pair_transform
from visrep.data.preprocess import match_channels, mean_std
from visrep.data.sampling import mix_seed
from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.data.tokenizer import tokenize_cached
from visrep.device import CPU

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class ShardPool:
    """Index of WebDataset shards: captions in memory, images read on demand."""

    def __init__(self, spec: str, channels: int, limit: int = 0) -> None:

        try:
            self.shards = list_shards(spec)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e}; build a pool with `visrep data build-captions --out DIR`"
            ) from None
        self.channels, self.n_skipped = channels, 0
        self.captions: list[str] = []
        self.sources: list[str] = []
        loc: list[tuple[int, int, int]] = []  # (shard, offset, size)
        for s, path in enumerate(self.shards):
            samples: dict[str, dict] = {}
            with tarfile.open(path) as tar:
                for m in tar:
                    if not m.isfile() or "." not in m.name or m.name.startswith("__"):
                        continue
                    key, ext = m.name.rsplit(".", 1)
                    d = samples.setdefault(key, {})
                    if ext == "txt":
                        d["txt"] = tar.extractfile(m).read().decode("utf-8", "replace").strip()
                    elif ext.lower() in IMAGE_EXTS:
                        d["img"] = (s, m.offset_data, m.size)
            for key, d in samples.items():
                if limit and len(loc) >= limit:
                    break
                if not d.get("txt") or "img" not in d:
                    self.n_skipped += 1
                    continue
                self.captions.append(d["txt"])
                self.sources.append(Path(key).name.split("_", 1)[0])
                loc.append(d["img"])
        self.loc = torch.tensor(loc, dtype=torch.long).view(-1, 3)  # [N, 3]
        self._files: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> Tensor | None:
        """uint8 [C, H, W], or None when the bytes do not decode."""

        s, off, size = self.loc[i].tolist()
        f = self._files.get(s) or self._files.setdefault(s, open(self.shards[s], "rb"))  # noqa: SIM115
        f.seek(off)
        try:
            return decode_bytes(f.read(size), self.channels)
        except Exception:
            return None


class FMNISTPool:
    """Fashion-MNIST train images with one fixed class-name caption each."""

    def __init__(self, data: DataConfig, seed: int) -> None:

        images, labels = load_fashion_mnist(data.root, "train")  # never the test split
        if data.limit:
            images, labels = images[: data.limit], labels[: data.limit]
        self.images = match_channels(images, data.channels)
        temps, rng = template_set(data.captions or "fmnist_train"), random.Random(seed)
        self.captions = [rng.choice(temps).format(FMNIST_CLASSNAMES[int(y)]) for y in labels]
        self.sources, self.n_skipped = ["fmnist"] * len(labels), 0

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> Tensor:
        return self.images[i]


def build_pool(data: DataConfig, seed: int) -> ShardPool | FMNISTPool:
    if is_fashion_mnist(data.dataset):
        return FMNISTPool(data, seed)
    return ShardPool(data.dataset, data.channels, data.limit)


class CiTData:
    """Batches from the curated subset of each round (module docstring)."""

    def __init__(self, method, data: DataConfig, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, device: torch.device = CPU,
                 pool=None) -> None:  # fmt: skip

        if getattr(data, "caption_style", "sentence") != "sentence":
            raise ValueError("CiT curates and trains on the captions as written: "
                             "data.caption_style must be 'sentence'")  # fmt: skip
        self.method, self.data, self.b, self.seed = method, data, batch_size, seed
        self.rank, self.world, self.device = rank, world_size, device
        self.pool = pool if pool is not None else build_pool(data, seed)  # tests inject one
        self.transform = pair_transform(data)
        self.mean, self.std = mean_std(data)
        self.steps_per_epoch = len(self.pool) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.pool)} pairs in {data.dataset} are fewer than one "
                             f"global batch ({batch_size} x {world_size})")  # fmt: skip
        self.n_skipped = self.pool.n_skipped

    def batches(self, start_step: int, end_step: int) -> Iterator[dict]:
        every = self.method.cfg.curate_every
        for step in range(start_step, end_step):
            r = step // every
            if self.method.cit_round != r:  # a new round (or a resume at its first step)
                self.method.curate(self, r, budget=every * self.b * self.world)
            yield self.batch(step, r, every)

    def batch(self, step: int, r: int, every: int) -> dict:
        kept = self.method.cit_indices  # [s × b × W]
        g = torch.Generator().manual_seed(mix_seed(self.seed, r, 4))
        order = torch.randperm(len(kept), generator=g)
        start = ((step - r * every) * self.world + self.rank) * self.b
        images, captions = [], []
        for j, i in enumerate(kept[order[start : start + self.b]].tolist()):
            image = self.pool.image(i)
            if image is None:  # undecodable: drop from the batch, count it
                self.n_skipped += 1
                continue
            torch.manual_seed(mix_seed(self.seed, step, self.rank, j))
            images.append(self.transform(image)["image"])
            captions.append(self.pool.captions[i])
        x = torch.stack(images).to(self.device).float()  # [B, C, S, S] in 0..255
        return {"images": normalize(x, self.mean, self.std),
                "tokens": tokenize_cached(captions).to(self.device),
                "captions": captions}  # the raw strings, for a pretrained text tower  # fmt: skip
