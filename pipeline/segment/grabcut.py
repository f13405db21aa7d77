"""OpenCV GrabCut behind the SAM2-shaped :class:`~pipeline.segment.base.Segmenter` interface.

No weights, always available: the offline fallback and the segmenter of the test suite.

How a prompt becomes a GrabCut run:

1. **Region of interest.** The box (or the bounding box of the clicks, the previous mask and
   the click's colour region), grown on each side so GrabCut sees real background around the
   object. Large regions are downscaled so the longer side is at most ``max_side`` pixels:
   GrabCut costs O(pixels x iterations), so this keeps one prompt interactive whatever the
   image size; the mask is upsampled with bilinear smoothing afterwards.
2. **Seeds** (GrabCut's label map): outside the box = definite background; inside the box =
   probable foreground (or, with a previous mask, probable foreground inside it and probable
   background elsewhere in the box); each positive click paints a small definite-foreground
   disk, each negative click a definite-background disk.
   - *A click alone* (no box, no previous mask): the colour-similar region connected to the
     click (flood fill on a median-filtered copy, so JPEG blocks and noise do not stop it) is
     the probable foreground; if GrabCut keeps under ``min_seed_kept`` of it, the region is
     kept (a flat or blocky object GrabCut cannot separate still comes back, not a dot).
   - *A negative click on the previous mask* carves a definite-background region, not a dot:
     a separate component without positive clicks goes whole; a distinctly coloured part goes
     (the colour region around the click, confined to the mask); in a uniformly coloured
     object the part nearer the click than to the positive clicks (or the box centre) goes.
   - *A box alone* tries up to three seedings (see ``_best_box_cut``): the plain box; and, when
     that cut holds several colours (clutter that appears only inside the box joins GrabCut's
     object model), the box's central ellipse and the cut's dominant colour. Candidates that
     do not span the box are ineligible; the best-separated one wins. When the winner fills
     under ``min_box_fill`` of the box (a box over part of an object, whose colours then sit
     outside it as "background"), the outside is relaxed to probable background and retried.
3. ``iterations`` GrabCut iterations (GMM colour models + graph cut), seeded RNG (deterministic).
4. **Post-processing**, each step there because it fixes a failure seen on test images:
   components are kept when they hold a positive click or overlap the previous mask, or, with a
   box only, when they are at least 10 % of the largest (GrabCut leaves specks of object-coloured
   background); a component holding a negative click and no positive one is dropped (that is what
   a negative click means, even when its colour matches the object); holes under 1 % of the
   object area are filled (noise punches pin-holes into solid objects; big holes, like a ring's,
   are kept); pixels outside the box and carved regions are cleared.
5. **Refine clicks on a previous mask** (``predict_points`` with ``mask_input`` and clicks): the
   GrabCut run only proposes; the answer is the previous mask plus each positive click's region,
   minus each negative click's region, in click order (``pipeline.segment.grabcut_clicks``), so a
   positive click never removes pixels and a negative click never adds any.

**Cost** (2 busy CPU cores, 768 x 1024 image, defaults): a box or a click is one GrabCut run at
<= 224 px, about 50-90 ms; a box whose first cut holds several colours costs three runs.

**Score** (in [0, 1]): the Bhattacharyya distance between the colour histograms of the mask and
of a band of background just around it (8 bins per channel). 1 = the object's colours never
occur in its surroundings (GrabCut's colour model is reliable there, the cut is trustworthy);
0 = indistinguishable colours (the cut is a guess) or an empty mask. It measures how well colour
separates this object, not IoU; the review queue can sort by it all the same.

Coordinates: images (H, W, 3) uint8 RGB indexed [row, col]; boxes xyxy absolute pixels;
points (x, y) absolute pixels; masks (H, W) bool.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.mask_ops import expand_box, fill_small_holes, mask_to_xyxy, resize_mask
from pipeline.segment.base import NOT_SET_MESSAGE, PointPrediction, check_image, check_points
from pipeline.segment.grabcut_clicks import apply_clicks, mask_score

_GC_BGD, _GC_FGD, _GC_PR_BGD, _GC_PR_FGD = cv2.GC_BGD, cv2.GC_FGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD
_NO_POINTS = np.zeros((0, 2), np.float32)
_NO_LABELS = np.zeros(0, np.int64)


@dataclass
class _Work:
    """One prompt's working region: the ROI of the image, downscaled to GrabCut's working size.

    ``x0, y0, x1, y1``: the ROI in absolute image pixels; ``work``: (wh, ww, 3) uint8 RGB, the
    ROI resized; ``box``: the prompt box in working pixel-index ranges (x0, y0, x1, y1) or None;
    ``inside``: (wh, ww) bool, True inside that box (all True without a box).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    work: np.ndarray
    box: tuple[int, int, int, int] | None
    inside: np.ndarray

    @classmethod
    def build(cls, image: np.ndarray, roi: tuple[int, int, int, int], max_side: int, box: np.ndarray | None) -> _Work:
        x0, y0, x1, y1 = roi
        roi_w, roi_h = x1 - x0, y1 - y0
        scale = min(1.0, max_side / max(roi_w, roi_h))
        ww, wh = max(1, round(roi_w * scale)), max(1, round(roi_h * scale))
        crop = image[y0:y1, x0:x1]
        work = crop if scale == 1.0 else cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        self = cls(x0, y0, x1, y1, np.ascontiguousarray(work), None, np.ones((wh, ww), bool))
        if box is not None:
            bx0, by0 = self.to_work(box[0], box[1])
            bx1, by1 = self.to_work(box[2], box[3])
            self.box = (
                int(np.clip(np.floor(bx0), 0, ww - 1)),
                int(np.clip(np.floor(by0), 0, wh - 1)),
                int(np.clip(np.ceil(bx1), 1, ww)),
                int(np.clip(np.ceil(by1), 1, wh)),
            )
            self.inside = np.zeros((wh, ww), bool)
            self.inside[self.box[1] : self.box[3], self.box[0] : self.box[2]] = True
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return self.work.shape[:2]

    def to_work(self, x: float, y: float) -> tuple[float, float]:
        """Absolute image (x, y) -> working (x, y), float."""
        wh, ww = self.shape
        return (float(x) - self.x0) * ww / (self.x1 - self.x0), (float(y) - self.y0) * wh / (self.y1 - self.y0)

    def point(self, x: float, y: float) -> tuple[int, int]:
        """Absolute image (x, y) -> nearest working pixel (col, row), clipped to the work area."""
        wh, ww = self.shape
        cx, cy = self.to_work(x, y)
        return int(np.clip(round(cx), 0, ww - 1)), int(np.clip(round(cy), 0, wh - 1))

    def mask(self, full: np.ndarray | None) -> np.ndarray | None:
        """(H, W) bool of the whole image -> (wh, ww) bool of the work area (None stays None)."""
        if full is None:
            return None
        return resize_mask(full[self.y0 : self.y1, self.x0 : self.x1], self.shape)

    def to_roi(self, fg: np.ndarray) -> np.ndarray:
        """(wh, ww) bool -> (ROI height, ROI width) bool, smoothly upsampled."""
        size = (self.y1 - self.y0, self.x1 - self.x0)
        return fg if fg.shape == size else resize_mask(fg, size)


