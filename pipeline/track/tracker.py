"""Multi-object tracking by detection: link per-frame detections into tracks.

Per processed frame: predict every live track's box (constant velocity in xyxy per frame
index), build the cost of :func:`pipeline.track.association.association_cost` between tracks
and detections, forbid pairs that fail the gates (different category; too little IoU with the
predicted box — or, for a lost track, less than half the detection inside its search region,
:func:`search_regions`, which grows with every missed frame —; too low appearance cosine),
solve with the Hungarian method, update matched tracks, start a track for every unmatched
detection (birth), and end tracks unmatched for more than ``max_gap`` processed frames
(death). Tracks shorter than ``min_length`` detections are dropped at the end.

Conventions: boxes are ``xyxy`` float, absolute pixels of the frame (x = column, y = row);
frames are the video's original 0-based frame indices (velocity is per frame index, so
sparsely sampled videos predict correctly); embeddings are (N, D) floats, a NaN row = none.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.track.association import (
    association_cost,
    inside_fraction,
    normalize_rows,
    solve_assignment,
)


@dataclass
class TrackerConfig:
    """The tracker's parameters.

    Attributes:
        iou_weight: ``w`` in the cost ``w·(1 − IoU) + (1 − w)·(1 − cos)``; 1 = boxes only
            (embeddings then neither cost nor gate).
        max_gap: the most consecutive processed frames a track may go undetected and still
            continue (the lost-track buffer).
        min_length: tracks with fewer detections are dropped (their detections stay unlinked).
        min_iou: gate: least IoU between a detection and the track's predicted box (a lost
            track also accepts a detection at least half inside its search region).
        min_cosine: gate: least appearance cosine, where both sides have embeddings.
        gap_growth: how much a lost track's search region grows per missed frame, as a share
            of its box size (0.25 = a quarter of the width and height per frame, half per side).
        velocity_smoothing: weight of the old velocity in its running average (0 = last step only).
        appearance_smoothing: weight of the old appearance in the track's running embedding.
    """

    iou_weight: float = 0.5
    max_gap: int = 10
    min_length: int = 2
    min_iou: float = 0.1
    min_cosine: float = 0.5
    gap_growth: float = 0.25
    velocity_smoothing: float = 0.5
    appearance_smoothing: float = 0.7

    def __post_init__(self) -> None:
        for name in ("iou_weight", "min_iou", "velocity_smoothing", "appearance_smoothing"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {v}")
        if not -1.0 <= float(self.min_cosine) <= 1.0:
            raise ValueError(f"min_cosine: expected a value in [-1, 1], got {self.min_cosine}")
        if int(self.max_gap) < 0 or int(self.max_gap) != self.max_gap:
            raise ValueError(f"max_gap: expected a whole number of frames >= 0, got {self.max_gap}")
        if int(self.min_length) < 1 or int(self.min_length) != self.min_length:
            raise ValueError(f"min_length: expected a whole number >= 1, got {self.min_length}")
        if float(self.gap_growth) < 0:
            raise ValueError(f"gap_growth: expected a value >= 0, got {self.gap_growth}")

    def as_dict(self) -> dict:
        """The parameters as a plain dict (stored with the tracks it made)."""
        return asdict(self)


@dataclass
class FrameDetections:
    """The detections of one frame.

    Attributes:
        frame_idx: the frame's original 0-based index.
        xyxy: (N, 4) boxes, absolute pixels.
        class_ids: (N,) category keys (ints or strings); tracks never mix two.
        embeddings: (N, D) float or None; NaN rows = no embedding for that detection.
        keys: N opaque ids handed back in the tracks (e.g. registry object ids); default 0..N-1.
    """

    frame_idx: int
    xyxy: np.ndarray
    class_ids: Sequence[Hashable]
    embeddings: np.ndarray | None = None
    keys: Sequence[Hashable] | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(self.xyxy)
        self.class_ids = list(self.class_ids)
        self.keys = list(range(n)) if self.keys is None else list(self.keys)
        where = f"frame {self.frame_idx}"
        if len(self.class_ids) != n or len(self.keys) != n:
            raise ValueError(f"{where}: expected {n} class ids and keys (one per box), got "
                             f"{len(self.class_ids)} and {len(self.keys)}")
        if n and (not np.isfinite(self.xyxy).all() or (self.xyxy[:, 2:] < self.xyxy[:, :2]).any()):
            raise ValueError(f"{where}: expected finite xyxy boxes with x0 <= x1 and y0 <= y1, got {self.xyxy.tolist()}")
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float64)
            if self.embeddings.ndim != 2 or len(self.embeddings) != n:
                raise ValueError(f"{where}: expected embeddings of shape ({n}, D), got {self.embeddings.shape}")


@dataclass
class Track:
    """One tracked object: its detections in frame order.

    Attributes:
        track_id: 1-based, in order of first frame (then birth order).
        class_id: the category key shared by all its detections.
        frames: original frame indices of its detections, increasing.
        keys: the detections' keys, aligned with ``frames``.
        boxes: (n, 4) xyxy of the detections, aligned with ``frames``.
    """

    track_id: int
    class_id: Hashable
    frames: list[int] = field(default_factory=list)
    keys: list[Hashable] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


class _Live:
    """A track being built: its last box, velocity (px per frame index), appearance, misses."""

    def __init__(self, birth: int, class_id: Hashable, frame: int, box: np.ndarray, emb: np.ndarray | None) -> None:
        self.birth = birth
        self.class_id = class_id
        self.frames = [frame]
        self.keys: list[Hashable] = []
        self.boxes = [box]
        self.velocity = np.zeros(4)
        self.emb = emb
        self.missed = 0

    def predict(self, frame: int) -> np.ndarray:
        return self.boxes[-1] + self.velocity * (frame - self.frames[-1])

    def update(self, frame: int, box: np.ndarray, emb: np.ndarray | None, cfg: TrackerConfig) -> None:
        step = (box - self.boxes[-1]) / max(frame - self.frames[-1], 1)
        a = cfg.velocity_smoothing if len(self.frames) > 1 else 0.0
        self.velocity = a * self.velocity + (1 - a) * step
        if emb is not None:
            if self.emb is None:
                self.emb = emb
            else:
                mixed = cfg.appearance_smoothing * self.emb + (1 - cfg.appearance_smoothing) * emb
                norm = float(np.sqrt(mixed @ mixed))
                self.emb = mixed / norm if norm > 0 else mixed
        self.frames.append(frame)
        self.boxes.append(box)
        self.missed = 0


def search_regions(last: np.ndarray, pred: np.ndarray, missed: np.ndarray, growth: float) -> np.ndarray:
    """Where a lost track may reappear: the hull of its last seen box and its constant-velocity
    prediction (it may have stopped, slowed or turned back while hidden), grown on each side by
    ``growth · missed / 2`` of the last box's width and height. All boxes xyxy, (T, 4)."""
    size = np.clip(last[:, 2:] - last[:, :2], 1e-6, None)
    margin = size * (growth * np.asarray(missed, dtype=np.float64)[:, None] / 2)
    lo = np.minimum(last[:, :2], pred[:, :2]) - margin
    hi = np.maximum(last[:, 2:], pred[:, 2:]) + margin
    return np.concatenate([lo, hi], axis=1)


