"""Where an export's files go: copies (never hard links) and all-or-nothing publication.

An export is written into a temporary sibling folder ``.<name>.part-<pid>-<hex>`` and renamed
to its final name only when complete (:func:`publish_dir`); an earlier export it replaces is
moved aside first (``.<name>.old-<pid>-<hex>``) and removed afterwards. Leftovers of killed
exports are removed by the next export to the same place (:func:`remove_stale_parts`).

Exported images keep their source's own file name, made safe and unique (:class:`ExportNames`).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath

__all__ = ["copy_file", "check_out_dir", "remove_stale_parts", "publish_dir", "ExportNames", "safe_stem"]

#: Runs of anything but (unicode) letters, digits, ``_``, ``-`` and ``.`` become one ``_``.
_UNSAFE_RUN = re.compile(r"[^\w.\-]+")
#: Longest stem written, in UTF-8 bytes (file systems allow 255 per name; room for suffixes).
_MAX_STEM_BYTES = 120
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_stem(file_name: str | None) -> str:
    """The stem of a user's file name as a safe, portable file name stem ('' if nothing is left).

    Only the last path component counts (``/`` and ``\\`` both separate); unicode is kept,
    NFC-normalised (``é`` stays ``é``; macOS's decomposed form becomes the composed one);
    every run of characters other than letters, digits, ``_``, ``-``, ``.`` (spaces, controls,
    ``<>:"|?*``, quotes) becomes one ``_``; ``..`` runs become one ``.``; leading/trailing dots,
    underscores and hyphens are dropped (no hidden files, no trailing dot on Windows); Windows
    device names (``CON``, ``NUL``, …) get a trailing ``_``; at most 120 UTF-8 bytes.
    """
    base = (file_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = PurePosixPath(unicodedata.normalize("NFC", base)).stem if base else ""
    stem = re.sub(r"\.{2,}", ".", _UNSAFE_RUN.sub("_", stem)).strip("._-")
    stem = stem.encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", "ignore").rstrip("._-")
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem += "_"
    return stem


class ExportNames:
    """Unique exported file names from the sources' own names, in the order asked for.

    The first image whose safe stem is ``street_0042`` gets ``street_0042<suffix>``; a later one
    with the same stem (compared case-insensitively: macOS and Windows file systems are) gets
    ``street_0042__<first 8 id characters>``, then ``__<whole id>`` if that is taken too. A
    source without a usable name is named by its id. Frames of a video are
    ``<video stem>_f<frame index, 6 digits>``. The export asks in a fixed order (split, source id,
    frame), so the same registry gives the same names. YOLO label files take the same stem.
    """

    def __init__(self) -> None:
        self._used: set[str] = set()

    def name(self, key: str, original: str | None, suffix: str, frame_idx: int | None = None) -> str:
        """The file name (stem + ``suffix``) for registry id ``key`` whose source file is ``original``."""
        stem = safe_stem(original) or key
        if frame_idx is not None:
            stem = f"{stem}_f{int(frame_idx):06d}"
        # Ids are time-ordered (registry.ids): ids made together share their leading (time)
        # characters and differ in the trailing (random) ones.
        short = key.split("_", 1)[-1][-8:]
        candidates = [stem, f"{stem}__{short}", f"{stem}__{key}"]
        n = 2
        while candidates[0].casefold() in self._used:
            candidates.pop(0)
            if not candidates:
                candidates, n = [f"{stem}__{key}_{n}"], n + 1
        self._used.add(candidates[0].casefold())
        return candidates[0] + suffix


def copy_file(src: Path, dst: Path) -> None:
    """Copies ``src`` to a new file ``dst``: ``os.copy_file_range`` (in-kernel, a reflink on
    filesystems that share extents), else :func:`shutil.copyfile`. Never a hard link."""
    try:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            remaining = os.fstat(fin.fileno()).st_size
            while remaining > 0:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), remaining)
                if n == 0:
                    break
                remaining -= n
            if remaining > 0:
                raise OSError(errno.EIO, "short copy")
        return
    except (AttributeError, OSError) as exc:  # no copy_file_range, or not across these filesystems
        if isinstance(exc, FileExistsError):
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
    shutil.copyfile(src, dst)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuses a non-empty ``out_dir`` unless ``overwrite`` and it is an earlier export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output path {out_dir.name!r} is a file; choose a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"output folder {out_dir.name!r} is not empty; choose an empty or new folder "
                "(or pass overwrite=True / --overwrite to replace an earlier export)"
            )
        if not (out_dir / "manifest.json").is_file():
            raise ValueError(
                f"refusing to overwrite {out_dir.name!r}: it holds no manifest.json, so it is not an "
                "earlier export; choose an empty or new folder"
            )


def remove_stale_parts(out_dir: Path) -> None:
    """Removes ``.<name>.part-<pid>-…`` / ``.<name>.old-<pid>-…`` folders and ``.<name>.zip-part-<pid>-…``
    files left by exports to ``out_dir`` whose process is gone."""
    for p in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.*-*"):
        kind, _, rest = p.name[len(out_dir.name) + 2:].partition("-")
        if kind not in ("part", "old", "zip") or not rest.split("-")[0].isdigit():
            continue
        pid = int(rest.split("-")[0])
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # that export is still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def publish_dir(work: Path, out_dir: Path) -> None:
    """Renames the complete ``work`` folder to ``out_dir`` (replacing an empty folder or, moved
    aside first, an earlier export)."""
    old = None
    if out_dir.exists() and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-{os.getpid()}-", dir=out_dir.parent))
        os.replace(out_dir, old / "export")
    elif out_dir.exists():
        out_dir.rmdir()
    os.replace(work, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
