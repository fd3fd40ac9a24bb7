"""Image-text training data for CLIP, SLIP and FLIP: batches {"images", "tokens" [B, 77]}
(plus {"views": [v1, v2]} when `data.views` is set, for SLIP's SSL branch).

Sources, chosen by `is_pair_data` in `data.pipeline.build_train_data`:

- **WebDataset shards** (`data.dataset` = a `.tar`, a folder of `.tar`, or a brace pattern
  `shard-{000000..000009}.tar`): samples `key.jpg|jpeg|png|webp` + `key.txt`, streamed one
  tar at a time with the `webdataset` package (never the whole set in memory). Shard order
  is permuted per epoch from (seed, epoch), samples pass a seeded shuffle buffer, and rank r
  takes every W-th sample. Batches are a function of (seed, step, rank): resume re-reads the
  current epoch up to the step (exact, costs at most one epoch of decoding). Decoding runs in
  the training process (`data.num_workers` is not used for shards yet).
- **CSV / JSONL** (`image_path, caption`; paths relative to the file): a map-style dataset
  read by a DataLoader with `data.num_workers`, the folder pipeline's step sampler.
- **Fashion-MNIST with class-name captions** (`data.dataset=fashion_mnist`,
  `data.captions=fmnist_train`): in-memory
  images, each captioned per step with a random template of that set around its class name
  (train split only; `visrep.data.templates`).

`data.subset` (a `subset.tsv` of `visrep curate balance`) keeps only the listed records of
shards or a CSV/JSONL, checked against the pool first (`visrep.data.subset`).

Bad pairs (missing image or caption, empty caption, undecodable image) are skipped and
counted in `n_skipped`. Image transform: RandomResizedCrop(data.crop_scale) and optional
flip (SLIP's CLIP transform: scale (0.5, 1), no flip), then normalisation.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info
from torchvision.transforms import v2

from visrep.config import DataConfig, replace
from visrep.data.augment import normalize
from visrep.data.bow import caption_transform, fmnist_bow, shard_captions
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import decode_bytes, folder_eval_transform
from visrep.data.images import TensorTrainData
from visrep.data.preprocess import mean_std
from visrep.data.sampling import StepBatchSampler, ignore_sigint, mix_seed
from visrep.data.subset import match_shards, read_subset, table_rows, tar_keys
from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.data.tokenizer import tokenize
from visrep.data.views import BatchedViews, folder_views_transform, view_preset
from visrep.device import CPU

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
MAX_LOST = 0.1  # the share of a shard set's samples a pass may lose to damage before failing
log = logging.getLogger("visrep")


def is_pair_data(data: DataConfig) -> bool:

    d = data.dataset
    if is_fashion_mnist(d):
        return bool(data.captions)
    if d.endswith((".tar", ".csv", ".jsonl")) or ("{" in d and ".tar" in d):
        return True
    return Path(d).is_dir() and any(Path(d).glob("*.tar"))


def pair_transform(data: DataConfig):
    """Per-sample transform of a uint8 image -> {"image": uint8, "views": [...]?}."""

    steps = [v2.RandomResizedCrop(data.img_size, scale=data.crop_scale, antialias=True)]
    steps += [v2.RandomHorizontalFlip()] if data.hflip else []
    crop = v2.Compose(steps)
    views = (folder_views_transform(data.img_size, view_preset(data.views), data.channels)
             if data.views else None)  # fmt: skip

    def apply(image: Tensor) -> dict:
        return {"image": crop(image)} | ({"views": views(image)} if views else {})

    return apply


def make_item(raw: bytes | None, caption: str | None, data: DataConfig, transform, seed: int,
              caption_fn=None, text: bool = True):  # fmt: skip
    """One training pair (an image alone when not `text`), or None for a bad pair (counted by
    the caller). `caption_fn` (e.g. the bag-of-words transform of `visrep.data.bow`) gets a
    generator seeded by `seed`."""
    if raw is None or (text and (not caption or not caption.strip())):
        return None
    try:
        image = decode_bytes(raw, data.channels)
    except Exception:  # undecodable / truncated file
        return None
    torch.manual_seed(seed)
    if not text:
        return transform(image)
    caption = caption.strip()
    if caption_fn is not None:
        caption = caption_fn(caption, torch.Generator().manual_seed(seed))
    return transform(image) | {"caption": caption}


class _Batcher:
    """Collates items into normalised batches; counts skipped pairs. Without `text`, batches
    are those of image data: {"images"} or, with `data.views`, {"views"}."""

    def __init__(self, data: DataConfig, device: torch.device, text: bool = True) -> None:
        self.data, self.device, self.n_skipped, self.text = data, device, 0, text
        self.mean, self.std = mean_std(data)
        self.context = 77

    def __call__(self, items: list[dict]) -> dict:
        norm = lambda x: normalize(x.to(self.device).float(), self.mean, self.std)  # noqa: E731
        views = lambda: [norm(torch.stack([it["views"][k] for it in items]))  # noqa: E731
                         for k in range(len(items[0]["views"]))]  # fmt: skip
        if not self.text:
            return (
                {"views": views()}
                if "views" in items[0]
                else {"images": norm(torch.stack([it["image"] for it in items]))}
            )
        tokens = tokenize([it["caption"] for it in items], self.context)
        out = {"images": norm(torch.stack([it["image"] for it in items])),
               "tokens": tokens.to(self.device),
               # the raw strings too: a pretrained text tower (MiniLM) has its own tokenizer
               "captions": [it["caption"] for it in items]}  # fmt: skip
        if "views" in items[0]:
            out["views"] = views()
        return out


def list_shards(spec: str) -> list[str]:
    p = Path(spec)
    if p.is_dir():
        shards = sorted(str(s) for s in p.glob("*.tar"))
    elif "{" in spec:
        import braceexpand

        shards = list(braceexpand.braceexpand(spec))
    elif any(c in spec for c in "*?["):  # DIR/*.tar, the shell's habit
        shards = sorted(glob.glob(spec))
    else:
        shards = [spec]
    missing = [s for s in shards if not Path(s).is_file()]
    if not shards or missing:
        raise FileNotFoundError(f"no WebDataset shards at {spec} (missing: {missing[:3]})")
    return shards


def skip_damaged(exn: Exception) -> bool:
    """webdataset handler: a damaged shard ends its stream, not the pass; `check_complete`
    counts what was lost once the pass is over."""
    return True


def check_complete(spec: str, seen: int, expected: int, goes_on: str) -> int:
    """A full pass over shards must read what they hold (`expected`: `count_samples`, from
    `sizes.json` or the tar headers): fewer means a truncated or damaged shard. Warns with the
    count (`goes_on` names what continues without them) and returns how many were lost; a
    ValueError when more than MAX_LOST of them are. Every shard reader (training, retrieval)
    checks with this one function."""
    lost = expected - seen
    if lost <= 0:
        return 0
    msg = (f"the shards of {spec} yielded {seen} of {expected} samples: "
           f"{lost} lost to a truncated or damaged shard")  # fmt: skip
    if lost > MAX_LOST * expected:
        raise ValueError(f"{msg}, more than {MAX_LOST:.0%}; rebuild the shards")
    log.warning("%s (%s goes on without them)", msg, goes_on)
    return lost


def count_samples(shards: list[str]) -> int:
    """Samples in the shards: `sizes.json` beside them (written by `build-captions`, the
    open_clip convention) or a scan of the tar headers."""
    sizes = Path(shards[0]).parent / "sizes.json"
    if sizes.is_file():
        table = json.loads(sizes.read_text())
        if all(Path(s).name in table for s in shards):
            return sum(int(table[Path(s).name]) for s in shards)
    keys = set()
    for s in shards:
        try:
            with tarfile.open(s) as tar:
                keys |= {(s, n.rsplit(".", 1)[0]) for n in tar.getnames() if not n.startswith("__")}
        except tarfile.ReadError as e:
            raise ValueError(f"{s} is not a readable tar file (a WebDataset shard): {e}; "
                             "rebuild it or move it out of the folder") from None  # fmt: skip
    return len(keys)


class ShardPairData:
    """Streaming WebDataset shards (see module docstring); with `text=False` the images alone
    (image-only methods; shards need no `.txt`)."""

    def __init__(self, data, batch_size, *, seed, rank=0, world_size=1, device=CPU,
                 buffer: int = 2000, text: bool = True) -> None:  # fmt: skip
        self.text = text
        self.shards = list_shards(data.dataset)
        # data.subset: the kept sample keys per shard (visrep.data.subset); None = every sample
        self.keep: dict[str, set[str]] | None = None
        if data.subset:
            subset = read_subset(data.subset)
            rows = match_shards(subset, self.shards, data.dataset)
            self.keep = {s: tar_keys(subset, s, r) for s, r in rows.items()}
            self.shards = [s for s in self.shards if s in self.keep]
        self.data, self.b, self.seed = data, batch_size, seed
        self.rank, self.world = rank, world_size
        self.buffer, self.transform = buffer, pair_transform(data)
        self.collate = _Batcher(data, device, text)
        self.caption_fn = caption_transform(data.caption_style, data.bow_balance,
                                            lambda: shard_captions(self.shards, data.limit)
                                            ) if text else None  # fmt: skip
        n = self.n_total = (sum(map(len, self.keep.values())) if self.keep is not None
                            else count_samples(self.shards))  # fmt: skip
        self._warned = False
        if data.limit:
            n = min(n, data.limit)
        self.steps_per_epoch = n // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{n} pairs in {data.dataset} are fewer than one global batch "
                             f"({batch_size} x {world_size}); lower optim.batch_size")  # fmt: skip

    @property
    def n_skipped(self) -> int:
        return self.collate.n_skipped

    def _item(self, raw: bytes | None, txt: str | None, epoch: int, cycle: int, i: int):
        """Sample `i` of this rank's stream, transformed with a seed of its place in the
        stream (so the same whichever process makes it); None for a bad pair."""
        seed = mix_seed(self.seed, epoch, cycle, self.rank, i)
        return make_item(raw, txt, self.data, self.transform, seed, self.caption_fn, self.text)

    def _items(self, epoch: int, cycle: int) -> Iterator[dict | None]:
        """This rank's training items for an epoch (None: a bad pair), in stream order.

        With `data.num_workers` = W > 0, W loader processes share the decoding and the
        seeded transforms: each reads the shards and makes every W-th block of SHARD_BLOCK
        samples, sent as one list, and the DataLoader's in-order round-robin over its
        workers restores the stream order, so the items are the same for any W (and exact
        resume holds)."""
        workers = max(self.data.num_workers, 0)
        if workers == 0:
            for i, (raw, txt) in enumerate(self._raw(epoch, cycle)):
                yield self._item(raw, txt, epoch, cycle, i)
            return
        loader = DataLoader(_ShardWorkerItems(self, epoch, cycle), batch_size=None,
                            num_workers=workers, worker_init_fn=ignore_sigint)  # fmt: skip
        for block in loader:
            if isinstance(block, dict):  # worker 0's count of samples read
                self._check_complete(int(block[SEEN]))
                continue
            yield from block

    def _raw(self, epoch: int, cycle: int, seen_out: list[int] | None = None
             ) -> Iterator[tuple[bytes | None, str | None]]:  # fmt: skip
        """This rank's (image bytes, caption) stream for an epoch, shuffled. At its end the
        number of samples read is checked against the shards' size (`_check_complete`), or,
        with `seen_out`, appended to it for the caller to check."""
        from webdataset import tarfile_samples

        rng = random.Random(mix_seed(self.seed, epoch, cycle))
        order = rng.sample(self.shards, len(self.shards))
        # a damaged shard ends its stream (the rest of that shard is lost), not the epoch;
        # `_check_complete` counts what was lost after the pass
        samples = tarfile_samples([{"url": s} for s in order], handler=skip_damaged)
        buf: list = []
        rng_rank = random.Random(mix_seed(self.seed, epoch, cycle, self.rank))
        seen, keep = 0, self.keep
        if keep is not None:  # data.subset: only the listed samples, counted as the stream
            samples = (s for s in samples if s["__key__"] in keep.get(s["__url__"], ()))
        for i, s in enumerate(samples):
            if self.data.limit and i >= self.data.limit:
                break
            seen += 1
            if i % self.world != self.rank:
                continue
            raw = next((s[k] for k in IMAGE_KEYS if k in s), None)
            txt = s["txt"].decode("utf-8", "replace") if "txt" in s else None
            buf.append((raw, txt))
            if len(buf) >= self.buffer:
                yield buf.pop(rng_rank.randrange(len(buf)))
        if seen_out is None:
            self._check_complete(seen)
        else:
            seen_out.append(seen)
        rng_rank.shuffle(buf)
        yield from buf

    def _check_complete(self, seen: int) -> None:
        expected = min(self.n_total, self.data.limit) if self.data.limit else self.n_total
        if not self._warned and check_complete(self.data.dataset, seen, expected, "training"):
            self._warned = True

    def batches(self, start_step: int, end_step: int) -> Iterator[dict]:

        step = start_step
        while step < end_step:
            epoch = step // self.steps_per_epoch
            first = epoch * self.steps_per_epoch
            s, items, cycle, good = first, [], 0, 0
            stream = self._items(epoch, cycle)
            while s < min(end_step, first + self.steps_per_epoch):
                try:
                    item = next(stream)
                except StopIteration:  # bad pairs shortened the epoch: re-draw to fill it
                    if good == 0:
                        msg = (f"no readable image-text pair in {self.data.dataset}: check "
                               "that its samples hold an image and a non-empty caption")  # fmt: skip
                        raise ValueError(msg) from None
                    cycle, good = cycle + 1, 0
                    stream = self._items(epoch, cycle)
                    continue
                if item is None:
                    self.collate.n_skipped += s >= step  # count each bad pair once
                    continue
                items.append(item)
                good += 1
                if len(items) == self.b:
                    if s >= step:
                        yield self.collate(items)
                    s, items = s + 1, []
            step = s


SEEN = "__samples_read__"  # worker 0's last output: samples read, for the completeness check
SHARD_BLOCK = 32  # consecutive samples a loader process makes and sends at once


class _ShardWorkerItems(IterableDataset):
    """One loader process's share of `ShardPairData._items`: the blocks b of SHARD_BLOCK
    consecutive samples with b % W == worker id, each sent as one list (None for a bad
    pair; one message per block, not per sample), then (worker 0) the samples read."""

    def __init__(self, source: ShardPairData, epoch: int, cycle: int) -> None:
        self.source, self.epoch, self.cycle = source, epoch, cycle

    def __iter__(self):
        info = get_worker_info()
        seen: list[int] = []
        block: list = []
        for i, (raw, txt) in enumerate(self.source._raw(self.epoch, self.cycle, seen)):
            if (i // SHARD_BLOCK) % info.num_workers == info.id:
                block.append(self.source._item(raw, txt, self.epoch, self.cycle, i))
                if len(block) == SHARD_BLOCK:
                    yield block
                    block = []
        if block:  # the stream's last, partial block
            yield block
        if info.id == 0:
            yield {SEEN: seen[0]}


class TablePairs(Dataset):
    """CSV (header with `image_path`/`caption` columns, or two columns) or JSONL rows."""

    def __init__(self, path: str, data: DataConfig) -> None:
        self.path, self.data, self.transform = Path(path), data, pair_transform(data)
        if not self.path.is_file():
            raise FileNotFoundError(f"no CSV/JSONL pair file at {path}")
        if data.subset:  # the listed rows only (visrep.data.subset)
            subset = read_subset(data.subset)
            listed = match_shards(subset, [str(self.path)], data.dataset)
            rows = table_rows(subset, self.path, listed[str(self.path)])
        else:
            rows = read_pair_table(self.path)
        self.rows = [(p, c) for p, c in rows if c and c.strip()]
        self.n_empty = len(rows) - len(self.rows)
        if data.limit:
            self.rows = self.rows[: data.limit]
        self.caption_fn = caption_transform(data.caption_style, data.bow_balance,
                                            lambda: (c for _, c in self.rows))  # fmt: skip

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        rel, caption = self.rows[index]
        p = Path(rel) if Path(rel).is_absolute() else self.path.parent / rel
        raw = p.read_bytes() if p.is_file() else None
        return make_item(raw, caption, self.data, self.transform, seed, self.caption_fn)


def read_pair_table(path: Path, caption_lists: bool = False) -> list[tuple[str, Any]]:
    """(image_path, caption) rows of a CSV (a header naming `image_path` and `caption` in any
    order, or two columns without a header) or of a JSONL of objects. A row that is not a
    pair of strings (a JSON value that is not an object, a number for a caption) becomes
    ("", "") and is skipped and counted like an empty caption; a line that is not JSON at all
    is an error naming it. `caption_lists`: a JSONL caption may also be a list of strings
    (several captions of one image, as retrieval sets have)."""
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i} is not a JSON line ({e.msg}); each line must be "
                                 '{"image_path": ..., "caption": ...}') from None  # fmt: skip
            r = r if isinstance(r, dict) else {}
            pair = (r.get("image_path", ""), r.get("caption", ""))
            caps = pair[1] if caption_lists and isinstance(pair[1], list) else [pair[1]]
            ok = isinstance(pair[0], str) and all(isinstance(c, str) for c in caps)
            rows.append(pair if ok else ("", ""))
        return rows
    with path.open(newline="", errors="replace") as f:
        reader = [r for r in csv.reader(f) if r]
    cols = (0, 1)
    if reader and {"image_path", "caption"} <= set(reader[0]):
        cols, reader = (reader[0].index("image_path"), reader[0].index("caption")), reader[1:]
    return [(r[cols[0]] if len(r) > cols[0] else "", r[cols[1]] if len(r) > cols[1] else "")
            for r in reader]  # fmt: skip


class TablePairData:
    """A CSV/JSONL of pairs through a DataLoader (the folder pipeline's step sampler)."""

    def __init__(self, data, batch_size, *, seed, rank=0, world_size=1, device=CPU) -> None:
        self.table = TablePairs(data.dataset, data)
        self.data, self.b, self.seed = data, batch_size, seed
        self.rank, self.world = rank, world_size
        self.collate = _Batcher(data, device)
        self.collate.n_skipped = self.table.n_empty
        self.steps_per_epoch = len(self.table) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.table)} pairs in {data.dataset} are fewer than one "
                             f"global batch ({batch_size} x {world_size})")  # fmt: skip

    @property
    def n_skipped(self) -> int:
        return self.collate.n_skipped

    def batches(self, start_step: int, end_step: int) -> Iterator[dict]:
        sampler = StepBatchSampler(len(self.table), self.b, self.seed, self.rank, self.world,
                                   start_step, end_step)  # fmt: skip
        loader = DataLoader(self.table, batch_sampler=sampler, collate_fn=lambda b: b,
                            num_workers=self.data.num_workers)  # fmt: skip
        last = None
        for items in loader:
            good = [it for it in items if it is not None]
            self.collate.n_skipped += len(items) - len(good)
            if not good:  # keep every process stepping together
                if last is None:
                    raise ValueError(f"the first batch of {self.data.dataset} held only "
                                     "unreadable pairs: check the image paths and captions")  # fmt: skip
                yield last
                continue
            last = self.collate(good)
            yield last