class GrabCutSegmenter:
    """GrabCut seeded by boxes, clicks and the previous mask.

    Args:
        iterations: GrabCut iterations per prompt (3: the masks of the test scenes change by
            under 1 % IoU beyond it, and each iteration costs as much as the first).
        max_side: the region of interest is downscaled to at most this many pixels on its
            longer side before GrabCut runs.
        context: background margin around the box, as a fraction of the box size per side.
        click_radius: radius in pixels (at working resolution) of the disk a click paints.
        min_component_fraction: with a box only, components smaller than this fraction of
            the largest are dropped as specks.
        max_hole_fraction: holes smaller than this fraction of the object area are filled.
        min_box_span: a box-only candidate mask must span this fraction of the box's width and
            height to be eligible (a box prompt says the object spans its box).
        min_box_fill: below this fraction of the box area the cut is retried with the outside
            of the box relaxed to probable background (partial boxes).
        seed_reach: how far (fraction of the image's longer side) a click's colour region may
            extend from the click.
        seed_tolerance: colour tolerance (per channel, 0-255) of that region, relative to the
            clicked pixel.
        min_seed_kept: a click result keeping less than this fraction of the click's colour
            region falls back to the region.
        max_carve_fraction: a negative click's colour region larger than this fraction of the
            mask's component is not a distinct part; the component is split geometrically.
    """

    name = "grabcut"
    version = f"opencv-grabcut-{cv2.__version__}"

    def __init__(
        self,
        *,
        iterations: int = 3,
        max_side: int = 224,
        context: float = 0.2,
        click_radius: int = 3,
        min_component_fraction: float = 0.1,
        max_hole_fraction: float = 0.01,
        min_box_span: float = 0.7,
        min_box_fill: float = 0.25,
        seed_reach: float = 0.35,
        seed_tolerance: int = 20,
        min_seed_kept: float = 0.3,
        max_carve_fraction: float = 0.6,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"iterations: expected >= 1, got {iterations}")
        if max_side < 32:
            raise ValueError(f"max_side: expected >= 32 pixels, got {max_side}")
        self.iterations = int(iterations)
        self.max_side = int(max_side)
        self.context = float(context)
        self.click_radius = int(click_radius)
        self.min_component_fraction = float(min_component_fraction)
        self.max_hole_fraction = float(max_hole_fraction)
        self.min_box_span = float(min_box_span)
        self.min_box_fill = float(min_box_fill)
        self.seed_reach = float(seed_reach)
        self.seed_tolerance = int(seed_tolerance)
        self.min_seed_kept = float(min_seed_kept)
        self.max_carve_fraction = float(max_carve_fraction)
        self._image: np.ndarray | None = None
        self._image_hash: str | None = None

    # ------------------------------------------------------------------ predictor state
    def set_image(self, image: np.ndarray) -> None:
        """Keeps the (H, W, 3) uint8 RGB image; GrabCut has no embedding to precompute."""
        self._image = check_image(image)
        self._image_hash = None

    @property
    def is_image_set(self) -> bool:
        return self._image is not None

    @property
    def image_hash(self) -> str | None:
        """SHA-1 of the current image's pixels (lets callers check which image is set)."""
        if self._image is None:
            return None
        if self._image_hash is None:
            self._image_hash = hashlib.sha1(self._image.tobytes()).hexdigest()
        return self._image_hash

    def reset_image(self) -> None:
        self._image = None
        self._image_hash = None

    def _require_image(self) -> np.ndarray:
        if self._image is None:
            raise RuntimeError(NOT_SET_MESSAGE)
        return self._image

    # ------------------------------------------------------------------ prompts
    def predict_boxes(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One GrabCut run per box.

        Args:
            xyxy: (N, 4) float, absolute pixels.

        Returns:
            (masks (N, H, W) bool, scores (N,) float32 in [0, 1]).
        """
        image = self._require_image()
        boxes = np.asarray(xyxy, dtype=np.float32)
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes.reshape(-1, 4)
        h, w = image.shape[:2]
        masks = np.zeros((len(boxes), h, w), dtype=bool)
        scores = np.zeros(len(boxes), dtype=np.float32)
        for i, box in enumerate(boxes):
            masks[i], scores[i] = self._segment(image, box=box)
        return masks, scores

    def predict_points(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        *,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> PointPrediction:
        """Refines a mask from clicks (x, y absolute pixels; labels 1 = object, 0 = not object).

        ``mask_input`` is the previous mask: an (H, W) bool mask, or float logits of any size
        (resized to the image, > 0 = inside). ``multimask`` is accepted for interface
        compatibility; GrabCut yields one mask. ``low_res_logits`` is None: pass the returned
        ``mask`` back as ``mask_input`` on the next click.
        """
        del multimask  # one mask only; see docstring
        image = self._require_image()
        pts, lab = check_points(points, labels)
        prior = None
        if mask_input is not None:
            prior = self._prior_mask(mask_input, image.shape[:2])
        if box is not None:
            box = np.asarray(box, dtype=np.float32).reshape(4)
        if not len(pts) and box is None and (prior is None or not prior.any()):
            raise ValueError("predict_points: expected at least one point, a box or a previous mask, got none")
        mask, score = self._segment(image, box=box, points=pts, labels=lab, prior=prior)
        if prior is not None and prior.any() and len(pts):
            # Refine clicks on a previous mask: add / remove the clicked regions (grabcut_clicks).
            if box is not None:
                h, w = image.shape[:2]
                box = np.clip(box, [0, 0, 0, 0], [w, h, w, h]).astype(np.float32)
            mask = apply_clicks(self, image, prior, mask, pts, lab, box)
            score = mask_score(self, image, mask)
        return PointPrediction(mask=mask, score=float(score), low_res_logits=None)

    @staticmethod
    def _prior_mask(mask_input: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        arr = np.asarray(mask_input)
        arr = np.squeeze(arr)
        if arr.ndim != 2:
            raise ValueError(f"mask_input: expected an (H, W) mask or 2-D logits, got shape {np.shape(mask_input)}")
        if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
            arr = arr > 0
        return resize_mask(arr, hw)

    # ------------------------------------------------------------------ the work
    def _segment(
        self,
        image: np.ndarray,
        *,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        prior: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        points = np.zeros((0, 2), np.float32) if points is None else points
        labels = np.zeros(0, np.int64) if labels is None else labels
        full = np.zeros((h, w), dtype=bool)
        if box is not None:
            box = np.clip(box, [0, 0, 0, 0], [w, h, w, h]).astype(np.float32)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                return full, 0.0  # degenerate box: nothing to segment
        if prior is not None and not prior.any():
            prior = None
        pos = points[labels == 1]
        neg = points[labels == 0]
        # A click alone says nothing about the object's extent: a colour-similar region
        # connected to it does (it is the probable foreground GrabCut starts from).
        seed = self._flood_seed(image, pos) if box is None and prior is None and len(pos) else None
        # A negative click inside the previous mask removes a region, not a 7-pixel dot.
        carve = self._negative_carve(image, prior, pos, neg, box) if prior is not None and len(neg) else None
        if carve is not None and not carve.any():
            carve = None

        w_ = _Work.build(image, self._roi((h, w), box, points, labels, prior, seed), self.max_side, box)
        prior_w = w_.mask(prior)
        seed_w = w_.mask(seed)
        carve_w = w_.mask(carve)
        box_only = box is not None and prior is None and not len(points)

        if box_only:
            fg = self._best_box_cut(w_)
        else:
            gc = self._seed_labels(w_, prior_w, seed_w, points, labels)
            if carve_w is not None:
                gc[carve_w] = _GC_BGD
            fg = self._cut(w_, gc)
            fg = self._postprocess(w_, fg, prior_w, points, labels, box_only=False)
            if seed_w is not None and fg.sum() < self.min_seed_kept * seed_w.sum():
                # GrabCut gave up on the colour region around the click (e.g. a flat or JPEG-
                # blocky object its colour model cannot separate): the region itself is the answer.
                fg = fg | self._component_at_clicks(w_, seed_w, pos)
            if carve_w is not None:
                fg &= ~carve_w
                kept = prior_w & ~carve_w
                if kept.any() and (fg & kept).sum() < 0.5 * kept.sum():
                    # The carved region shares the object's colours, so GrabCut's colour model
                    # lost the rest too: the previous mask minus the carved region is the answer.
                    fg = kept | (fg & ~prior_w)
        if box is not None and not fg.any():
            # A box that covers only part of an object: outside it the object's own colours are
            # "definite background", so GrabCut drops everything. Retry with the outside only
            # probably background; the box then clips the result to the part inside it.
            gc = self._box_seeds(w_, relaxed=True)
            fg = self._postprocess(w_, self._cut(w_, gc) & w_.inside, None, points, labels, box_only=not len(points))
        score = self._separability(w_.work, fg)
        full[w_.y0 : w_.y1, w_.x0 : w_.x1] = w_.to_roi(fg)
        if box is not None:
            # Box semantics: the object lies inside its box (also after upsampling).
            inside = np.zeros_like(full)
            inside[int(np.floor(box[1])) : int(np.ceil(box[3])), int(np.floor(box[0])) : int(np.ceil(box[2]))] = True
            full &= inside
        if carve is not None:
            full &= ~carve
        return full, score if full.any() else 0.0

    def _roi(
        self,
        hw: tuple[int, int],
        box: np.ndarray | None,
        points: np.ndarray,
        labels: np.ndarray,
        prior: np.ndarray | None,
        seed: np.ndarray | None,
    ) -> tuple[int, int, int, int]:
        h, w = hw
        if box is not None:
            return expand_box(box, w, h, pad=self.context, pad_px=8)
        xs: list[float] = []
        ys: list[float] = []
        for region in (prior, seed):
            if region is not None and region.any():
                x0, y0, x1, y1 = mask_to_xyxy(region)[0]
                xs += [x0, x1]
                ys += [y0, y1]
        pos = points[labels == 1]
        if len(pos):
            xs += list(pos[:, 0])
            ys += list(pos[:, 1])
        if not xs:  # negative clicks only, no box, empty prior: look around the clicks
            xs, ys = list(points[:, 0]), list(points[:, 1])
        core = (min(xs), min(ys), max(xs), max(ys))
        # The region is an estimate of the object: give GrabCut background around it (more when
        # the region is small, since a textured object's flood region is only its core).
        pad_px = int(max(16, 0.04 * max(h, w)))
        return expand_box(core, w, h, pad=max(self.context, 0.3), pad_px=pad_px)

    def _box_seeds(self, w_: _Work, *, relaxed: bool = False) -> np.ndarray:
        gc = np.full(w_.shape, _GC_PR_BGD if relaxed else _GC_BGD, np.uint8)
        gc[w_.inside] = _GC_PR_FGD
        return gc

    def _best_box_cut(self, w_: _Work) -> np.ndarray:
        """Box only: three seedings of the box, the best-separated mask that fills the box wins.

        GrabCut's weak spot with a box is clutter that lies inside the box and nowhere in the
        margin around it: its colours are absent from the background model, so it joins the
        object. Two more seedings start the foreground model from the object alone: the box's
        central ellipse (objects are centred in their boxes), and the dominant colour of the
        first cut (clutter is a minority of it). A box prompt also says the object spans its box,
        so a candidate whose extent is under ``min_box_span`` of the box is not eligible (that
        rejects e.g. the hole of a ring or one colour part of a many-coloured object), and among
        the rest the one whose colours differ most from their surroundings wins.
        """
        bx0, by0, bx1, by1 = w_.box
        std = self._postprocess(w_, self._cut(w_, self._box_seeds(w_)) & w_.inside, None, _NO_POINTS, _NO_LABELS, box_only=True)
        extra = []
        dominant = self._dominant_colour(w_.work, std)
        if dominant is not None:
            # The first cut holds several colours, so clutter may have joined it: try the two
            # seedings that start from the object alone. (One colour: nothing to prune, and a
            # box prompt costs one GrabCut run instead of three.)
            core = np.full(w_.shape, _GC_BGD, np.uint8)
            core[w_.inside] = _GC_PR_BGD
            axes = (max(1, int(0.3 * (bx1 - bx0))), max(1, int(0.3 * (by1 - by0))))
            cv2.ellipse(core, ((bx0 + bx1) // 2, (by0 + by1) // 2), axes, 0, 0, 360, int(_GC_PR_FGD), -1)
            gc = np.full(w_.shape, _GC_BGD, np.uint8)
            gc[w_.inside] = _GC_PR_BGD
            gc[dominant] = _GC_PR_FGD
            extra = [core, gc]
        def spans_box(fg: np.ndarray) -> bool:
            fx0, fy0, fx1, fy1 = mask_to_xyxy(fg)[0]
            return bool(
                fg.any()
                and fx1 - fx0 >= self.min_box_span * (bx1 - bx0)
                and fy1 - fy0 >= self.min_box_span * (by1 - by0)
            )

        eligible = [(self._separability(w_.work, std), 0, std)] if spans_box(std) else []
        for i, gc in enumerate(extra, 1):
            fg = self._postprocess(w_, self._cut(w_, gc) & w_.inside, None, _NO_POINTS, _NO_LABELS, box_only=True)
            if spans_box(fg):
                eligible.append((self._separability(w_.work, fg), i, fg))
        best = max(eligible, key=lambda t: (t[0], -t[1]))[2] if eligible else std
        if best.sum() >= self.min_box_fill * (bx1 - bx0) * (by1 - by0):
            return best
        # Nothing fills the box: typically a box over part of an object, whose colours then sit
        # outside the box as "definite background", so the cut keeps the background inside the
        # box instead. Relax the outside to probable background (the box still clips the result).
        relaxed = self._cut(w_, self._box_seeds(w_, relaxed=True))
        relaxed = self._postprocess(w_, relaxed & w_.inside, None, _NO_POINTS, _NO_LABELS, box_only=True)
        return relaxed if spans_box(relaxed) and relaxed.sum() > best.sum() else best

    @staticmethod
    def _dominant_colour(work: np.ndarray, fg: np.ndarray) -> np.ndarray | None:
        """The pixels of ``fg`` in its largest colour cluster (k-means, k=3, RGB; clusters within
        40 levels of it count as the same colour), or None when that cluster already holds 90 %
        of ``fg`` (nothing to gain from a second seeding)."""
        n = int(fg.sum())
        if n < 30:
            return None
        lab = work[fg].astype(np.float32)
        sample = lab[:: max(1, n // 3000)]
        cv2.setRNGSeed(0)  # k-means++ init draws from OpenCV's RNG: make it repeatable
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        _, _, centres = cv2.kmeans(sample, 3, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
        nearest = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(nearest, minlength=3)
        top = int(np.argmax(counts))
        # Noise splits one colour into several clusters: clusters close to the top one are it.
        same = np.linalg.norm(centres - centres[top], axis=1) < 40.0
        if counts[same].sum() >= 0.9 * n:
            return None
        out = np.zeros_like(fg)
        out[fg] = same[nearest]
        return out

    def _seed_labels(self, w_: _Work, prior_w, seed_w, points, labels) -> np.ndarray:
        if w_.box is not None:
            gc = np.full(w_.shape, _GC_BGD, np.uint8)
            gc[w_.inside] = _GC_PR_FGD if prior_w is None else _GC_PR_BGD
            if prior_w is not None:
                gc[prior_w & (gc == _GC_PR_BGD)] = _GC_PR_FGD
        else:
            gc = np.full(w_.shape, _GC_PR_BGD, np.uint8)
            for region in (prior_w, seed_w):
                if region is not None:
                    gc[region] = _GC_PR_FGD
        for (x, y), lab in zip(points, labels, strict=True):
            cx, cy = w_.point(x, y)
            cv2.circle(gc, (cx, cy), self.click_radius, int(_GC_FGD if lab == 1 else _GC_BGD), -1)
        return gc

    def _cut(self, w_: _Work, gc: np.ndarray) -> np.ndarray:
        """Runs GrabCut from seed labels ``gc`` (modified in place); returns the foreground."""
        if not self._has_both_classes(gc):
            # GrabCut needs background and foreground samples: give it the ROI's border ring
            # as probable background (e.g. a box covering the whole image).
            ring = np.zeros_like(gc, dtype=bool)
            ring[:2, :] = ring[-2:, :] = True
            ring[:, :2] = ring[:, -2:] = True
            gc[ring & (gc == _GC_PR_FGD)] = _GC_PR_BGD
            if not self._has_both_classes(gc):
                return np.zeros(gc.shape, bool)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's GMM init uses k-means++ on OpenCV's RNG: make it repeatable
        try:
            cv2.grabCut(w_.work, gc, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            # Degenerate colour statistics (e.g. a flat single-colour region): no usable cut.
            return np.zeros(gc.shape, bool)
        return (gc == _GC_FGD) | (gc == _GC_PR_FGD)

    @staticmethod
    def _has_both_classes(gc: np.ndarray) -> bool:
        bg = np.isin(gc, (_GC_BGD, _GC_PR_BGD)).any()
        fg = np.isin(gc, (_GC_FGD, _GC_PR_FGD)).any()
        return bool(bg and fg)

    def _component_at_clicks(self, w_: _Work, region: np.ndarray, pos: np.ndarray) -> np.ndarray:
        n, comp = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        for x, y in pos:
            cx, cy = w_.point(x, y)
            keep[comp[cy, cx]] = True
        keep[0] = False
        return keep[comp]

    def _postprocess(self, w_: _Work, fg, prior_w, points, labels, *, box_only: bool) -> np.ndarray:
        if w_.box is not None:
            fg = fg & w_.inside
        if not fg.any():
            return fg
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA]
        wh, ww = fg.shape

        def components_at(lab_value: int) -> set[int]:
            found: set[int] = set()
            for (x, y), lab in zip(points, labels, strict=True):
                if lab != lab_value:
                    continue
                cx, cy = w_.point(x, y)
                r = self.click_radius
                patch = comp[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
                found.update(int(v) for v in np.unique(patch) if v)
            return found

        positive = components_at(1)
        negative = components_at(0) - positive
        keep = np.zeros(n, bool)
        if box_only:
            keep[1:] = areas[1:] >= self.min_component_fraction * areas[1:].max()
        else:
            keep[list(positive)] = True
            if prior_w is not None:
                overlap = np.bincount(comp[prior_w], minlength=n)
                # A component mostly new relative to the previous mask needs a click to stay.
                keep |= (overlap > 0) & (overlap >= 0.1 * areas)
            keep[0] = False
        if negative:
            dropped = keep.copy()
            dropped[list(negative)] = False
            if dropped.any() or not box_only:
                keep = dropped
        if not keep.any():
            # The clicks missed every component: keep the largest rather than return nothing.
            keep[1 + int(np.argmax(areas[1:]))] = True
        fg = keep[comp]
        return fill_small_holes(fg, int(self.max_hole_fraction * fg.sum()))

    # ------------------------------------------------------------------ click regions
    def _flood_seed(self, image: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels of a colour close to each positive click's, connected to it.

        Computed on a median-filtered copy (JPEG blocks and sensor noise would otherwise stop
        the fill after a few pixels) of a window around the clicks, downscaled to at most
        ``max_side`` pixels so a click stays interactive on large images.
        """
        h, w = image.shape[:2]
        reach = int(self.seed_reach * max(h, w)) + 1
        x0, y0, x1, y1 = expand_box(
            (pos[:, 0].min(), pos[:, 1].min(), pos[:, 0].max() + 1, pos[:, 1].max() + 1), w, h, pad_px=reach
        )
        region, _ = self._flood(image[y0:y1, x0:x1], pos - (x0, y0), None)
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = region
        return out

    def _flood(self, window: np.ndarray, clicks: np.ndarray, allowed: np.ndarray | None) -> tuple[np.ndarray, float]:
        """Colour flood fill from ``clicks`` ((x, y) window pixels) inside ``window``, optionally
        confined to ``allowed`` ((h, w) bool). Returns ((h, w) bool, scale used)."""
        hh, ww = window.shape[:2]
        scale = min(1.0, self.max_side / max(hh, ww))
        sw, sh = max(1, round(ww * scale)), max(1, round(hh * scale))
        small = window if scale == 1.0 else cv2.resize(window, (sw, sh), interpolation=cv2.INTER_AREA)
        small = cv2.medianBlur(np.ascontiguousarray(small), 5)
        block = np.zeros((sh + 2, sw + 2), np.uint8)
        if allowed is not None:
            block[1:-1, 1:-1] = ~resize_mask(allowed, (sh, sw), smooth=False)
        region = np.zeros((sh, sw), bool)
        t = (self.seed_tolerance,) * 3
        flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (2 << 8)
        for x, y in clicks:
            cx = int(np.clip(x * sw / ww, 0, sw - 1))
            cy = int(np.clip(y * sh / hh, 0, sh - 1))
            if block[cy + 1, cx + 1]:
                continue  # already filled by an earlier click, or outside ``allowed``
            cv2.floodFill(small, block, (cx, cy), 0, t, t, flags)
            region |= block[1:-1, 1:-1] == 2
        # Close the pin-holes noise leaves in the fill.
        region = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
        if allowed is not None:
            region &= resize_mask(allowed, (sh, sw), smooth=False)
        return (region if scale == 1.0 else resize_mask(region, (hh, ww))), scale

    def _negative_carve(
        self, image: np.ndarray, prior: np.ndarray, pos: np.ndarray, neg: np.ndarray, box: np.ndarray | None
    ) -> np.ndarray:
        """(H, W) bool: the part of the previous mask that negative clicks remove.

        For each negative click on the previous mask, in the mask's connected component there:
        a component holding no positive click while the mask has others goes whole; else the
        colour-similar connected region around the click when it is a distinct part (at most
        ``max_carve_fraction`` of the component); else (a uniformly coloured object) the part of
        the component closer to the click than to the object's anchors (positive clicks, or the
        box / component centre), i.e. the click splits the object and the far side stays.
        """
        h, w = prior.shape
        carve = np.zeros((h, w), bool)
        n, comp = cv2.connectedComponents(prior.astype(np.uint8), connectivity=8)
        for x, y in neg:
            xi, yi = int(np.clip(round(float(x)), 0, w - 1)), int(np.clip(round(float(y)), 0, h - 1))
            c = comp[yi, xi]
            if c == 0:
                continue  # outside the mask: its definite-background disk is enough
            x0, y0, x1, y1 = (int(v) for v in mask_to_xyxy(comp == c)[0])
            part = comp[y0:y1, x0:x1] == c
            pos_in = [(px, py) for px, py in pos if x0 <= px < x1 and y0 <= py < y1 and part[int(py) - y0, int(px) - x0]]
            if not pos_in and n > 2:
                carve[y0:y1, x0:x1] |= part
                continue
            region, _ = self._flood(image[y0:y1, x0:x1], np.array([[x - x0, y - y0]], np.float32), part)
            area = int(part.sum())
            if region.sum() <= self.max_carve_fraction * area and not any(region[int(py) - y0, int(px) - x0] for px, py in pos_in):
                # Eat the 1-2 px seam the median filter leaves between the part and the rest.
                region = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & part
                carve[y0:y1, x0:x1] |= region
                continue
            if pos_in:
                anchors = np.asarray(pos_in, np.float32)
            elif box is not None:
                anchors = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]], np.float32)
            else:
                rows, cols = np.nonzero(part)
                anchors = np.array([[cols.mean() + x0, rows.mean() + y0]], np.float32)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            d_neg = (xx - x) ** 2 + (yy - y) ** 2
            d_anchor = np.min([(xx - ax) ** 2 + (yy - ay) ** 2 for ax, ay in anchors], axis=0)
            split = part & (d_neg < d_anchor)
            if split.sum() < 0.02 * area:
                # The click sits on the anchor itself: remove a disk around it instead.
                split = part & (d_neg <= 0.15**2 * area)
            carve[y0:y1, x0:x1] |= split
        return carve

    @staticmethod
    def _separability(work: np.ndarray, fg: np.ndarray) -> float:
        if not fg.any():
            return 0.0
        size = max(3, int(0.05 * max(fg.shape)) | 1)
        band = cv2.dilate(fg.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool) & ~fg
        if not band.any():
            band = ~fg
        if not band.any():
            return 0.0
        bins, ranges = [8, 8, 8], [0, 256, 0, 256, 0, 256]
        h_fg = cv2.calcHist([work], [0, 1, 2], fg.astype(np.uint8), bins, ranges)
        h_bg = cv2.calcHist([work], [0, 1, 2], band.astype(np.uint8), bins, ranges)
        cv2.normalize(h_fg, h_fg, 1.0, 0.0, cv2.NORM_L1)
        cv2.normalize(h_bg, h_bg, 1.0, 0.0, cv2.NORM_L1)
        distance = cv2.compareHist(h_fg, h_bg, cv2.HISTCMP_BHATTACHARYYA)
        return float(np.clip(distance, 0.0, 1.0))
