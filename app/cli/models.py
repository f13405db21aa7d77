"""``launch.py models status|download|import``: what model weights are here, and getting them.

    python launch.py models status [--profile cpu|gpu] [--json]
    python launch.py models download [--profile cpu|gpu]      # on a machine with internet
    python launch.py models import DIR [--force]               # on an air-gapped machine
    python launch.py models optimize [--json]   # convert for OpenVINO now, not on first use

Weights live in the weights dir (``--weights-dir``, else ``$AGL_WEIGHTS``, else
``<data>/models``), one folder per model named ``<owner>--<name>`` (e.g.
``florence-community--Florence-2-base``). ``download`` writes exactly that layout, so the folder
can be carried to an air-gapped machine and given to ``import`` as it is. ``import`` also
accepts folders named like the model (``Florence-2-base``) and Hugging Face cache folders
(``models--owner--name/snapshots/<commit>``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from app.cli.common import add_data_arg, add_json_arg

# pipeline.models.{specs,loader} import no torch: these commands stay quick.
from pipeline.models.loader import (
    WeightsMissingError,
    download_weights,
    folder_problem,
    folder_size,
    locate_weights,
    read_model_type,
)
from pipeline.models.specs import (
    PROFILES,
    ROLE_MODEL_TYPES,
    ROLES,
    ModelSpec,
    get_profile,
    known_specs,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="model weights: status, download, import")
    models_sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    status = models_sub.add_parser("status", help="which models are present, where, and their size")
    _common(status)
    add_json_arg(status)
    status.set_defaults(func=cmd_status)

    download = models_sub.add_parser("download", help="download a profile's models (needs internet)")
    _common(download)
    download.set_defaults(func=cmd_download)

    optimize = models_sub.add_parser(
        "optimize",
        help="convert the present models' vision encoders (and SAM2's mask decoder) for OpenVINO now "
             "(else done on first use)")
    _common(optimize)
    add_json_arg(optimize)
    optimize.set_defaults(func=cmd_optimize)

    imp = models_sub.add_parser("import", help="copy model folders from DIR into the weights dir")
    imp.add_argument("source", type=Path, metavar="DIR", help="a model folder, or a folder of model folders")
    imp.add_argument("--force", action="store_true", help="replace models already present")
    add_data_arg(imp)
    _weights_arg(imp)
    imp.set_defaults(func=cmd_import)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="model profile (default cpu)")
    add_data_arg(parser)
    _weights_arg(parser)


def _weights_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="where model folders live (default: $AGL_WEIGHTS, else <data>/models)",
    )


def weights_dir_for(data: str | os.PathLike, weights_dir: str | os.PathLike | None = None) -> Path:
    """Where model folders live: ``weights_dir``, else ``$AGL_WEIGHTS``, else ``<data>/models``
    (where ``models import --data DIR`` puts them). Every command resolves it this way."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser().resolve()
    if os.environ.get("AGL_WEIGHTS"):
        return Path(os.environ["AGL_WEIGHTS"]).expanduser().resolve()
    return (Path(data).expanduser() / "models").resolve()


