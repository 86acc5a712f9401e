"""Backbone families: the genes, candidate exit points and build of a search space's backbone.

- `BackboneFamily` (base.py): the interface `SearchSpace` delegates to, and `family_from_dict`.
- `McuFamily` (mcu.py): the built-in MobileNetV3-style family (`SearchSpace.mcu`).
- `HypermodelFamily`, `ExitPoint` (hypermodel.py): a keras-tuner `build(hp)` / `HyperModel` as the backbone
  (`SearchSpace.from_hypermodel`).
"""
from .base import FAMILIES, BackboneFamily, SpaceView, family_from_dict
from .hypermodel import ExitPoint, HypermodelFamily
from .mcu import ACTIVATIONS, McuFamily

__all__ = ["ACTIVATIONS", "FAMILIES", "BackboneFamily", "ExitPoint", "HypermodelFamily", "McuFamily",
           "SpaceView", "family_from_dict"]
