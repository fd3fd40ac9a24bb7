"""Export a pre-trained backbone for the timm ecosystem.

`backbone.safetensors` holds the timm model's state dict; `backbone.json` holds what
is needed to rebuild it and feed it::

    meta = json.load(open("backbone.json"))
    model = timm.create_model(meta["timm_name"], **meta["timm_kwargs"])
    apply_fixups(model, meta["timm_fixups"])  # only when non-empty: see cnn.py
    model.load_state_dict(safetensors.torch.load_file("backbone.safetensors"), strict=True)
    features = model(normalized_images)  # == visrep's features

Images are normalized with `meta["mean"]`/`meta["std"]` (0-1 units) at `meta["input_size"]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from visrep.data.pipeline import mean_std
from visrep.io import atomic_write, atomic_write_text
from visrep.runs import load_run


def export_backbone(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    cfg, model = load_run(run_dir)
    backbone = model.backbone
    mean, std = mean_std(cfg.data)
    meta = {
        "timm_name": backbone.timm_name,
        "timm_kwargs": backbone.timm_kwargs,
        # changes timm has no argument for (e.g. a ResNet's small-image stem); apply them with
        # visrep.backbones.cnn.apply_fixups(model, meta["timm_fixups"]) before loading
        "timm_fixups": backbone.timm_fixups,
        "mean": list(mean),
        "std": list(std),
        "input_size": [cfg.data.channels, cfg.data.img_size, cfg.data.img_size],
        "feature_dim": backbone.feature_dim,
        "method": type(cfg.method).__name__,
        "recipe": cfg.recipe,
    }
    out = Path(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in backbone.model.state_dict().items()}
    atomic_write(
        out / "backbone.safetensors",
        lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}),
    )
    atomic_write_text(out / "backbone.json", json.dumps(meta, indent=2) + "\n")
    return meta
