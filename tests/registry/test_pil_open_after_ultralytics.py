"""A corrupt image keeps our clear message even after ultralytics patched ``PIL.Image.open``.

Importing ultralytics (training, a trained run as detector, the YOLO export checks) replaces
``PIL.Image.open`` process-wide with a wrapper that tries to install ``pi-heif`` the first time a
file is not an image Pillow knows, then fails offline with ``No module named 'pi_heif'``.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import image_header
from registry.facade import Registry


def test_corrupt_file_is_named_after_ultralytics_was_imported(tmp_path):
    import ultralytics.utils.patches  # noqa: F401 - applies ultralytics' PIL.Image.open patch

    assert Image.open is not ultralytics.utils.patches._image_open  # the patch is in force
    bad = tmp_path / "x.png"
    bad.write_bytes(b"definitely not a png")
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(good)
    with image_header.pil_open(good) as im:
        assert im.size == (10, 6)
    with Registry(tmp_path / "data", index="exact", embedding_dim=4) as reg:
        with pytest.raises(ValueError, match="not an image Pillow can read"):
            reg.register_source(bad)
        assert reg.count_sources() == 0
    from pipeline.image_io import load_image

    with pytest.raises(ValueError, match="x.png"):
        load_image(bad)
