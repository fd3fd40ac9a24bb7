"""End of a run: final evaluation, pictures and a short markdown report in the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visrep.capabilities import Classifier, Detects, ImageText, Reconstructs
from visrep.config import TrainConfig, replace, save_json
from visrep.data.coco import CocoSet
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import decode_all, folder_eval_transform
from visrep.data.images import sample_folder
from visrep.data.labelled import eval_folder, load_eval_split
from visrep.data.pairs import is_pair_data, shard_images
from visrep.data.preprocess import mean_std, model_preprocess
from visrep.data.resolve import holds_out
from visrep.data.video_eval import preview_clips, video_eval_sets
from visrep.data.video_source import video_mean_std
from visrep.evals.attention import draw_attention, vit_of
from visrep.evals.classifier import classifier_eval
from visrep.evals.detection import detection_eval, draw_detections
from visrep.evals.diagnostics import label_free_eval, nearest_neighbours
from visrep.evals.retrieval import image_text_eval
from visrep.evals.run import RawPixels, evaluate
from visrep.evals.video import video_knn_eval, video_linear_eval
from visrep.io import atomic_write, atomic_write_text
from visrep.logger import read_log


def finish_run(
    cfg: TrainConfig,
    model: nn.Module,
    run_dir: Path,
    device: torch.device,
    n_skipped: int = 0,
    init_backbone: nn.Module | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate (if configured), draw the pictures, write metrics.json and report.md.

    `init_backbone` (the run's architecture at its initialisation) is the untrained baseline
    beside raw pixels when `eval.baselines` is on. `training`: what the loop trained (steps,
    images seen, speed), reported first."""
    ev = cfg.eval
    metrics: dict[str, Any] = dict(training or {}) | {"unreadable_images_skipped": n_skipped}
    pictures = {}
    if ev.final and isinstance(model, Detects):  # COCO box / mask AP on the val split
        metrics |= detect_eval(cfg, model, device, run_dir)
        pictures["detections"] = "detections.png"
    elif ev.final and ev.dataset and isinstance(model, Classifier):  # images or clips
        metrics |= classifier_eval(model, cfg, device)
    elif ev.final and ev.dataset and cfg.data.frames:  # video: clip features, k-NN
        metrics |= video_eval(cfg, model.backbone, device, init_backbone)
    elif ev.final and ev.dataset:
        # did pre-training help? the same protocols on raw pixels and the untrained encoder
        base = {"raw": RawPixels()} | ({"init": init_backbone} if init_backbone else {})
        metrics |= evaluate(model.backbone, cfg.data, ev, device=device, progress=cfg.run.progress,
                            baselines=base if ev.baselines else None)  # fmt: skip
    elif ev.final and _is_folder(cfg) and not isinstance(model, ImageText):  # no labels
        stats, images, feats = label_free_eval(
            model.backbone, init_backbone if ev.baselines else None, cfg.data,
            holdout=holds_out(cfg), batch_size=ev.batch_size, device=device,
        )  # fmt: skip
        metrics |= {f"label_free_{k}": v for k, v in stats.items()}
        pictures["neighbours"] = save_neighbours(images, feats, run_dir / "neighbours.png")
    if ev.final:  # image-text runs: zero-shot and retrieval ({} for other methods)
        metrics |= image_text_eval(cfg, model, device)
    if isinstance(model, Reconstructs):
        pictures["frames strip" if cfg.data.frames else "reconstruction"] = save_reconstruction(
            cfg, model, run_dir / "reconstruction.png", device
        )
    if not cfg.data.frames and vit_of(getattr(model, "backbone", nn.Identity())) is not None:
        pictures["attention"] = draw_attention(
            model.backbone, _grid_images(cfg, 6), model_preprocess(cfg.data),
            run_dir / "attention.png",
        ).name  # fmt: skip
    pictures["loss"] = save_loss_curve(run_dir, run_dir / "loss.png")
    save_json(metrics, run_dir / "metrics.json")
    write_report(cfg, metrics, {k: v for k, v in pictures.items() if v}, run_dir)
    return metrics


def detect_eval(cfg: TrainConfig, model: Detects, device: torch.device,
                run_dir: Path) -> dict[str, Any]:  # fmt: skip
    """COCO box and mask AP of a detector (`visrep eval detect`: `method.data`, a COCO
    folder) on the val split, and `detections.png`."""
    val = CocoSet(cfg.method.data, "val", channels=cfg.method.channels)
    out = detection_eval(model.detect, val, batch_size=cfg.optim.batch_size, device=device,
                         limit=cfg.eval.limit_test, progress=cfg.run.progress)  # fmt: skip
    draw_detections(model.detect, val, run_dir / "detections.png", device=device)
    return {"detect_data": cfg.method.data} | out


