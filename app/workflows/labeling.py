"""Auto-labeling into the registry: one file, or many files and folders in a resumable batch.

The pipeline's ``Detections`` become registry objects through
:func:`app.workflows.register_detections.register_detections` (the UI's save, the REST API,
video frames and ``launch.py label`` all use it).

Conventions: images are (H, W, 3) uint8 RGB as ``pipeline.image_io.load_image`` returns them
(EXIF orientation applied); boxes ``xyxy`` absolute pixels of that image; masks (H, W) bool in
its pixel grid; embeddings (D,) float32.

Resumability: after a source is labeled, its metadata gets a ``"labeling"`` entry holding a
fingerprint of the settings (class names, confidence threshold, the labeler's model names).
A later batch skips sources whose fingerprint matches, and labels again when anything changed
(the registry's IoU dedupe keeps objects found again from being stored twice).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.workflows.batch_label import label_batch
from app.workflows.register_detections import register_detections
from pipeline.image_io import image_sha256, load_image
from pipeline.types import Detections

log = logging.getLogger(__name__)

#: File extensions a folder is searched for (lower case). Files named explicitly are always tried.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

#: Key of the labeling record in a source's metadata.
METADATA_KEY = "labeling"


def labeler_identity(labeler: Any) -> dict[str, Any]:
    """Model names of a labeler (``AutoLabeler.model_names``), or its class name for others."""
    names = getattr(labeler, "model_names", None)
    if isinstance(names, dict):
        return {k: v for k, v in names.items()}
    return {"labeler": getattr(labeler, "name", None) or type(labeler).__name__}


def settings_fingerprint(classes: Sequence[str], confidence: float, labeler: Any) -> tuple[str, dict]:
    """(sha1 hex, settings dict) of what decides a labeling result: class names (order and case
    ignored), the confidence threshold and the labeler's model identity."""
    settings = {
        "classes": sorted({c.strip().lower() for c in classes}),
        "confidence": round(float(confidence), 6),
        "models": labeler_identity(labeler),
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return digest, settings


def category_synonyms(reg: Any, classes: Sequence[str]) -> dict[str, list[str]]:
    """class name -> the registry category's synonyms (classes without any are left out)."""
    out: dict[str, list[str]] = {}
    for c in classes:
        cat = reg.get_category(c)
        syn = [s for s in (cat or {}).get("synonyms") or [] if s and s.lower() != c.lower()]
        if syn:
            out[c] = syn
    return out


def _check_classes(classes: Sequence[str], confidence: float) -> list[str]:
    names = [str(c).strip() for c in classes if str(c).strip()]
    if not names:
        raise ValueError('classes: expected at least one class name (e.g. --classes "person,car"), got none')
    if not 0.0 <= float(confidence) <= 1.0:
        raise ValueError(f"confidence: expected a value in [0, 1], got {confidence}")
    return names


def label_file(
    reg: Any,
    labeler: Any,
    path: str | os.PathLike,
    classes: Sequence[str],
    *,
    confidence: float = 0.3,
    project: str | None = None,
    synonyms: dict[str, list[str]] | None = None,
) -> dict:
    """Loads one image, registers it (copied into the data folder), labels it, registers the objects.

    Args:
        reg: a ``registry.facade.Registry``.
        labeler: anything with ``label(image, classes, *, confidence, synonyms, image_key) -> Detections``.
        path: the image file.
        classes: class names to look for.
        confidence: detections below it are dropped (by the labeler).
        project: project name for the source and its objects.
        synonyms: class -> synonyms for the detector; None reads them from the registry's
            categories.

    Returns:
        {"path", "source_id", "detections", "objects" (newly registered), "duplicates"}.

    Raises:
        pipeline.image_io.ImageLoadError: not a readable image (nothing is registered).
        FileNotFoundError: ``path`` does not exist.
    """
    classes = _check_classes(classes, confidence)
    fingerprint, settings = settings_fingerprint(classes, confidence, labeler)
    return _label_one(reg, labeler, Path(path), classes, confidence=float(confidence), project=project,
                      synonyms=category_synonyms(reg, classes) if synonyms is None else synonyms,
                      fingerprint=fingerprint, settings=settings)


def _label_one(reg, labeler, path: Path, classes, *, confidence, project, synonyms, fingerprint, settings) -> dict:
    image, source_id, image_key = _load_and_register(reg, path, project)
    det = labeler.label(image, list(classes), confidence=confidence, synonyms=synonyms or None, image_key=image_key)
    del image
    return _record(reg, labeler, path, source_id, det, project=project, fingerprint=fingerprint, settings=settings)


def _load_and_register(reg, path: Path, project) -> tuple[np.ndarray, str, str | None]:
    """``(image, source_id, image_key)``: the file decoded, then registered (copied into the data
    folder); the key is its sha256, as Refine keys SAM2's cache."""
    if not path.is_file():
        raise FileNotFoundError(f"expected an image file, got {str(path)!r} (no such file)")
    image = load_image(path)  # before registering: a file that does not decode is never a source
    h, w = image.shape[:2]
    source_id = reg.register_source(path, width=w, height=h, project=project)
    return image, source_id, reg.get_source(source_id).get("content_hash")


def _record(reg, labeler, path: Path, source_id: str, det: Detections, *, project, fingerprint, settings) -> dict:
    """Registers one labeled image's objects and its labeling record (what makes it skippable)."""
    models = labeler_identity(labeler)
    res = register_detections(reg, source_id, det, project=project, detection_model=models.get("detector") or models.get("labeler"))
    n_new = sum(1 for o in res.object_ids if o)
    reg.update_source_metadata(
        source_id,
        {METADATA_KEY: {"fingerprint": fingerprint, "settings": settings, "detections": len(det),
                        "labeled_at": datetime.now(UTC).isoformat(timespec="seconds")}},
    )
    return {"path": str(path), "source_id": source_id, "detections": len(det), "objects": n_new,
            "duplicates": len(res.duplicates)}


def _label_batch(reg, labeler, paths: list[Path], classes, *, confidence, project, synonyms, fingerprint,
                 settings) -> list[dict | Exception]:
    """:func:`_label_one` for several files with one ``labeler.label_many`` call: each file's
    result dict, or the exception that stopped it. A file that does not load fails alone; when
    ``label_many`` raises, the batch's images are labeled one by one (``batch_label``), so each
    error names its own file and the others are kept."""
    out: list[dict | Exception] = []
    loaded = []
    for path in paths:
        try:
            loaded.append((len(out), path, *_load_and_register(reg, path, project)))
            out.append(RuntimeError("not labeled"))
        except Exception as exc:
            out.append(exc)
    if not loaded:
        return out
    dets = label_batch(labeler, [im for _, _, im, _, _ in loaded], [k for *_, k in loaded], classes,
                       confidence=confidence, synonyms=synonyms)
    for (slot, path, _, source_id, _), det in zip(loaded, dets, strict=True):
        if isinstance(det, Exception):
            out[slot] = det
            continue
        try:
            out[slot] = _record(reg, labeler, path, source_id, det, project=project, fingerprint=fingerprint,
                                settings=settings)
        except Exception as exc:
            out[slot] = exc
    return out


def already_labeled(reg: Any, path: Path, fingerprint: str, *, digest: str | None = None) -> str | None:
    """The source id when ``path``'s bytes (sha256 ``digest`` when the caller has it) are
    registered and were labeled with ``fingerprint``."""
    src = reg.find_source_by_hash(digest or image_sha256(path))
    if src is None:
        return None
    record = (src.get("metadata") or {}).get(METADATA_KEY) or {}
    return src["source_id"] if record.get("fingerprint") == fingerprint else None


def iter_image_paths(paths: Sequence[str | os.PathLike]) -> Iterator[Path]:
    """Files as given, folders expanded recursively (sorted) to files with an image extension.

    A path that does not exist is yielded as is (labeling it reports the failure).
    """
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                        yield Path(root) / name
        else:
            yield p


@dataclass
class BatchReport:
    """Outcome of :func:`label_paths`.

    Attributes:
        total: files considered.
        labeled: files labeled in this run.
        skipped: files already labeled with the same settings (not labeled again).
        failed: (path, reason) for files that could not be labeled.
        objects: objects newly registered.
        duplicates: detections skipped as duplicates of registered objects.
        source_ids: the source of each labeled or skipped file, in order.
    """

    total: int = 0
    labeled: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    objects: int = 0
    duplicates: int = 0
    source_ids: list[str] = field(default_factory=list)

    def summary(self, max_reasons: int = 20) -> str:
        """One paragraph: counts, then "3 of 120 failed: path: reason; …" when some failed."""
        head = (f"{self.total} file(s): {self.labeled} labeled, {self.skipped} already labeled with these "
                f"settings, {self.objects} object(s) registered, {self.duplicates} duplicate(s) skipped")
        if not self.failed:
            return head
        shown = [f"  {p}: {r}" for p, r in self.failed[:max_reasons]]
        more = len(self.failed) - len(shown)
        if more > 0:
            shown.append(f"  … and {more} more")
        return head + f"\n{len(self.failed)} of {self.total} failed:\n" + "\n".join(shown)

    def to_dict(self) -> dict:
        return {"total": self.total, "labeled": self.labeled, "skipped": self.skipped,
                "failed": [{"path": p, "reason": r} for p, r in self.failed], "objects": self.objects,
                "duplicates": self.duplicates, "source_ids": list(self.source_ids)}


def label_paths(
    reg: Any,
    labeler: Any,
    paths: Sequence[str | os.PathLike],
    classes: Sequence[str],
    *,
    confidence: float = 0.3,
    project: str | None = None,
    progress: bool = True,
    relabel: bool = False,
    batch_images: int = 1,
) -> BatchReport:
    """Labels files and folders, skipping failures; resumable.

    Images are loaded, labeled and released ``batch_images`` at a time (one by one by default),
    so memory stays that of one batch whatever the number of files; with ``batch_images`` > 1
    and a labeler with ``label_many`` (``pipeline.autolabel.AutoLabeler``), each batch goes
    through the models together (what keeps a GPU busy). A file that fails (unreadable, not an
    image, a labeler error) is recorded with its reason and the run goes on. Sources already
    labeled with the same settings (see the module doc) are skipped unless ``relabel``.

    Args:
        reg: a ``registry.facade.Registry``.
        labeler: anything with ``label(image, classes, *, confidence, synonyms, image_key) -> Detections``.
        paths: files and folders (searched recursively for image extensions).
        classes: class names to look for.
        confidence: detection threshold in [0, 1].
        project: project name for sources and objects.
        progress: show a tqdm progress bar (on stderr).
        relabel: label every file again, even when labeled with the same settings.
        batch_images: images per ``label_many`` call (>= 1).

    Returns:
        A :class:`BatchReport`.

    Raises:
        ValueError: no classes, or a confidence outside [0, 1] (before anything is labeled).
    """
    from tqdm import tqdm

    classes = _check_classes(classes, confidence)
    fingerprint, settings = settings_fingerprint(classes, confidence, labeler)
    synonyms = category_synonyms(reg, classes)
    files = list(iter_image_paths(paths))  # paths only (cheap): the bar needs a total
    report = BatchReport(total=len(files))
    bar = tqdm(files, total=len(files), unit="img", desc="labeling", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    batch = max(1, int(batch_images))
    batched = batch > 1 and hasattr(labeler, "label_many")
    pending: list[Path] = []
    pending_digests: set[str] = set()  # the bytes in ``pending``: a second copy waits for the first

    def flush() -> None:
        pending_digests.clear()
        if not pending:
            return
        kwargs = {"confidence": float(confidence), "project": project, "synonyms": synonyms,
                  "fingerprint": fingerprint, "settings": settings}
        if batched:
            results = _label_batch(reg, labeler, pending, classes, **kwargs)
        else:
            results = []
            for path in pending:
                try:
                    results.append(_label_one(reg, labeler, path, classes, **kwargs))
                except Exception as exc:
                    results.append(exc)
        for path, out in zip(pending, results, strict=True):
            if isinstance(out, Exception):  # skip failures, as FiftyOne's apply_model(skip_failures=True)
                reason = str(out) if isinstance(out, (ValueError, OSError)) else f"{type(out).__name__}: {out}"
                log.debug("labeling %s failed", path, exc_info=out)
                report.failed.append((str(path), reason))
                continue
            report.labeled += 1
            report.objects += out["objects"]
            report.duplicates += out["duplicates"]
            report.source_ids.append(out["source_id"])
        pending.clear()
        bar.set_postfix(objects=report.objects, failed=len(report.failed), refresh=False)

    for path in bar:
        digest = None
        try:
            if not relabel and path.is_file():
                digest = image_sha256(path)
                if digest in pending_digests:  # the same bytes again: label the first copy, then skip this one
                    flush()
                done = already_labeled(reg, path, fingerprint, digest=digest)
                if done is not None:
                    flush()  # source_ids stay in file order
                    report.skipped += 1
                    report.source_ids.append(done)
                    continue
        except Exception as exc:
            report.failed.append((str(path), str(exc) if isinstance(exc, (ValueError, OSError))
                                  else f"{type(exc).__name__}: {exc}"))
            continue
        pending.append(path)
        if digest is not None:
            pending_digests.add(digest)
        if len(pending) >= batch:
            flush()
    flush()
    bar.close()
    return report
