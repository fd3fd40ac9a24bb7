"""Methods. `METHODS` maps a name to (config class, model class): the one place a method goes.

A method is an `nn.Module` with a `backbone` attribute whose `forward(batch)` returns a
dict holding `loss` (other scalar entries are logged), and optionally
`on_step_end(progress)` for schedules; the optional capabilities the loop, the evaluations
and the report look for are the protocols of `visrep.capabilities` (docs/adding_a_method.md).
`visrep.runs.build_model` builds a method from a config.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from visrep.methods.cit import CiT, CiTConfig
from visrep.methods.clip import CLIP, FLIP, CLIPConfig, FLIPConfig
from visrep.methods.detect import Detect, DetectConfig
from visrep.methods.dit import DiT, DiTConfig
from visrep.methods.fcmae import FCMAE, FCMAEConfig
from visrep.methods.mae import MAE, MAEConfig
from visrep.methods.mae_st import MAEST, MAESTConfig
from visrep.methods.maskfeat import MaskFeat, MaskFeatConfig
from visrep.methods.maskfeat_video import MaskFeatVideo, MaskFeatVideoConfig
from visrep.methods.mocov3 import MoCoV3, MoCoV3Config
from visrep.methods.rcg import RCG, RCGConfig
from visrep.methods.rho import (
    RhoBYOL,
    RhoBYOLConfig,
    RhoMoCo,
    RhoMoCoConfig,
    RhoSimCLR,
    RhoSimCLRConfig,
    RhoSwAV,
    RhoSwAVConfig,
)
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
    "mae_st": MethodEntry(MAESTConfig, MAEST),  # video (data.frames > 0)
    "maskfeat_video": MethodEntry(MaskFeatVideoConfig, MaskFeatVideo),  # video
    "rho_moco": MethodEntry(RhoMoCoConfig, RhoMoCo),  # video, ρ clips (data.clips)
    "rho_byol": MethodEntry(RhoBYOLConfig, RhoBYOL),
    "rho_simclr": MethodEntry(RhoSimCLRConfig, RhoSimCLR),
    "rho_swav": MethodEntry(RhoSwAVConfig, RhoSwAV),
    "fcmae": MethodEntry(FCMAEConfig, FCMAE),
    "spark": MethodEntry(SparKConfig, SparK),
    "simsiam": MethodEntry(SimSiamConfig, SimSiam),
    "mocov3": MethodEntry(MoCoV3Config, MoCoV3),
    "simclr": MethodEntry(SimCLRConfig, SimCLR),
    "clip": MethodEntry(CLIPConfig, CLIP),
    "cit": MethodEntry(CiTConfig, CiT),
    "slip": MethodEntry(SLIPConfig, SLIP),
    "flip": MethodEntry(FLIPConfig, FLIP),
    "dit": MethodEntry(DiTConfig, DiT),  # generation (visrep.sample)
    "rcg": MethodEntry(RCGConfig, RCG),  # generation from a run's representation
    "supervised": MethodEntry(SupervisedConfig, Supervised),  # fine-tuning (visrep.finetune)
    "detect": MethodEntry(DetectConfig, Detect),  # Mask R-CNN transfer (visrep.detect)
}


def method_name(method_cfg: Any) -> str:
    for name, entry in METHODS.items():
        if type(method_cfg) is entry.config:
            return name
    raise ValueError(f"{type(method_cfg).__name__} is not a registered method config")
