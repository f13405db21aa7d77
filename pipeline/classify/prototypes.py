"""Few-shot classification by class prototypes fused with a kNN vote (pure numpy).

Embeddings are ``(N, D)`` float arrays (any scale; rows are L2-normalised here). A
:class:`PrototypeModel` is built from a *support set* (embeddings + class names):

1. ``x = x / ||x||`` for every support and query vector;
2. optional centring (SimpleShot, Wang et al. 2019): ``z = (x - c) / ||x - c||`` with ``c`` the
   mean of the normalised support vectors. Centring removes the component every embedding of
   a backbone shares (DINOv2 vectors of unrelated objects still have cosine ~0.3-0.6), so
   cosines between different things fall towards 0 and thresholds get meaning;
3. a class prototype is the L2-normalised mean of its members' ``z``.

A query ``z_q`` is scored per class ``c`` by::

    proto_c = cos(z_q, prototype_c)                       # in [-1, 1]
    knn_c   = (1/k) * sum_{j in kNN(z_q)} cos(z_q, z_j) * [y_j == c]
    score_c = (1 - knn_weight) * proto_c + knn_weight * knn_c

``kNN`` are the ``k`` most similar support vectors. ``knn_c`` is a similarity-weighted vote on
the cosine scale: when all ``k`` neighbours belong to ``c`` with similarity ``s``, ``knn_c = s``.
So ``score`` stays comparable with a plain cosine, and the vote corrects prototypes of classes
that have several modes (the mean of two modes lies between them). Defaults: ``k = 5``,
``knn_weight = 0.5``.

The answer per query: the top classes by ``score``, ``s1``/``s2`` (first/second score; ``s2 = 0``
with one class), ``margin = s1 - s2``, ``verdict`` = the top class, or ``"unknown"`` when
``s1 < tau1`` or ``margin < tau2``, and a margin-based confidence (see :func:`confidence`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

UNKNOWN = "unknown"
DEFAULT_K = 5
DEFAULT_KNN_WEIGHT = 0.5
DEFAULT_CONFIDENCE_SCALE = 0.05
EPS = 1e-12
SIM_BUDGET = 1 << 23  # entries of one query-support similarity block (32 MiB of float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ((N, D) or (D,)) scaled to unit L2 norm (zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, EPS)


def confidence(margin: np.ndarray | float, scale: float = DEFAULT_CONFIDENCE_SCALE) -> np.ndarray:
    """The margin-based confidence ``margin / (margin + scale)``, clipped to [0, 1].

    0 when the two best classes tie, 0.5 at ``margin == scale``, towards 1 as the margin grows.
    ``scale`` is calibrated per domain (the median leave-one-out margin of the correctly
    classified support items, see :func:`pipeline.classify.calibrate.calibrate`), so 0.5 means
    "as clear-cut as a typical correct support item".
    """
    m = np.maximum(np.asarray(margin, dtype=np.float64), 0.0)
    return np.clip(m / (m + max(float(scale), EPS)), 0.0, 1.0)


@dataclass
class PrototypeModel:
    """A domain's classifier: prototypes + the (centred, normalised) support set + thresholds.

    Attributes:
        classes: class names, index = class id.
        prototypes: (C, D) float32 unit rows, in the centred space.
        support: (N, D) float32 unit rows ``z`` of the support set (centred when ``centre`` is set).
        labels: (N,) int class ids of ``support``.
        centre: (D,) float32 mean of the normalised support vectors, or None (no centring).
        tau1: minimum ``s1`` for a known verdict.
        tau2: minimum ``margin`` for a known verdict.
        k: neighbours in the kNN vote.
        knn_weight: weight of the kNN vote in the fused score (0 = prototypes only).
        confidence_scale: the margin at which confidence is 0.5.
    """

    classes: list[str]
    prototypes: np.ndarray
    support: np.ndarray
    labels: np.ndarray
    centre: np.ndarray | None = None
    tau1: float = 0.0
    tau2: float = 0.0
    k: int = DEFAULT_K
    knn_weight: float = DEFAULT_KNN_WEIGHT
    confidence_scale: float = DEFAULT_CONFIDENCE_SCALE
    calibration: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prototypes = np.asarray(self.prototypes, np.float32)
        self.support = np.asarray(self.support, np.float32)
        self.labels = np.asarray(self.labels, np.int64)
        c, d = self.prototypes.shape if self.prototypes.ndim == 2 else (None, None)
        if c is None or c != len(self.classes) or c == 0:
            raise ValueError(f"prototypes: expected shape ({len(self.classes)}, D) for {len(self.classes)} classes, "
                             f"got {self.prototypes.shape}")
        if self.support.ndim != 2 or self.support.shape[1] != d or len(self.support) != len(self.labels):
            raise ValueError(f"support: expected (N, {d}) with N = len(labels) = {len(self.labels)}, "
                             f"got {self.support.shape}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= c):
            raise ValueError(f"labels: expected class ids in [0, {c}), got range "
                             f"[{self.labels.min()}, {self.labels.max()}]")
        if self.centre is not None:
            self.centre = np.asarray(self.centre, np.float32)
            if self.centre.shape != (d,):
                raise ValueError(f"centre: expected shape ({d},), got {self.centre.shape}")
        if not 0.0 <= float(self.knn_weight) <= 1.0:
            raise ValueError(f"knn_weight: expected a value in [0, 1], got {self.knn_weight}")
        if int(self.k) < 1:
            raise ValueError(f"k: expected >= 1, got {self.k}")

    @property
    def dim(self) -> int:
        """The embedding dimension D."""
        return int(self.prototypes.shape[1])

    def counts(self) -> dict[str, int]:
        """Support items per class."""
        n = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n[i]) for i, c in enumerate(self.classes)}

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw embeddings (N, D) -> the model's space: normalised, centred, normalised (float32)."""
        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[1] != self.dim:
            raise ValueError(f"query embeddings: expected dimension {self.dim} (the domain's), got {x.shape[1]}; "
                             "the domain was built with another embedding model")
        z = l2_normalize(x)
        if self.centre is not None:
            z = l2_normalize(z - self.centre)
        return z

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Fused class scores (B, C) float32 for raw query embeddings ``x`` (B, D)."""
        return fused_scores(self.transform(x), self.prototypes, self.support, self.labels,
                            k=self.k, knn_weight=self.knn_weight)

    def classify(self, x: np.ndarray, *, top_k: int = 3, tau1: float | None = None,
                 tau2: float | None = None) -> list[dict]:
        """The answer for each query row of ``x`` ((B, D) raw embeddings); see :func:`answers`."""
        return answers(self.scores(x), self.classes, top_k=top_k,
                       tau1=self.tau1 if tau1 is None else tau1, tau2=self.tau2 if tau2 is None else tau2,
                       confidence_scale=self.confidence_scale)


def build_model(embeddings: np.ndarray, labels: Sequence[str], *, centre: bool = True, k: int = DEFAULT_K,
                knn_weight: float = DEFAULT_KNN_WEIGHT) -> PrototypeModel:
    """A :class:`PrototypeModel` from support embeddings (N, D) and their class names (N,).

    Classes are sorted by name. Thresholds are 0 (nothing unknown) until calibrated
    (:func:`pipeline.classify.calibrate.calibrate`). ``centre`` is ignored for a one-class
    support set: the mean of a single class *is* that class, so subtracting it would leave
    only the members' noise and make the class indistinguishable from anything else.

    Raises:
        ValueError: no support items, mismatched lengths, non-finite values, or zero vectors.
    """
    x = np.asarray(embeddings, np.float32)
    names = [str(s) for s in labels]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"support embeddings: expected a non-empty (N, D) array, got shape {x.shape}")
    if len(names) != len(x):
        raise ValueError(f"support labels: expected {len(x)} (one per embedding), got {len(names)}")
    if not np.isfinite(x).all():
        raise ValueError("support embeddings: expected finite values, got NaN/inf; re-embed those objects")
    zero = np.flatnonzero(np.linalg.norm(x, axis=1) < EPS)
    if len(zero):
        raise ValueError(f"support embeddings: expected non-zero vectors, got {len(zero)} zero row(s) "
                         f"(first at index {int(zero[0])})")
    if any(n.strip().lower() == UNKNOWN for n in names):
        raise ValueError(f"support labels: {UNKNOWN!r} is the verdict for rejected queries and cannot be a class; "
                         "rename that category")
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[n] for n in names], np.int64)
    xn = l2_normalize(x)
    centre = centre and len(classes) > 1
    c_vec = xn.mean(axis=0) if centre else None
    z = l2_normalize(xn - c_vec) if centre else xn
    return PrototypeModel(classes=classes, prototypes=class_means(z, y, len(classes)), support=z, labels=y,
                          centre=c_vec, k=int(k), knn_weight=float(knn_weight))


def class_sums(z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) float32 per-class sums of the rows of ``z`` (zero rows for classes without members).

    Sorted by label and summed per run (``np.add.reduceat``): memory O(N·D), never the dense
    (C, N) one-hot that 1,000 classes over 100k items would make 400 MB.
    """
    z = np.asarray(z, np.float32)
    y = np.asarray(y, np.int64)
    sums = np.zeros((n_classes, z.shape[1]), np.float32)
    if len(y) == 0:
        return sums
    order = np.argsort(y, kind="stable")
    ys = y[order]
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
    sums[ys[starts]] = np.add.reduceat(z[order], starts, axis=0)
    return sums


