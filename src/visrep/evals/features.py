"""Feature extraction from a frozen encoder for the k-NN and linear-probe protocols.

Both protocols (DINO ``eval_knn.py``; MAE ``main_linprobe.py`` in its
cached-features variant, see ``visrep.evals.linear``) read the frozen backbone's
features of every image once; this module does that pass over an in-memory
image tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm


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
    device = torch.device(device)
    was_training = encoder.training if isinstance(encoder, nn.Module) else None
    if isinstance(encoder, nn.Module):
        encoder.eval()
    try:
        starts = range(0, images.shape[0], batch_size)
        chunks = [
            _encode_chunk(encoder, images[s : s + batch_size], preprocess, device)
            for s in tqdm(starts, desc=desc, disable=not progress, unit="batch")
        ]
    finally:
        if was_training is not None:
            encoder.train(was_training)
    return torch.cat(chunks)


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
