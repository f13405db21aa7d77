"""Parse Florence-2 output into boxes, class ids and confidences (pure: numpy only, no torch).

Florence-2 writes boxes as text. For ``<CAPTION_TO_PHRASE_GROUNDING>``, ``<OD>`` and
``<OPEN_VOCABULARY_DETECTION>`` the decoder emits, per object, a phrase followed by four
location tokens, e.g. ``"</s><s>person<loc_52><loc_330><loc_931><loc_776>car<loc_...>x4</s>"``.
A phrase followed by 8, 12, ... location tokens grounds several boxes.

Coordinates:
    ``<loc_k>`` is bin ``k`` of a 1000-bin grid over the whole image (the processor resizes the
    image to 768x768 without keeping the aspect ratio, so x and y bins are independent). Bins are
    ``(x_min, y_min, x_max, y_max)``; a bin maps to pixels at its centre, as transformers'
    ``Florence2PostProcessor.dequantize`` does: ``x = (k + 0.5) * width / 1000``,
    ``y = (k + 0.5) * height / 1000``. All boxes returned here are xyxy, float32, absolute pixels
    of the ORIGINAL image, clipped to ``[0, width] x [0, height]``.

Confidence (Florence-2 has no score head, so it is derived from the decoder's probabilities):
    For each generated token the detector records ``p``, the softmax probability of the emitted
    token under the model's *raw* logits (before any decoding constraint such as
    no-repeat-ngram, so it reflects the model's belief, not the decoder's rules). For a location
    token the probability of the emitted bin is summed with its neighbours within
    ``loc_tolerance`` bins (default 3, i.e. +-0.3 % of the image side), because the 1000-bin grid
    splits one well-located corner over adjacent bins. Then, per box::

        loc_score   = (p_x_min * p_y_min * p_x_max * p_y_max) ** (1/4)   # geometric mean
        label_score = product of p over the phrase's text tokens         # joint probability
        confidence  = loc_score * label_score                            # in [0, 1]

    The geometric mean means one unsure corner lowers the score more than an arithmetic mean
    would, while staying on the same scale as one token's probability; the label term is the
    probability that the model names this object at all (the first token carries nearly all of
    the uncertainty; the rest of a multi-token name is ~1). Every box grounded by the same
    phrase shares its ``label_score``. Output parsed from text or from a
    ``post_process_generation`` dict carries no probabilities: its confidence is 1.0.

Labels are mapped back to the requested class names (see ``pipeline.detect.phrase_match``); phrases that match
no requested class are dropped, as are boxes that are degenerate after clipping.

Parity with transformers (``Florence2Processor.post_process_generation(text,
task="<CAPTION_TO_PHRASE_GROUNDING>", image_size=(width, height))``, tested on the same
generated text in ``tests/pipeline/test_parity_florence.py``): ``parse_text`` /
``parse_tokens`` give the same phrases, in the same order, with the same boxes, except, on
purpose:

1. pixels: transformers casts each dequantised coordinate to ``int`` (truncation, so up to one
   pixel towards the origin); here the bin centre ``(k + 0.5) * side / 1000`` stays a float,
   so ``int(ours) == theirs`` (up to float32 rounding of a value within ~1e-5 of an integer);
2. non-ASCII characters: transformers drops them from the phrase (``encode("ascii",
   "ignore")``, so ``"사람"`` becomes ``""`` and ``"café"`` ``"caf"``); they are kept here, so
   class names need not be English;
3. banned phrases (``"the image"``) are compared after ``normalize_phrase`` here (case and
   spacing do not matter), exactly in transformers;
4. a group of fewer than 4 location tokens (a malformed or cut-off output) is dropped and the
   next phrase starts clean; transformers' regex glues the group's tail to the next phrase
   (``"cat<loc_4><loc_4><loc_8>dog<loc_..>x4"`` gives the label ``"loc_8>dog"`` there, ``"dog"``
   here).

Everything after that (mapping phrases to classes, dropping repeated boxes, clipping, dropping
degenerate boxes) happens in ``boxes_to_detections``, a step transformers does not have.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.detect.phrase_match import LabelMatcher, normalize_phrase

LOC_BINS = 1000
TASK_GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"
TASK_OD = "<OD>"
TASK_OVD = "<OPEN_VOCABULARY_DETECTION>"
DETECTION_TASKS = (TASK_GROUNDING, TASK_OD, TASK_OVD)

_LOC = re.compile(r"<loc_(\d+)>")
# Pieces of raw text: location tokens, other markup tokens (<s>, </od>, <poly>...), or text.
_PIECE = re.compile(r"<loc_\d+>|</?[a-z_]+>|[^<]+|<")
# Tokens that end a sequence or mark structure; they carry no label text.
_MARKUP = re.compile(r"^</?[a-z_]+>$")


@dataclass(frozen=True)
class ParsedBox:
    """One box as generated, before mapping to classes.

    Attributes:
        label: the phrase the box belongs to, whitespace-stripped, as generated.
        bins: (x_min, y_min, x_max, y_max) bins of the 1000-bin grid.
        loc_probs: the 4 location tokens' probabilities (1.0 when unknown).
        label_prob: the joint probability of the phrase's text tokens (1.0 when unknown).
    """

    label: str
    bins: tuple[int, int, int, int]
    loc_probs: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    label_prob: float = 1.0

    @property
    def loc_score(self) -> float:
        """Geometric mean of the 4 location-token probabilities."""
        probs = [min(max(p, 0.0), 1.0) for p in self.loc_probs]
        if min(probs) <= 0.0:
            return 0.0
        return float(math.exp(sum(math.log(p) for p in probs) / 4))

    @property
    def confidence(self) -> float:
        """``loc_score * label_prob``, in [0, 1] (see the module docstring)."""
        return float(min(max(self.loc_score * self.label_prob, 0.0), 1.0))


def split_pieces(text: str) -> list[str]:
    """Split raw Florence-2 text into pieces: ``<loc_k>``, markup tokens, and text runs."""
    return _PIECE.findall(text)


def parse_tokens(
    pieces: Sequence[str], probs: Sequence[float] | None = None, *, banned: Sequence[str] = ()
) -> list[ParsedBox]:
    """Boxes from the decoder's output pieces and their probabilities.

    Args:
        pieces: the generated output as pieces, in order: each location token (``"<loc_12>"``)
            and each markup token (``"<s>"``, ``"</s>"``, ``"<pad>"``, ``"<od>"``...) on its own;
            text as one or more pieces (the detector joins consecutive text tokens into one piece
            so that multi-byte characters decode whole).
        probs: one probability per piece (for a joined text piece: the product of its tokens'
            probabilities; for a location token: its windowed bin probability). None: all 1.0.
        banned: phrases never used as labels (compared after ``normalize_phrase``).

    Returns:
        One ``ParsedBox`` per complete group of 4 location tokens that follows a phrase; a
        phrase followed by 4k location tokens gives k boxes; incomplete groups are dropped.

    Raises:
        ValueError: ``probs`` given with a length different from ``pieces``.
    """
    if probs is not None and len(probs) != len(pieces):
        raise ValueError(f"probs: expected {len(pieces)} values (one per piece), got {len(probs)}")
    banned_norm = {normalize_phrase(b) for b in banned}
    boxes: list[ParsedBox] = []
    label_parts: list[str] = []
    label_prob = 1.0
    locs: list[tuple[int, float]] = []
    after_locs = False
    for i, piece in enumerate(pieces):
        p = 1.0 if probs is None else float(probs[i])
        loc = _LOC.fullmatch(piece)
        if loc:
            locs.append((int(loc.group(1)), p))
            if len(locs) == 4:
                label = "".join(label_parts).strip()
                if label and normalize_phrase(label) not in banned_norm:
                    bins = tuple(min(b, LOC_BINS - 1) for b, _ in locs)
                    boxes.append(ParsedBox(label, bins, tuple(q for _, q in locs), label_prob))  # type: ignore[arg-type]
                locs = []
            after_locs = True
            continue
        if _MARKUP.match(piece):
            continue  # <s>, </s>, <pad>, <od>...: structure, not label text
        if after_locs and not piece.strip():
            continue  # stray whitespace between boxes of one phrase
        if after_locs:  # text after boxes starts the next phrase
            label_parts, label_prob, locs, after_locs = [], 1.0, [], False
        elif locs:  # text interrupting an incomplete group: drop the partial box
            locs = []
        label_parts.append(piece)
        label_prob *= p
    return boxes


def parse_text(text: str, *, banned: Sequence[str] = ()) -> list[ParsedBox]:
    """Boxes from raw generated text (no probabilities: every confidence is 1.0)."""
    return parse_tokens(split_pieces(text), None, banned=banned)


def dequantize(bins: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) bins -> (N, 4) float32 xyxy pixels at bin centres (``(k + 0.5) * side / 1000``).

    Args:
        bins: (N, 4) integers in [0, 1000).
        image_size: (width, height) of the original image in pixels.
    """
    width, height = image_size
    scale = np.array([width, height, width, height], dtype=np.float64) / LOC_BINS
    return ((np.asarray(bins, dtype=np.float64).reshape(-1, 4) + 0.5) * scale).astype(np.float32)


