"""`visrep data pseudo-bow`: caption uncaptioned images with a bag-of-words model's words.

Tejankar et al., 2021, "A Fistful of Words: Learning Transferable Visual Models from
Bag-of-Words Supervision": a CLIP model trained on bag-of-words captions
(`data.caption_style=bow`, `visrep.data.bow`) labels images with its top-k vocabulary words
(*pseudo-BoW* captions) to grow the training set. Each vocabulary word is encoded alone (a
one-word BoW caption); an image's caption is its k words of highest cosine similarity, most
similar first. The output JSONL (`image_path`, `caption`) is training data as it is:
`visrep train clip_fmnist data.dataset=OUT.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from visrep.capabilities import ImageText
from visrep.data.bow import shard_captions, word_frequencies
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.folder import decode_file, folder_eval_transform, scan_folder
from visrep.data.pairs import list_shards, read_pair_table
from visrep.data.preprocess import model_preprocess
from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.evals.features import encode_images, encode_texts
from visrep.io import atomic_write_text
from visrep.runs import load_run


@torch.no_grad()
def pseudo_bow(
    model, image_embeddings: Tensor, vocab: Sequence[str], k: int = 5, batch_size: int = 512
) -> list[str]:
    """Pseudo-BoW captions: the `k` vocabulary words most similar (cosine) to each image.

    Args:
        model: an image-text model with `encode_text` (a BoW-trained CLIP).
        image_embeddings: L2-normalised image embeddings [N, E] from `model.encode_image`.
        vocab: candidate words (e.g. the training captions' BoW vocabulary).
        k: words per caption, most similar first.
    """
    device = next(model.parameters()).device
    words = encode_texts(model, vocab, batch_size, device)  # [V, E]
    top = (image_embeddings.float() @ words.T).topk(min(k, len(vocab)), dim=1).indices
    return [" ".join(vocab[j] for j in row) for row in top.tolist()]


def training_vocabulary(cfg, max_words: int = 1000) -> list[str]:
    """The `max_words` most frequent BoW words of a run's training captions (Fashion-MNIST
    class-name captions, a CSV/JSONL or WebDataset shards), most frequent first."""
    d = cfg.data
    if is_fashion_mnist(d.dataset):
        caps = [t.format(c) for c in FMNIST_CLASSNAMES for t in template_set(d.captions)]
    elif d.dataset.endswith((".csv", ".jsonl")):
        caps = [c for _, c in read_pair_table(Path(d.dataset)) if isinstance(c, str)]
    else:
        caps = shard_captions(list_shards(d.dataset), d.limit)
    freqs = word_frequencies(caps)
    return sorted(freqs, key=lambda w: (-freqs[w], w))[:max_words]


def pseudo_bow_folder(
    run_dir: str, images: str, out: str, k: int = 5, vocab_file: str = "", device="cpu"
) -> dict:
    """Caption every image below `images` with the pseudo-BoW of the run's model and write a
    JSONL of `image_path` (absolute), `caption` that `data.dataset=OUT` trains on."""
    cfg, model = load_run(run_dir, device)
    if not isinstance(model, ImageText):
        raise ValueError(f"{run_dir} is not an image-text run (clip, slip, flip)")
    if vocab_file:
        vocab = list(dict.fromkeys(w.strip() for w in Path(vocab_file).read_text().splitlines()))
        vocab = [w for w in vocab if w]
    else:
        vocab = training_vocabulary(cfg)
    paths, _, _ = scan_folder(images)
    resize = folder_eval_transform(cfg.data.img_size, resize_ratio=1.0)
    good, tensors, skipped = [], [], 0
    for p in paths:
        try:
            tensors.append(resize(decode_file(p, cfg.data.channels)))
            good.append(p)
        except Exception:  # unreadable image: skipped and counted
            skipped += 1
    pre = model_preprocess(cfg.data)
    emb = encode_images(model, torch.stack(tensors), pre, cfg.eval.batch_size, device)
    caps = pseudo_bow(model, emb, vocab, k)
    rows = [json.dumps({"image_path": str(p.resolve()), "caption": c}) for p, c in zip(good, caps)]
    atomic_write_text(out, "".join(r + "\n" for r in rows))
    return {"out": str(out), "images": len(good), "skipped": skipped, "vocab": len(vocab), "k": k}


def run(args) -> int:
    """`visrep data pseudo-bow ARGS`: caption the folder, print the summary."""
    print(json.dumps(pseudo_bow_folder(args.ckpt, args.images, args.out, args.k, args.vocab,
                                       args.device), indent=2))  # fmt: skip
    return 0
