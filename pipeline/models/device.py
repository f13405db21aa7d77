"""Pick the device and dtype models run in.

CUDA, when present: bfloat16 where the GPU supports it (Ampere and newer), else float16.
CPU: float32 by default. bfloat16 on CPU is opt-in with ``AGL_CPU_DTYPE=bfloat16``: on CPUs
with AMX it roughly halves Florence-2's time (DESIGN.md), but on CPUs without bf16 units it is
slower than float32 and it costs some accuracy, so it is not the default.
"""
from __future__ import annotations

import os

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


def cpu_dtype() -> torch.dtype:
    """float32, or ``$AGL_CPU_DTYPE`` (``bfloat16`` / ``float32``) when set.

    Raises:
        ValueError: ``AGL_CPU_DTYPE`` names something other than float32 or bfloat16
            (float16 matmuls on CPU are slow and lossy).
    """
    value = os.environ.get("AGL_CPU_DTYPE", "").strip()
    if not value:
        return torch.float32
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
        (device, dtype): CUDA -> bfloat16 if supported else float16; CPU -> float32 (or
        ``$AGL_CPU_DTYPE``).

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
