"""One place that owns the loaded models: lazy, load-once, thread-safe, unloadable.

``ModelManager`` turns a profile's specs (``pipeline.models.specs``) into ready objects:

- ``detector()`` -> ``pipeline.detect.florence.FlorenceDetector``
- ``segmenter("sam2")`` -> ``pipeline.segment.sam2.Sam2Segmenter``;
  ``segmenter("grabcut")`` -> ``pipeline.segment.grabcut.GrabCutSegmenter`` (no weights)
- ``embedder()`` -> ``pipeline.embed.dinov2.Dinov2Embedder``
- ``labeler(segmenter="sam2")`` -> ``pipeline.autolabel.AutoLabeler`` over the three above

Each is built on first use and then shared. Every role has its own lock, so two threads asking
for the same model load it once, while loading the detector does not block a click on the
already-loaded segmenter. Weights are found with ``pipeline.models.loader.resolve_weights``
(explicit folder -> weights dir -> HF cache -> hub download); when they are missing, the
call raises ``WeightsMissingError`` naming the model and how to get it, and the manager stays
usable (GrabCut, and any role whose weights are present, still work).
"""
from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

from pipeline.models.loader import (
    WeightsMissingError,
    locate_weights,
    read_model_type,
    resolve_weights,
)
from pipeline.models.specs import ROLE_MODEL_TYPES, ROLES, ModelSpec, get_profile

SEGMENTER_KINDS = ("sam2", "grabcut")


