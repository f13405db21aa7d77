"""MOTChallenge ground truth: ``<seq>/gt/gt.txt`` and ``<seq>/seqinfo.ini`` (pure writers + a reader).

``gt.txt`` holds one line per tracked object, sorted by frame then id::

    frame,id,x,y,w,h,conf,class,visibility

* ``frame``: 1-based, = the video's original 0-based frame index + 1;
* ``id``: 1-based integer track id;
* ``x, y, w, h``: the box's top-left corner and size in absolute pixels (x = column, y = row)
  in MOTChallenge's 1-based (MATLAB) pixel convention: ``x = bbox_x + 1``, ``y = bbox_y + 1``
  for the registry's 0-based ``bbox_xywh`` (motmetrics' ``loadtxt`` subtracts the 1 again;
  :func:`read_gt` does too);
* ``conf``: 1 (MOTChallenge's "consider this entry" flag for ground truth);
* ``class``: 1-based class number (the names are listed by the exporter's manifest);
* ``visibility``: 1.0, or 0.5 for an object a person flagged as occluded.

``seqinfo.ini`` is the ``[Sequence]`` section TrackEval and motmetrics' tools read: ``name``,
``frameRate``, ``seqLength`` (the video's frame count), ``imWidth``, ``imHeight``, ``imExt``.
"""
from __future__ import annotations

import configparser
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MotBox", "gt_lines", "seqinfo_text", "write_sequence", "read_gt", "read_seqinfo"]


@dataclass(frozen=True)
class MotBox:
    """One object of a track: ``frame_idx`` 0-based, ``bbox_xywh`` absolute pixels."""

    frame_idx: int
    track_number: int
    bbox_xywh: Sequence[float]
    class_number: int
    occluded: bool = False


def _num(v: float) -> str:
    """A coordinate without float noise (``12`` not ``12.000000001``; up to 3 decimals)."""
    s = f"{float(v):.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def gt_lines(boxes: Iterable[MotBox]) -> list[str]:
    """``gt.txt`` lines (no newline), sorted by frame then track id; ValueError on bad values."""
    out = []
    for b in sorted(boxes, key=lambda b: (b.frame_idx, b.track_number)):
        if b.frame_idx < 0 or b.track_number < 1 or b.class_number < 1:
            raise ValueError(f"MOT line: expected frame_idx >= 0, track and class numbers >= 1, got {b}")
        x, y, w, h = b.bbox_xywh
        out.append(f"{b.frame_idx + 1},{b.track_number},{_num(x + 1)},{_num(y + 1)},{_num(w)},{_num(h)},1,"
                   f"{b.class_number},{0.5 if b.occluded else 1.0}")
    return out


def seqinfo_text(name: str, *, frame_rate: float, seq_length: int, width: int, height: int, im_ext: str = ".png") -> str:
    """The ``seqinfo.ini`` text of a sequence."""
    rate = int(frame_rate) if float(frame_rate).is_integer() else round(float(frame_rate), 3)
    return (f"[Sequence]\nname={name}\nframeRate={rate}\nseqLength={int(seq_length)}\n"
            f"imWidth={int(width)}\nimHeight={int(height)}\nimExt={im_ext}\n")


def write_sequence(root: Path, name: str, boxes: Iterable[MotBox], *, frame_rate: float, seq_length: int,
                   width: int, height: int, im_ext: str = ".png") -> Path:
    """Writes ``root/name/gt/gt.txt`` and ``root/name/seqinfo.ini``; returns ``root/name``."""
    seq = Path(root) / name
    (seq / "gt").mkdir(parents=True, exist_ok=True)
    lines = gt_lines(boxes)
    (seq / "gt" / "gt.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (seq / "seqinfo.ini").write_text(seqinfo_text(name, frame_rate=frame_rate, seq_length=seq_length, width=width,
                                                  height=height, im_ext=im_ext), encoding="utf-8")
    return seq


def read_seqinfo(path: Path) -> dict:
    """The ``[Sequence]`` section of a ``seqinfo.ini`` as a dict of strings."""
    cp = configparser.ConfigParser()
    cp.optionxform = str  # keep camelCase keys
    cp.read(path, encoding="utf-8")
    return dict(cp["Sequence"])


def read_gt(path: Path) -> list[tuple[int, int, float, float, float, float, float, int, float]]:
    """``gt.txt`` rows as tuples (frame, id, x, y, w, h, conf, class, visibility), with the
    file's values except ``x, y``: back in 0-based pixels (the file's minus 1)."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.strip().split(",")
        if len(parts) < 9:
            raise ValueError(f"{path} line {n}: expected 9 comma-separated values, got {len(parts)}")
        f, i, x, y, w, h, c, k, v = parts[:9]
        rows.append((int(f), int(i), float(x) - 1, float(y) - 1, float(w), float(h), float(c), int(float(k)), float(v)))
    return rows