def clip_boxes(xyxy: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Clip xyxy pixels to ``[0, width] x [0, height]`` and order each box's corners."""
    width, height = image_size
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    x = np.clip(xyxy[:, [0, 2]], 0, width)
    y = np.clip(xyxy[:, [1, 3]], 0, height)
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1).astype(np.float32)


@dataclass
class ParsedDetections:
    """Parser output as parallel arrays (feeds ``pipeline.types.Detections``).

    Attributes:
        xyxy: (N, 4) float32, absolute pixels of the original image, clipped.
        class_id: (N,) int64 into the requested ``class_names``.
        confidence: (N,) float32 in [0, 1].
        loc_score: (N,) float32, geometric mean of the location-token probabilities.
        label_score: (N,) float32, joint probability of the label tokens.
        raw_label: (N,) object array of the phrases as generated.
        class_names: the requested class names.
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray
    loc_score: np.ndarray
    label_score: np.ndarray
    raw_label: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.xyxy)


def boxes_to_detections(
    boxes: Sequence[ParsedBox],
    classes: Sequence[str],
    image_size: tuple[int, int],
    *,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    confidence: float = 0.0,
    min_size: float = 1.0,
) -> ParsedDetections:
    """Map parsed boxes to requested classes, clip, and drop what should not be kept.

    Drops: phrases naming no requested class; boxes narrower or shorter than ``min_size``
    pixels after clipping (degenerate; on an image less than ``2 * min_size`` pixels across the
    limit for that axis is half the image side, so a 1-pixel-tall image keeps its boxes); boxes below ``confidence``; exact repeats (same class,
    same bins: the decoder repeating itself), keeping the most confident.

    Args:
        boxes: from ``parse_tokens``/``parse_text``.
        classes: requested class names (ids index this list).
        image_size: (width, height) of the original image.
        synonyms: class name -> synonyms, used for matching.
        confidence: minimum confidence kept.
        min_size: minimum box width and height in pixels.
    """
    _check_size(image_size)
    matcher = LabelMatcher(classes, synonyms)
    kept: dict[tuple[int, tuple[int, ...]], ParsedBox] = {}
    ids: dict[tuple[int, tuple[int, ...]], int] = {}
    for box in boxes:
        cid = matcher.match(box.label)
        if cid is None or box.confidence < confidence:
            continue
        key = (cid, box.bins)
        if key not in kept or box.confidence > kept[key].confidence:
            kept[key] = box
            ids[key] = cid
    items = list(kept.items())
    bins = np.array([b.bins for _, b in items], dtype=np.int64).reshape(-1, 4)
    xyxy = clip_boxes(dequantize(bins, image_size), image_size)
    keep = _big_enough(xyxy, image_size, min_size)
    return ParsedDetections(
        xyxy=xyxy[keep],
        class_id=np.array([ids[k] for k, _ in items], dtype=np.int64)[keep],
        confidence=np.array([b.confidence for _, b in items], dtype=np.float32)[keep],
        loc_score=np.array([b.loc_score for _, b in items], dtype=np.float32)[keep],
        label_score=np.array([b.label_prob for _, b in items], dtype=np.float32)[keep],
        raw_label=np.array([b.label for _, b in items], dtype=object)[keep],
        class_names=list(matcher.classes),
    )


def parse_post_processed(
    result: Mapping,
    classes: Sequence[str],
    image_size: tuple[int, int],
    *,
    task: str | None = None,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    min_size: float = 1.0,
) -> ParsedDetections:
    """Parse a ``Florence2Processor.post_process_generation`` result for a detection task.

    Accepts ``{task: {...}}`` or the inner dict: ``{"bboxes", "labels"}`` for
    ``<CAPTION_TO_PHRASE_GROUNDING>``/``<OD>``, ``{"bboxes", "bboxes_labels", ...}`` for
    ``<OPEN_VOCABULARY_DETECTION>`` (polygons are ignored). Boxes there are already xyxy pixels
    of the original image. No probabilities exist at this level: confidence is the dict's
    ``"scores"`` when present, else 1.0.

    Raises:
        ValueError: not a detection result, or mismatched box/label counts.
    """
    _check_size(image_size)
    inner: Mapping = result
    if task is None:
        task_keys = [k for k in result if k in DETECTION_TASKS]
        task = task_keys[0] if task_keys else None
    if task is not None and task in result:
        inner = result[task]
    if not isinstance(inner, Mapping) or "bboxes" not in inner:
        raise ValueError(
            f"expected a post_process_generation result for one of {DETECTION_TASKS} "
            f"(a dict with 'bboxes'), got {type(inner).__name__} with keys "
            f"{sorted(inner) if isinstance(inner, Mapping) else '-'}"
        )
    labels = list(inner.get("labels", inner.get("bboxes_labels", [])))
    raw_boxes = list(inner["bboxes"])
    if len(labels) != len(raw_boxes):
        raise ValueError(f"expected one label per box, got {len(raw_boxes)} boxes and {len(labels)} labels")
    scores = list(inner.get("scores", [1.0] * len(raw_boxes)))
    matcher = LabelMatcher(classes, synonyms)
    rows, ids, confs, names = [], [], [], []
    for box, label, score in zip(raw_boxes, labels, scores, strict=False):
        cid = matcher.match(str(label))
        if cid is None or len(box) != 4:
            continue
        rows.append([float(v) for v in box])
        ids.append(cid)
        confs.append(min(max(float(score), 0.0), 1.0))
        names.append(str(label))
    xyxy = clip_boxes(np.array(rows, dtype=np.float32).reshape(-1, 4), image_size)
    keep = _big_enough(xyxy, image_size, min_size)
    return ParsedDetections(
        xyxy=xyxy[keep],
        class_id=np.array(ids, dtype=np.int64)[keep],
        confidence=np.array(confs, dtype=np.float32)[keep],
        loc_score=np.ones(int(keep.sum()), dtype=np.float32),
        label_score=np.ones(int(keep.sum()), dtype=np.float32),
        raw_label=np.array(names, dtype=object)[keep],
        class_names=list(matcher.classes),
    )


def grounding_prompt(classes: Sequence[str]) -> str:
    """The phrase-grounding caption for ``classes``: ``"person. car. traffic light."``.

    Raises:
        ValueError: no non-empty class name.
    """
    names = [re.sub(r"\s+", " ", c).strip(" .") for c in classes]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"classes: expected at least one non-empty class name, got {list(classes)!r}")
    return ". ".join(dict.fromkeys(names)) + "."


def _big_enough(xyxy: np.ndarray, image_size: tuple[int, int], min_size: float) -> np.ndarray:
    """(N,) bool: width and height >= ``min_size`` px, or >= half the image side when smaller."""
    width, height = image_size
    limit = np.minimum(min_size, 0.5 * np.array([width, height], dtype=np.float32))
    return np.all(xyxy[:, 2:] - xyxy[:, :2] >= limit, axis=1)


def _check_size(image_size: tuple[int, int]) -> None:
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size: expected (width, height) > 0, got {image_size}")