def weights_dir_of(args: argparse.Namespace) -> Path:
    """``--weights-dir``, else ``$AGL_WEIGHTS``, else ``<--data>/models``."""
    return weights_dir_for(args.data, args.weights_dir)


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def model_status(specs: dict[str, ModelSpec], weights_dir: Path) -> list[dict]:
    """One row per role: present, source, path, size (no network access)."""
    rows = []
    for role, spec in specs.items():
        row = {"role": role, "name": spec.name, "hub_id": spec.hub_id, "present": False,
               "source": None, "path": None, "size_bytes": 0, "problem": None}
        try:
            found = locate_weights(spec, weights_dir=weights_dir)
        except WeightsMissingError as exc:
            row["problem"] = str(exc)
            found = None
        if found is not None:
            row.update(present=True, source=found.source, path=str(found.path), size_bytes=folder_size(found.path))
        rows.append(row)
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    weights_dir = weights_dir_of(args)
    rows = model_status(get_profile(args.profile), weights_dir)
    if args.json:
        print(json.dumps({"profile": args.profile, "weights_dir": str(weights_dir), "models": rows}, indent=2))
        return 0
    print(f"profile {args.profile}; weights dir {weights_dir}")
    for row in rows:
        where = f"{row['source']}: {row['path']} ({human_size(row['size_bytes'])})" if row["present"] else "missing"
        print(f"  {row['role']:<10} {row['hub_id']:<40} {where}")
    if not all(r["present"] for r in rows):
        print(
            f"Missing models: run `python launch.py models download --profile {args.profile}` on a "
            "machine with internet, or `python launch.py models import DIR` with copied model folders."
        )
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """Loads each present model on the CPU with the OpenVINO runtime, which converts its vision
    encoder once and caches the IR (``pipeline.models.openvino_runtime``); the first auto-label
    then starts at full speed. Exit 0 when every model runs on OpenVINO, 1 otherwise."""
    import time

    from pipeline.models.manager import ModelManager
    from pipeline.models.openvino_runtime import cache_root, cpu_runtime

    if cpu_runtime() != "openvino":
        print("the CPU runtime is PyTorch (AGL_CPU_RUNTIME=torch, or openvino not installed): nothing to convert")
        return 0
    mgr = ModelManager(args.profile, weights_dir=weights_dir_of(args), device="cpu", download=False, runtime="openvino")
    rows = []
    for role, load in (("detector", mgr.detector), ("segmenter", mgr.segmenter), ("embedder", mgr.embedder)):
        t0 = time.perf_counter()
        try:
            model = load()
        except WeightsMissingError as exc:
            rows.append({"role": role, "runtime": None, "ir": None, "seconds": 0.0, "problem": str(exc)})
            continue
        vision = getattr(model, "vision", None)
        # SAM2 also compiles its mask decoder (the click path): both or it is not "openvino"
        decoder = getattr(model, "prompt_decoder", vision)
        done = vision is not None and decoder is not None
        rows.append({"role": role, "runtime": "openvino" if done else "torch",
                     "ir": str(vision.source) if vision is not None else None,
                     **({"decoder_ir": str(decoder.source) if decoder is not None else None}
                        if hasattr(model, "prompt_decoder") else {}),
                     "seconds": round(time.perf_counter() - t0, 1),
                     "problem": None if done else "conversion failed: see the warning above"})
        mgr.unload(role)
    ok = all(r["runtime"] == "openvino" for r in rows)
    if args.json:
        print(json.dumps({"cache": str(cache_root()), "models": rows, "ok": ok}, indent=2))
        return 0 if ok else 1
    for r in rows:
        where = r["ir"] if r["runtime"] == "openvino" else r["problem"]
        print(f"  {r['role']:<10} {r['runtime'] or 'missing':<9} {r['seconds']:>6.1f} s  {where}")
    return 0 if ok else 1


def cmd_download(args: argparse.Namespace) -> int:
    weights_dir = weights_dir_of(args)
    for role, spec in get_profile(args.profile).items():
        found = locate_weights(spec, weights_dir=weights_dir)
        if found is not None:
            print(f"{role}: {spec.hub_id} already present ({found.source}: {found.path})")
            continue
        print(f"{role}: downloading {spec.hub_id} into {weights_dir / spec.folder_name}", flush=True)
        path = download_weights(spec, weights_dir)  # WeightsMissingError -> "error: ..." exit 2
        print(f"{role}: {spec.hub_id} ready at {path} ({human_size(folder_size(path))})")
    return 0


# --- import --------------------------------------------------------------------------------------

_KNOWN_BY_NAME = {spec.hub_id.split("/")[-1].lower(): spec.hub_id for spec in known_specs()}
_ROLE_BY_HUB_ID = {spec.hub_id: spec.role for spec in known_specs()}