def video_eval(cfg: TrainConfig, backbone: nn.Module, device: torch.device,
               init_backbone: nn.Module | None = None,
               protocols: tuple[str, ...] = ("knn",)) -> dict[str, Any]:  # fmt: skip
    """Video k-NN and/or linear probe on class and direction labels (`visrep.evals.video`),
    and on the untrained encoder with `eval.baselines`; {} when `eval.dataset` has no
    labelled split."""
    sets = video_eval_sets(cfg.data, cfg.eval)
    if sets is None:
        return {}
    ev = cfg.eval
    batch = ev.batch_size // 8 or 1
    runs = []
    if "knn" in protocols:
        runs.append((video_knn_eval, dict(k=ev.knn_k, temperature=ev.knn_temperature)))
    if "linear" in protocols:
        runs.append((video_linear_eval, dict(epochs=max(ev.linear_epochs, 100),
                                             blr=ev.linear_blr)))  # fmt: skip
    out: dict[str, Any] = {}
    for protocol, kw in runs:
        out |= protocol(backbone, *sets, batch_size=batch, device=device, **kw)
        if init_backbone is not None and ev.baselines:
            out |= protocol(init_backbone.to(device), *sets, prefix="init_", batch_size=batch,
                            device=device, **kw)  # fmt: skip
    return out | {"unreadable_eval_videos_skipped": sets[0].n_skipped + sets[1].n_skipped}


def _is_folder(cfg: TrainConfig) -> bool:
    """A folder of images (video runs, `data.frames` > 0, have no image diagnostics)."""
    d = cfg.data
    return not d.frames and not is_fashion_mnist(d.dataset) and not is_pair_data(d)


def training_summary(m: dict[str, Any]) -> str:
    """Steps and images the run trained on, at what speed, and whether a wall-clock budget
    ended it; the evaluation's speed and any budget that shrank it."""
    text = (f"Trained {m['train_steps']:,} steps ({m['train_images_seen']:,} images seen) at "
            f"{m['train_img_per_s']:.0f} img/s on this host ({m['train_minutes']:.1f} minutes "
            "this session).")  # fmt: skip
    if m.get("train_budget_minutes") and m["train_steps"] < m["train_steps_planned"]:
        text += (f" The {m['train_budget_minutes']:g}-minute budget (`run.budget_minutes`) ended "
                 f"it at step {m['train_steps']:,} of {m['train_steps_planned']:,}, with its "
                 "learning-rate schedule complete: a faster host sees more images.")  # fmt: skip
    if "eval_images_per_second" in m:
        text += (f" Evaluation encoded {m['eval_images_per_second']:.0f} img/s (every encoder) "
                 f"and took {m['eval_seconds']:.0f} s")  # fmt: skip
        text += (f" within its {m['eval_budget_minutes']:g}-minute budget (`eval.budget_minutes`:"
                 f" {m['knn_n_train']:,} train and {m['knn_n_test']:,} test images)."
                 if m.get("eval_budget_minutes") and "knn_n_train" in m else ".")  # fmt: skip
    return text


def verdict(m: dict[str, Any]) -> str:
    """One sentence per protocol: is the trained encoder ahead of raw pixels and of the
    untrained encoder on the same split?"""
    lines = []
    for proto, title in (("knn", "k-NN"), ("linear", "Linear-probe")):
        key = f"{proto}_top1"
        base = {n: m[f"{p}_{key}"] for p, n in (("raw", "raw pixels"), ("init", "the untrained "
                "encoder")) if f"{p}_{key}" in m}  # fmt: skip
        if key not in m or not base:
            continue
        best = max(base, key=base.get)
        d = m[key] - base[best]
        also = "; ".join(f"{n} {v:.3f}" for n, v in base.items())
        state = ("pre-training helped" if d > 0 else
                 "pre-training has not helped yet (train longer, or check the data)")  # fmt: skip
        lines.append(f"{title} top-1 {m[key]:.3f} is {abs(d):.3f} {'above' if d > 0 else 'below'}"
                     f" {best} ({also}): {state}.")  # fmt: skip
    if "label_free_feature_std" in m:
        init = (f"; the untrained encoder: {m['label_free_init_feature_std']:.4f} and "
                f"{m['label_free_init_effective_rank']:.1f}"
                if "label_free_init_feature_std" in m else "")  # fmt: skip
        lines.append(
            f"No labels: feature std {m['label_free_feature_std']:.4f} (collapse: 0; spread "
            f"over the sphere: {m['label_free_feature_std_uniform']:.4f}), effective rank "
            f"{m['label_free_effective_rank']:.1f} of {m['label_free_feature_dim']}{init}."
        )
    return " ".join(lines)


