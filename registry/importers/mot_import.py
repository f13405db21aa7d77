"""Import MOTChallenge text files (``gt.txt``, ``det.txt``) onto a video source's frames.

Each line is ``frame,id,x,y,w,h[,conf[,class[,visibility]]]`` (extra columns are ignored):

* ``frame``: 1-based, = the registered frame's original 0-based ``frame_idx`` + 1;
* ``id``: ``-1`` for an untracked detection; ids >= 0 become tracks (one per id, linked in
  frame order; ``metadata.created_by = "import"``, ``metadata.mot_id``);
* ``x, y, w, h``: the box's top-left corner and size in absolute pixels, in MOTChallenge's
  1-based pixel convention (as motmetrics reads it and :mod:`registry.formats.mot` writes it):
  the registry's 0-based ``bbox_x`` is ``x - 1``. A box reaching outside the frame is clipped
  and flagged ``is_truncated``; one with no area inside is a bad line;
* ``conf``: stored as the object's confidence when in [0, 1] (ground truth's 1/0 flag, a
  detector's probability); any other score only in ``metadata.mot.conf``;
* ``class``: a positive integer (the 8th column of ``gt.txt``; ``det.txt`` has -1 there) names
  the category unless ``category`` is given: through ``class_names``, else the ``manifest.json``
  of an AgenticLabeling MOT export next to the sequence, else MOTChallenge's own class list
  (1 pedestrian, 2 person on vehicle, 3 car, …); without a class column the category is
  ``category`` or ``"object"``;
* ``visibility``: kept in ``metadata.mot``; <= 0.5 sets ``is_occluded``.

Bad lines are reported by line number and skipped; a frame number with no registered frame is
reported once (with its line count). Objects are written one transaction per ``batch_size``
frames, in frame order, with their track links and a progress record in the source's
metadata (``mot_imports``, keyed by the file's sha256 and the category settings). A run that
was killed resumes after the last committed frame; a completed import of the same file with
the same settings imports nothing again. The registry's IoU dedupe is off here: two tracked
people may overlap heavily on one frame.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.categories import check_category_name
from registry.frames import frame_ids_by_index
from registry.ids import utc_now
from registry.importers.common import ImportReport
from registry.records import ObjectIn

__all__ = ["MOT_CLASSES", "MotImportReport", "MotLine", "import_mot", "parse_mot_line"]

#: MOTChallenge's class numbers (MOT16/17 ground truth; 13 from MOT20).
MOT_CLASSES = {
    1: "pedestrian", 2: "person on vehicle", 3: "car", 4: "bicycle", 5: "motorbike",
    6: "non motorized vehicle", 7: "static person", 8: "distractor", 9: "occluder",
    10: "occluder on the ground", 11: "occluder full", 12: "reflection", 13: "crowd",
}
#: Source metadata key of the import records.
RECORD_KEY = "mot_imports"
#: A box this far (pixels) outside the frame is clipped without being flagged truncated.
_TOLERANCE_PX = 1.0
DETECTION_MODEL = "mot-import"


@dataclass(frozen=True)
class MotLine:
    """One parsed line; the box is 0-based ``xywh`` absolute pixels (the file's x, y minus 1)."""

    line_no: int
    frame: int
    mot_id: int
    box_xywh: tuple[float, float, float, float]
    conf: float | None
    cls: int | None
    visibility: float | None


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what}: expected a number, got {text.strip()!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what}: expected a finite number, got {text.strip()!r}")
    return v


def _integer(text: str, what: str) -> int:
    v = _number(text, what)
    if v != int(v):
        raise ValueError(f"{what}: expected an integer, got {text.strip()!r}")
    return int(v)