class ModelManager:
    """Lazily loaded, shared models of one profile.

    Args:
        profile: ``"cpu"`` (Florence-2-base, SAM2.1-hiera-tiny, DINOv2-base) or ``"gpu"``.
        overrides: role -> hub id, local folder or ``ModelSpec`` (see ``specs.get_profile``).
        weights_dir: where imported/downloaded weights live (default: the loader's).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None/``"auto"``
            (``pipeline.models.device.pick_device_dtype``).
        dtype: a torch dtype or its name to force one precision for every model; None uses the
            device's default (CUDA bf16/fp16, CPU float32 or ``$AGL_CPU_DTYPE``).
        download: allow hub downloads when weights are not on disk (offline still fails fast).
        runtime: the vision encoders' CPU runtime, ``"openvino"`` or ``"torch"``; None uses
            ``pipeline.models.openvino_runtime.cpu_runtime()`` (``$AGL_CPU_RUNTIME``, else
            OpenVINO when installed).
        decoder: Florence-2's token-loop layers, ``"int8"`` or ``"native"``; None uses
            ``pipeline.detect.florence_int8.decoder_mode()`` (``$AGL_FLORENCE_DECODER``, else
            int8 on CPU).

    Raises:
        ValueError: unknown profile, role or dtype name.
    """

    def __init__(
        self,
        profile: str = "cpu",
        overrides: dict[str, str | ModelSpec] | None = None,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        *,
        dtype: Any = None,
        download: bool = True,
        runtime: str | None = None,
        decoder: str | None = None,
    ) -> None:
        self.profile = profile
        self.runtime = runtime
        self.decoder = decoder
        self.specs: dict[str, ModelSpec] = get_profile(profile, overrides)
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        self.device_pref = device
        if isinstance(dtype, str):
            from pipeline.models.device import parse_dtype

            dtype = parse_dtype(dtype)
        self.dtype_pref = dtype
        self.download = download
        self._objects: dict[str, Any] = {}
        self._paths: dict[str, Path] = {}
        self._errors: dict[str, str] = {}
        self._locks: dict[str, threading.RLock] = {
            key: threading.RLock() for key in (*ROLES, "grabcut", "video", "labeler")
        }

    # ------------------------------------------------------------------ helpers
    def device_dtype(self) -> tuple[Any, Any]:
        """The (torch.device, torch.dtype) models are loaded with."""
        from pipeline.models.device import pick_device_dtype

        device, dtype = pick_device_dtype(self.device_pref)
        return device, self.dtype_pref or dtype

    def weights_path(self, role: str) -> Path:
        """The folder holding ``role``'s weights (may download; see the loader).

        Raises:
            WeightsMissingError: not on this machine and not downloadable now.
            ValueError: the folder holds a model of the wrong kind for the role.
        """
        spec = self._spec(role)
        path = resolve_weights(spec, weights_dir=self.weights_dir, download=self.download)
        model_type = read_model_type(path)
        if model_type not in ROLE_MODEL_TYPES[role]:
            raise ValueError(
                f"{role} weights at {path}: expected a model of type {sorted(ROLE_MODEL_TYPES[role])}, "
                f"got {model_type!r}; point the {role} override at the right folder"
            )
        return path

    def _spec(self, role: str) -> ModelSpec:
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
        return self.specs[role]

    def _get(self, key: str, build) -> Any:
        obj = self._objects.get(key)
        if obj is not None:
            return obj
        with self._locks[key]:
            obj = self._objects.get(key)  # another thread may have loaded it while we waited
            if obj is None:
                try:
                    obj = build()
                except Exception as exc:
                    self._errors[key] = f"{exc.__class__.__name__}: {exc}"
                    raise
                self._errors.pop(key, None)
                self._objects[key] = obj
            return obj

    # ------------------------------------------------------------------ roles
    def detector(self) -> Any:
        """The Florence-2 detector (loaded on first call).

        Raises:
            WeightsMissingError: weights absent and not downloadable.
        """

        def build():
            from pipeline.detect.florence import FlorenceDetector

            path = self.weights_path("detector")
            device, dtype = self.device_dtype()
            self._paths["detector"] = path
            return FlorenceDetector.from_pretrained(path, device=device, dtype=dtype, name=self.specs["detector"].name,
                                                    runtime=self.runtime, decoder=self.decoder)

        return self._get("detector", build)

    def segmenter(self, kind: str = "sam2") -> Any:
        """The segmenter: ``"sam2"`` (weights needed) or ``"grabcut"`` (always available).

        Raises:
            ValueError: unknown kind.
            WeightsMissingError: SAM2 weights absent and not downloadable.
        """
        if kind not in SEGMENTER_KINDS:
            raise ValueError(f"segmenter: expected one of {SEGMENTER_KINDS}, got {kind!r}")
        if kind == "grabcut":
            from pipeline.segment.grabcut import GrabCutSegmenter

            return self._get("grabcut", GrabCutSegmenter)

        def build():
            from pipeline.segment.sam2 import Sam2Segmenter

            path = self.weights_path("segmenter")
            device, dtype = self.device_dtype()
            self._paths["segmenter"] = path
            from pipeline.autolabel import GPU_BATCH_IMAGES

            # on a GPU the LRU holds a whole label_many batch (one encoder forward per batch)
            cache = max(6, GPU_BATCH_IMAGES) if getattr(device, "type", str(device)) == "cuda" else 6
            return Sam2Segmenter.from_pretrained(path, device=device, dtype=dtype, name=self.specs["segmenter"].name,
                                                 runtime=self.runtime, cache_size=cache)

        return self._get("segmenter", build)

    def video_propagator(self) -> Any:
        """SAM2.1 video propagation (``pipeline.segment.sam2_video.Sam2VideoPropagator``) from the
        segmenter's weights folder (loaded on first call; ``unload("video")`` frees it).

        Raises:
            WeightsMissingError: SAM2 weights absent and not downloadable.
            ValueError: the folder holds an image-only ``sam2`` checkpoint (no memory modules).
        """

        def build():
            from pipeline.segment.sam2_video import Sam2VideoPropagator

            path = self.weights_path("segmenter")
            device, dtype = self.device_dtype()
            return Sam2VideoPropagator.from_pretrained(path, device=device, dtype=dtype,
                                                       name=self.specs["segmenter"].name)

        return self._get("video", build)

    def embedder(self) -> Any:
        """The DINOv2 embedder (loaded on first call).

        Raises:
            WeightsMissingError: weights absent and not downloadable.
        """

        def build():
            from pipeline.embed.dinov2 import Dinov2Embedder

            spec = self.specs["embedder"]
            path = self.weights_path("embedder")
            device, dtype = self.device_dtype()
            self._paths["embedder"] = path
            return Dinov2Embedder.from_pretrained(path, device=device, dtype=dtype, version=_release_name(spec),
                                                  runtime=self.runtime)

        return self._get("embedder", build)

    def labeler(self, segmenter: str = "sam2", *, embed: bool = True) -> Any:
        """An ``AutoLabeler`` over the shared detector, segmenter and (optionally) embedder.

        Args:
            segmenter: ``"sam2"`` or ``"grabcut"``.
            embed: attach the embedder (DINOv2 weights needed).

        Raises:
            WeightsMissingError: a needed model's weights are absent.
        """
        from pipeline.autolabel import AutoLabeler

        key = f"labeler:{segmenter}:{int(embed)}"
        with self._locks["labeler"]:
            lab = self._objects.get(key)
            if lab is None:
                lab = AutoLabeler(self.detector(), self.segmenter(segmenter), self.embedder() if embed else None)
                self._objects[key] = lab
            return lab

    # ------------------------------------------------------------------ lifecycle
    def is_loaded(self, role: str) -> bool:
        """True when ``role`` (a role name or ``"grabcut"``) is in memory."""
        return role in self._objects

    def unload(self, role: str | None = None) -> None:
        """Free a role's model (or all with None): drop references, collect, empty the CUDA cache.

        Labelers holding the model are dropped too; the next call loads it again.

        Raises:
            ValueError: unknown role.
        """
        if role is not None and role not in (*ROLES, "grabcut", "video"):
            raise ValueError(f"role: expected one of {(*ROLES, 'grabcut', 'video')} or None, got {role!r}")
        keys = [*ROLES, "grabcut", "video"] if role is None else [role]
        with self._locks["labeler"]:
            for k in [k for k in self._objects if k.startswith("labeler:")]:
                self._objects.pop(k, None)
        for key in keys:
            with self._locks[key]:
                obj = self._objects.pop(key, None)
                if obj is not None and hasattr(obj, "clear_cache"):
                    obj.clear_cache()  # cached SAM2 embeddings are the second-largest holder
                del obj
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a hard dependency of pipeline/
            pass

    def embedding_identity(self) -> dict[str, Any] | None:
        """``{"embedding_dim", "embedding_version"}`` the embedder will produce, read from its
        weights' config.json without loading the model (None when the weights are absent).

        The registry is opened with these, so vectors of a small or custom DINOv2 are accepted
        and never compared with another model's.
        """
        import json

        from pipeline.models.specs import embedding_version

        try:
            found = locate_weights(self.specs["embedder"], weights_dir=self.weights_dir)
        except WeightsMissingError:
            return None
        if found is None:
            return None
        hidden = json.loads((found.path / "config.json").read_text(encoding="utf-8")).get("hidden_size")
        if not isinstance(hidden, int) or hidden <= 0:
            return None
        return {"embedding_dim": hidden, "embedding_version": _release_name(self.specs["embedder"]) or embedding_version(hidden)}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per role: the model, whether it is loaded, whether its weights are on disk, and where.

        Never downloads and never loads anything.

        Returns:
            ``{role: {"name", "hub_id", "loaded", "weights_present", "path", "source", "device",
            "dtype", "runtime", "error"}}`` (``runtime``: the loaded model's vision encoder on
            ``"openvino"`` or ``"torch"``) for ``detector``, ``segmenter``, ``embedder`` and ``grabcut``
            (which needs no weights). ``source`` is ``"local"``, ``"weights-dir"``,
            ``"hf-cache"`` or None; ``error`` is the last load failure or a folder problem.
        """
        out: dict[str, dict[str, Any]] = {}
        for role in ROLES:
            spec = self.specs[role]
            entry: dict[str, Any] = {
                "name": spec.name, "hub_id": spec.hub_id, "loaded": role in self._objects,
                "weights_present": False, "path": None, "source": None,
                "device": None, "dtype": None, "runtime": None, "error": self._errors.get(role),
            }
            try:
                found = locate_weights(spec, weights_dir=self.weights_dir)
            except WeightsMissingError as exc:
                found, entry["error"] = None, str(exc)
            if found is not None:
                entry.update(weights_present=True, path=str(found.path), source=found.source)
            obj = self._objects.get(role)
            if obj is not None:
                entry["path"] = str(self._paths.get(role, entry["path"]))
                entry["device"] = str(getattr(obj, "device", "")) or None
                entry["dtype"] = str(getattr(obj, "dtype", "")).removeprefix("torch.") or None
                # the vision encoder's runtime (pipeline.models.openvino_runtime)
                entry["runtime"] = "openvino" if getattr(obj, "vision", None) is not None else "torch"
            out[role] = entry
        out["grabcut"] = {
            "name": "grabcut", "hub_id": None, "loaded": "grabcut" in self._objects,
            "weights_present": True, "path": None, "source": "builtin",
            "device": "cpu", "dtype": None, "runtime": None, "error": None,
        }
        return out


def _release_name(spec: ModelSpec) -> str | None:
    """The embedder's version label when the spec names a release: hub specs carry the release
    name ("dinov2-base"); a local folder's name is arbitrary, so the version then comes from the
    model's size (None here; see ``pipeline.models.specs.embedding_version``)."""
    return spec.name if spec.local_dir is None else None