def _grid_images(cfg: TrainConfig, n: int) -> Tensor:
    """A fixed set of n evaluation (or training) images, uint8 [n, C, H, W]; only these are
    decoded."""
    ev, d = cfg.eval, cfg.data
    if ev.dataset and is_fashion_mnist(ev.dataset):
        images, _ = load_eval_split(ev, "test", d.channels, d.img_size)
    elif ev.dataset:
        few = replace(ev, **{"limit_test": n})
        images, _ = decode_all(
            eval_folder(few, "test", d.channels, folder_eval_transform(d.img_size))
        )
    elif is_fashion_mnist(d.dataset):
        images, _ = load_fashion_mnist(d.root, "test")
    elif is_pair_data(d):  # WebDataset shards (image-only or image-text)
        images = shard_images(d.dataset, d.channels, d.img_size, n)
    else:
        images, _ = sample_folder(d.dataset, d.channels, d.img_size, n, holdout=holds_out(cfg))
    idx = torch.linspace(0, len(images) - 1, min(n, len(images))).long()
    return images[idx]


def save_neighbours(images: Tensor, feats: Tensor, path: Path, n: int = 8, k: int = 5) -> str:
    """PNG: n query images (a fixed spread of the sample), each followed by its k nearest
    images of the sample by feature cosine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = torch.linspace(0, len(images) - 1, min(n, len(images))).long()
    _, idx = nearest_neighbours(feats[queries], feats, k)
    fig, axes = plt.subplots(len(queries), k + 1, figsize=((k + 1) * 1.4, len(queries) * 1.4),
                             squeeze=False)  # fmt: skip
    for row, q in enumerate(queries.tolist()):
        for col, j in enumerate([q, *idx[row].tolist()]):
            img = images[j].permute(1, 2, 0).numpy()
            ax = axes[row, col]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title("query" if col == 0 else f"#{col}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path.name


# the columns of reconstruction.png: `Reconstructs.visualize`'s keys and their titles
RECONSTRUCTION_PANELS = {"original": "original", "masked": "masked",
                         "prediction": "raw prediction", "reconstruction": "reconstruction"}  # fmt: skip


def save_reconstruction(cfg: TrainConfig, model: nn.Module, path: Path, device, n: int = 8) -> str:
    """PNG with one row per image: original | masked | raw prediction | reconstruction (the
    panels of the MAE demo notebook, facebookresearch/mae `demo/mae_visualize.ipynb`), each
    mapped to pixels as the input is (× std + mean, clipped to [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg.data.frames:
        return save_frames_strip(cfg, model, path, device)
    mean, std = mean_std(cfg.data)
    images = _grid_images(cfg, n).to(device).float()
    x = model_preprocess(cfg.data)(images)
    n = len(x)  # a small hold-out may have fewer than n images
    views = _fixed_mask_views(model, x, device)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    panels = RECONSTRUCTION_PANELS
    fig, axes = plt.subplots(n, len(panels), figsize=(len(panels) * 1.6, n * 1.6), squeeze=False)
    for row in range(n):
        for col, name in enumerate(panels):
            img = (views[name][row : row + 1] * s + m).clamp(0, 1)[0].permute(1, 2, 0)
            _tile(axes[row, col], img)
            if row == 0:
                axes[row, col].set_title(panels[name], fontsize=9)
    return _save_figure(fig, path, dpi=100)


def _tile(ax, img: Tensor) -> None:
    """An [H, W, C] image in 0..1 on `ax`, without ticks (grayscale when C = 1)."""
    img = img.cpu().numpy()
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def _save_figure(fig, path: Path, dpi: int) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
    return path.name


def _fixed_mask_views(model: nn.Module, x: Tensor, device) -> dict[str, Tensor]:
    """`Reconstructs.visualize` in eval mode under a mask drawn from seed 0."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(x.shape[0], model.backbone.num_patches, generator=gen).to(device)
    with torch.no_grad():
        views = model.visualize(x, noise=noise)
    model.train(was_training)
    return views


def save_frames_strip(cfg: TrainConfig, model: nn.Module, path: Path, device, n: int = 3) -> str:
    """PNG for a video MAE: per clip, four rows (original | masked | raw prediction |
    reconstruction, `Reconstructs.visualize` on clips) of its target frames side by side,
    mapped to pixels as the input is (× std + mean, clipped to [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = preview_clips(cfg.data, cfg.eval, n).to(device)
    views = _fixed_mask_views(model, clips, device)  # each [n, C, T', H, W]
    mean, std = video_mean_std(cfg.data, moving=is_fashion_mnist(cfg.data.dataset))
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1, 1)
    frames = views["original"].shape[2]
    rows = [(i, name) for i in range(len(clips)) for name in RECONSTRUCTION_PANELS]
    fig, axes = plt.subplots(len(rows), frames, figsize=(frames * 1.1, len(rows) * 1.1),
                             squeeze=False)  # fmt: skip
    for r, (i, name) in enumerate(rows):
        strip = (views[name][i] * s[0] + m[0]).clamp(0, 1).permute(1, 2, 3, 0)  # [T', H, W, C]
        for t in range(frames):
            _tile(axes[r, t], strip[t])
        axes[r, 0].set_ylabel(RECONSTRUCTION_PANELS[name], fontsize=7)
    return _save_figure(fig, path, dpi=80)


def save_loss_curve(run_dir: Path, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_log(run_dir) if "train/loss" in r]
    if not rows:
        return ""
    evals = [r for r in read_log(run_dir) if "eval/knn_top1" in r]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([r["train/epoch"] for r in rows], [r["train/loss"] for r in rows], label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if evals:
        ax2 = ax.twinx()
        spe = rows[-1]["step"] / max(rows[-1]["train/epoch"], 1e-9)
        ax2.plot(
            [r["step"] / spe for r in evals], [r["eval/knn_top1"] for r in evals], "o-", color="C1"
        )
        ax2.set_ylabel("k-NN top-1", color="C1")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path.name


CAPTIONS = {
    "reconstruction": "Each row: an evaluation image; its masked input; the raw prediction, the "
    "model's output on every patch as is (with a normalised-pixel target, per-patch normalised "
    "values, shown through the input's own display mapping and clipped); and the "
    "reconstruction, the visible patches pasted back over the prediction as in MAE's demo "
    "notebook. With a normalised-pixel target, each masked patch of the reconstruction is "
    "un-normalised with the true mean and variance of that masked patch, which the model never "
    "sees: the reconstruction looks better than the model's own output.",
    "frames strip": "Per clip, four rows over its target frames (the frames MAE-ST predicts): "
    "the clip; its masked input (removed spacetime patches zeroed, shown as the mean colour); "
    "the raw prediction; and the reconstruction, the visible "
    "patches pasted back over the prediction. With a normalised-pixel target each masked "
    "patch is un-normalised with its true mean and variance, which the model never sees.",
    "detections": "Top row: validation images with their ground-truth masks and boxes; bottom "
    "row: the detector's three highest-scoring detections (mask, box, category and score).",
    "neighbours": "Each row: a query image of the training sample, then its 5 nearest images "
    "by feature cosine.",
    "attention": "Each row: an evaluation image; attention rollout over it (Abnar and Zuidema, "
    "2020: heads averaged, half identity for the residual, multiplied through the blocks); then "
    "the class token's attention to each patch in the last block, one map per head "
    "(`visrep viz attention`).",
}


def _caption_note(cfg: TrainConfig, title: str) -> str:
    if title != "reconstruction":
        return ""
    norm = getattr(cfg.method, "norm_pix_loss", True)  # SparK's target is always normalised
    return (" This run's target: normalised pixels." if norm else
            " This run's target: raw pixels (the prediction is the model's own pixels).")  # fmt: skip


def write_report(
    cfg: TrainConfig, metrics: dict[str, Any], pictures: dict[str, str], run_dir: Path
) -> None:
    lines = [f"# visrep run: {cfg.recipe or 'custom'}", ""]
    lines += [
        f"Method `{type(cfg.method).__name__}`, backbone `{cfg.backbone.name}` "
        f"(patch {cfg.backbone.patch_size}, pool `{cfg.backbone.pool}`), data `{cfg.data.dataset}` "
        f"at {cfg.data.img_size} px, {cfg.optim.epochs} epochs, batch {cfg.optim.batch_size}.",
        "",
        *([training_summary(metrics), ""] if "train_steps" in metrics else []),
        "## Metrics",
        "",
        *([verdict(metrics), ""] if verdict(metrics) else []),
        "| metric | value |",
        "|---|---|",
    ]
    for k, v in metrics.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    for title, name in pictures.items():
        lines += ["", f"## {title.capitalize()}", "", f"![{title}]({name})"]
        if title in CAPTIONS:
            lines += ["", CAPTIONS[title] + _caption_note(cfg, title)]
    lines += [
        "",
        "## Files",
        "",
        "- `checkpoint.pt`: model + optimizer (loads with `torch.load(weights_only=True)`)",
        "- `config.json`: the resolved config; `metrics.json`: the numbers above",
        "- `log.jsonl`, `tb/`: training curves (`tensorboard --logdir " + str(run_dir) + "`)",
        "",
        "Export the backbone for timm: `visrep export --ckpt " + str(run_dir) + " --out DIR`.",
        "",
        "<details><summary>config</summary>",
        "",
        "```json",
        json.dumps(json.loads((run_dir / "config.json").read_text()), indent=2),
        "```",
        "</details>",
    ]
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
