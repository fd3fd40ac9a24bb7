"""`visrep sample`: draw images from a trained generative run (DiT, RCG) and save them;
`visrep eval generation`: score them against real images.

`visrep sample --ckpt RUN --n 64 [--cfg 1.5] [--steps 250] [--ddim] [--class K] --out DIR`
writes `DIR/samples.png` (a grid, one row per class when conditional) and `DIR/samples.npz`
(`arr_0`: uint8 [n, H, W, C], the layout of the official `sample_ddp.py` and of ADM's
evaluation suite; `labels`: int64 [n], −1 when unconditional). As the official `sample.py`
(facebookresearch/DiT): the EMA weights, the 1000-step process respaced to `--steps`,
classifier-free guidance with `--cfg` > 1 on the first 3 ε channels, latents decoded by the
run's VAE. Pixel-space predictions of x_0 are clamped to the data's range (what the
run's mean/std map [0, 1] to; ADM's `clip_denoised` for data in [−1, 1]). An RCG run first
samples representations with its RDM, then `--cfg` guides the pixel generator with them
against its learned fake latent (LTH14/rcg `engine_dit.py`).

`visrep eval generation --ckpt RUN --reference REF [--encoder SSL_RUN] [--n 1000]` draws
`--n` samples and compares them with `--n` real images of the run's evaluation test split
(a seeded subset) in the pooled features of the reference run's backbone (e.g.
`gen_reference_fmnist`, a supervised classifier; its test top-1 is reported beside the
numbers) and, with `--encoder`, of a visrep SSL encoder: Fréchet distance and
precision/recall (`visrep.evals.generation`). Not FID: FID is the same distance in
Inception-v3 features, which are not available offline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrep.capabilities import Generates
from visrep.config import replace
from visrep.data.labelled import load_eval_split
from visrep.data.preprocess import eval_preprocess, mean_std
from visrep.device import resolve_device
from visrep.evals.features import extract_features
from visrep.evals.generation import generation_metrics
from visrep.io import atomic_write_text
from visrep.runs import load_run


def draw(
    run_dir: str | Path,
    n: int = 64,
    *,
    cfg_scale: float = 1.0,
    steps: int | str = 250,
    ddim: bool = False,
    eta: float = 0.0,
    class_id: int | None = None,
    seed: int = 0,
    use_ema: bool = True,
    batch: int = 64,
    device: str = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """uint8 samples [n, H, W, C], their labels [n] (−1: unconditional) and what was run."""
    dev = resolve_device(device)
    cfg, model = load_run(run_dir, dev)
    if not isinstance(model, Generates):
        raise ValueError(f"{run_dir} is a {type(cfg.method).__name__} run, which does not "
                         "generate images (visrep sample takes DiT and RCG runs)")  # fmt: skip
    k = model.num_classes
    if n < 1 or batch < 1:
        raise ValueError("--n and --batch must be >= 1")
    if class_id is not None and not 0 <= class_id < max(k, 1):
        raise ValueError(f"--class {class_id}: the run is "
                         + (f"conditional on classes 0..{k - 1}" if k else "unconditional"))  # fmt: skip
    if k:
        labels = torch.full((n,), class_id) if class_id is not None else torch.arange(n) % k
    else:
        labels = torch.full((n,), -1)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in mean_std(cfg.data))
    clip = ((0 - mean) / std, (1 - mean) / std)  # the data's range (latents: unclamped)
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, n, batch):
        y = labels[s : s + batch] if k else None
        x = model.sample(len(labels[s : s + batch]), labels=y, cfg_scale=cfg_scale, steps=steps,
                         ddim=ddim, eta=eta, use_ema=use_ema, clip=clip, generator=g,
                         progress=progress)  # fmt: skip
        x = model.to_pixels(x).float().cpu()  # [b, C, H, W], normalised like the data
        pixels = ((x * std + mean) * 255 + 0.5).clamp(0, 255).floor().to(torch.uint8)
        out.append(pixels.permute(0, 2, 3, 1))
    info = {"run": str(run_dir), "n": n, "cfg_scale": cfg_scale, "steps": str(steps),
            "sampler": "ddim" if ddim else "ddpm", "eta": eta, "seed": seed,
            "weights": "ema" if use_ema and _has_ema(model) else "online",
            "class": class_id, "num_classes": k, "recipe": cfg.recipe}  # fmt: skip
    return torch.cat(out).numpy(), labels.numpy(), info


def _has_ema(model: torch.nn.Module) -> bool:
    """DiT's `ema`, RCG's `gen_ema`: a model EMA the sampler uses."""
    return any(name.endswith("ema") for name, _ in model.named_children())


def grid(images: np.ndarray, cols: int) -> np.ndarray:
    """[n, H, W, C] uint8 -> one [rows·(H+2)+2, cols·(W+2)+2, C] picture, 2 px white gaps."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = im
    return out


