"""Image↔text retrieval Recall@K for CLIP-style models, several captions per image.

The COCO / Flickr30k protocol (CLIP's zero-shot retrieval tables; open_clip's retrieval eval): cosine
similarity of L2-normalised embeddings; every caption is a text→image query with exactly
one correct image; every image is an image→text query that is correct at K when **any** of
its captions is among the K most similar captions. Ranks count the candidates scoring
strictly higher than the best correct one (ties resolve in the query's favour).

Held-out pairs come in the formats `visrep.data.pairs` trains on:

- **CSV / JSONL** (`image_path, caption`, paths relative to the file): rows sharing an
  `image_path` are one image with several captions; a JSONL `caption` may also be a list.
- **WebDataset shards** (`key.jpg|png|...` + `key.txt`): one image per key; each non-empty
  line of the `.txt` is one caption (one line = one caption, the usual case).

Images are resized (short side) and centre-cropped to `data.img_size` (SLIP's eval
transform, facebookresearch/SLIP `eval_zeroshot.py`) and normalised as in pre-training.
Undecodable or missing images and empty captions are skipped and counted
(`retrieval_skipped`). A truncated or damaged shard is found as in training
(`visrep.data.pairs.check_complete` against `sizes.json` or the tar headers): the pairs it
lost are counted (`retrieval_lost`) and warned about, and more than `MAX_LOST` of them is an
error, never a score on a silently shorter set. A BoW-trained run
(`data.caption_style=bow`) sees its captions as bags of words (`visrep.data.bow`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from visrep.capabilities import ImageText
from visrep.config import replace
from visrep.data.bow import bow_words
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.folder import decode_bytes, folder_eval_transform
from visrep.data.pairs import (
    IMAGE_KEYS,
    check_complete,
    count_samples,
    list_shards,
    read_pair_table,
    skip_damaged,
)
from visrep.data.preprocess import model_preprocess
from visrep.evals.features import encode_images, encode_texts
from visrep.evals.zeroshot import run_zeroshot

KS = (1, 5, 10)


def _i2t_ranks(sim: Tensor, caption_image: Tensor, first: int) -> Tensor:
    """Rank of each image's best-scoring own caption; `sim` [n, N_txt] holds the rows of
    images first..first+n. Images without a caption get rank N_txt (never a hit)."""
    rows = torch.arange(first, first + len(sim), device=sim.device).view(-1, 1)
    own = caption_image.view(1, -1) == rows  # [n, N_txt]
    best = sim.masked_fill(~own, float("-inf")).amax(1, keepdim=True)  # [n, 1]
    return (sim > best).sum(1)


def _t2i_ranks(sim_t: Tensor, caption_image: Tensor) -> Tensor:
    """Rank of each caption's image; `sim_t` [n_txt, N_img] rows are captions."""
    pos = sim_t.gather(1, caption_image.view(-1, 1))  # [n_txt, 1]
    return (sim_t > pos).sum(1)


def _recalls(i2t: Tensor, t2i: Tensor, has_caption: Tensor, ks: Sequence[int]) -> dict:
    out = {f"i2t_R@{k}": (i2t[has_caption] < k).float().mean().item() for k in ks}
    out |= {f"t2i_R@{k}": (t2i < k).float().mean().item() for k in ks}
    return out


