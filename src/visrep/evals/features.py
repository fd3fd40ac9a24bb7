"""What every evaluation protocol shares: feature extraction from a frozen encoder, the
checks on features and labels, top-k accuracy, and image/text embeddings of CLIP-style
models.

k-NN and the linear probe (DINO ``eval_knn.py``; MAE ``main_linprobe.py`` in its
cached-features variant, see ``visrep.evals.linear``) read the frozen backbone's
features of every image once; ``extract_features`` does that pass over an in-memory
image tensor, ``extract_features_many`` over batches from a DataLoader into a
``FeatureStore`` (float16 rows, in RAM or memory-mapped from disk when large), so an
evaluation holds the features, never the images. Zero-shot and retrieval read
L2-normalised embeddings (``encode_images``, ``encode_texts``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from visrep.data.tokenizer import tokenize
from visrep.parts.encode import encode_normalized

# features held in RAM up to this many MiB per encoder; beyond it they are memory-mapped
# from a file in the temp folder (eval.feature_memory_mb)
FEATURE_MEMORY_MB = 1024
FP16_MAX = float(torch.finfo(torch.float16).max)


class FeatureStore:
    """Rows of features [N, D] written batch by batch into one preallocated array.

    float16 by default: half the memory of float32, and ample for cosine k-NN and a linear
    probe that reads its mini-batches as float32 (a value beyond float16's range, ±65504,
    promotes the store to float32 rather than turning into inf). Up to `memory_mb` MiB it
    lives in RAM; beyond, it is a memory-mapped file in `dir` (the system temp folder by
    default), unlinked as soon as it is mapped, so nothing is left behind even after a kill.
    With `capacity` unknown (None) rows are collected and concatenated at the end.
    """

    def __init__(
        self,
        capacity: int | None,
        dtype: torch.dtype = torch.float16,
        memory_mb: float = FEATURE_MEMORY_MB,
        dir: str | None = None,
    ) -> None:
        self.capacity, self.dtype, self.memory_mb, self.dir = capacity, dtype, memory_mb, dir
        self.rows: Tensor | None = None  # [capacity, D] once the first batch gives D
        self.parts: list[Tensor] = []  # capacity unknown
        self.n = 0
        self.on_disk = False

    def _allocate(self, rows: int, dim: int, dtype: torch.dtype) -> Tensor:
        nbytes = rows * dim * torch.finfo(dtype).bits // 8
        if nbytes <= self.memory_mb * 2**20:
            return torch.empty(rows, dim, dtype=dtype)
        self.on_disk = True
        fd, path = tempfile.mkstemp(prefix="visrep-features-", suffix=".bin", dir=self.dir)
        os.close(fd)
        try:
            np_dtype = np.float16 if dtype == torch.float16 else np.float32
            array = np.memmap(path, dtype=np_dtype, mode="w+", shape=(rows, dim))
        finally:
            os.unlink(path)  # the mapping keeps the file alive; it goes with the store
        return torch.from_numpy(array)

    def append(self, feats: Tensor) -> None:
        """Adds [B, D] float features."""
        if self.dtype == torch.float16 and feats.abs().max() > FP16_MAX:
            self._promote()
        if self.capacity is None:
            self.parts.append(feats.to(self.dtype))
            self.n += len(feats)
            return
        if self.rows is None:
            self.rows = self._allocate(self.capacity, feats.shape[1], self.dtype)
        if self.n + len(feats) > self.capacity:
            raise ValueError(f"more rows than the store's capacity {self.capacity}")
        self.rows[self.n : self.n + len(feats)] = feats
        self.n += len(feats)

    def _promote(self) -> None:
        """float16 -> float32, keeping the rows written so far."""
        self.dtype = torch.float32
        self.parts = [p.float() for p in self.parts]
        if self.rows is not None:
            old, self.rows = self.rows, self._allocate(*self.rows.shape, torch.float32)
            self.rows[: self.n] = old[: self.n]

    def tensor(self) -> Tensor:
        """The [n, D] rows written (a view of the store; memory-mapped when on disk)."""
        if self.capacity is None:
            return torch.cat(self.parts) if self.parts else torch.zeros(0, 0, dtype=self.dtype)
        return self.rows[: self.n] if self.rows is not None else torch.zeros(0, 0)


def _encode_chunk(
    encoder: Callable[[Tensor], Tensor],
    chunk: Tensor,
    preprocess: Callable[[Tensor], Tensor] | None,
    device: torch.device,
) -> Tensor:
    """Encodes one chunk of images to ``[B, D]`` float32 features on the CPU."""
    x = chunk.to(device, non_blocking=True)
    # uint8 -> float in [0, 1], the convention of torchvision's ToTensor /
    # ToDtype(scale=True), so a caller's Normalize(mean, std) works unchanged.
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()  # [B, C, H, W]
    if preprocess is not None:
        x = preprocess(x)
    features = encoder(x)
    if features.ndim != 2 or features.shape[0] != chunk.shape[0]:
        raise ValueError(
            f"encoder must map a batch [B, C, H, W] to features [B, D]; got {tuple(features.shape)} "
            f"for a batch of {chunk.shape[0]} (pool or flatten the tokens inside the encoder)"
        )
    return features.float().cpu()


@torch.no_grad()
def extract_features(
    encoder: Callable[[Tensor], Tensor],
    images: Tensor,
    *,
    batch_size: int = 512,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> Tensor:
    """Encodes every image with a frozen encoder, in chunks.

    For each chunk: move it to ``device``, convert to float (uint8 is scaled to
    [0, 1], like torchvision's ``ToTensor``; float input is used as is), apply
    ``preprocess`` (e.g. resize + normalize, supplied by the caller), call
    ``encoder`` and collect the ``[B, D]`` output as float32 on the CPU.

    An ``nn.Module`` encoder is put in eval mode for the pass (frozen BN
    statistics, no dropout, as in DINO's and MAE's evaluation) and its previous
    training mode is restored afterwards, even if encoding raises.

    Args:
        encoder: Maps ``[B, C, H, W]`` float images to ``[B, D]`` features.
        images: ``[N, C, H, W]`` images, uint8 (or already float).
        batch_size: Images per forward pass.
        preprocess: Optional transform applied on ``device`` to each float chunk.
        device: Device the encoder lives on.
        progress: Show a tqdm bar.
        desc: Label of the tqdm bar.

    Returns:
        ``[N, D]`` float32 features on the CPU.

    Raises:
        ValueError: If ``images`` is not 4-D or empty, ``batch_size < 1`` or the encoder
            does not return one feature vector per image.
    """
    if images.ndim != 4:
        raise ValueError(
            f"images must be [N, C, H, W]; got shape {tuple(images.shape)} "
            "(for grayscale [N, H, W] use images.unsqueeze(1))"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty; there is nothing to encode")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    labels = torch.zeros(len(images), dtype=torch.long)  # unused: the pass wants pairs
    batches = ((images[s : s + batch_size], labels[s : s + batch_size])
               for s in range(0, len(images), batch_size))  # fmt: skip
    feats, _ = extract_features_many({"": encoder}, batches, preprocess=preprocess,
                                     device=device, progress=progress, total=len(images),
                                     desc=desc, dtype=torch.float32)  # fmt: skip
    return feats[""]


@torch.no_grad()
def extract_features_many(
    encoders: dict[str, Callable[[Tensor], Tensor]],
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
    desc: str = "features",
    dtype: torch.dtype = torch.float16,
    memory_mb: float = FEATURE_MEMORY_MB,
) -> tuple[dict[str, Tensor], Tensor]:
    """One pass over (images, labels) batches feeding every encoder: features [N, D] of each
    and labels [N]. Each batch is decoded once and dropped after use, so memory holds the
    features, never the images (batches from a DataLoader over a folder). With `total` (at
    most that many rows) features go straight into a preallocated `FeatureStore` of `dtype`
    (float16: half the memory; memory-mapped from disk beyond `memory_mb` MiB per encoder);
    the returned tensors are views of it (CPU)."""
    device = torch.device(device)
    modules = [e for e in encoders.values() if isinstance(e, nn.Module)]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    stores = {name: FeatureStore(total, dtype, memory_mb) for name in encoders}
    labels = []
    try:
        with tqdm(total=total, desc=desc, disable=not progress, unit="img") as bar:
            for images, y in batches:
                for name, encoder in encoders.items():
                    stores[name].append(_encode_chunk(encoder, images, preprocess, device))
                labels.append(y)
                bar.update(len(y))
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    if not labels:
        raise ValueError("no readable image to encode")
    return {name: store.tensor() for name, store in stores.items()}, torch.cat(labels)


def check_feature_pair(train_features: Tensor, test_features: Tensor) -> None:
    """Both feature sets must be [N, D] with the same D (one check for every protocol)."""
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"features must be [N, D]; got train {tuple(train_features.shape)}, "
            f"test {tuple(test_features.shape)}"
        )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in dimension: {train_features.shape[1]} vs "
            f"{test_features.shape[1]} (were they extracted with the same encoder?)"
        )


def check_labels(
    named: Sequence[tuple[str, Tensor, Tensor]], num_classes: int | None, non_empty: bool = False
) -> int:
    """Each (name, features [N, D], labels [N]) holds integer class ids >= 0, one per row;
    returns `num_classes`, or the number inferred from the labels when it is None."""
    for name, feats, labels in named:
        if labels.ndim != 1 or labels.shape[0] != feats.shape[0] or (non_empty and not len(feats)):
            raise ValueError(
                f"{name}_labels must be a{' non-empty' if non_empty else 'n'} [N] with "
                f"N = {feats.shape[0]} ({name} features); got shape {tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"{name}_labels must be integer class ids; got {labels.dtype}")
    all_labels = torch.cat([labels for _, _, labels in named])
    if all_labels.numel() and int(all_labels.min()) < 0:
        raise ValueError("labels must be non-negative class ids")
    inferred = int(all_labels.max()) + 1 if all_labels.numel() else 0
    if num_classes is None:
        return inferred
    if num_classes < inferred:
        raise ValueError(f"num_classes={num_classes} but labels go up to {inferred - 1}")
    return num_classes


def topk_hits(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the k highest logits, for each k: [N, K], [N]."""
    top = logits.topk(max(ks), dim=1).indices  # [N, kmax]
    hit = top.eq(labels.view(-1, 1))
    return {k: int(hit[:, :k].any(1).sum()) for k in ks}


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (fractions) of logits [N, K] against labels [N], as {"top1": ...}."""
    return {f"top{k}": h / len(labels) for k, h in topk_hits(logits, labels, ks).items()}


def encode_images(model: nn.Module, images: Tensor, preprocess, batch_size: int, device) -> Tensor:
    """L2-normalised image embeddings [N, E] of uint8 images [N, C, H, W] through
    `model.encode_image` (callers put the model in eval mode: FLIP then uses every token).
    `preprocess` takes float images in 0..255 on `device`."""
    return encode_normalized(
        lambda x: model.encode_image(preprocess(x.to(device).float())), images, batch_size
    )


def encode_texts(model: nn.Module, texts: Sequence[str], batch_size: int, device) -> Tensor:
    """L2-normalised text embeddings [N, E] through CLIP's tokenizer and `model.encode_text`."""
    return encode_normalized(
        lambda t: model.encode_text(tokenize(list(t)).to(device)), list(texts), batch_size
    )