class FMNISTCaptionData:
    """Fashion-MNIST train images captioned per step with a random template of
    `data.captions` around the class name; batched augmentation as `TensorTrainData`."""

    def __init__(self, data, batch_size, *, seed, rank=0, world_size=1, device=CPU) -> None:

        images, labels = load_fashion_mnist(data.root, "train")
        if data.limit:
            images, labels = images[: data.limit], labels[: data.limit]

        self.images = TensorTrainData(images, replace(data, views=""), batch_size, seed=seed,
                                      rank=rank, world_size=world_size, device=device)  # fmt: skip
        self.views = (BatchedViews(data.img_size, view_preset(data.views), data.channels)
                      if data.views else None)  # fmt: skip
        self.labels, self.device, self.seed, self.rank = labels, device, seed, rank
        templates = template_set(data.captions)
        names = [[t.format(c) for t in templates] for c in FMNIST_CLASSNAMES]
        self.table = tokenize([s for row in names for s in row]).view(
            len(names), len(templates), -1
        )
        self.steps_per_epoch, self.n_skipped = self.images.steps_per_epoch, 0
        self.bow = fmnist_bow(data, FMNIST_CLASSNAMES, templates, labels)  # None: sentences

    def batches(self, start_step: int, end_step: int) -> Iterator[dict]:

        t = self.images
        for step in range(start_step, end_step):
            batch = t.batch(step)
            epoch, i = divmod(step, t.steps_per_epoch)
            start = (i * t.world + t.rank) * t.batch_size
            idx = t._perm[start : start + t.batch_size]  # the rows `batch` holds
            g = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank, 2))
            which = torch.randint(self.table.shape[1], (len(idx),), generator=g)
            tokens = (self.bow.tokens(self.labels[idx], which, g) if self.bow is not None
                      else self.table[self.labels[idx], which])  # fmt: skip
            batch["tokens"] = tokens.to(self.device)
            if self.views is not None:  # SLIP's two SSL views of the same images
                g = torch.Generator().manual_seed(mix_seed(self.seed, step, self.rank, 3))
                views = self.views(t.images[idx].to(self.device), generator=g)
                batch["views"] = [normalize(v, t.mean, t.std) for v in views]
            yield batch


