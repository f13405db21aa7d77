"""Similarity search: query by an image (whole or a crop) or by a stored object's embedding.

Query boxes ``xyxy`` are absolute pixels of the query image. Results are the registry's object
dicts plus ``similarity`` (1.0 = identical), ``score`` (what ranked them), ``stage`` ("ann" |
"exact" | "fused") and ``score_components``, best first. :class:`SearchRanking` carries the
Search tab's two-stage / fusion options to ``Registry.search`` (docs/search.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SearchFilters:
    """Result filters (None = any)."""

    category: str | None = None
    min_confidence: float | None = None
    validated_only: bool = False
    project: str | None = None

    def kwargs(self) -> dict:
        return {
            "category": self.category or None,
            "project": self.project or None,
            "min_confidence": float(self.min_confidence) if self.min_confidence else None,
            "status": "approved" if self.validated_only else None,
        }


@dataclass
class SearchRanking:
    """Two-stage retrieval and metadata fusion options (see docs/search.md).

    ``rerank`` m: the top ``k · m`` ANN candidates are re-scored exactly (0 = off). Fusion
    ``score = similarity·s + category·[category == fusion_category] + confidence·c +
    validated·[approved]``; the defaults (1, 0, 0, 0, rerank 0) are today's plain similarity
    order, and then nothing is passed to the registry at all.
    """

    rerank: int = 0
    similarity: float = 1.0
    category: float = 0.0
    fusion_category: str | None = None
    confidence: float = 0.0
    validated: float = 0.0

    def weights(self) -> dict[str, float] | None:
        """The fusion weights, or None when they are the defaults (no fusion stage)."""
        w = {"similarity": float(self.similarity), "category": float(self.category),
             "confidence": float(self.confidence), "validated": float(self.validated)}
        return None if w == {"similarity": 1.0, "category": 0.0, "confidence": 0.0, "validated": 0.0} else w

    def kwargs(self) -> dict:
        """``rerank`` / ``fusion`` / ``fusion_category`` for ``Registry.search`` ({} = defaults).

        With fusion and ``rerank`` 0 the registry's own candidate pool (k · 4) is used, so
        fusion has near neighbours to re-order.

        Raises:
            ValueError: a negative ``rerank``, or a category weight without a category.
        """
        m = int(self.rerank or 0)
        if m < 0:
            raise ValueError(f"re-rank: expected m >= 0 (0 = off), got {m}")
        out: dict[str, Any] = {"rerank": m} if m else {}
        weights = self.weights()
        if weights is not None:
            cat = (self.fusion_category or "").strip() or None
            if weights["category"] > 0 and cat is None:
                raise ValueError(f"fusion: the category weight is {weights['category']:g} but no category "
                                 "is chosen; pick the category to favour, or set its weight to 0")
            out["fusion"] = weights
            if cat is not None:
                out["fusion_category"] = cat
        return out


def embed_query(embedder: Any, image: np.ndarray, xyxy: tuple[float, float, float, float] | None = None,
                segment: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Embeds the query image (or its ``xyxy`` region) exactly as stored objects are embedded.

    Stored vectors are masked crops: the object's box plus the embedder's context padding,
    everything outside the object's mask set to the neutral colour. So the query is prepared
    the same way: the query box (the whole image, or ``xyxy`` in absolute pixels) is segmented
    with ``segment``, the box becomes the mask's own bounding box, and the image is padded with
    the neutral colour where the context padding reaches past its edge (an uploaded crop has no
    context around the object; a stored object's masked context is neutral anyway).

    Args:
        embedder: has ``embed(image, xyxy, masks) -> (N, D)`` and optionally ``crop_pad``.
        image: (H, W, 3) uint8 RGB.
        xyxy: the query region, absolute pixels; None = the whole image.
        segment: ``(image, box (4,) xyxy) -> (H, W) bool mask``; None embeds the plain box crop
            (only when no segmenter exists: such a query differs from stored vectors).

    Returns:
        (D,) float32, L2-normalised.
    """
    from pipeline.mask_ops import NEUTRAL_FILL, mask_to_xyxy

    if image is None or getattr(image, "ndim", 0) != 3:
        raise ValueError("query image: expected an RGB image, got nothing; upload or paste one")
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = image.shape[:2]
    box = np.asarray(xyxy if xyxy is not None else (0, 0, w, h), np.float32)
    mask = None
    if segment is not None:
        m = np.asarray(segment(image, box), bool)
        if m.shape == (h, w) and m.any():
            mask, box = m, mask_to_xyxy(m[None])[0].astype(np.float32)
    pad = float(getattr(embedder, "crop_pad", 0.1))
    px = int(np.ceil(pad * max(box[2] - box[0], box[3] - box[1]))) + 1
    canvas = np.empty((h + 2 * px, w + 2 * px, 3), np.uint8)
    canvas[:] = np.asarray(NEUTRAL_FILL, np.uint8)
    canvas[px:px + h, px:px + w] = image
    masks = None
    if mask is not None:
        masks = np.zeros((1, *canvas.shape[:2]), bool)
        masks[0, px:px + h, px:px + w] = mask
    vec = np.asarray(embedder.embed(canvas, (box + px)[None], masks), np.float32)
    if vec.ndim != 2 or len(vec) != 1:
        raise RuntimeError(f"embedder: expected a (1, D) array, got shape {vec.shape}")
    return vec[0]


