"""Zero-shot classification and image↔text retrieval for CLIP-style models (METHODS.md §5.5).

Zero-shot: for every class, each template is filled with the class name, encoded, L2-
normalised; the class embedding is the renormalised mean. Image embeddings are L2-
normalised; logits are cosine similarities (no logit scale); top-1 / top-5 accuracy.

Retrieval: `retrieval_recall` here is the one-caption-per-image case of
`visrep.evals.retrieval` (several captions per image, held-out pair files, `visrep eval
retrieval`).

Fashion-MNIST protocol (cannot leak labels): train on pairs whose Fashion-MNIST captions use
`FMNIST_TRAIN_TEMPLATES` on the train split; evaluate here on the **test** split with the 7
ImageNet templates, none of which appears in training (`visrep.data.templates`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.data.tokenizer import tokenize


@torch.no_grad()
def text_classifier(
    model: nn.Module, classnames: Sequence[str], templates: Sequence[str], device="cpu"
) -> Tensor:
    """[E, K] matrix of class embeddings (mean of normalised template embeddings, renormed)."""
    rows = []
    for name in classnames:
        tokens = tokenize([t.format(name) for t in templates]).to(device)
        emb = F.normalize(model.encode_text(tokens), dim=-1).mean(0)  # [E]
        rows.append(F.normalize(emb, dim=-1))
    return torch.stack(rows, dim=1)


@torch.no_grad()
def encode_images(model: nn.Module, images: Tensor, preprocess, batch_size: int, device) -> Tensor:
    """Normalised image embeddings [N, E] of uint8 images [N, C, H, W] (eval mode: FLIP
    uses every token)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size].to(device).float())
        out.append(F.normalize(model.encode_image(x), dim=-1).cpu())
    return torch.cat(out)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    top = logits.topk(max(ks), dim=1).indices  # [N, kmax]
    hit = top.eq(labels.view(-1, 1))
    return {f"top{k}": hit[:, :k].any(1).float().mean().item() for k in ks}


def retrieval_recall(
    image: Tensor, text: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K both ways for paired rows of normalised embeddings [N, E] (one caption per
    image; `visrep.evals.retrieval` handles several)."""
    from visrep.evals.retrieval import retrieval_recall as recall

    return recall(image, text, torch.arange(len(text)), ks)


def zeroshot(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    classnames: Sequence[str],
    templates: Sequence[str],
    preprocess,
    *,
    batch_size: int = 256,
    device="cpu",
) -> dict[str, float | int | str]:
    """Zero-shot top-1/top-5 of `model` (with `encode_image`/`encode_text`) on uint8 images."""
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    classifier = text_classifier(model, classnames, templates, device).cpu()  # [E, K]
    feats = encode_images(model, images, preprocess, batch_size, device)
    model.train(was_training)
    acc = topk_accuracy(feats @ classifier, labels, (1, min(5, len(classnames))))
    return {
        "zeroshot_top1": acc["top1"],
        "zeroshot_top5": acc.get("top5", acc["top1"]),
        "zeroshot_n_test": len(images),
        "zeroshot_templates": len(templates),
        "zeroshot_chance": 1 / len(classnames),
        "zeroshot_seconds": round(time.perf_counter() - t0, 1),
    }


def run_zeroshot(cfg, model: nn.Module, device, templates: str = "imagenet") -> dict:
    """`visrep eval zeroshot`: Fashion-MNIST test split with an unseen template set."""
    from visrep.data.pipeline import is_fashion_mnist, load_eval_split, make_preprocess, mean_std
    from visrep.data.templates import FMNIST_CLASSNAMES, template_set

    if not hasattr(model, "encode_text"):
        raise ValueError("zero-shot needs an image-text run (clip, slip, flip)")
    if not is_fashion_mnist(cfg.eval.dataset):
        raise ValueError("visrep eval zeroshot ships class names for Fashion-MNIST only; call "
                         "visrep.evals.zeroshot.zeroshot with your class names")  # fmt: skip
    images, labels = load_eval_split(cfg.eval, "test", cfg.data.channels, cfg.data.img_size)
    mean, std = mean_std(cfg.data)
    pre = make_preprocess(cfg.data.img_size, cfg.data.channels, mean, std)
    temps, style = template_set(templates), cfg.data.caption_style
    if style == "bow":  # a BoW-trained text tower gets BoW prompts ("photo large {}")
        from visrep.data.bow import bow_template

        temps = tuple(dict.fromkeys(bow_template(t) for t in temps))
    out = zeroshot(model, images, labels, FMNIST_CLASSNAMES, temps, pre,
                   batch_size=cfg.eval.batch_size, device=device)  # fmt: skip
    return {"eval_dataset": cfg.eval.dataset, "split": "test", "template_set": templates,
            "zeroshot_prompt_style": style} | out  # fmt: skip