def recall_at_k(sim: Tensor, caption_image: Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K both ways from a similarity matrix.

    Args:
        sim: [N_img, N_txt] image-caption similarities.
        caption_image: [N_txt] index of each caption's image.
    """
    caption_image = caption_image.long()
    has = torch.bincount(caption_image, minlength=sim.shape[0]) > 0
    return _recalls(_i2t_ranks(sim, caption_image, 0), _t2i_ranks(sim.T, caption_image), has, ks)


def retrieval_recall(
    image: Tensor, text: Tensor, caption_image: Tensor, ks: Sequence[int] = KS, chunk: int = 1024
) -> dict[str, float]:
    """`recall_at_k` of normalised embeddings image [N_img, E], text [N_txt, E], computed in
    chunks (never the whole N_img × N_txt matrix in memory)."""
    caption_image = caption_image.long()
    i2t = torch.cat([_i2t_ranks(image[s : s + chunk] @ text.T, caption_image, s)
                     for s in range(0, len(image), chunk)])  # fmt: skip
    t2i = torch.cat([_t2i_ranks(text[s : s + chunk] @ image.T, caption_image[s : s + chunk])
                     for s in range(0, len(text), chunk)])  # fmt: skip
    has = torch.bincount(caption_image, minlength=len(image)) > 0
    return _recalls(i2t, t2i, has, ks)


@dataclass
class PairSet:
    images: Tensor  # uint8 [N_img, C, S, S]
    captions: list[str]  # N_txt
    caption_image: Tensor  # [N_txt] long
    skipped: int  # images or captions left out (missing, undecodable, empty)
    lost: int = 0  # samples a truncated or damaged shard did not yield


def _grouped_rows(path: Path) -> list[tuple[bytes | None, list[str]]]:
    """(image bytes, captions) per image of a CSV/JSONL, rows grouped by image path."""

    pairs = read_pair_table(path, caption_lists=True)
    groups: dict[str, list[str]] = {}
    for rel, caption in pairs:
        caps = caption if isinstance(caption, list) else [caption]
        groups.setdefault(rel, []).extend(str(c) for c in caps)
    out = []
    for rel, caps in groups.items():
        p = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        out.append((p.read_bytes() if rel and p.is_file() else None, caps))
    return out


def _shard_rows(spec: str, lost: list[int]):
    """(image bytes, captions) per sample of the shards; once the stream is read to its end,
    `lost[0]` is the samples a truncated or damaged shard did not yield (`check_complete`)."""
    from webdataset import tarfile_samples

    shards, seen = list_shards(spec), 0
    for s in tarfile_samples([{"url": u} for u in shards], handler=skip_damaged):
        seen += 1
        raw = next((s[k] for k in IMAGE_KEYS if k in s), None)
        txt = s["txt"].decode("utf-8", "replace") if "txt" in s else ""
        yield raw, txt.splitlines()
    lost[0] = check_complete(spec, seen, count_samples(shards), "retrieval")


def load_pairs(spec: str, channels: int, img_size: int, limit: int = 0) -> PairSet:
    """Held-out pairs (module docstring) as uint8 images + captions; at most `limit` images."""

    path, lost = Path(spec), [0]
    if spec.endswith((".csv", ".jsonl")):
        if not path.is_file():
            raise FileNotFoundError(f"no CSV/JSONL pair file at {spec}")
        rows = _grouped_rows(path)
    else:
        rows = _shard_rows(spec, lost)
    resize = folder_eval_transform(img_size, resize_ratio=1.0)  # short side, centre crop
    images, captions, owner, skipped = [], [], [], 0
    for raw, caps in rows:
        caps = [c.strip() for c in caps if c and c.strip()]
        try:
            image = resize(decode_bytes(raw, channels)) if raw is not None and caps else None
        except Exception:  # undecodable / truncated file
            image = None
        if image is None:
            skipped += 1
            continue
        captions += caps
        owner += [len(images)] * len(caps)
        images.append(image)
        if limit and len(images) >= limit:
            break
    if not images:
        raise ValueError(f"no readable image-caption pair in {spec} ({skipped} skipped)")
    return PairSet(torch.stack(images), captions, torch.tensor(owner), skipped, lost[0])


def run_retrieval(cfg, model: nn.Module, device, pairs: str = "", limit: int = 0) -> dict:
    """`visrep eval retrieval`: R@1/5/10 both ways on held-out pairs (`eval.retrieval_pairs`
    unless `pairs` is given), with every setting recorded."""
    if not isinstance(model, ImageText):
        raise ValueError("retrieval needs an image-text run (clip, slip, flip)")
    pairs = pairs or cfg.eval.retrieval_pairs
    if not pairs:
        raise ValueError("name the held-out pairs: --pairs PATH or eval.retrieval_pairs=PATH")
    t0 = time.perf_counter()
    ds = load_pairs(pairs, cfg.data.channels, cfg.data.img_size, limit)
    bow = cfg.data.caption_style == "bow"
    texts = [" ".join(bow_words(c)) or c for c in ds.captions] if bow else ds.captions
    pre = model_preprocess(cfg.data)
    was_training = model.training
    model.eval()
    img = encode_images(model, ds.images, pre, cfg.eval.batch_size, device)
    txt = encode_texts(model, texts, cfg.eval.batch_size, device)
    model.train(was_training)
    out = retrieval_recall(img, txt, ds.caption_image)
    return out | {
        "retrieval_pairs": pairs,
        "retrieval_n_images": len(ds.images),
        "retrieval_n_captions": len(ds.captions),
        "retrieval_skipped": ds.skipped,
        "retrieval_lost": ds.lost,
        "retrieval_caption_style": "bow" if bow else "sentence",
        "retrieval_seconds": round(time.perf_counter() - t0, 1),
    }


def image_text_eval(cfg, model: nn.Module, device, limit: int = 0) -> dict:
    """The image-text evaluations of a run (periodic and final): zero-shot on a
    Fashion-MNIST eval set, retrieval on `eval.retrieval_pairs`; {} for other methods.
    `limit` caps the test images of each (0 = the configured sets)."""

    if not isinstance(model, ImageText):
        return {}
    out: dict = {}
    if cfg.eval.dataset and is_fashion_mnist(cfg.eval.dataset):
        lim = min(x for x in (limit, cfg.eval.limit_test) if x) if limit else cfg.eval.limit_test
        out |= run_zeroshot(replace(cfg, **{"eval.limit_test": lim}), model, device)
    if cfg.eval.retrieval_pairs:
        out |= run_retrieval(cfg, model, device, limit=limit)
    return out
