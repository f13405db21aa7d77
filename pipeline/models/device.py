"""Pick the device and dtype models run in.

CUDA, when present: bfloat16 where the GPU supports it (Ampere and newer), else float16.
CPU: bfloat16 where the CPU has native bfloat16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in
``/proc/cpuinfo``: AMD Zen 4+, Intel Cooper Lake / Sapphire Rapids+), float32 elsewhere (without
bf16 units, oneDNN emulates it and it is slower than float32). ``AGL_CPU_DTYPE=float32`` (or
``bfloat16``) overrides the choice; so do ``--dtype`` / ``ModelManager(dtype=...)``.

Fidelity of bfloat16 against float32 on the same inputs is measured by ``bench pipeline``
(``fidelity``) and pinned on tiny models by ``tests/pipeline/test_bf16_parity.py``; embeddings
of the two precisions stay comparable in one index (cosine >= 0.99). See docs/speed.md.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(name: str) -> torch.dtype:
    """``"bfloat16"``/``"bf16"``/``"float16"``/``"fp16"``/``"float32"``/``"fp32"`` -> torch dtype.

    Raises:
        ValueError: an unknown name.
    """
    key = name.strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[key]


_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none).

    Args:
        cpuinfo: the file's text (for tests); None reads ``/proc/cpuinfo``.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _BF16_FLAGS)


def default_cpu_dtype(flags: frozenset[str] | None = None) -> torch.dtype:
    """bfloat16 on CPUs with native bf16 arithmetic, else float32 (no override applied)."""
    return torch.bfloat16 if cpu_has_native_bf16(flags) else torch.float32


def cpu_dtype() -> torch.dtype:
    """``$AGL_CPU_DTYPE`` (``bfloat16`` / ``float32``) when set, else :func:`default_cpu_dtype`.

    Raises:
        ValueError: ``AGL_CPU_DTYPE`` names something other than float32 or bfloat16
            (float16 matmuls on CPU are slow and lossy).
    """
    value = os.environ.get("AGL_CPU_DTYPE", "").strip()
    if not value:
        return default_cpu_dtype()
    dtype = parse_dtype(value)
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"AGL_CPU_DTYPE: expected 'float32' or 'bfloat16', got {value!r}")
    return dtype


def pick_device_dtype(prefer: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run models in.

    Args:
        prefer: None or ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. ``$AGL_DEVICE`` is used when ``prefer`` is None.

    Returns:
        (device, dtype): CUDA -> bfloat16 if supported else float16; CPU -> ``cpu_dtype()``
        (bfloat16 with native bf16 units, else float32; ``$AGL_CPU_DTYPE`` overrides).

    Raises:
        RuntimeError: CUDA was asked for but is not available.
        ValueError: an unknown device name.
    """
    choice = str(prefer if prefer is not None else os.environ.get("AGL_DEVICE", "auto")).strip().lower()
    if choice in ("", "auto"):
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        return torch.device("cpu"), cpu_dtype()
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device: expected a CUDA GPU for {choice!r}, but torch sees none "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        device = torch.device(choice)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device: expected a GPU index below {torch.cuda.device_count()}, got {choice!r}"
            )
        with torch.cuda.device(device):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return device, dtype
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {prefer!r}")


def resolve_device_dtype(
    device: str | torch.device | None, dtype: torch.dtype | None
) -> tuple[torch.device | str, torch.dtype]:
    """Fills in whichever of ``device`` / ``dtype`` is None with :func:`pick_device_dtype`'s choice."""
    if device is not None and dtype is not None:
        return device, dtype
    auto_device, auto_dtype = pick_device_dtype(None if device is None else str(device))
    return (device if device is not None else auto_device), (dtype if dtype is not None else auto_dtype)


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads in this thread, then restore the count."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cores_contended() -> bool:
    """True when the 1-minute load average exceeds the core count by more than half a core."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return False
    return load > (os.cpu_count() or 1) + 0.5
