"""An image's size as every path sees it, and the one pixel limit: Pillow only, no project imports.

Both ``pipeline/`` (the image loader) and ``registry/`` (register, import, export) use this
module, which is why it lives beside them rather than inside either: neither layer may import
the other.

Conventions: sizes are ``(width, height)`` in pixels *after* EXIF orientation, as
``PIL.ImageOps.exif_transpose`` would return the image (orientations 5-8 turn it by 90
degrees, so width and height swap); only the header is read, no pixel is decoded.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

__all__ = ["MAX_IMAGE_PIXELS", "TRANSPOSING_ORIENTATIONS", "check_pixels", "image_size", "pil_open"]

#: The pixel limit (width * height) of every path: import, register, label, segment, the UI.
#: 100 MP is a 10000 x 10000 image, about 300 MB as RGB uint8: above any camera a labeling tool
#: meets, below a decompression bomb.
MAX_IMAGE_PIXELS = 100_000_000

#: EXIF orientation values that rotate by 90 degrees (width and height swap).
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112



def pil_open(fp, *args, **kwargs):
    """``PIL.Image.open`` as Pillow ships it, even after ``ultralytics`` was imported.

    Importing ultralytics replaces ``PIL.Image.open`` process-wide with a wrapper that, the first
    time a file is not an image Pillow knows, runs its requirement check for ``pi-heif`` (a pip
    install attempt) and then raises ``ModuleNotFoundError`` offline. A corrupt upload must get
    our own "not an image Pillow can read" message instead, wherever training ran before, so
    every image path of the project opens files through this function.
    """
    from PIL import Image

    opener = Image.open
    original = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", None)
    if callable(original):
        opener = original
    return opener(fp, *args, **kwargs)

def check_pixels(width: int, height: int, name: str, *, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuses an image larger than the pixel limit.

    Args:
        width, height: the image's size in pixels.
        name: how to call the image in the message (a file name, never a server path).
        max_pixels: the limit (default :data:`MAX_IMAGE_PIXELS`).

    Raises:
        ValueError: ``width * height > max_pixels``; the message says by how much and what to do.
    """
    if int(width) * int(height) > max_pixels:
        side = int((max_pixels * width / height) ** 0.5) if height else 0
        raise ValueError(
            f"image {name} is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} pixels; downscale it (e.g. to at most {side} px wide at this aspect "
            "ratio) and try again"
        )


def image_size(path: str | os.PathLike, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file after EXIF orientation, reading only its header.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this.

    Raises:
        ValueError: missing file, not an image Pillow can read, a broken header, or over the
            pixel limit. Messages name the file by its name only.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image file {p.name!r} is missing")
    try:
        # Pillow's own global bomb check warns (or raises at twice its limit); ours below counts.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = pil_open(p)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image {p.name!r} is refused as a possible decompression bomb ({exc}); "
                         f"the limit is {max_pixels:,} pixels") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"{p.name!r} is not an image Pillow can read (expected JPEG, PNG, TIFF, "
                         "BMP, WebP, ...)") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt header
        raise ValueError(f"image {p.name!r} has a corrupt header ({exc})") from exc
    with im:
        width, height = im.size
        try:
            orientation = im.getexif().get(_ORIENTATION_TAG)
        except Exception:  # noqa: BLE001 - a broken EXIF block means no rotation, as the loader does
            orientation = None
    if width <= 0 or height <= 0:
        raise ValueError(f"image {p.name!r} has an invalid size {width}x{height}")
    check_pixels(width, height, repr(p.name), max_pixels=max_pixels)
    if orientation in TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return int(width), int(height)
