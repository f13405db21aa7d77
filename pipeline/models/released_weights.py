"""PyTorch weights that OpenVINO made redundant, freed, and read back on demand.

When a vision encoder runs as a compiled OpenVINO model (:mod:`pipeline.models.openvino_runtime`)
nothing in the app calls its PyTorch module again, yet its weights stayed resident: ~400 MB in
bfloat16 for SAM2's Hiera, Florence-2's DaViT and DINOv2-base, which put the app's peak RSS
over its 4 GB target once SAM2's prompt decoder was compiled too. :func:`release` moves such a
submodule to the ``meta`` device (shapes kept, storage freed) and records where its weights
live; :func:`restore` reads them back from the model folder (the bench's PyTorch-against-
OpenVINO timings and FLOP counts, which need the PyTorch modules).

A released submodule is named by its dotted path inside ``owner.model`` (``""``: the whole
model), so ``owner`` is any of the model classes with ``model`` and ``dtype`` attributes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _parent(root: torch.nn.Module, path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    obj: Any = root
    for p in parents:
        obj = getattr(obj, p)
    return obj, name


def _get(root: torch.nn.Module, path: str) -> torch.nn.Module:
    if not path:
        return root
    obj, name = _parent(root, path)
    return getattr(obj, name)


def _set(owner: Any, path: str, module: torch.nn.Module) -> None:
    if not path:
        owner.model = module
        return
    obj, name = _parent(owner.model, path)
    setattr(obj, name, module)


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``module``'s parameters and buffers that are held in memory (not ``meta``)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if t.device.type != "meta")


def release(owner: Any, path: str, folder: str | Path) -> int:
    """Frees ``owner.model``'s submodule ``path`` (moved to ``meta``); returns the bytes freed.
    ``folder`` is the model folder :func:`restore` reads it back from."""
    sub = _get(owner.model, path)
    freed = tensor_bytes(sub)
    _set(owner, path, sub.to("meta"))
    released = dict(getattr(owner, "released_weights", None) or {})
    released[path] = Path(folder)
    owner.released_weights = released
    return freed


def restore(owner: Any) -> list[str]:
    """Reads every released submodule of ``owner`` back from its folder (one load of the model
    per folder); returns their paths. The submodules are the freshly loaded ones."""
    released = dict(getattr(owner, "released_weights", None) or {})
    fresh_by_folder: dict[Path, torch.nn.Module] = {}
    for path, folder in released.items():
        fresh = fresh_by_folder.get(folder)
        if fresh is None:
            fresh = type(owner.model).from_pretrained(folder, dtype=owner.dtype).eval()
            fresh_by_folder[folder] = fresh
        _set(owner, path, _get(fresh, path))
    owner.released_weights = {}
    return list(released)


def released(owner: Any) -> dict[str, Path]:
    """``{submodule path: model folder}`` of what is released on ``owner`` now."""
    return dict(getattr(owner, "released_weights", None) or {})