def _unit_embeddings(frame: FrameDetections) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
    """The frame's embeddings scaled to unit length, once: ``((N, D) with NaN rows, or None;
    per detection the unit vector or None)``."""
    n = len(frame.xyxy)
    if frame.embeddings is None:
        return None, [None] * n
    unit = normalize_rows(frame.embeddings)
    ok = ~np.isnan(unit).any(axis=1)
    return (unit if ok.any() else None), [unit[j] if ok[j] else None for j in range(n)]


def track(frames: Iterable[FrameDetections], config: TrackerConfig | None = None) -> list[Track]:
    """Links detections across frames into tracks (see the module docstring).

    Args:
        frames: every processed frame in increasing ``frame_idx`` order, including frames with
            no detections (they count towards a lost track's gap).
        config: the parameters (defaults of :class:`TrackerConfig` when None).

    Returns:
        Tracks with at least ``config.min_length`` detections, ``track_id`` 1.. in order of
        first frame; each detection is in at most one track.
    """
    cfg = config or TrackerConfig()
    live: list[_Live] = []
    done: list[_Live] = []
    births = 0
    last_frame: int | None = None
    for fr in frames:
        if last_frame is not None and fr.frame_idx <= last_frame:
            raise ValueError(f"expected frames in increasing frame_idx order, got {fr.frame_idx} after {last_frame}")
        last_frame = fr.frame_idx
        n = len(fr.xyxy)
        matched_dets: set[int] = set()
        d_emb, unit = _unit_embeddings(fr)
        if live and n:
            pred = np.stack([t.predict(fr.frame_idx) for t in live])
            use_emb = cfg.iou_weight < 1.0  # w = 1: boxes only, appearance neither costs nor gates
            t_emb = _stack([t.emb for t in live]) if use_emb else None
            cost, iou, cos = association_cost(pred, fr.xyxy, t_emb, d_emb if use_emb else None,
                                              iou_weight=cfg.iou_weight)
            missed = np.array([t.missed for t in live])
            search = search_regions(np.stack([t.boxes[-1] for t in live]), pred, missed, cfg.gap_growth)
            near = (iou >= cfg.min_iou) | ((missed > 0)[:, None] & (inside_fraction(fr.xyxy, search) >= 0.5))
            same = _keys([t.class_id for t in live])[:, None] == _keys(fr.class_ids)[None, :]
            allowed = same & near & (np.isnan(cos) | (cos >= cfg.min_cosine))
            for r, c in solve_assignment(cost, allowed):
                live[r].update(fr.frame_idx, fr.xyxy[c], unit[c], cfg)
                live[r].keys.append(fr.keys[c])
                matched_dets.add(c)
        still: list[_Live] = []
        for t in live:
            if t.frames[-1] != fr.frame_idx:
                t.missed += 1
            (done if t.missed > cfg.max_gap else still).append(t)
        live = still
        for j in range(n):
            if j not in matched_dets:
                t = _Live(births, fr.class_ids[j], fr.frame_idx, fr.xyxy[j].copy(), unit[j])
                t.keys.append(fr.keys[j])
                births += 1
                live.append(t)
    kept = [t for t in done + live if len(t.frames) >= cfg.min_length]
    kept.sort(key=lambda t: (t.frames[0], t.birth))
    return [Track(i + 1, t.class_id, list(t.frames), list(t.keys), np.stack(t.boxes)) for i, t in enumerate(kept)]


def _keys(values: Sequence[Hashable]) -> np.ndarray:
    """A 1-d object array of category keys (compared element by element, whatever their type)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _stack(vectors: list[np.ndarray | None]) -> np.ndarray | None:
    """(K, D) rows of the vectors, NaN rows for None; None when none has a vector."""
    dim = next((len(v) for v in vectors if v is not None), None)
    if dim is None:
        return None
    out = np.full((len(vectors), dim), np.nan)
    for i, v in enumerate(vectors):
        if v is not None:
            if len(v) != dim:
                raise ValueError(f"expected embeddings of one length, got {len(v)} and {dim}")
            out[i] = v
    return out