def search_by_vector(reg: Any, vector: np.ndarray, *, k: int = 24, filters: SearchFilters | None = None,
                     exclude: str | None = None, **ranking: Any) -> list[dict]:
    """Top-k similar objects; ``exclude`` drops the query object itself; ``ranking`` passes
    ``rerank`` / ``fusion`` / ``fusion_category`` to ``Registry.search`` (docs/search.md)."""
    k = int(k)
    if not 1 <= k <= 1000:
        raise ValueError(f"k: expected 1..1000 results, got {k}")
    f = (filters or SearchFilters()).kwargs()
    ranking = {key: v for key, v in ranking.items() if v is not None}
    hits = reg.search(np.asarray(vector, np.float32), k=k + (1 if exclude else 0), **f, **ranking)
    if exclude:
        hits = [h for h in hits if h["object_id"] != exclude]
    return hits[:k]


def search_by_object(reg: Any, object_id: str, *, k: int = 24, filters: SearchFilters | None = None,
                     ranking: SearchRanking | None = None) -> list[dict]:
    """Top-k objects similar to a stored object (its stored embedding; no model needed),
    ranked as ``ranking`` says (None = plain similarity)."""
    object_id = (object_id or "").strip()
    if not object_id:
        raise ValueError("object id: expected an id like obj_…, got nothing")
    reg.get_object(object_id)  # raises a clear error for unknown ids
    vec = reg.get_embedding(object_id)
    if vec is None:
        raise ValueError(f"object {object_id} has no stored embedding: label it with an embedder, or search by image")
    return search_by_vector(reg, vec, k=k, filters=filters, exclude=object_id,
                            **(ranking or SearchRanking()).kwargs())


def search_by_image(reg: Any, embedder: Any, image: np.ndarray, *, xyxy=None, k: int = 24,
                    filters: SearchFilters | None = None,
                    segment: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                    ranking: SearchRanking | None = None) -> list[dict]:
    """Top-k objects similar to an uploaded image (or a region of it), the query prepared like
    stored objects (see :func:`embed_query`), ranked as ``ranking`` says."""
    kw = (ranking or SearchRanking()).kwargs()  # bad options fail before the model runs
    return search_by_vector(reg, embed_query(embedder, image, xyxy, segment), k=k, filters=filters, **kw)


def context_segment(ctx: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(image, box) -> mask`` with the segmenter stored objects were most likely masked by:
    SAM2 when offered (auto-label uses it), else GrabCut."""
    name = "sam2" if "sam2" in ctx.segmenter_names else ctx.segmenter_names[0]

    def segment(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        with ctx.segment(name, image, None) as seg:
            masks, _ = seg.predict_boxes(np.asarray(box, np.float32).reshape(1, 4))
        return np.asarray(masks[0], bool)

    return segment


def assign_class(reg: Any, object_ids: list[str], category: str, *, validated_by: str | None = None) -> int:
    """Sets the class of several objects at once (marks them approved by ``validated_by``)."""
    category = (category or "").strip()
    if not category:
        raise ValueError("class: expected a class name, got nothing; type one")
    if not object_ids:
        raise ValueError("selection: expected at least one result, got none; tick results first")
    for oid in object_ids:
        reg.update_object(oid, category=category, status="approved", validated_by=validated_by)
    return len(object_ids)


def caption(hit: dict) -> str:
    """One line per result: category, similarity, confidence, and for a re-ranked or fused
    result the stage and score that ranked it."""
    conf = hit.get("confidence")
    conf_s = f" · conf {conf:.2f}" if conf is not None else ""
    stage = hit.get("stage")
    stage_s = f" · {stage} {hit['score']:.2f}" if stage in ("exact", "fused") and hit.get("score") is not None else ""
    return f"{hit['category']}{stage_s} · sim {hit.get('similarity', 0):.2f}{conf_s} · {hit['object_id']}"


RANKING_HEADERS = ["#", "object", "category", "stage", "score", "similarity", "w·sim", "w·category", "w·conf",
                   "w·validated"]
"""Columns of :func:`ranking_rows`; the ``w·…`` columns are the weighted fusion terms that sum to ``score``."""


FUSION_TERMS = ("similarity", "category", "confidence", "validated")


def ranking_rows(hits: list[dict], start: int = 1) -> list[list]:
    """One row per result (best first) for the Search tab's "Ranking" table: rank, id,
    category, ``stage``, ``score``, similarity and the weighted fusion terms (None without
    fusion); ranks count from ``start``."""
    rows = []
    for i, h in enumerate(hits, start):
        comp = h.get("score_components") or {}

        def r(v):
            return None if v is None else round(float(v), 4)

        rows.append([i, h["object_id"], h.get("category"), h.get("stage"), r(h.get("score", h.get("similarity"))),
                     r(h.get("similarity"))] + [r(comp.get(key)) for key in FUSION_TERMS])
    return rows
