"""visrep: pre-train a vision encoder on your own images, measure it, export it for timm.

    import visrep
    metrics = visrep.train("mae_own", data="/my/images", out="runs/mine", export="exported/")
    model, transform = visrep.load("runs/mine")       # a run folder, or an export folder
    features = model(transform(pil_image).unsqueeze(0))  # [1, D]

`visrep.loop` is `visrep train` in one call (recipes: `visrep recipes`; any key of
`visrep show RECIPE` in `overrides`); `visrep.load` gives the backbone in eval mode and the
preprocessing it was trained with. The command line is `visrep --help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visrep.version import __version__

__all__ = ["__version__", "load", "train"]


def train(
    recipe: str = "mae_own",
    *,
    data: str | None = None,
    out: str | None = None,
    epochs: int | None = None,
    export: str | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `recipe` on `data` (a folder, WebDataset shards, or "fashion_mnist") into `out`
    and return the final metrics; with `export`, also write the backbone there for timm.

    `overrides` takes any dotted key (`{"optim.batch_size": 32, "eval.holdout": 0.2}`);
    `resume=True` continues the run in `out` (only run/eval/epochs/lr may change)."""
    from visrep.cli import check_resume_overrides
    from visrep.config import apply_overrides
    from visrep.configs import get_recipe
    from visrep.export import export_backbone
    from visrep.loop import train as train_loop
    from visrep.runs import load_run_config

    changes = {"data.dataset": data, "run.out_dir": out, "optim.epochs": epochs}
    changes = {k: v for k, v in changes.items() if v is not None} | dict(overrides or {})
    items = [f"{k}={_override_value(v)}" for k, v in changes.items()]
    if resume:
        if out is None:
            raise ValueError("resume=True needs out=, the run folder to continue")
        items = check_resume_overrides([i for i in items if not i.startswith("run.out_dir=")])
        cfg = apply_overrides(load_run_config(out), [*items, f"run.out_dir={out}"])
    else:
        cfg = apply_overrides(get_recipe(recipe), items)
    metrics = train_loop(cfg, resume=resume)
    if export and metrics:
        export_backbone(cfg.run.out_dir, export, force=True)
    return metrics


def _override_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v)
    return str(v)


def load(path: str | Path, device: str = "cpu"):
    """(backbone, transform) of a run folder or an export folder: the backbone in eval mode
    maps normalised images [B, C, S, S] to features [B, D]; `transform` maps a PIL image or
    a uint8 tensor [C, H, W] to what it was trained on ([C, S, S]: resize, crop, normalise)."""
    import safetensors.torch

    from visrep.backbones.pretrained import create_timm
    from visrep.data.preprocess import image_transform
    from visrep.runs import export_meta, is_export, load_run

    path = Path(path)
    if is_export(path):
        meta, data = export_meta(path)
        model = create_timm(meta["timm_name"], meta["timm_kwargs"], meta["timm_fixups"])
        model.load_state_dict(safetensors.torch.load_file(str(path / meta["weights"])))
    else:
        cfg, method = load_run(path, device)
        model, data = method.backbone, cfg.data
    return model.to(device).eval(), image_transform(data)
