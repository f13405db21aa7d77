"""What the UI needs from the rest of the application, gathered in one object.

``AppContext`` holds the registry, the data folder and *providers* (callables) for the labeler,
the segmenters and the embedder. The real app builds providers from ``ModelManager`` (lazy,
thread-safe model loading); tests inject deterministic test doubles. Providers raise
``WeightsMissingError`` (a RuntimeError) when weights are absent; the UI then says so and
offers what works without weights (manual boxes + GrabCut, search from stored embeddings).

Segmenters are predictor-shaped and hold per-image state (``set_image``), and ONE instance is
shared by every browser session. ``AppContext.segment`` therefore runs each prediction under a
per-segmenter lock and re-sets the image whenever the content hash differs from the image the
predictor holds, so one user's click never runs on another user's image.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

log = logging.getLogger(__name__)

SEGMENTER_LABELS = {"grabcut": "GrabCut (no weights)", "sam2": "SAM2"}


def is_weights_missing(exc: BaseException) -> bool:
    """True for ``pipeline.models.loader.WeightsMissingError`` (matched by name in the MRO so
    the UI never has to import the model stack just to recognise it)."""
    return any(cls.__name__ == "WeightsMissingError" for cls in type(exc).__mro__)


@dataclass
class AppContext:
    """Everything a tab handler needs.

    Attributes:
        registry: the ``registry.facade.Registry``.
        data_dir: the data folder (thumbnails go to ``<data>/thumbs``, exports to ``<data>/exports``).
        labeler_provider: returns an object with ``.label(image, classes, *, confidence, synonyms)``
            -> ``Detections``; raises WeightsMissingError without detector weights.
        segmenter_provider: ``name -> Segmenter`` for "grabcut" / "sam2".
        embedder_provider: returns an object with ``.embed(image, xyxy, masks=None) -> (N, D)``
            float32 L2-normalised, or None when there is no embedder at all.
        segmenter_names: the segmenters offered in the UI, first = default.
        detection_model: name stored with auto-labelled objects.
        auth_enabled: True when the server runs with --auth (user name = validated_by).
        status_provider: optional ``() -> dict`` describing loaded models (shown in Stats).
    """

    registry: Any
    data_dir: Path
    labeler_provider: Callable[[], Any]
    segmenter_provider: Callable[[str], Any]
    embedder_provider: Callable[[], Any] | None = None
    segmenter_names: list[str] = field(default_factory=lambda: ["grabcut"])
    detection_model: str | None = None
    auth_enabled: bool = False
    status_provider: Callable[[], dict] | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _image_keys: dict[str, str] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    # -- models -------------------------------------------------------------------------
    def labeler(self) -> Any:
        return self.labeler_provider()

    def embedder(self) -> Any:
        """The embedder; raises RuntimeError (WeightsMissingError) when none is available."""
        if self.embedder_provider is None:
            raise RuntimeError("no image embedder is configured: search from an existing object id instead")
        return self.embedder_provider()

    def segmenter(self, name: str | None = None) -> Any:
        name = (name or self.segmenter_names[0]).lower()
        if name not in self.segmenter_names:
            raise ValueError(f"segmenter: expected one of {self.segmenter_names}, got {name!r}")
        return self.segmenter_provider(name)

    @contextmanager
    def segment(self, name: str | None, image: np.ndarray, image_key: str) -> Iterator[Any]:
        """Holds the segmenter for one prediction, with ``image`` set on it.

        Args:
            name: "grabcut" / "sam2" (None = default).
            image: (H, W, 3) uint8 RGB.
            image_key: the image's content hash (sha256); set_image runs only when it changed.
        """
        name = (name or self.segmenter_names[0]).lower()
        seg = self.segmenter(name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if self._image_keys.get(name) != image_key or not getattr(seg, "is_image_set", False):
                seg.set_image(image)
                self._image_keys[name] = image_key
            yield seg

    def model_status(self) -> dict:
        if self.status_provider is None:
            return {}
        try:
            return dict(self.status_provider())
        except Exception as exc:  # status is informative only; never break the Stats tab
            log.warning("model status failed: %s", exc)
            return {"error": str(exc)}

    # -- users --------------------------------------------------------------------------
    def user_name(self, request: gr.Request | None, typed: str | None = None) -> str | None:
        """validated_by: the logged-in user when --auth is on, else the reviewer-name field."""
        if self.auth_enabled and request is not None and getattr(request, "username", None):
            return str(request.username)
        typed = (typed or "").strip()
        return typed or None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_manager(cls, registry: Any, data_dir: Path, manager: Any, *, auth_enabled: bool = False,
                     default_segmenter: str = "grabcut") -> AppContext:
        """The production context: models come lazily from a ``ModelManager``.

        SAM2 is offered only when its weights resolve; GrabCut is always offered.
        """
        names = ["grabcut"]
        try:
            manager.segmenter("sam2")
            names.append("sam2")
        except Exception as exc:
            log.info("SAM2 not available (%s); refine uses GrabCut", str(exc).splitlines()[0] if str(exc) else exc)
        default_segmenter = default_segmenter.lower()
        if default_segmenter in names:
            names.remove(default_segmenter)
            names.insert(0, default_segmenter)
        det = getattr(manager, "detector_name", None)
        return cls(
            registry=registry,
            data_dir=data_dir,
            labeler_provider=manager.labeler,
            segmenter_provider=manager.segmenter,
            embedder_provider=manager.embedder,
            segmenter_names=names,
            detection_model=det if isinstance(det, str) else None,
            auth_enabled=auth_enabled,
            status_provider=getattr(manager, "status", None),
        )
