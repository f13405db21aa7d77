"""Where an export's files go: copies (never hard links) and all-or-nothing publication.

An export is written into a temporary sibling folder ``.<name>.part-<pid>-<hex>`` and renamed
to its final name only when complete (:func:`publish_dir`); an earlier export it replaces is
moved aside first (``.<name>.old-<pid>-<hex>``) and removed afterwards. Leftovers of killed
exports are removed by the next export to the same place (:func:`remove_stale_parts`).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["copy_file", "check_out_dir", "remove_stale_parts", "publish_dir"]


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
