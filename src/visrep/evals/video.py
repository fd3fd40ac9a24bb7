"""Video k-NN (SlowFast `tools/test_net.py`; Feichtenhofer et al., CVPR 2021): clip features averaged over views, one label family at
a time (Moving Fashion-MNIST: "class" = appearance, "direction" = motion).

Each video is encoded as its views (`eval.temporal_views` clips × `eval.spatial_crops` crops,
1 centre or the papers' 3, `visrep.data.video_eval`); aggregation "feature_mean" (visrep default): L2-normalise every
view's feature, average them per video, renormalise, then one weighted k-NN query
(`visrep.evals.knn.knn`: cosine similarity, k = 20, weight exp(sim / 0.07)) against the
training videos represented the same way.

A fine-tuned video classifier (`video_classifier_accuracy`) is scored on the same views: the
softmax of each view averaged per video, then top-1 / top-5 (SlowFast `tools/test_net.py`,
mae_st `engine_finetune.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.data.video_eval import VideoEvalSet
from visrep.evals.features import topk_hits
from visrep.evals.knn import knn
from visrep.evals.linear import linear_probe

# LARS travel blr·N·epochs/256 below which the probe under-fits (`visrep.evals.linear`)
LINEAR_BUDGET = 1000


@torch.no_grad()
def per_video(fn: Callable[[Tensor], Tensor], videos: VideoEvalSet, batch_size: int = 32,
              device: torch.device | str = "cpu") -> Iterator[tuple[int, Tensor]]:  # fmt: skip
    """(index, fn(views) [V, ...] on the CPU) for every video that decodes, in order; the
    views of several videos go through `fn` together, about `batch_size` clips at a time."""
    pending, owners = [], []

    def flush() -> Iterator[tuple[int, Tensor]]:
        out = fn(torch.cat(pending).to(device)).cpu()  # [sum V, ...]
        start = 0
        for i, v in owners:
            yield i, out[start : start + v]
            start += v
        pending.clear()
        owners.clear()

    for i in range(len(videos)):
        views = videos.views(i)
        if views is None:
            continue
        pending.append(views)
        owners.append((i, len(views)))
        if sum(len(p) for p in pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


@torch.no_grad()
def video_features(backbone: nn.Module, videos: VideoEvalSet, batch_size: int = 32,
                   device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:  # fmt: skip
    """Per-video features [M, D] (feature_mean over views) and the indices [M] of the videos
    that decoded."""
    was_training = backbone.training
    backbone.eval()
    feats, kept = [], []
    for i, f in per_video(lambda x: F.normalize(backbone(x).float(), dim=-1), videos,
                          batch_size, device):  # fmt: skip
        feats.append(F.normalize(f.mean(0), dim=-1))
        kept.append(i)
    backbone.train(was_training)
    if not feats:
        raise ValueError("no evaluation video could be decoded")
    return torch.stack(feats), torch.tensor(kept)


@torch.no_grad()
def video_scores(logits_fns: dict[str, Callable[[Tensor], Tensor]], videos: VideoEvalSet,
                 batch_size: int = 32, device: torch.device | str = "cpu",
                 ) -> tuple[dict[str, Tensor], Tensor]:  # fmt: skip
    """Clip-level multi-view scores of each classifier ({name: clips -> logits [B, K]}): the
    softmax of every view averaged over the video's views (SlowFast `tools/test_net.py` with
    its `TestMeter`, mae_st `engine_finetune.py`): ({name: [M, K]}, indices [M] of the videos
    that decoded). The callers put the classifiers in eval mode."""
    names = list(logits_fns)

    def probs(x: Tensor) -> Tensor:  # [B, n classifiers, K]
        return torch.stack([logits_fns[n](x).float().softmax(-1) for n in names], dim=1)

    scores, kept = [], []
    for i, p in per_video(probs, videos, batch_size, device):
        scores.append(p.mean(0))  # [n, K]
        kept.append(i)
    if not scores:
        raise ValueError("no evaluation video could be decoded")
    table = torch.stack(scores)  # [M, n, K]
    return {n: table[:, j] for j, n in enumerate(names)}, torch.tensor(kept)


def video_classifier_accuracy(logits_fns: dict[str, Callable[[Tensor], Tensor]],
                              videos: VideoEvalSet, family: str = "class", batch_size: int = 32,
                              device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:  # fmt: skip
    """Video-level top-1 / top-5 (fractions) and mean cross-entropy −log p̄(y) of the
    view-averaged probabilities p̄ (`video_scores`), per classifier, on the `family` labels."""
    if family not in videos.labels:
        raise ValueError(f"the test videos have no {family!r} labels (they have "
                         f"{sorted(videos.labels)})")  # fmt: skip
    scores, kept = video_scores(logits_fns, videos, batch_size, device)
    y = videos.labels[family][kept]
    out = {}
    for name, p in scores.items():
        k5 = min(5, p.shape[1])
        hits = topk_hits(p, y, (1, k5))
        nll = -p.gather(1, y[:, None]).clamp_min(1e-12).log().mean()
        out[name] = {"top1": hits[1] / len(y), "top5": hits[k5] / len(y), "loss": float(nll),
                     "n": len(y)}  # fmt: skip
    return out


def label_families(train: VideoEvalSet, test: VideoEvalSet, i_train: Tensor, i_test: Tensor):
    """(family, train labels, test labels, classes) for each label family both sets hold, on
    the videos that decoded (`i_train`, `i_test`)."""
    for family, labels in train.labels.items():
        if family in test.labels:
            num_classes = int(max(labels.max(), test.labels[family].max())) + 1
            yield family, labels[i_train], test.labels[family][i_test], num_classes


def video_knn_eval(
    backbone: nn.Module,
    train: VideoEvalSet,
    test: VideoEvalSet,
    *,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    prefix: str = "",
) -> dict[str, float | int | str]:
    """k-NN top-1 per label family: `{prefix}knn_top1` (class), `{prefix}knn_direction_top1`
    (when the set has direction labels), and the protocol's settings."""
    t0 = time.perf_counter()
    f_train, i_train = video_features(backbone, train, batch_size, device)
    f_test, i_test = video_features(backbone, test, batch_size, device)
    k = min(k, len(f_train))
    out: dict[str, float | int | str] = {}
    for family, y_train, y_test, num_classes in label_families(train, test, i_train, i_test):
        m = knn(f_train, y_train, f_test, y_test, k=k, temperature=temperature,
                num_classes=num_classes)  # fmt: skip
        name = "knn" if family == "class" else f"knn_{family}"
        out[f"{prefix}{name}_top1"] = m["knn_top1"]
        out[f"{prefix}{name}_chance"] = 1.0 / num_classes
    if not prefix:
        out |= {"knn_k": k, "knn_temperature": temperature, "knn_n_train": len(f_train),
                "knn_n_test": len(f_test), "knn_views": train.num_views,
                "knn_spatial_crops": train.crops,
                "knn_aggregation": "feature_mean",
                "knn_video_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    return out


def video_linear_eval(
    backbone: nn.Module,
    train: VideoEvalSet,
    test: VideoEvalSet,
    *,
    epochs: int = 100,
    blr: float = 1.0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    prefix: str = "",
) -> dict[str, float | int | str]:
    """Linear probe per label family on frozen clip features (cached-features variant of the
    linear protocol, `visrep.evals.linear.linear_probe`): each video is its view-averaged,
    L2-normalised feature ("feature_mean", as the k-NN), for training and testing alike.
    Few videos make a short LARS travel: the base lr is raised to at least
    LINEAR_BUDGET·256 / (N·epochs) (recorded as `linear_blr`). Returns `{prefix}linear_top1`
    (class), `{prefix}linear_direction_top1`, and the settings."""
    f_train, i_train = video_features(backbone, train, batch_size, device)
    f_test, i_test = video_features(backbone, test, batch_size, device)
    n = len(f_train)
    blr = max(blr, LINEAR_BUDGET * 256 / (n * epochs))
    out: dict[str, float | int | str] = {}
    for family, y_train, y_test, num_classes in label_families(train, test, i_train, i_test):
        m = linear_probe(f_train, y_train, f_test, y_test, num_classes=num_classes,
                         epochs=epochs, blr=blr, batch_size=min(256, n),
                         warmup_epochs=max(1, epochs // 10))  # fmt: skip
        name = "linear" if family == "class" else f"linear_{family}"
        out[f"{prefix}{name}_top1"] = m["linear_top1"]
    if not prefix:
        out |= {"linear_epochs": epochs, "linear_blr": round(blr, 4), "linear_n_train": n,
                "linear_views": train.num_views, "linear_spatial_crops": train.crops,
                "linear_aggregation": "feature_mean"}  # fmt: skip
    return out
