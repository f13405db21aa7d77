"""Suite-wide settings: offline, no analytics, temporary folders for Gradio and data."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
# Models run in float32 in the suite whatever the CPU (the default is bfloat16 on CPUs with native
# bf16): numeric expectations stay machine-independent; tests/pipeline/test_bf16_parity.py
# covers the bfloat16 default against float32.
os.environ.setdefault("AGL_CPU_DTYPE", "float32")
# The vision encoders run on PyTorch in the suite (the CPU default is OpenVINO when installed):
# tests/pipeline/test_openvino_parity.py covers OpenVINO against PyTorch.
os.environ.setdefault("AGL_CPU_RUNTIME", "torch")
# ... and Florence-2 decodes with its own layers (the CPU default is int8):
# tests/pipeline/test_florence_int8.py covers int8 against them.
os.environ.setdefault("AGL_FLORENCE_DECODER", "native")
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="agl-gradio-"))

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh, empty data folder for one test."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep screenshots and other artifacts worth looking at (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
