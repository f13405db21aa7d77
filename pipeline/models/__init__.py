"""Model specs, weight resolution and device choice (see specs.py, loader.py, device.py).

Importing this package does not import torch; ``pipeline.models.device`` does.
"""
from __future__ import annotations

from pipeline.models.loader import WeightsMissingError, locate_weights, resolve_weights
from pipeline.models.specs import PROFILES, ROLES, ModelSpec, get_profile, get_spec

__all__ = [
    "PROFILES",
    "ROLES",
    "ModelSpec",
    "WeightsMissingError",
    "get_profile",
    "get_spec",
    "locate_weights",
    "resolve_weights",
]
