"""Class names and prompt templates for captions and zero-shot evaluation (prompt
ensembling: CLIP, Radford et al. 2021, §3.1.4; templates: facebookresearch/SLIP
`templates.json`, used by its `eval_zeroshot.py`).

Leak-free Fashion-MNIST protocol: training captions use `FMNIST_TRAIN_TEMPLATES` on the
**train** split only; zero-shot evaluation runs on the **test** split with
`IMAGENET_TEMPLATES` (SLIP's 7 ImageNet templates), which share no template with training
(checked by the tests). Only the class-name vocabulary is common, as in any zero-shot
protocol.
"""

from __future__ import annotations

# SLIP `templates.json` "imagenet" (also OpenAI CLIP's 7-template ensemble).
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# Caption templates for Fashion-MNIST *training* images (disjoint from IMAGENET_TEMPLATES).
FMNIST_TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
    "a product photo of a {}.",
)

# Fashion-MNIST classes in label order, as words a caption would use.
FMNIST_CLASSNAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet": IMAGENET_TEMPLATES,
    "fmnist_train": FMNIST_TRAIN_TEMPLATES,
}


def template_set(name: str) -> tuple[str, ...]:
    if name not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {name!r}; choose one of {sorted(TEMPLATE_SETS)}")
    return TEMPLATE_SETS[name]