def class_means(z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) L2-normalised per-class means of the rows of ``z``."""
    return l2_normalize(class_sums(z, y, n_classes))


def knn_votes(sims: np.ndarray, labels: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """(B, C) similarity-weighted kNN votes from query-support similarities ``sims`` (B, N).

    Entries of ``sims`` set to ``-inf`` (e.g. a query's own support item in leave-one-out) are
    never neighbours. ``vote_c = (1/k) * sum of the similarities of the neighbours of class c``.
    """
    b, n = sims.shape
    kk = min(int(k), n)
    if kk == 0:
        return np.zeros((b, n_classes), np.float32)
    idx = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    top = np.take_along_axis(sims, idx, axis=1)
    valid = np.isfinite(top)
    w = np.where(valid, top, 0.0).astype(np.float32)
    votes = np.zeros((b, n_classes), np.float32)
    rows = np.repeat(np.arange(b), kk)
    np.add.at(votes, (rows, labels[idx].ravel()), w.ravel())
    return votes / float(kk)


def row_chunks(n_rows: int, n_cols: int, budget: int | None = None) -> list[slice]:
    """Row slices such that a (rows, n_cols) float32 block stays under ``budget`` entries
    (default :data:`SIM_BUDGET`)."""
    step = max(1, int(SIM_BUDGET if budget is None else budget) // max(int(n_cols), 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def fused_scores(zq: np.ndarray, prototypes: np.ndarray, support: np.ndarray, labels: np.ndarray, *,
                 k: int = DEFAULT_K, knn_weight: float = DEFAULT_KNN_WEIGHT) -> np.ndarray:
    """(B, C) ``(1 - w) * cos(z_q, prototypes) + w * knn_votes`` for transformed queries ``zq`` (B, D).

    The (B, N) query-support similarities are computed in row blocks of at most
    :data:`SIM_BUDGET` entries, so memory stays bounded for large support sets.
    """
    proto = zq @ prototypes.T
    if knn_weight <= 0.0 or len(support) == 0:
        return proto.astype(np.float32)
    votes = np.empty_like(proto, dtype=np.float32)
    for rows in row_chunks(len(zq), len(support)):
        votes[rows] = knn_votes(zq[rows] @ support.T, labels, len(prototypes), k)
    return ((1.0 - knn_weight) * proto + knn_weight * votes).astype(np.float32)


def top2(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(best class id (B,), s1 (B,), s2 (B,))`` of a score matrix (B, C); ``s2 = 0`` when C = 1."""
    b, c = scores.shape
    best = np.argmax(scores, axis=1)
    s1 = scores[np.arange(b), best]
    if c == 1:
        return best, s1, np.zeros(b, np.float32)
    part = np.partition(scores, c - 2, axis=1)
    return best, s1, part[:, c - 2]


def answers(scores: np.ndarray, classes: Sequence[str], *, top_k: int = 3, tau1: float = 0.0, tau2: float = 0.0,
            confidence_scale: float = DEFAULT_CONFIDENCE_SCALE) -> list[dict]:
    """Per query row of ``scores`` (B, C): ``{"top_k": [{"class", "score"}...] best first, "s1",
    "s2", "margin", "verdict", "is_unknown", "confidence"}``.

    ``verdict`` is the best class, or ``"unknown"`` when ``s1 < tau1`` or ``margin < tau2``;
    ``confidence`` is :func:`confidence` of the margin (reported for unknown verdicts too: how
    clearly the best class led).
    """
    scores = np.asarray(scores, np.float32)
    best, s1, s2 = top2(scores)
    margin = s1 - s2
    conf = confidence(margin, confidence_scale)
    unknown = (s1 < tau1) | (margin < tau2)
    kk = max(1, min(int(top_k), scores.shape[1]))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    out = []
    for i in range(len(scores)):
        out.append({
            "top_k": [{"class": classes[j], "score": round(float(scores[i, j]), 6)} for j in order[i]],
            "s1": round(float(s1[i]), 6),
            "s2": round(float(s2[i]), 6),
            "margin": round(float(margin[i]), 6),
            "verdict": UNKNOWN if unknown[i] else classes[int(best[i])],
            "is_unknown": bool(unknown[i]),
            "confidence": round(float(conf[i]), 6),
        })
    return out