def build_pair_data(data: DataConfig, batch_size: int, text: bool = True, **kwargs):
    """The image-text source `data` names (module docstring); `text=False`: WebDataset shards
    read as images only (a CSV/JSONL or captioned Fashion-MNIST keeps its captions)."""

    if is_fashion_mnist(data.dataset):
        if data.subset:
            raise ValueError(f"data.subset={data.subset} selects records of a caption pool "
                             "(WebDataset shards, CSV/JSONL); captioned Fashion-MNIST is not one: "
                             "build one with `visrep data build-captions`")  # fmt: skip
        return FMNISTCaptionData(data, batch_size, **kwargs)
    if data.dataset.endswith((".csv", ".jsonl")):
        return TablePairData(data, batch_size, **kwargs)
    return ShardPairData(data, batch_size, text=text, **kwargs)


def shard_images(spec: str, channels: int, size: int, n: int) -> Tensor:
    """The first n readable images of WebDataset shards as uint8 [n, C, size, size] (short
    side resized, centre crop): pictures of a shard-trained run."""
    from webdataset import tarfile_samples

    resize, images = folder_eval_transform(size), []
    for sample in tarfile_samples([{"url": u} for u in list_shards(spec)]):
        raw = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        try:
            images.append(resize(decode_bytes(raw, channels)))
        except Exception:  # missing or unreadable: the next one
            continue
        if len(images) == n:
            break
    if not images:
        raise ValueError(f"no readable image in {spec}")
    return torch.stack(images)
