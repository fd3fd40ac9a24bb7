"""`visrep sample`: draw images from a trained generative run (DiT) and save them.

`visrep sample --ckpt RUN --n 64 [--cfg 1.5] [--steps 250] [--ddim] [--class K] --out DIR`
writes `DIR/samples.png` (a grid, one row per class when conditional) and `DIR/samples.npz`
(`arr_0`: uint8 [n, H, W, C], the layout of the official `sample_ddp.py` and of ADM's
evaluation suite; `labels`: int64 [n], −1 when unconditional). As the official `sample.py`
(facebookresearch/DiT): the EMA weights, the 1000-step process respaced to `--steps`,
classifier-free guidance with `--cfg` > 1 on the first 3 ε channels, latents decoded by the
run's VAE. Pixel-space predictions of x_0 are clamped to the data's range (what the
run's mean/std map [0, 1] to; ADM's `clip_denoised` for data in [−1, 1]).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visrep.capabilities import Generates
from visrep.data.preprocess import mean_std
from visrep.device import resolve_device
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
                         "generate images (visrep sample takes DiT runs)")  # fmt: skip
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
            "weights": "ema" if use_ema and getattr(model, "ema", None) is not None else "online",
            "class": class_id, "num_classes": k, "recipe": cfg.recipe}  # fmt: skip
    return torch.cat(out).numpy(), labels.numpy(), info


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