def _snapshot_of(cache_repo: Path) -> Path | None:
    """The snapshot folder of an HF-cache repo folder (``refs/main`` first, else the newest)."""
    ref = cache_repo / "refs" / "main"
    if ref.is_file():
        snap = cache_repo / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((p for p in (cache_repo / "snapshots").glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return snaps[-1] if snaps else None


def _candidates(source: Path) -> list[tuple[Path, str]]:
    """(model folder, the name that identifies it) for ``source`` or each folder inside it."""
    if (source / "config.json").is_file():
        return [(source, source.name)]
    if source.name.startswith("models--") and (source / "snapshots").is_dir():
        snap = _snapshot_of(source)
        return [(snap, source.name)] if snap else []
    found = []
    for child in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name.startswith("models--") and (child / "snapshots").is_dir():
            snap = _snapshot_of(child)
            if snap is not None:
                found.append((snap, child.name))
        elif (child / "config.json").is_file():
            found.append((child, child.name))
    return found


def identify(folder: Path, name: str) -> tuple[str, str]:
    """(hub id, role) of a model folder, from its name and its config.json.

    Raises:
        ValueError: the folder cannot be identified, or its model_type does not fit the role
            its name implies.
    """
    model_type = read_model_type(folder)
    roles = [r for r in ROLES if model_type in ROLE_MODEL_TYPES[r]]
    if not roles:
        accepted = sorted(t for types in ROLE_MODEL_TYPES.values() for t in types)
        raise ValueError(
            f"{folder}: config.json model_type is {model_type!r}; expected one of {accepted} "
            "(Florence-2, SAM2, DINOv2 in transformers format)"
        )
    role = roles[0]
    bare = name.removeprefix("models--")
    match = re.fullmatch(r"([A-Za-z0-9][\w.\-]*?)--([\w.\-]+)", bare)
    if match:
        hub_id = f"{match.group(1)}/{match.group(2)}"
    elif bare.lower() in _KNOWN_BY_NAME:
        hub_id = _KNOWN_BY_NAME[bare.lower()]
    else:
        examples = ", ".join(s.folder_name for s in known_specs() if s.role == role)
        raise ValueError(
            f"{folder}: cannot tell which {role} model this is from the folder name {name!r}; "
            f"rename it to <owner>--<name>, e.g. {examples}"
        )
    expected_role = _ROLE_BY_HUB_ID.get(hub_id)
    if expected_role is not None and expected_role != role:
        raise ValueError(
            f"{folder}: named {hub_id} (a {expected_role} model, model_type "
            f"{sorted(ROLE_MODEL_TYPES[expected_role])}) but config.json says model_type "
            f"{model_type!r} ({role}); the folder holds the wrong model"
        )
    return hub_id, role


def cmd_import(args: argparse.Namespace) -> int:
    source = Path(args.source).expanduser()
    if not source.is_dir():
        raise FileNotFoundError(f"models import: expected a folder, got {source} (missing or not a folder)")
    weights_dir = weights_dir_of(args)
    candidates = _candidates(source.resolve())
    if not candidates:
        raise ValueError(
            f"models import: no model folders in {source}: expected folders holding config.json and "
            "*.safetensors/*.bin weights (as written by `models download` or save_pretrained)"
        )
    errors: list[str] = []
    imported = 0
    for folder, name in candidates:
        try:
            problem = folder_problem(folder)
            if problem:
                raise ValueError(f"{folder}: {problem}")
            hub_id, role = identify(folder, name)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        target = weights_dir / hub_id.replace("/", "--")
        if target.exists() and folder.resolve() == target.resolve():
            print(f"{role}: {hub_id} is already in place at {target}")
            continue
        if target.exists() and not args.force:
            errors.append(f"{target} already exists; pass --force to replace it with {folder}")
            continue
        _copy_model(folder, target)
        imported += 1
        print(f"{role}: imported {hub_id} -> {target} ({human_size(folder_size(target))})")
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} of {len(candidates)} model folders not imported", file=sys.stderr)
        return 2
    return 0


def _copy_model(folder: Path, target: Path) -> None:
    """Copy ``folder`` to ``target`` via a temporary sibling, so a failed copy leaves nothing half-done.

    Symlinks are followed (HF cache snapshots link into a blob store).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".importing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(folder, staging, symlinks=False, ignore=shutil.ignore_patterns(".cache", ".git", "*.incomplete", "*.lock"))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
