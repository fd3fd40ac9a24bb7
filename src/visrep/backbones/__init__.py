"""Backbones. `BACKBONES` maps a name to its constructor (a literal dict, no registry magic)."""

from visrep.backbones.cnn import CNN, CNN_ARCHS
from visrep.backbones.vit import VIT_ARCHS, ViT

BACKBONES = {name: ViT for name in VIT_ARCHS} | {name: CNN for name in CNN_ARCHS}

__all__ = ["BACKBONES", "CNN", "CNN_ARCHS", "ViT", "VIT_ARCHS"]
