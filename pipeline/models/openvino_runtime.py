"""OpenVINO for the three vision encoders on CPU; the transformers modules stay the reference.

On a CPU, ``Sam2Model.get_image_embeddings`` (Hiera + FPN), Florence-2's DaViT vision tower +
projector and DINOv2's ViT are the bulk of an auto-label's arithmetic. Compiled with OpenVINO's
CPU plugin (oneDNN kernels with fused permutes, layout-aware convolutions and bfloat16 on CPUs
with native bf16 units) they ran 1.3-2.8x faster than PyTorch's eager bfloat16 on the build
machine's AVX-512 cores, same run, same inputs (``launch.py bench pipeline`` prints
``main.runtime_speedup``; SAM2's encoder gains most, DINOv2 least). SAM2's mask decoder, the
click path, is compiled the same way (``pipeline.segment.sam2_decoder``: hundreds of small
ops that OpenVINO fuses; its prompt encoder stays PyTorch). Florence's text encoder and token
loop stay PyTorch.

How it works:

- :func:`cpu_runtime`: ``$AGL_CPU_RUNTIME`` (``openvino`` / ``torch``) when set, else
  ``openvino`` when the package is installed, else ``torch``.
- :func:`compile_encoder`: traces the encoder module (float32 weights) with
  ``openvino.convert_model`` once, in a child process (``pipeline.models.openvino_convert``:
  tracing float32 copies would otherwise leave the app ~3 GB larger), saves the IR
  (``model.xml`` + ``model.bin``: float16 weights for bf16 inference, float32 for f32) under
  ``$AGL_OV_CACHE`` or ``~/.cache/agenticlabeling/openvino/<role>-<key>/`` (the key hashes the
  model folder's config and weight files, the input shape and the library versions, so new
  weights or a new OpenVINO convert again), and compiles it for the CPU in the precision the
  PyTorch model runs in (``bf16`` for bfloat16, ``f32`` for float32). The first load of each
  model converts (20-40 s for the full-size CPU models here, logged); later loads read and
  compile the IR (a few seconds each).
- :class:`OvEncoder`: ``encoder(x) -> [torch.Tensor]`` in the caller's dtype; one infer
  request per call, so threads can share it.
- :func:`accelerate`: what the model classes call; returns None (PyTorch) when the runtime is
  ``torch``, the device is not a CPU, or conversion fails (logged with the reason: the app
  keeps working on the PyTorch path).

OpenVINO's converter sends usage statistics through ``openvino_telemetry`` unless the user
opted out; this module blocks that import before OpenVINO's tools load, so the stub that
sends nothing is used (a local-first tool does not phone home).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "openvino")
FORMAT_VERSION = "1"  # bump when the traced wrappers change what they compute


def openvino_installed() -> bool:
    """True when the ``openvino`` package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def cpu_runtime() -> str:
    """The CPU runtime of the vision encoders: ``$AGL_CPU_RUNTIME`` when set, else
    ``"openvino"`` when installed, else ``"torch"``.

    Raises:
        ValueError: ``AGL_CPU_RUNTIME`` names something else, or asks for OpenVINO that is not
            installed.
    """
    value = os.environ.get("AGL_CPU_RUNTIME", "").strip().lower()
    if not value:
        return "openvino" if openvino_installed() else "torch"
    if value not in RUNTIMES:
        raise ValueError(f"AGL_CPU_RUNTIME: expected one of {RUNTIMES}, got {value!r}")
    if value == "openvino" and not openvino_installed():
        raise ValueError("AGL_CPU_RUNTIME=openvino: the openvino package is not installed (pip install -r requirements.txt)")
    return value


