"""Resolve a model spec to a folder of weights, never hanging when offline.

Order of search (the first valid folder wins):

1. an explicit folder (``local_dir`` argument, or a spec made from a path override);
2. ``<weights_dir>/<owner>--<name>``: where ``launch.py models import`` and
   ``launch.py models download`` put models. ``weights_dir`` defaults to ``$AGL_WEIGHTS``, else
   ``<$AGL_DATA or ./data>/models``;
3. the Hugging Face cache (``$HF_HUB_CACHE``), read only;
4. a hub download into ``<weights_dir>/<owner>--<name>`` with a tqdm progress bar.

With ``HF_HUB_OFFLINE=1`` step 4 is skipped; without network it gives up after a short connect
probe (``AGL_HUB_CONNECT_TIMEOUT``, 3 s by default). Either way ``WeightsMissingError`` says which
model is missing and how to get it.

A folder is *valid* when it holds ``config.json`` and weights (``*.safetensors`` or ``*.bin``;
with a ``*.index.json`` every listed shard must be present).

No torch import here: the CLI's ``models status`` stays fast.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.models.specs import ModelSpec

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin")


class WeightsMissingError(RuntimeError):
    """The weights of a model are neither on this machine nor downloadable right now."""


@dataclass(frozen=True)
class WeightsLocation:
    """Where a model's weights were found.

    Attributes:
        path: the folder to pass to ``from_pretrained``.
        source: ``"local"`` (explicit folder), ``"weights-dir"``, ``"hf-cache"`` or ``"download"``.
    """

    path: Path
    source: str


def default_weights_dir() -> Path:
    """``$AGL_WEIGHTS`` if set, else ``<$AGL_DATA or ./data>/models`` (not created here)."""
    if os.environ.get("AGL_WEIGHTS"):
        return Path(os.environ["AGL_WEIGHTS"]).expanduser()
    return Path(os.environ.get("AGL_DATA", "data")).expanduser() / "models"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set *now*.

    huggingface_hub reads the variable once at import; tests and users may set it later.
    """
    from huggingface_hub import constants

    def truthy(name: str) -> bool:
        return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}

    return truthy("HF_HUB_OFFLINE") or truthy("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)


def folder_problem(folder: str | Path) -> str | None:
    """Why ``folder`` is not a usable model folder, or None when it is.

    Returns:
        A short reason (``"no config.json"``, ``"no *.safetensors or *.bin weights"``,
        ``"missing shard model-00002-of-00002.safetensors"``), or None.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    if not (folder / "config.json").is_file():
        return "no config.json"
    weights = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    if not weights:
        return "no *.safetensors or *.bin weights"
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError) as exc:
            return f"unreadable {index.name}: {exc}"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"missing shard {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
    return None


def is_valid_model_dir(folder: str | Path) -> bool:
    """True when ``folder`` holds config.json and weights (see ``folder_problem``)."""
    return folder_problem(folder) is None


def folder_size(folder: str | Path) -> int:
    """Bytes on disk under ``folder`` (symlinks into the HF blob store are followed once)."""
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def read_model_type(folder: str | Path) -> str | None:
    """``model_type`` from ``folder/config.json``, or None when absent or unreadable."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def _hf_cache_folder(spec: ModelSpec) -> Path | None:
    """The cached snapshot of ``spec`` in the HF cache, without any network access."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(spec.hub_id, revision=spec.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        return None
    return path if is_valid_model_dir(path) else None


def locate_weights(
    spec: ModelSpec, local_dir: str | Path | None = None, weights_dir: str | Path | None = None
) -> WeightsLocation | None:
    """Steps 1-3 of the search (no network): where the weights are, or None.

    Raises:
        WeightsMissingError: an explicit folder was given but is not a valid model folder.
    """
    explicit = local_dir if local_dir is not None else spec.local_dir
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        problem = folder_problem(explicit)
        if problem:
            raise WeightsMissingError(
                f"{spec.role} model folder {explicit} is not usable: {problem}. Expected a folder "
                f"written by save_pretrained (config.json + *.safetensors or *.bin); point the "
                f"override at such a folder or drop it to use {spec.hub_id}."
            )
        return WeightsLocation(explicit.resolve(), "local")
    if spec.local_dir is None:
        candidate = Path(weights_dir or default_weights_dir()).expanduser() / spec.folder_name
        if is_valid_model_dir(candidate):
            return WeightsLocation(candidate.resolve(), "weights-dir")
        cached = _hf_cache_folder(spec)
        if cached is not None:
            return WeightsLocation(cached, "hf-cache")
    return None


def missing_message(spec: ModelSpec, reason: str, weights_dir: str | Path | None = None) -> str:
    """The user-facing text of ``WeightsMissingError``: what is missing and both remedies."""
    from huggingface_hub import constants

    target = Path(weights_dir or default_weights_dir()).expanduser() / spec.folder_name
    profile = spec.profile or "cpu"
    return (
        f"The {spec.role} model '{spec.hub_id}' is not on this machine ({reason}). Looked in "
        f"{target} and the Hugging Face cache {constants.HF_HUB_CACHE}. To get it: on a machine "
        f"with internet, run `python launch.py models download --profile {profile}`; on an "
        f"air-gapped machine, copy the model folders over and run `python launch.py models import DIR`."
    )


def _connect_timeout() -> float:
    try:
        return float(os.environ.get("AGL_HUB_CONNECT_TIMEOUT", "3"))
    except ValueError:
        return 3.0


def hub_reachable(timeout: float | None = None) -> tuple[bool, str]:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    With an HTTP(S) proxy configured the probe is skipped (the proxy decides), and the
    download's own short timeouts apply.

    Returns:
        (reachable, reason) where reason explains a failure.
    """
    if is_offline():
        return False, "HF_HUB_OFFLINE=1 is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True, "behind a proxy"
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout or _connect_timeout()):
            return True, "reachable"
    except OSError as exc:
        return False, f"cannot reach {host}:{port} ({exc.__class__.__name__}: {exc})"


