"""The final evaluation of a classifier run (supervised fine-tuning): top-1 / top-5 and
cross-entropy on the eval test split, of the model and of its model EMA in one pass.

MAE (He et al., 2022) and ConvNeXt V2 (Woo et al., 2023) report fine-tuned top-1 on the
validation split with timm's eval transform (facebookresearch/mae `main_finetune.py`
`evaluate`; facebookresearch/ConvNeXt-V2 `engine_finetune.py`, which also evaluates the EMA
copy with `--model_ema_eval`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from visrep.capabilities import Classifier
from visrep.config import TrainConfig
from visrep.data.labelled import eval_batches
from visrep.data.video_eval import video_eval_sets
from visrep.device import autocast_dtype
from visrep.evals.features import topk_hits
from visrep.evals.video import video_classifier_accuracy


@torch.no_grad()
def accuracy(
    logits_fns: dict[str, Any],
    batches: Any,
    device: torch.device,
    amp: torch.dtype | None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 (fractions) and mean cross-entropy of each classifier in `logits_fns`
    ({name: images -> logits [B, K]}), all in one pass over `batches`."""
    sums = {name: {"top1": 0.0, "top5": 0.0, "loss": 0.0} for name in logits_fns}
    n = 0
    for x, y in tqdm(batches, desc="finetune eval", disable=not progress, unit="batch"):
        x, y = x.to(device), y.to(device)
        for name, logits_fn in logits_fns.items():
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = logits_fn(x).float()  # [B, K]
            hits = topk_hits(logits, y, (1, min(5, logits.shape[1])))
            s = sums[name]
            s["top1"] += hits[1]
            s["top5"] += hits[min(5, logits.shape[1])]
            s["loss"] += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return {name: {k: v / n for k, v in s.items()} | {"n": n} for name, s in sums.items()}


def classifier_eval(model: Classifier, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The final evaluation of a supervised run: the classifier's top-1/top-5 on the eval test
    split (Fashion-MNIST preprocessing as k-NN/linear; folders: timm's eval transform). A video
    classifier is scored per video on `eval.temporal_views` temporal clips ×
    `eval.spatial_crops` spatial crops (1 centre, or the papers' 3), the views' softmax averaged, on the labels it trained on (`method.labels`: class or
    direction; `visrep.evals.video.video_classifier_accuracy`)."""
    t0 = time.perf_counter()
    model.eval()
    amp = autocast_dtype(cfg.run.precision, device)
    fns = {"model": model.logits}
    if model.model_ema is not None:  # ConvNeXt V2's --model_ema_eval
        fns["ema"] = model.ema_logits
    video = {}
    if cfg.data.frames:
        sets = video_eval_sets(cfg.data, cfg.eval)
        if sets is None:
            raise ValueError(f"eval.dataset={cfg.eval.dataset!r} has no labelled test videos")
        family = getattr(cfg.method, "labels", "class")
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            res = video_classifier_accuracy(fns, sets[1], family,
                                            batch_size=cfg.eval.batch_size // 8 or 1,
                                            device=device)  # fmt: skip
        video = {"finetune_views": cfg.eval.temporal_views,
                 "finetune_spatial_crops": cfg.eval.spatial_crops,
                 "finetune_aggregation": "softmax_mean",
                 "finetune_labels": family,
                 "unreadable_eval_videos_skipped": sets[1].n_skipped}  # fmt: skip
    else:
        batches, _ = eval_batches(cfg.data, cfg.eval, cfg.data.num_workers)
        res = accuracy(fns, batches, device, amp, progress=cfg.run.progress)
    acc, m = res["model"], cfg.method
    ema = {}
    if "ema" in res:
        e = res["ema"]
        ema = {"finetune_ema_top1": e["top1"], "finetune_ema_top5": e["top5"],
               "finetune_ema_test_loss": e["loss"], "finetune_ema_decay": m.ema_decay}  # fmt: skip
    extra = ema | video  # the EMA's figures, the video protocol's settings
    return extra | {
        "finetune_top1": acc["top1"],
        "finetune_top5": acc["top5"],
        "finetune_test_loss": acc["loss"],
        "finetune_n_test": acc["n"],
        "finetune_init": m.init,
        "finetune_source": m.source,
        "finetune_arch": model.arch,
        "finetune_load": model.load_report,
        "eval_dataset": cfg.eval.dataset,
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }
