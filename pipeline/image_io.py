"""Loading images safely: one function that turns any file a user may drop into RGB uint8.

Everything the models see goes through :func:`load_image`, so the odd cases are handled once:
EXIF orientation, CMYK, palette images with transparency, grey + alpha, RGBA, 16-bit and
32-bit integer / float grey images, 1-bit images, decompression bombs, truncated files and
files that are not images at all.

High bit depth (16-bit grey or colour, e.g. a 12-bit camera image stored in 16 bits) is
rendered to 8 bits once, here, by :func:`render_high_bit_depth`; the display and every model
(the segmenter included) see that same rendering. A dark image that uses a small part of the
16-bit range is auto-contrasted (plain v * 255 / 65535 would leave it a few grey levels, on which
GrabCut finds no object). 16-bit colour PNG/TIFF are decoded at full depth with OpenCV (Pillow
would keep only the high byte of each channel).

Conventions: images are numpy arrays of shape (H, W, 3), dtype uint8, RGB channel order,
indexed [row, col] (= [y, x]); sizes are reported as (width, height) like Pillow does.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # OpenCV decodes 16-bit colour PNG/TIFF at full depth; without it Pillow's 8 bits are used
    import cv2
except ImportError:  # pragma: no cover - opencv is a runtime dependency
    cv2 = None

import image_header

ImageSource = str | Path | bytes | bytearray | memoryview

#: Default per-call pixel limit (width * height): the one limit of every path (import, register,
#: label, segment, the UI), defined in :mod:`image_header` (100 MP = 10000 x 10000).
DEFAULT_MAX_PIXELS = image_header.MAX_IMAGE_PIXELS

# EXIF orientation values 5..8 rotate by 90 degrees, so width and height swap.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}

# Background that transparent pixels are composited onto (white, as viewers show them).
_ALPHA_BACKGROUND = (255, 255, 255)


class ImageLoadError(ValueError):
    """An input that cannot be turned into an RGB image (corrupt, truncated, not an image, too big).

    The message names the file (when known) and the reason, so batch reports can show it as is.
    """


def _describe(src: ImageSource) -> str:
    # The file's name, not its folder: messages reach browser users, for whom an upload's
    # server-side temp path means nothing (callers that need the full path already have it).
    if isinstance(src, (str, Path)):
        return f"'{Path(src).name}'"
    return f"<{len(src)} bytes>"


def image_sha256(src: ImageSource) -> str:
    """SHA-256 hex digest of the file's bytes (not of the decoded pixels).

    Matches the registry's content hash, so ``reg.find_source_by_hash(image_sha256(path))``
    finds an already registered file.

    Args:
        src: a path, or the file's bytes.

    Raises:
        FileNotFoundError: the path does not exist.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(src)).hexdigest()
    digest = hashlib.sha256()
    with open(src, "rb") as fh:
        # Streamed in 1 MiB blocks: videos and huge TIFFs stay out of memory.
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(src: ImageSource, max_pixels: int) -> Image.Image:
    """Opens lazily (header only) and enforces the pixel limit before any decoding."""
    name = _describe(src)
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise ImageLoadError(f"cannot load image {name}: the file does not exist")
        if path.is_dir():
            raise ImageLoadError(f"cannot load image {name}: it is a folder, expected an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"cannot load image {name}: the file is empty (0 bytes)")
        fp: Path | io.BytesIO = path
    else:
        if len(src) == 0:
            raise ImageLoadError(f"cannot load image {name}: the data is empty (0 bytes)")
        fp = io.BytesIO(bytes(src))
    try:
        # Pillow's own global bomb check warns above MAX_IMAGE_PIXELS and raises above twice
        # that; our per-call limit below is the one that counts, so its warning is silenced
        # here (and turned into an error when the caller escalated warnings to errors).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = image_header.pil_open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(
            f"cannot load image {name}: refused as a possible decompression bomb ({exc})"
        ) from exc
    except (UnidentifiedImageError, ImportError) as exc:
        # ImportError: importing ultralytics patches Image.open to load an optional HEIF plugin
        # (pi_heif) on an unidentified file; without it, the file is still "not an image".
        raise ImageLoadError(
            f"cannot load image {name}: not an image file Pillow can read "
            "(expected JPEG, PNG, TIFF, BMP, WebP, GIF, ...)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure means "corrupt header"
        raise ImageLoadError(f"cannot load image {name}: corrupt image header ({exc})") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise ImageLoadError(f"cannot load image {name}: invalid size {width}x{height}")
    if width * height > max_pixels:
        im.close()
        raise ImageLoadError(
            f"cannot load image {name}: {width}x{height} = {width * height:,} pixels exceeds the "
            f"limit of {max_pixels:,} pixels (a possible decompression bomb); if the image is "
            f"genuine, downscale it to at most {max_pixels // 1_000_000:,} megapixels first"
        )
    return im


def read_image_size(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the image as :func:`load_image` would return it, EXIF rotation applied.

    Reads only the header (no pixel decoding), so it is cheap even for large files.

    Raises:
        ImageLoadError: not an image, or larger than ``max_pixels``.
    """
    im = _open(src, max_pixels)
    try:
        width, height = im.size
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
        except Exception:  # noqa: BLE001 - a broken EXIF block means "no rotation", as in load_image
            orientation = None
        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        return int(width), int(height)
    finally:
        im.close()


#: Auto-contrast percentiles: 0.5 % of the pixels may saturate at each end (hot pixels, specks).
_STRETCH_PERCENTILES = (0.5, 99.5)
#: A 16-bit image whose percentile range spans at least this fraction of 0..65535 is scaled
#: plainly (v * 255 / 65535); a narrower one is auto-contrasted.
_STRETCH_BELOW = 0.5
#: Pixels sampled (strided) for the percentiles: cheap on a 100 MP image, exact on small ones.
_STRETCH_SAMPLE = 1 << 20


def render_high_bit_depth(data: np.ndarray, full_scale: float = 65535.0) -> np.ndarray:
    """The 8-bit rendering of a 16-bit (grey or colour) image: the one the user and models see.

    Let ``lo``, ``hi`` be the 0.5th and 99.5th percentiles of all values (all channels together,
    so colours keep their balance). When ``hi - lo`` is at least half of ``full_scale``, or the
    image is flat (``hi <= lo``), values are scaled plainly: ``v * 255 / full_scale`` (a full-range
    image keeps its tones; a flat dark image stays dark). Otherwise [lo, hi] is stretched to
    [0, 255] and clipped (auto-contrast): a 12-bit camera image in 16 bits, or an underexposed
    one, then shows and segments like its 8-bit version.

    Args:
        data: (H, W) or (H, W, C) numeric array, finite values in [0, full_scale].
        full_scale: the value shown as white by plain scaling.

    Returns:
        uint8 array of the same shape.
    """
    data = np.asarray(data, dtype=np.float64)
    flat = data.reshape(-1)
    step = max(1, flat.size // _STRETCH_SAMPLE)
    lo, hi = (float(v) for v in np.percentile(flat[::step], _STRETCH_PERCENTILES)) if flat.size else (0.0, 0.0)
    if hi <= lo or hi - lo >= _STRETCH_BELOW * full_scale:
        scaled = data * (255.0 / full_scale)
    else:
        scaled = (data - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_uint8_grey(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scales a single-channel high bit depth array to uint8 (never clips the range away).

    - 16-bit (``I;16*``, and ``I`` whose values fit 0..65535): :func:`render_high_bit_depth`
      (plain v * 255 / 65535 for an image using most of the range, else auto-contrast).
    - ``F`` with values inside [0, 1]: v * 255.
    - anything else (``I`` with negatives or > 65535, ``F`` outside [0, 1]): min-max stretched.
    """
    data = arr.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        return render_high_bit_depth(data)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = data * 255.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# EXIF orientation -> the Pillow transpose that undoes it (as ImageOps.exif_transpose does).
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _is_16bit_colour(im: Image.Image) -> bool:
    """True for a 16-bit-per-channel RGB(A) file, which Pillow would decode to 8 bits."""
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    args = im.tile[0][3]
    rawmode = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
    return ";16" in rawmode


def _load_16bit_colour(src: ImageSource, im: Image.Image) -> np.ndarray | None:
    """A 16-bit colour PNG/TIFF decoded at full depth (OpenCV), alpha composited onto white,
    rendered by :func:`render_high_bit_depth`, EXIF orientation applied; None when OpenCV
    cannot decode it (the caller falls back to Pillow's 8 bits)."""
    if cv2 is None:
        return None
    raw = np.fromfile(src, np.uint8) if isinstance(src, (str, Path)) else np.frombuffer(bytes(src), np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    if arr.shape[:2] != (im.size[1], im.size[0]):
        return None
    data = arr[..., 2::-1].astype(np.float64)  # BGR(A) -> RGB
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float64) / 65535.0
        data = data * alpha + 65535.0 * (1.0 - alpha)
    rgb = Image.fromarray(np.ascontiguousarray(render_high_bit_depth(data)))
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no rotation"
        orientation = None
    if orientation in _EXIF_TRANSPOSE:
        rgb = rgb.transpose(_EXIF_TRANSPOSE[orientation])
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, _ALPHA_BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        rgb = im
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgb = _composite_on_white(im.convert("RGBA"))
    elif mode == "P":
        # A palette image may mark one index (or per-index alpha) as transparent.
        rgb = _composite_on_white(im.convert("RGBA")) if "transparency" in im.info else im.convert("RGB")
    elif mode in ("L", "1"):
        rgb = im.convert("L").convert("RGB")
    elif mode.startswith("I;16") or mode in ("I", "F"):
        grey = _to_uint8_grey(np.asarray(im), mode)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    else:
        # CMYK (Pillow undoes Adobe's inverted CMYK JPEGs itself), YCbCr, LAB, HSV, ...
        if "transparency" in im.info:
            rgb = _composite_on_white(im.convert("RGBA"))
        else:
            rgb = im.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array after conversion, got {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes an image file into an RGB uint8 array with EXIF orientation applied.

    Conversions: CMYK/YCbCr/LAB -> RGB; palette (with transparency) and grey(+alpha) -> RGB;
    alpha is composited onto white; 16-bit / 32-bit integer and float grey images are scaled
    (not clipped) to 0..255, see :func:`_to_uint8_grey`; 16-bit colour PNG/TIFF are read at
    full depth; high bit depth is rendered by :func:`render_high_bit_depth` (auto-contrast
    when the image uses under half the 16-bit range); 1-bit -> black/white. Multi-frame
    files (GIF, TIFF) give their first frame.

    Args:
        src: a path, or the encoded file bytes.
        max_pixels: refuse images whose width * height exceeds this, before decoding them
            (a per-call version of Pillow's ``Image.MAX_IMAGE_PIXELS``).

    Returns:
        (H, W, 3) uint8 RGB array, indexed [row, col]; H and W are after EXIF rotation.

    Raises:
        ImageLoadError: empty, missing, truncated, corrupt or non-image input, or an image
            larger than ``max_pixels``; the message names the file and the reason.
    """
    name = _describe(src)
    im = _open(src, max_pixels)
    try:
        if _is_16bit_colour(im):
            deep = _load_16bit_colour(src, im)
            if deep is not None:
                return deep
        try:
            # Decoding happens here. ImageFile.LOAD_TRUNCATED_IMAGES is deliberately left False:
            # a truncated file raises instead of silently producing grey rows.
            im.load()
        except Exception as exc:  # noqa: BLE001
            reason = str(exc) or type(exc).__name__
            if "truncated" in reason or isinstance(exc, EOFError):
                raise ImageLoadError(
                    f"cannot load image {name}: the file is truncated or incomplete ({reason}); "
                    "re-copy or re-export it"
                ) from exc
            raise ImageLoadError(f"cannot load image {name}: corrupt image data ({reason})") from exc
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the picture
            oriented = im
        try:
            return _to_rgb(oriented)
        except Exception as exc:  # noqa: BLE001
            raise ImageLoadError(
                f"cannot load image {name}: unsupported pixel format {oriented.mode!r} ({exc})"
            ) from exc
    finally:
        im.close()
