"""Shared pieces of the routers: the AppContext, the API user, uploaded images, lookups.

Uploads meet the UI's rules: at most ``app.ui.app.MAX_FILE_SIZE`` bytes (413 otherwise) and
decodable by ``pipeline.image_io.load_image`` (which refuses decompression bombs, non-images and
truncated files with a message naming the file: 400).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, Request, UploadFile

from app.api.errors import ApiError, not_found

T = TypeVar("T")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_CHUNK = 1 << 20


def parse_size(size: str | int) -> int:
    """"50mb" -> 52428800 (binary units, as Gradio reads ``max_file_size``)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(size))
    unit = (m.group(2).upper() if m else "") or "B"
    if not m or unit not in _UNITS:
        raise ValueError(f"file size: expected e.g. '50mb', got {size!r}")
    return int(m.group(1)) * _UNITS[unit]


def max_upload_bytes() -> int:
    from app.ui.app import MAX_FILE_SIZE

    return parse_size(MAX_FILE_SIZE)


def get_ctx(request: Request) -> Any:
    """The :class:`app.context.AppContext` the API was created with."""
    return request.app.state.ctx


Ctx = Annotated[Any, Depends(get_ctx)]
"""A route parameter receiving the AppContext."""


def api_user(request: Request) -> str | None:
    """The authenticated user (None when the API is open)."""
    return getattr(request.state, "api_user", None)


def lookup(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Calls a registry getter; its ValueError for an unknown id becomes a 404."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise not_found(exc) from exc


class UploadLimit:
    """ASGI middleware: a request whose declared ``Content-Length`` exceeds the upload limit
    (+1 MiB for the form around the file) gets 413 before its body is read. A body without a
    length (chunked) is counted by :func:`saved_upload` instead."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            limit = max_upload_bytes()
            if declared.isdigit() and int(declared) > limit + _CHUNK:
                from app.api.errors import body

                response = body(413, f"upload too large: {int(declared)} bytes, the limit is {limit} bytes; "
                                     "downscale or split the upload")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _safe_name(name: str | None) -> str:
    base = Path(name or "upload").name
    base = re.sub(r"[^\w.\- ]+", "_", base).strip(" .") or "upload"
    return base[:120]


@dataclass
class Upload:
    """An uploaded image saved to a temporary file and decoded."""

    path: Path
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied


@contextmanager
def saved_file(upload: UploadFile | None, what: str = "image", *, field: str | None = None,
               too_large_fix: str = "downscale it") -> Iterator[tuple[Path, str]]:
    """Streams ``upload`` to a temporary folder under its own (sanitised) name: ``(path, name)``.

    The folder is removed afterwards (``Registry.register_source`` copies what it keeps).
    ``what`` names the kind of file in messages ("image", "video"); ``field`` the multipart
    field (default ``what``).

    Raises:
        ApiError: 400 without a file or for an empty one, 413 over the upload limit.
    """
    field = field or what
    a_what = f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if upload is None or not upload.filename:
        raise ApiError(400, f"{field}: expected {a_what} file in the multipart field {field!r}, got none")
    limit = max_upload_bytes()
    name = _safe_name(upload.filename)
    tmp = Path(tempfile.mkdtemp(prefix="agl-api-"))
    try:
        path = tmp / name
        size = 0
        with path.open("wb") as out:
            while chunk := upload.file.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"{name}: upload too large (over {limit} bytes, the UI's limit too); "
                                        f"{too_large_fix}")
                out.write(chunk)
        if size == 0:
            raise ApiError(400, f"{name}: the file is empty; upload {a_what}")
        yield path, name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def saved_upload(upload: UploadFile | None, what: str = "image") -> Iterator[Upload]:
    """Saves ``upload`` (see :func:`saved_file`) and decodes it as an image.

    Raises:
        ApiError: 400 without a file, 413 over the size limit.
        ValueError: not a decodable image (``ImageLoadError``: names the file and the reason).
    """
    from pipeline.image_io import load_image

    with saved_file(upload, "image", field=what) as (path, name):
        yield Upload(path, name, load_image(path))


def embedder(ctx: Any) -> Any:
    """The context's embedder; 503 when there is none (weights missing: see errors.py)."""
    try:
        return ctx.embedder()
    except RuntimeError as exc:
        from app.context import is_weights_missing

        if is_weights_missing(exc):
            raise
        raise ApiError(503, str(exc), error="no embedder") from exc
