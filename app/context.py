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


_LOCK_GUARD = threading.Lock()


def ensure_lock(segmenter: Any) -> threading.RLock:
    """The segmenter's ``lock`` (an RLock), attached first when it has none.

    ``pipeline.autolabel.AutoLabeler`` holds ``segmenter.lock`` when present, so attaching one
    to a shared GrabCut makes auto-labeling and refine clicks exclude each other too.
    """
    with _LOCK_GUARD:
        lock = getattr(segmenter, "lock", None)
        if lock is None:
            lock = threading.RLock()
            segmenter.lock = lock
        return lock


@dataclass
class AppContext:
    """Everything a tab handler needs.

    Attributes:
        registry: the ``registry.facade.Registry``.
        data_dir: the data folder (thumbnails go to ``<data>/thumbs``, exports to ``<data>/exports``).
        labeler_provider: returns an object with ``.label(image, classes, *, confidence, synonyms, image_key)``
            -> ``Detections``; raises WeightsMissingError without detector weights.
        segmenter_provider: ``name -> Segmenter`` for "grabcut" / "sam2".
        embedder_provider: returns an object with ``.embed(image, xyxy, masks=None) -> (N, D)``
            float32 L2-normalised, or None when there is no embedder at all.
        segmenter_names: the segmenters offered in the UI, first = default.
        detection_model: name stored with auto-labelled objects.
        auth_enabled: True when the server runs with --auth (user name = validated_by).
        status_provider: optional ``() -> dict`` describing loaded models (shown in Stats).
        unload_provider: optional ``(role or None) -> None`` freeing a model's memory (the
            ModelManager's ``unload``; the REST API's ``/models/unload``).
        video_propagator_provider: optional ``() -> Sam2VideoPropagator`` (the ModelManager's
            ``video_propagator``); ``app.workflows.propagate`` falls back to GrabCut without it.
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
    unload_provider: Callable[[str | None], None] | None = None
    video_propagator_provider: Callable[[], Any] | None = None

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
    def segment(self, name: str | None, image: np.ndarray, image_key: str | None) -> Iterator[Any]:
        """Holds the segmenter for one prediction, with ``image`` set on it.

        The segmenter's own ``lock`` (Sam2Segmenter has one; one is attached to segmenters
        without, see :func:`ensure_lock`) is held from ``set_image`` to the last prediction, so
        another session or the auto-labeler can never swap the image in between. The image is
        set on every call: SAM2 keys its embedding LRU by ``image_key`` (a cache hit is cheap),
        GrabCut only keeps a reference.

        Args:
            name: "grabcut" / "sam2" (None = default).
            image: (H, W, 3) uint8 RGB.
            image_key: the image file's sha256 (the registry's ``content_hash``): the one key
                every path (auto-label, manual boxes, Refine) caches SAM2 embeddings under;
                None for pixels with no file (a search query): SAM2 then hashes the pixels.
        """
        from pipeline.autolabel import set_image

        seg = self.segmenter(name)
        with ensure_lock(seg):
            set_image(seg, image, image_key)
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
        status = manager.status()
        names = ["grabcut"]
        if status.get("segmenter", {}).get("weights_present"):
            names.append("sam2")
        else:
            log.info("SAM2 weights not found; Refine and manual boxes use GrabCut")
        ensure_lock(manager.segmenter("grabcut"))  # shared by the labeler and Refine
        embed = bool(status.get("embedder", {}).get("weights_present"))
        label_seg = "sam2" if "sam2" in names else "grabcut"

        def labeler() -> Any:
            return manager.labeler(label_seg, embed=embed)

        default_segmenter = default_segmenter.lower()
        if default_segmenter in names:
            names.remove(default_segmenter)
            names.insert(0, default_segmenter)
        det = status.get("detector", {}).get("name")
        return cls(
            registry=registry,
            data_dir=data_dir,
            labeler_provider=labeler,
            segmenter_provider=manager.segmenter,
            embedder_provider=manager.embedder,
            segmenter_names=names,
            detection_model=det if isinstance(det, str) else None,
            auth_enabled=auth_enabled,
            status_provider=getattr(manager, "status", None),
            unload_provider=getattr(manager, "unload", None),
            video_propagator_provider=getattr(manager, "video_propagator", None),
        )
