"""Export glue for the UI: dataset spec -> build (registry.datasets) -> export -> folder + zip.

The converters live in ``registry/`` (``registry.datasets.build_dataset`` and the exporters);
this module only names the four UI formats, builds the dataset and zips the result.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = {
    "YOLO detect": ("yolo", "detect"),
    "YOLO segment": ("yolo", "segment"),
    "COCO detect": ("coco", "detect"),
    "COCO segment": ("coco", "segment"),
}


@dataclass
class ExportSpec:
    """A dataset request from the Export tab (or the ``export`` API endpoint)."""

    name: str = "dataset"
    categories: list[str] = field(default_factory=list)
    min_confidence: float | None = None
    validated_only: bool = False
    project: str | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def check(self) -> None:
        if not (self.name or "").strip():
            raise ValueError("dataset name: expected a name, got nothing; type one")
        if any(r < 0 for r in self.split) or sum(self.split) <= 0:
            raise ValueError(f"split ratios: expected non-negative numbers with a positive sum, got {self.split}")

    def filter(self):
        from registry.datasets import DatasetFilter

        return DatasetFilter(categories=[c for c in self.categories if c] or None,
                             min_confidence=self.min_confidence or None,
                             validated_only=bool(self.validated_only), project=self.project or None)


def _counts(built: dict) -> dict:
    splits = built.get("splits", {})
    return {
        "dataset_id": built.get("dataset_id"),
        "name": built.get("name"),
        "version": built.get("version"),
        "images": int(built.get("image_count", 0)),
        "objects": int(built.get("object_count", 0)),
        "per_split": {s: {"images": int(v.get("images", 0)), "objects": int(v.get("objects", 0))} for s, v in splits.items()},
        "per_split_class": {s: dict(v.get("classes", {})) for s, v in splits.items()},
        "ratios": built.get("ratios", {}),
    }


def build(reg: Any, spec: ExportSpec, *, dry_run: bool = False) -> dict:
    """Builds a new version of the dataset (or, with ``dry_run``, only computes it).

    Returns the raw ``build_dataset`` result.
    """
    from registry.datasets import build_dataset

    spec.check()
    return build_dataset(reg, spec.name.strip(), spec.filter(), list(spec.split), int(spec.seed),
                         dry_run=dry_run)


def preview(reg: Any, spec: ExportSpec) -> dict:
    """Counts per split and class for the spec; stores nothing (no dataset version is made)."""
    return _counts(build(reg, spec, dry_run=True))


def summary_line(c: dict) -> str:
    parts = [f"{s}: {v['images']} images / {v['objects']} objects" for s, v in c["per_split"].items()]
    return f"**{c['name']}** v{c['version']} · {c['images']} images, {c['objects']} objects · " + " · ".join(parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


def export(reg: Any, data_dir: Path, spec: ExportSpec, fmt: str) -> dict:
    """Builds the dataset and writes it as ``fmt`` to ``<data>/exports/<name>_v<N>_<fmt>/`` + a zip.

    Returns:
        {"folder": Path, "zip": Path, "images": int, "objects": int, "counts": preview dict}.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {fmt!r}")
    kind, task = FORMATS[fmt]
    built = build(reg, spec)
    c = _counts(built)
    out = Path(data_dir) / "exports" / f"{_safe(spec.name)}_v{c['version']}_{kind}_{task}"
    from registry.export import export_dataset

    res = export_dataset(reg, built["dataset_id"], out, kind, task, zip=True, overwrite=True)
    zip_path = Path(res["zip"]) if res.get("zip") else Path(shutil.make_archive(str(out), "zip", root_dir=out))
    return {"folder": Path(res.get("out_dir") or out), "zip": zip_path, "images": c["images"],
            "objects": c["objects"], "counts": c, "skipped": len(res.get("skipped") or [])}
