"""``/datasets``: create (build version 1 or the next), rebuild, list, get, export, download.

Datasets are versioned by name (``registry.datasets``): ``POST /datasets`` builds a new version
of the named dataset, ``POST /datasets/{id}/build`` builds the next version of an existing one
with its stored filter and split (or the overrides given). Exports go to
``<data>/exports/<name>_v<N>_<format>_<task>/`` plus a zip, downloadable from
``GET /datasets/exports/{zip name}``. These use the ``registry.datasets`` / ``registry.export``
module functions (the same the Export tab's ``app.workflows.export`` calls): datasets are not
``Registry`` methods.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.api.deps import Ctx, lookup
from app.api.errors import ApiError, not_found
from app.api.schemas import (
    DatasetBuildIn,
    DatasetBuildOut,
    DatasetIn,
    DatasetOut,
    ExportIn,
    ExportOut,
)

router = APIRouter(prefix="/datasets", tags=["datasets"])


def _build_out(built: dict) -> dict:
    splits = built.get("splits", {})
    return {
        "dataset_id": built["dataset_id"], "name": built["name"], "version": int(built["version"]),
        "object_count": int(built.get("object_count", 0)), "image_count": int(built.get("image_count", 0)),
        "splits": {s: int(v.get("objects", 0)) for s, v in splits.items()},
        "split_details": {s: dict(v) for s, v in splits.items()},
    }


def _filter_dict(flt: Any) -> dict:
    return flt.model_dump(by_alias=False)


def _build(reg: Any, name: str, flt: dict, split: dict, seed: int) -> dict:
    from registry.datasets import build_dataset

    return _build_out(build_dataset(reg, name, flt, split, int(seed)))


@router.post("", response_model=DatasetBuildOut, status_code=201)
def create_dataset(ctx: Ctx, body: DatasetIn) -> dict:
    """Selects objects by ``filter_config``, splits by source (``split_config``), stores a version."""
    return _build(ctx.registry, body.name.strip(), _filter_dict(body.filter_config),
                  body.split_config.model_dump(), body.seed)


@router.get("", response_model=list[DatasetOut])
def list_datasets(ctx: Ctx) -> list[dict]:
    """Every dataset version, newest first."""
    from registry.datasets import list_datasets as _list

    return _list(ctx.registry)


@router.get("/exports/{file_name}", response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}}})
def download_export(ctx: Ctx, file_name: str) -> FileResponse:
    """A zip written by ``POST /datasets/{id}/export`` (only ``<data>/exports/*.zip``)."""
    root = (Path(ctx.data_dir) / "exports").resolve()
    path = (root / file_name).resolve()
    if path.parent != root or path.suffix != ".zip" or not path.is_file():
        raise not_found(f"no export zip {file_name!r}; POST /api/v1/datasets/{{id}}/export writes one")
    return FileResponse(path, media_type="application/zip", filename=path.name)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(ctx: Ctx, dataset_id: str) -> dict:
    """A dataset version by id, or the latest version of a name."""
    from registry.datasets import get_dataset as _get

    return lookup(_get, ctx.registry, dataset_id)


@router.post("/{dataset_id}/build", response_model=DatasetBuildOut, status_code=201)
def build_dataset(ctx: Ctx, dataset_id: str, body: DatasetBuildIn | None = None) -> dict:
    """The next version of a dataset: its stored filter/split/seed unless overridden here."""
    from registry.datasets import get_dataset as _get

    ds = lookup(_get, ctx.registry, dataset_id)
    body = body or DatasetBuildIn()
    split_cfg = dict(ds.get("split_config") or {})
    flt = _filter_dict(body.filter_config) if body.filter_config is not None else dict(ds.get("filter_config") or {})
    split = body.split_config.model_dump() if body.split_config is not None else {
        k: split_cfg[k] for k in ("train", "val", "test") if k in split_cfg}
    seed = body.seed if body.seed is not None else int(split_cfg.get("seed", 0))
    return _build(ctx.registry, ds["name"], flt, split or None, seed)


@router.post("/{dataset_id}/export", response_model=ExportOut)
def export_dataset(ctx: Ctx, dataset_id: str, body: ExportIn | None = None) -> dict:
    """Writes the dataset version as YOLO or COCO (detect or segment) into ``<data>/exports`` + a zip."""
    import re

    from registry.datasets import get_dataset as _get
    from registry.export import export_dataset as _export

    body = body or ExportIn()
    ds = lookup(_get, ctx.registry, dataset_id)
    data_dir = Path(ctx.data_dir)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ds["name"]).strip("._") or "dataset"
    out = data_dir / "exports" / f"{safe}_v{ds['version']}_{body.format}_{body.task}"
    try:
        res = _export(ctx.registry, ds["dataset_id"], out, body.format, body.task, zip=True, overwrite=True)
    except FileExistsError as exc:
        raise ApiError(409, str(exc)) from exc
    folder = Path(res.get("out_dir") or out)
    zip_path = Path(res["zip"]) if res.get("zip") else None

    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(data_dir.resolve()).as_posix()
        except ValueError:
            return str(p)

    return {
        "dataset_id": ds["dataset_id"], "name": ds["name"], "version": ds["version"], "format": body.format,
        "task": body.task, "folder": rel(folder), "zip": rel(zip_path) if zip_path else None,
        "download": f"/api/v1/datasets/exports/{zip_path.name}" if zip_path else None,
        "counts": res.get("counts") or {}, "skipped": len(res.get("skipped") or []),
    }