def cache_root() -> Path:
    """Where converted models are kept: ``$AGL_OV_CACHE`` or ``~/.cache/agenticlabeling/openvino``."""
    env = os.environ.get("AGL_OV_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agenticlabeling" / "openvino"


def _import_openvino() -> Any:
    """``openvino``, with its converter's telemetry replaced by the stub that sends nothing."""
    if "openvino.tools.ovc.convert_impl" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # import -> ImportError
    import openvino as ov
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    convert_impl.tm = telemetry_stub
    telemetry_utils.tm = telemetry_stub
    return ov


_CORE: Any = None


def core() -> Any:
    """The process's one ``openvino.Core``, never released.

    Why one: loading the CPU plugin points the calling thread's alternate signal stack
    (``sigaltstack``) at a buffer of the plugin's and restores the previous one when the plugin
    goes away. With one ``Core`` per model, releasing them out of order left the main thread's
    alternate stack on a freed buffer, and the next signal delivered on it (Ctrl+C: Python's
    handlers run on the alternate stack) crashed the process with SIGSEGV.
    """
    global _CORE
    if _CORE is None:
        _CORE = _import_openvino().Core()
    return _CORE


def cache_key(role: str, folder: Path, input_shape: Sequence[int]) -> str:
    """A hash of what the converted model depends on: the folder's config and weight files
    (names, sizes, modification times), the traced input shape and the library versions."""
    import transformers

    ov = _import_openvino()
    files = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.name == "config.json" or f.suffix in (".safetensors", ".bin", ".pt")):
            st = f.stat()
            files.append([f.name, st.st_size, st.st_mtime_ns])
    blob = json.dumps({
        "role": role, "format": FORMAT_VERSION, "folder": str(folder.resolve()), "files": files,
        "shape": list(input_shape), "openvino": ov.__version__, "torch": torch.__version__,
        "transformers": transformers.__version__,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class OvEncoder:
    """A compiled encoder: ``encoder(x)`` -> its outputs as torch tensors of ``out_dtype``.

    Args:
        compiled: an ``openvino.CompiledModel``.
        out_dtype: the dtype the PyTorch code downstream expects.
        precision: the inference precision it was compiled with (``"bf16"`` / ``"f32"``).
        source: the IR file it came from.
    """

    def __init__(self, compiled: Any, out_dtype: torch.dtype, precision: str, source: Path) -> None:
        self.compiled = compiled
        self.out_dtype = out_dtype
        self.precision = precision
        self.source = source
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Runs the encoder on ``x`` (any float dtype; given to OpenVINO as float32)."""
        arr = np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy())
        request = self.compiled.create_infer_request()  # per call: requests are not thread-safe
        out = request.infer({0: arr})
        self.calls += 1
        return [torch.from_numpy(np.array(out[o])).to(self.out_dtype) for o in self.compiled.outputs]

    def run(self, *inputs: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
        """Runs a model of several inputs (tensors of any float dtype, or float32 arrays);
        returns its outputs as float32 tensors."""
        arrays = {i: x if isinstance(x, np.ndarray)
                  else np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy())
                  for i, x in enumerate(inputs)}
        out = self.compiled.create_infer_request().infer(arrays)
        self.calls += 1
        return [torch.from_numpy(np.array(out[o])) for o in self.compiled.outputs]


CONVERT_TIMEOUT_S = 1800  # a full-size model converts in ~20-70 s on 2 cores


def _run_converter(role: str, folder: Path, input_shape: Sequence[int], out_dir: Path, fp16: bool) -> None:
    """Runs ``pipeline.models.openvino_convert`` in a child process (see its docstring).

    Raises:
        RuntimeError: the child failed (its last error line quoted) or ran past the timeout.
    """
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pipeline.models.openvino_convert", role, str(folder),
           str(int(input_shape[2])), str(int(input_shape[3])), str(out_dir), *(["--fp16"] if fp16 else [])]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the converter ran past {CONVERT_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"the converter exited with {proc.returncode}")


def compile_encoder(
    role: str,
    folder: str | Path,
    input_shape: Sequence[int],
    out_dtype: torch.dtype,
) -> OvEncoder:
    """The encoder of ``role`` compiled with OpenVINO, converted on first use and cached.

    Args:
        role: ``"sam2-encoder"``, ``"sam2-decoder"``, ``"florence-vision"`` or ``"dinov2"``
            (``pipeline.models.openvino_convert.build``).
        folder: the model's weights folder (part of the cache key).
        input_shape: ``(B, 3, H, W)`` of the traced input; B is dynamic in the IR.
        out_dtype: the PyTorch model's dtype: also picks OpenVINO's inference precision
            (bfloat16 -> ``bf16``, else ``f32``).

    Raises:
        Exception: whatever the conversion or compilation raised (``accelerate`` catches it).
    """
    folder = Path(folder)
    precision = "bf16" if out_dtype == torch.bfloat16 else "f32"
    # bf16 inference: the IR keeps float16 weights (half the file and the memory it maps; rounded
    # to bfloat16 when compiled anyway); f32 inference keeps float32 weights.
    compress = precision == "bf16"
    key = cache_key(role, folder, input_shape) + ("-w16" if compress else "-w32")
    target = cache_root() / f"{role}-{key}"
    xml = target / "model.xml"
    if not xml.is_file():
        t0 = time.perf_counter()
        log.warning("converting %s (%s) for OpenVINO once; cached in %s", role, folder.name, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{role}-", dir=target.parent))
        try:
            _run_converter(role, folder, input_shape, tmp, compress)
            try:
                os.replace(tmp, target)  # atomic: another process may have finished first
            except OSError:
                if not xml.is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.warning("converted %s in %.1f s", role, time.perf_counter() - t0)
    ov_core = core()
    try:
        compiled = ov_core.compile_model(ov_core.read_model(xml), "CPU",
                                         {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"})
    except Exception:
        shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry: converted again next time
        raise
    return OvEncoder(compiled, out_dtype, precision, xml)


def accelerate(
    role: str,
    folder: str | Path,
    device: torch.device | str,
    input_shape: Sequence[int],
    out_dtype: torch.dtype,
    runtime: str | None = None,
) -> OvEncoder | None:
    """:func:`compile_encoder` when the runtime (``runtime`` or :func:`cpu_runtime`) is OpenVINO
    and ``device`` is a CPU; None (stay on PyTorch) otherwise or when conversion fails."""
    if torch.device(device).type != "cpu":
        return None
    runtime = runtime or cpu_runtime()
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: expected one of {RUNTIMES}, got {runtime!r}")
    if runtime != "openvino":
        return None
    try:
        return compile_encoder(role, folder, input_shape, out_dtype)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the PyTorch path, said once
        log.warning("OpenVINO unavailable for %s (%s: %s); using PyTorch", role, type(exc).__name__, exc)
        return None
