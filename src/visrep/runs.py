"""Open a finished (or interrupted) run folder: its config and its trained model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from visrep.checkpoint import load_checkpoint, load_run_config_dict
from visrep.config import ConfigError, TrainConfig, from_dict
from visrep.methods import METHODS, build_method


def load_run_config(run_dir: str | Path) -> TrainConfig:
    data = load_run_config_dict(run_dir)
    name = data.get("method_name")
    if name not in METHODS:
        raise ConfigError(
            f"{run_dir}/config.json names method {name!r}, not one of {sorted(METHODS)}"
        )
    return from_dict(TrainConfig[METHODS[name].config], data)


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, nn.Module]:
    """The run's config and its method model with the checkpoint's weights, in eval mode."""
    cfg = load_run_config(run_dir)
    state = load_checkpoint(run_dir, map_location="cpu")
    model = build_method(cfg)
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval()
