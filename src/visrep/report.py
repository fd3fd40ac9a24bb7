"""End of a run: final evaluation, pictures and a short markdown report in the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visrep.capabilities import Classifier, Reconstructs
from visrep.config import TrainConfig, save_json
from visrep.data.fashion_mnist import is_fashion_mnist, load_fashion_mnist
from visrep.data.folder import load_folder_tensors
from visrep.data.labelled import load_eval_split
from visrep.data.preprocess import mean_std, model_preprocess
from visrep.evals.classifier import classifier_eval
from visrep.evals.retrieval import image_text_eval
from visrep.evals.run import evaluate
from visrep.io import atomic_write, atomic_write_text
from visrep.logger import read_log


def finish_run(
    cfg: TrainConfig, model: nn.Module, run_dir: Path, device: torch.device, n_skipped: int = 0
) -> dict[str, Any]:
    """Evaluate (if configured), draw the pictures, write metrics.json and report.md."""
    metrics: dict[str, Any] = {"unreadable_images_skipped": n_skipped}
    if cfg.eval.final and cfg.eval.dataset and isinstance(model, Classifier):
        metrics |= classifier_eval(model, cfg, device)
    elif cfg.eval.final and cfg.eval.dataset:
        metrics |= evaluate(
            model.backbone, cfg.data, cfg.eval, device=device, progress=cfg.run.progress
        )
    if cfg.eval.final:  # image-text runs: zero-shot and retrieval ({} for other methods)
        metrics |= image_text_eval(cfg, model, device)
    pictures = {}
    if isinstance(model, Reconstructs):
        pictures["reconstruction"] = save_reconstruction(
            cfg, model, run_dir / "reconstruction.png", device
        )
    pictures["loss"] = save_loss_curve(run_dir, run_dir / "loss.png")
    save_json(metrics, run_dir / "metrics.json")
    write_report(cfg, metrics, {k: v for k, v in pictures.items() if v}, run_dir)
    return metrics


def _grid_images(cfg: TrainConfig, n: int) -> Tensor:
    """A fixed set of evaluation (or training) images, uint8 [n, C, H, W]."""

    if cfg.eval.dataset:
        images, _ = load_eval_split(cfg.eval, "test", cfg.data.channels, cfg.data.img_size)
    elif is_fashion_mnist(cfg.data.dataset):
        images, _ = load_fashion_mnist(cfg.data.root, "test")
    else:
        images, _, _ = load_folder_tensors(cfg.data.dataset, cfg.data.channels, cfg.data.img_size)
    idx = torch.linspace(0, len(images) - 1, n).long()
    return images[idx]


def save_reconstruction(cfg: TrainConfig, model: nn.Module, path: Path, device, n: int = 8) -> str:
    """PNG with one row per image: original | masked | reconstruction (MAE demo layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = mean_std(cfg.data)
    images = _grid_images(cfg, n).to(device).float()
    x = model_preprocess(cfg.data)(images)
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(x.shape[0], model.backbone.num_patches, generator=gen).to(device)
    views = model.visualize(x, noise=noise)
    model.train(was_training)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    fig, axes = plt.subplots(n, 3, figsize=(3 * 1.6, n * 1.6))
    for row in range(n):
        for col, name in enumerate(("original", "masked", "reconstruction")):
            img = (views[name][row : row + 1] * s + m).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            ax = axes[row, col]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path.name


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


def write_report(
    cfg: TrainConfig, metrics: dict[str, Any], pictures: dict[str, str], run_dir: Path
) -> None:
    lines = [f"# visrep run: {cfg.recipe or 'custom'}", ""]
    lines += [
        f"Method `{type(cfg.method).__name__}`, backbone `{cfg.backbone.name}` "
        f"(patch {cfg.backbone.patch_size}, pool `{cfg.backbone.pool}`), data `{cfg.data.dataset}` "
        f"at {cfg.data.img_size} px, {cfg.optim.epochs} epochs, batch {cfg.optim.batch_size}.",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for k, v in metrics.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    for title, name in pictures.items():
        lines += ["", f"## {title.capitalize()}", "", f"![{title}]({name})"]
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