def parse_mot_line(line: str, line_no: int) -> MotLine | None:
    """A line as :class:`MotLine` (None for a blank line).

    Raises:
        ValueError: fewer than 6 values, non-numbers, a frame < 1, an id < -1, a width or
            height <= 0 (the message names the column, the value and what was expected).
    """
    text = line.strip()
    if not text:
        return None
    parts = [p for p in (text.split(",") if "," in text else text.split())]
    if len(parts) < 6:
        raise ValueError(f"expected at least 6 comma-separated values (frame,id,x,y,w,h), got {len(parts)}")
    frame = _integer(parts[0], "frame")
    if frame < 1:
        raise ValueError(f"frame: expected a 1-based frame number >= 1, got {frame}")
    mot_id = _integer(parts[1], "id")
    if mot_id < -1:
        raise ValueError(f"id: expected -1 (untracked) or an id >= 0, got {mot_id}")
    x, y, w, h = (_number(parts[k], name) for k, name in zip(range(2, 6), ("x", "y", "w", "h"), strict=True))
    if w <= 0 or h <= 0:
        raise ValueError(f"expected a box with w > 0 and h > 0, got w={w:g}, h={h:g}")
    conf = _number(parts[6], "conf") if len(parts) > 6 else None
    cls = None
    if len(parts) > 7:
        c = _number(parts[7], "class")
        cls = int(c) if c >= 1 and c == int(c) else None  # det.txt: -1 (world x), no class
    vis = None
    if len(parts) > 8:
        v = _number(parts[8], "visibility")
        vis = v if 0.0 <= v <= 1.0 else None
    return MotLine(line_no, frame, mot_id, (x - 1.0, y - 1.0, w, h), conf, cls, vis)


@dataclass
class MotImportReport(ImportReport):
    """:class:`ImportReport` whose ``images_*`` count frames, plus the tracks created."""

    source_id: str = ""
    tracks_new: int = 0
    already_imported: bool = False

    def summary(self) -> str:
        if self.already_imported:
            return (f"mot import of {self.path}: already imported into {self.source_id} with these settings; "
                    "nothing to do")
        head = (f"mot import of {self.path} into {self.source_id}: {self.objects_imported} objects on "
                f"{self.images_registered} of {self.images_seen} frames, {self.tracks_new} new tracks, "
                f"{len(self.categories)} categories")
        return self.with_errors(head)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "source_id": self.source_id, "tracks_new": self.tracks_new,
                "already_imported": self.already_imported}


def _manifest_classes(path: Path) -> dict[int, str]:
    """Class names from an AgenticLabeling MOT export's ``manifest.json`` above ``gt/gt.txt``."""
    for folder in (path.parent.parent.parent, path.parent.parent, path.parent):
        m = folder / "manifest.json"
        if m.is_file():
            try:
                data = json.loads(m.read_text(encoding="utf-8"))
                if data.get("format") == "mot" and isinstance(data.get("classes"), dict):
                    return {int(k): str(v) for k, v in data["classes"].items()}
            except (ValueError, OSError, TypeError):
                return {}
    return {}


def _resolve_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / "gt" / "gt.txt", p / "det" / "det.txt", p / "gt.txt", p / "det.txt"):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"expected a MOT file or a sequence folder with gt/gt.txt, got {str(p)!r}")
    if not p.is_file():
        raise FileNotFoundError(f"expected a MOT text file (gt.txt / det.txt), got {str(p)!r} (no such file)")
    return p


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> tuple[tuple[float, ...], bool]:
    """(xyxy inside the frame, truncated?); ValueError when nothing of the box is inside."""
    x, y, w, h = box
    x0, y0, x1, y1 = x, y, x + w, y + h
    cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
    if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
        raise ValueError(f"box xywh {[round(v, 2) for v in box]} lies outside the {width}x{height} frame")
    truncated = (cx0 - x0 > _TOLERANCE_PX or cy0 - y0 > _TOLERANCE_PX or x1 - cx1 > _TOLERANCE_PX
                 or y1 - cy1 > _TOLERANCE_PX)
    return (cx0, cy0, cx1, cy1), truncated


