"""Zero-shot classification and image↔text retrieval for CLIP-style models (CLIP, Radford
et al. 2021, §3.1.2 and §3.1.4; facebookresearch/SLIP `eval_zeroshot.py`).

Zero-shot: for every class, each template is filled with the class name, encoded, L2-
normalised; the class embedding is the renormalised mean. Image embeddings are L2-
normalised; logits are cosine similarities (no logit scale); top-1 / top-5 accuracy.

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

from visrep.capabilities import ImageText
from visrep.data.bow import bow_template
from visrep.data.fashion_mnist import is_fashion_mnist
from visrep.data.labelled import load_eval_split
from visrep.data.preprocess import model_preprocess
from visrep.data.templates import FMNIST_CLASSNAMES, template_set
from visrep.evals.features import encode_images, encode_texts, topk_accuracy


@torch.no_grad()
def text_classifier(
    model: nn.Module, classnames: Sequence[str], templates: Sequence[str], device="cpu"
) -> Tensor:
    """[E, K] matrix of class embeddings (mean of normalised template embeddings, renormed)."""
    rows = []
    for name in classnames:
        emb = encode_texts(model, [t.format(name) for t in templates], len(templates), device)
        rows.append(F.normalize(emb.mean(0), dim=-1))  # [E]
    return torch.stack(rows, dim=1)


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
    if not isinstance(model, ImageText):
        raise ValueError("zero-shot needs an image-text run (clip, slip, flip)")
    if not is_fashion_mnist(cfg.eval.dataset):
        raise ValueError("visrep eval zeroshot ships class names for Fashion-MNIST only; call "
                         "visrep.evals.zeroshot.zeroshot with your class names")  # fmt: skip
    images, labels = load_eval_split(cfg.eval, "test", cfg.data.channels, cfg.data.img_size)
    pre = model_preprocess(cfg.data)
    temps, style = template_set(templates), cfg.data.caption_style
    if style == "bow":  # a BoW-trained text tower gets BoW prompts ("photo large {}")
        temps = tuple(dict.fromkeys(bow_template(t) for t in temps))
    out = zeroshot(model, images, labels, FMNIST_CLASSNAMES, temps, pre,
                   batch_size=cfg.eval.batch_size, device=device)  # fmt: skip
    return {"eval_dataset": cfg.eval.dataset, "split": "test", "template_set": templates,
            "zeroshot_prompt_style": style} | out  # fmt: skip