def download_weights(spec: ModelSpec, weights_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Download ``spec`` from the hub into ``<weights_dir>/<owner>--<name>``.

    Only config/tokenizer files and one weight format are fetched (safetensors preferred).

    Raises:
        WeightsMissingError: offline, hub unreachable, or the download failed.
    """
    if spec.local_dir is not None:
        raise WeightsMissingError(missing_message(spec, f"local folder {spec.local_dir} is not usable", weights_dir))
    ok, reason = hub_reachable()
    if not ok:
        raise WeightsMissingError(missing_message(spec, reason, weights_dir))

    from huggingface_hub import HfApi, snapshot_download
    from tqdm.auto import tqdm

    target = Path(weights_dir or default_weights_dir()).expanduser() / spec.folder_name
    timeout = max(_connect_timeout(), 5.0)
    try:
        files = HfApi().list_repo_files(spec.hub_id, revision=spec.revision)
        has_safetensors = any(f.endswith(".safetensors") for f in files)
        ignore = ["*.onnx", "onnx/*", "*.msgpack", "*.h5", "*.ot", "*.tflite", "*.mlmodel", "*.gguf"]
        if has_safetensors:
            ignore.append("*.bin")  # the same tensors twice; safetensors loads faster and safely
        log.info("downloading %s into %s", spec.hub_id, target)
        path = snapshot_download(
            spec.hub_id,
            revision=spec.revision,
            local_dir=target,
            ignore_patterns=ignore,
            etag_timeout=timeout,
            tqdm_class=tqdm if progress else None,
        )
    except Exception as exc:  # any network / hub error becomes one actionable message
        raise WeightsMissingError(
            missing_message(spec, f"download failed: {exc.__class__.__name__}: {exc}", weights_dir)
        ) from exc
    problem = folder_problem(path)
    if problem:
        raise WeightsMissingError(missing_message(spec, f"downloaded folder {path} is not usable: {problem}", weights_dir))
    return Path(path).resolve()


def resolve_weights(
    spec: ModelSpec,
    local_dir: str | Path | None = None,
    weights_dir: str | Path | None = None,
    *,
    download: bool = True,
) -> Path:
    """The folder holding ``spec``'s weights: explicit folder -> weights dir -> HF cache -> hub.

    Args:
        spec: the model to find.
        local_dir: an explicit folder; when given, nothing else is searched.
        weights_dir: where imported/downloaded models live (default ``default_weights_dir()``).
        download: allow step 4 (hub download); False makes this a pure lookup.

    Returns:
        An absolute path to a valid model folder.

    Raises:
        WeightsMissingError: not found and not downloadable (offline, no network, or
            ``download=False``); the message names the model and both remedies. Fails within
            a few seconds when offline or without network.
    """
    found = locate_weights(spec, local_dir, weights_dir)
    if found is not None:
        return found.path
    if not download:
        raise WeightsMissingError(missing_message(spec, "downloads disabled", weights_dir))
    return download_weights(spec, weights_dir)


def read_normalisation(
    folder: Path, default_mean: tuple[float, ...], default_std: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``image_mean`` / ``image_std`` of a model folder's ``preprocessor_config.json``.

    Falls back to the given defaults when the file or a key is missing.
    """
    pre = Path(folder) / "preprocessor_config.json"
    if not pre.is_file():
        return default_mean, default_std
    cfg = json.loads(pre.read_text())
    return tuple(cfg.get("image_mean", default_mean)), tuple(cfg.get("image_std", default_std))
