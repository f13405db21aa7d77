"""Deterministic test doubles for the UI tests: a detector that finds coloured shapes, a
colour-histogram embedder, and a context factory wiring them to the real registry + GrabCut.

They stand in for Florence-2 / DINOv2 (no weights here) and are never the only test of the real
model paths (those live in tests/pipeline). Images are (H, W, 3) uint8 RGB; boxes xyxy absolute
pixels; masks (N, H, W) bool.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.types import Detections

HUES = {"red": 0, "green": 60, "blue": 120}  # OpenCV hue (0..180) of the shapes we draw


def make_scene(seed: int = 0, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A light-grey image with a red disc, a green square and a blue triangle (positions vary by seed)."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.full((h, w, 3), 225, np.uint8)
    img += rng.integers(0, 12, size=img.shape, dtype=np.uint8)  # texture so JPEG/GrabCut see real pixels
    cx, cy = int(w * 0.25 + rng.integers(-10, 10)), int(h * 0.35 + rng.integers(-10, 10))
    cv2.circle(img, (cx, cy), int(min(h, w) * 0.15), (220, 30, 30), -1)
    x0, y0 = int(w * 0.55 + rng.integers(-10, 10)), int(h * 0.15 + rng.integers(-5, 5))
    s = int(min(h, w) * 0.28)
    cv2.rectangle(img, (x0, y0), (x0 + s, y0 + s), (30, 180, 40), -1)
    tri = np.array([[w * 0.2, h * 0.92], [w * 0.45, h * 0.6], [w * 0.6, h * 0.92]], np.int32)
    cv2.fillPoly(img, [tri], (40, 60, 210))
    return img


def write_scene(path: Path, seed: int = 0, size: tuple[int, int] = (240, 320)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = make_scene(seed, size)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def colour_components(image: np.ndarray, min_area: int = 80) -> list[tuple[str, np.ndarray, tuple[float, float, float, float]]]:
    """Saturated connected components -> [(colour name, mask (H, W) bool, xyxy)], largest first."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1] > 90
    n, lab, stats, _ = cv2.connectedComponentsWithStats(sat.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < min_area:
            continue
        m = lab == i
        hue = float(np.median(hsv[..., 0][m]))
        name = min(HUES, key=lambda k: min(abs(hue - HUES[k]), 180 - abs(hue - HUES[k])))
        out.append((name, m, (float(x), float(y), float(x + w), float(y + h))))
    out.sort(key=lambda t: -int(t[1].sum()))
    return out


class FakeLabeler:
    """A labeler test double: finds saturated coloured shapes, names them after the requested
    classes (a class named like the colour, e.g. "red", wins; otherwise classes are assigned in
    order), and segments each box with the given (real) segmenter.

    Confidence is deterministic: 0.95 for the largest shape, then 0.6, 0.35, 0.2, …
    """

    CONFS = (0.95, 0.6, 0.35, 0.2, 0.1)

    def __init__(self, segmenter=None, embedder=None) -> None:
        self.segmenter = segmenter
        self.embedder = embedder
        self.calls = 0

    def label(self, image, classes, *, confidence=0.3, synonyms=None, image_key=None) -> Detections:
        self.calls += 1
        classes = list(classes)
        comps = colour_components(image)
        xyxy, conf, cid, masks = [], [], [], []
        for i, (colour, m, box) in enumerate(comps):
            c = self.CONFS[min(i, len(self.CONFS) - 1)]
            if c < confidence:
                continue
            name = next((k for k in classes if k.lower() == colour), classes[i % len(classes)])
            xyxy.append(box)
            conf.append(c)
            cid.append(classes.index(name))
            masks.append(m)
        h, w = image.shape[:2]
        if not xyxy:
            return Detections.empty(classes, (h, w))
        boxes = np.asarray(xyxy, np.float32)
        if self.segmenter is not None:
            self.segmenter.set_image(np.ascontiguousarray(image))
            mk, _ = self.segmenter.predict_boxes(boxes)
            mk = np.asarray(mk, bool)
        else:
            mk = np.stack(masks)
        data = {}
        if self.embedder is not None:
            data["embedding"] = self.embedder.embed(image, boxes, mk)
        return Detections(boxes, np.asarray(conf, np.float32), np.asarray(cid), classes, mk, data)


class HistogramEmbedder:
    """A deterministic embedder: per-channel 16-bin colour histogram of the (masked) crop,
    L2-normalised, (N, 48) float32. Same colour, same vector."""

    dim = 48
    version = "fake-hist"

    def embed(self, image, xyxy, masks=None) -> np.ndarray:
        image = np.asarray(image)
        out = []
        for i, box in enumerate(np.asarray(xyxy, np.float32).reshape(-1, 4)):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = max(x0 + 1, min(image.shape[1], x1)), max(y0 + 1, min(image.shape[0], y1))
            crop = image[y0:y1, x0:x1].reshape(-1, 3)
            if masks is not None:
                m = np.asarray(masks[i], bool)[y0:y1, x0:x1].reshape(-1)
                if m.any():
                    crop = crop[m]
            v = np.concatenate([np.histogram(crop[:, c], bins=16, range=(0, 256))[0] for c in range(3)]).astype(np.float32)
            v /= np.linalg.norm(v) + 1e-9
            out.append(v)
        return np.asarray(out, np.float32).reshape(-1, self.dim)


def make_context(data_dir: Path, *, with_labeler: bool = True, with_embedder: bool = True, auth_enabled: bool = False):
    """An AppContext on a real registry (exact index, 48-d) with GrabCut and the test doubles.

    ``with_labeler=False`` makes the labeler provider raise WeightsMissingError, like a fresh
    install without detector weights.
    """
    from app.context import AppContext
    from pipeline.models.loader import WeightsMissingError
    from pipeline.segment.grabcut import GrabCutSegmenter
    from registry.facade import Registry

    reg = Registry(data_dir, embedding_dim=HistogramEmbedder.dim, embedding_version=HistogramEmbedder.version,
                   index="exact")
    segs = {"grabcut": GrabCutSegmenter()}
    embedder = HistogramEmbedder()
    labeler = FakeLabeler(GrabCutSegmenter(), embedder if with_embedder else None)

    def labeler_provider():
        if not with_labeler:
            raise WeightsMissingError("Florence-2 weights not found: run `python launch.py models download`")
        return labeler

    def embedder_provider():
        if not with_embedder:
            raise WeightsMissingError("DINOv2 weights not found: run `python launch.py models download`")
        return embedder

    return AppContext(registry=reg, data_dir=data_dir, labeler_provider=labeler_provider,
                      segmenter_provider=segs.__getitem__, embedder_provider=embedder_provider,
                      segmenter_names=["grabcut"], detection_model="fake-detector", auth_enabled=auth_enabled)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_test_app(ctx, *, auth: tuple[str, str] | None = None, throttle: dict | None = None,
                    proxies: list[str] | None = None):
    """Starts the real web server (``app.server``: FastAPI + mounted Gradio, login throttle,
    served-path policy) for ``ctx`` on 127.0.0.1 on a free port in a background thread.

    Returns:
        (server, url): ``server.close()`` stops it (``server.demo`` is the Gradio Blocks).
    """
    from app.server import create_web_app, start_in_thread

    app, demo = create_web_app(ctx, auth=auth, throttle=throttle)
    server = start_in_thread(app, demo, host="127.0.0.1", port=free_port(), proxies=proxies)
    return server, server.url
