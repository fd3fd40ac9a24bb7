"""Backbones. `BACKBONES` maps a name to its constructor (a literal dict, no registry magic)."""

from visrep.backbones.vit import VIT_ARCHS, ViT

BACKBONES = {name: ViT for name in VIT_ARCHS}

__all__ = ["BACKBONES", "ViT", "VIT_ARCHS"]