def save_samples(images: np.ndarray, labels: np.ndarray, info: dict, out: Path, cols: int,
                 scale: int = 1) -> dict[str, Path]:  # fmt: skip
    """samples.png (the grid, each pixel repeated `scale` times), samples.npz, samples.json."""
    from PIL import Image

    picture = grid(images, cols).repeat(scale, axis=0).repeat(scale, axis=1)
    png, npz, meta = out / "samples.png", out / "samples.npz", out / "samples.json"
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(png)
    np.savez(npz, arr_0=images, labels=labels)
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return {"png": png, "npz": npz, "json": meta}


def run(args: Any) -> int:
    """The command: `visrep sample` (see the module docstring)."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise FileExistsError(f"{out} is not an empty folder; pass --force to write into it "
                              "or choose another --out")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    images, labels, info = draw(
        args.ckpt, args.n, cfg_scale=args.cfg, steps=args.steps, ddim=args.ddim, eta=args.eta,
        class_id=args.class_id, seed=args.seed, use_ema=not args.online, batch=args.batch,
        device=args.device, progress=True,
    )  # fmt: skip
    k = info["num_classes"] if args.class_id is None else 0
    cols = k if 0 < k <= 16 else math.ceil(math.sqrt(args.n))  # a column per class
    paths = save_samples(images, labels, info, out, cols, scale=args.scale)
    print(f"wrote {paths['png']} and {paths['npz']} ({args.n} samples, "
          f"{images.shape[1]}×{images.shape[2]}×{images.shape[3]} uint8)")  # fmt: skip
    return 0


def feature_space(run_dir: str | Path, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """A run's frozen backbone (pooled features), its preprocessing of [0, 1] images, and
    what names it in a table (recipe, method, its own test accuracy / k-NN if recorded)."""
    cfg, model = load_run(run_dir, device)
    metrics_file = Path(run_dir) / "metrics.json"
    recorded = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    info = {"run": str(run_dir), "recipe": cfg.recipe, "method": type(cfg.method).__name__,
            "backbone": cfg.backbone.name} | {k: recorded[k] for k in
            ("finetune_top1", "finetune_n_test", "knn_top1") if k in recorded}  # fmt: skip
    return model.backbone, eval_preprocess(cfg.data), info


def real_images(run_dir: str | Path, n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 images [n, C, H, W] of the run's evaluation test split (a seeded draw)."""
    cfg, _ = load_run(run_dir)
    if not cfg.eval.dataset:
        raise ValueError(f"{run_dir} names no eval.dataset to take real images from")
    images, _ = load_eval_split(replace(cfg.eval, limit_test=0), "test", cfg.data.channels,
                                cfg.data.img_size)  # fmt: skip
    if n > len(images):
        raise ValueError(f"--n {n}: the test split has only {len(images)} images")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx]


def evaluate_generation(
    run_dir: str | Path,
    reference: str | Path,
    encoder: str | Path | None = None,
    *,
    n: int = 1000,
    k: int = 3,
    samples: np.ndarray | None = None,
    device: str = "auto",
    **draw_kwargs: Any,
) -> dict[str, Any]:
    """Fréchet distance and precision/recall of `n` samples of `run_dir` (or given uint8
    `samples` [n, H, W, C]) against `n` real test images, in the features of `reference`
    (and of `encoder`)."""
    dev = resolve_device(device)
    if samples is None:
        samples, _, info = draw(run_dir, n, device=device, **draw_kwargs)
    else:
        info = {"run": str(run_dir), "n": len(samples), "samples": "given"}
    fake = torch.from_numpy(np.ascontiguousarray(samples)).permute(0, 3, 1, 2)  # [n, C, H, W]
    real = real_images(run_dir, len(fake), seed=1)
    out: dict[str, Any] = {"sampling": info, "n_real_split": "test"}
    for name, path in (("reference", reference), ("encoder", encoder)):
        if path is None:
            continue
        net, pre, about = feature_space(path, dev)
        feats = [extract_features(net, x, preprocess=pre, device=dev, batch_size=256)
                 for x in (real, fake)]  # fmt: skip
        out[name] = about | generation_metrics(feats[0], feats[1], k)
    return out


def run_eval(args: Any) -> int:
    """The command: `visrep eval generation` (see the module docstring)."""
    if not args.reference:
        raise ValueError("visrep eval generation needs --reference RUN, the network whose "
                         "features are compared (train one: visrep train gen_reference_fmnist)")  # fmt: skip
    metrics = evaluate_generation(
        args.ckpt, args.reference, args.encoder or None, n=args.n, device=args.device,
        cfg_scale=args.cfg, steps=args.steps, ddim=args.ddim, seed=args.seed, progress=True,
        use_ema=not args.online,
    )  # fmt: skip
    out = Path(args.out) if args.out else Path(args.ckpt) / "eval_generation.json"
    print(json.dumps(metrics, indent=2))
    atomic_write_text(out, json.dumps(metrics, indent=2) + "\n")
    return 0
