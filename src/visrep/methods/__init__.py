"""Methods. `METHODS` maps a name to (config class, model class): the one place a method goes.

A method is an `nn.Module` with a `backbone` attribute whose `forward(batch)` returns a
dict holding `loss` (other scalar entries are logged), and optionally
`on_step_end(progress)` for schedules (DESIGN.md, "Method" contract).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import nn

from visrep.backbones import BACKBONES
from visrep.config import BackboneConfig, DataConfig, TrainConfig
from visrep.methods.cit import CiT, CiTConfig
from visrep.methods.clip import CLIP, FLIP, CLIPConfig, FLIPConfig
from visrep.methods.fcmae import FCMAE, FCMAEConfig
from visrep.methods.mae import MAE, MAEConfig
from visrep.methods.maskfeat import MaskFeat, MaskFeatConfig
from visrep.methods.mocov3 import MoCoV3, MoCoV3Config
from visrep.methods.simclr import SimCLR, SimCLRConfig
from visrep.methods.simsiam import SimSiam, SimSiamConfig
from visrep.methods.slip import SLIP, SLIPConfig
from visrep.methods.spark import SparK, SparKConfig
from visrep.methods.supervised import Supervised, SupervisedConfig


class MethodEntry(NamedTuple):
    config: type
    model: type


METHODS: dict[str, MethodEntry] = {
    "mae": MethodEntry(MAEConfig, MAE),
    "maskfeat": MethodEntry(MaskFeatConfig, MaskFeat),
    "fcmae": MethodEntry(FCMAEConfig, FCMAE),
    "spark": MethodEntry(SparKConfig, SparK),
    "simsiam": MethodEntry(SimSiamConfig, SimSiam),
    "mocov3": MethodEntry(MoCoV3Config, MoCoV3),
    "simclr": MethodEntry(SimCLRConfig, SimCLR),
    "clip": MethodEntry(CLIPConfig, CLIP),
    "cit": MethodEntry(CiTConfig, CiT),
    "slip": MethodEntry(SLIPConfig, SLIP),
    "flip": MethodEntry(FLIPConfig, FLIP),
    "supervised": MethodEntry(SupervisedConfig, Supervised),  # fine-tuning (evals/finetune.py)
}


def method_name(method_cfg: Any) -> str:
    for name, entry in METHODS.items():
        if type(method_cfg) is entry.config:
            return name
    raise ValueError(f"{type(method_cfg).__name__} is not a registered method config")


def build_backbone(bb: BackboneConfig, data: DataConfig) -> nn.Module:
    if bb.name not in BACKBONES:
        raise ValueError(f"unknown backbone {bb.name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[bb.name](
        bb.name,
        img_size=data.img_size,
        patch_size=bb.patch_size,
        in_chans=data.channels,
        pool=bb.pool,
        depth=bb.depth,
        num_heads=bb.num_heads,
        drop_path_rate=bb.drop_path_rate,
    )


def build_method(cfg: TrainConfig) -> nn.Module:
    entry = METHODS[method_name(cfg.method)]
    if getattr(cfg.method, "source", ""):  # fine-tuning builds its backbone from the source run
        return entry.model(cfg.method)
    return entry.model(cfg.method, build_backbone(cfg.backbone, cfg.data))