def import_mot(
    reg: Any,
    source_id: str,
    path: str | Path,
    *,
    category: str | None = None,
    class_names: dict[int, str] | None = None,
    validated: bool = False,
    project: str | None = None,
    batch_size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> MotImportReport:
    """Imports a MOTChallenge file onto the frames of video source ``source_id``.

    Args:
        reg: the :class:`registry.facade.Registry`.
        source_id: a video source whose frames are registered (``launch.py video add``).
        path: ``gt.txt``/``det.txt``, or a sequence folder holding ``gt/gt.txt``.
        category: one category for every line (default: the class column, else "object").
        class_names: class number -> category name (see the module doc for the fallbacks).
        validated: mark the objects ``approved`` (by ``"import"``).
        project: project id stored with the objects.
        batch_size: frames per transaction.
        progress: called with the number of frames imported so far after each batch.

    Raises:
        ValueError: unknown or non-video source, a source without frames, a bad category
            name, batch_size < 1 (before anything is written).
        FileNotFoundError: no such file.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected >= 1 frames per transaction, got {batch_size}")
    src = reg.get_source(source_id)
    if src["source_type"] != "video":
        raise ValueError(f"expected a video source for a MOT import, got {source_id!r} of type {src['source_type']!r}")
    file = _resolve_file(path)
    if category is not None:
        category = check_category_name(category)
    frames = frame_ids_by_index(reg.connection, source_id)
    if not frames:
        raise ValueError(f"video source {source_id!r} has no frames; add them first with "
                         "launch.py video add --data DIR --every 1 FILE")
    raw = file.read_bytes()
    names = {**MOT_CLASSES, **_manifest_classes(file), **{int(k): str(v) for k, v in (class_names or {}).items()}}
    key = hashlib.sha256(raw + json.dumps([category, sorted(names.items())]).encode()).hexdigest()
    report = MotImportReport(format="mot", path=str(file), source_id=source_id)
    record = ((src.get("metadata") or {}).get(RECORD_KEY) or {}).get(key) or {}
    retry = {int(f) for f in record.get("missing_frames") or [] if int(f) - 1 in frames}
    if record.get("complete") and not retry:
        report.already_imported = True
        return report

    by_frame: dict[int, list[MotLine]] = defaultdict(list)
    for n, text in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            row = parse_mot_line(text, n)
        except ValueError as exc:
            report.error(f"line {n}", str(exc))
            continue
        if row is not None:
            report.annotations_seen += 1
            by_frame[row.frame].append(row)
    report.images_seen = len(by_frame)
    missing = sorted(f for f in by_frame if f - 1 not in frames)
    for frame in missing:
        lines = by_frame.pop(frame)
        report.error(f"frame {frame}", f"no registered frame with frame_idx {frame - 1} in {source_id} "
                     f"({len(lines)} line(s) skipped, first at line {lines[0].line_no}); "
                     "add it with launch.py video add (e.g. --every 1)")
    done_through = int(record.get("done_through_frame") or 0)
    tracks: dict[str, str] = dict(record.get("tracks") or {})
    todo = sorted(f for f in by_frame if f > done_through or f in retry)
    width, height = int(src["width"]), int(src["height"])
    seen_categories: dict[str, None] = {}
    for start in range(0, len(todo), int(batch_size)):
        batch = todo[start:start + int(batch_size)]
        links: dict[str, list[tuple[str, MotLine]]] = defaultdict(list)
        with reg.transaction():
            for frame in batch:
                _import_frame(reg, src, frame, by_frame[frame], frames[frame - 1], width, height, category, names,
                              validated, project, links, report, seen_categories)
            _link_tracks(reg, links, tracks, report)
            report.images_registered += len(batch)
            _save_record(reg, source_id, key, file.name, max(done_through, batch[-1]), tracks, missing,
                         complete=False)
        if progress:
            progress(report.images_registered)
    _save_record(reg, source_id, key, file.name, max(by_frame, default=0), tracks, missing, complete=True)
    report.categories = list(seen_categories)
    return report


def _import_frame(reg, src, frame, lines, frame_id, width, height, category, names, validated, project,
                  links, report, seen_categories) -> None:
    """Registers one frame's lines (inside the batch transaction); the tracked ones are queued
    in ``links`` (MOT id -> [(object id, line)]) for :func:`_link_tracks`."""
    objs: list[ObjectIn] = []
    rows: list[MotLine] = []
    ids_here: set[int] = set()
    for row in lines:
        if row.mot_id >= 0 and row.mot_id in ids_here:
            report.error(f"line {row.line_no}", f"id {row.mot_id} appears twice on frame {frame}; a track "
                         "holds one object per frame (the first line is kept)")
            continue
        try:
            xyxy, truncated = _clip(row.box_xywh, width, height)
        except ValueError as exc:
            report.error(f"line {row.line_no}", str(exc))
            continue
        name = category or (names.get(row.cls, f"class {row.cls}") if row.cls is not None else "object")
        meta = {"mot": {"id": row.mot_id, "line": row.line_no, "conf": row.conf, "class": row.cls,
                        "visibility": row.visibility}}
        conf = row.conf if row.conf is not None and 0.0 <= row.conf <= 1.0 else None
        objs.append(ObjectIn(
            category=name, xyxy=xyxy, confidence=conf, frame_id=frame_id, detection_model=DETECTION_MODEL,
            is_occluded=row.visibility is not None and row.visibility <= 0.5, is_truncated=truncated,
            validation_status="approved" if validated else "pending", validated_by="import" if validated else None,
            metadata=meta,
        ))
        rows.append(row)
        if row.mot_id >= 0:
            ids_here.add(row.mot_id)
    if not objs:
        return
    try:
        result = reg.register_objects(src["source_id"], objs, project=project, dedupe=False)
    except ValueError as exc:  # validated before writing: nothing of this frame was written
        report.error(f"frame {frame}", f"objects rejected by the registry: {exc}")
        return
    for obj in objs:
        seen_categories.setdefault(obj.category)
    report.objects_imported += len(result.registered)
    for row, oid in zip(rows, result.object_ids, strict=True):
        if oid is not None and row.mot_id >= 0:
            links[str(row.mot_id)].append((oid, row))


def _link_tracks(reg, links: dict[str, list[tuple[str, MotLine]]], tracks: dict[str, str], report) -> None:
    """Links a batch's objects into their MOT ids' tracks: one call per track and batch (the
    schema's per-row summary trigger makes frame-by-frame appends O(n²) in a track's length).
    When a track refuses the batch (nothing is written then), its objects are linked one by
    one, so the refused line is named and the others are linked."""

    def add(key: str, oids: list[str], mot_id: int) -> None:
        if key not in tracks:
            tracks[key] = reg.create_track(oids[:1], metadata={"created_by": "import", "mot_id": mot_id,
                                                                "imported_at": utc_now()})
            report.tracks_new += 1
            oids = oids[1:]
        if oids:
            reg.add_objects_to_track(tracks[key], oids)

    for key, items in links.items():
        try:
            add(key, [oid for oid, _ in items], items[0][1].mot_id)
            continue
        except ValueError:  # validated before writing: link one by one to name the line
            pass
        for oid, row in items:
            try:
                add(key, [oid], row.mot_id)
            except ValueError as exc:  # e.g. the id changes class midway: the object stays untracked
                report.error(f"line {row.line_no}", f"not linked into the track of id {row.mot_id}: {exc}")


def _save_record(reg, source_id: str, key: str, file_name: str, done_through: int, tracks: dict[str, str],
                 missing: list[int], *, complete: bool) -> None:
    """The resume record: frames done (in order), MOT id -> track id, frames that had no frame row."""
    meta = reg.get_source(source_id).get("metadata") or {}
    records = dict(meta.get(RECORD_KEY) or {})
    records[key] = {"file": file_name, "done_through_frame": int(done_through), "tracks": tracks,
                    "missing_frames": list(missing), "complete": complete, "at": utc_now()}
    reg.update_source_metadata(source_id, {RECORD_KEY: records})
