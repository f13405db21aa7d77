"""16-bit images: the display and GrabCut see one 8-bit rendering (issue 10).

A camera that fills only part of the 16-bit range (a 12-bit sensor, an underexposed shot) gave
an image of a few grey levels under plain ``v * 255 / 65535`` scaling, on which GrabCut found
almost nothing. ``pipeline.image_io.load_image`` now auto-contrasts such images (and reads
16-bit colour at full depth); the app's display and the segmenter both use its output.

The photo is scikit-image's ``coffee`` (the cup of the issue); the reference object is GrabCut's
mask on the 8-bit original with the same box.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from app.workflows.render import ImageCache
from pipeline.image_io import load_image, render_high_bit_depth
from pipeline.segment.grabcut import GrabCutSegmenter

CUP_BOX = [150, 30, 480, 330]  # xyxy absolute pixels, around the cup and saucer


def _cut(rgb: np.ndarray) -> np.ndarray:
    seg = GrabCutSegmenter()
    seg.set_image(rgb)
    return seg.predict_boxes(np.asarray([CUP_BOX], np.float32))[0][0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _write_16bit(photo: np.ndarray, path: Path, scale: int, grey: bool) -> Path:
    """The 8-bit photo as a 16-bit PNG holding values 0..255*scale (scale 2: a dark shot using
    under 1 % of the range; 16: a 12-bit camera image, values 0..4080)."""
    if grey:
        Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16) * scale).save(path)
    else:
        cv2.imwrite(str(path), cv2.cvtColor(photo.astype(np.uint16) * scale, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize("grey", [True, False], ids=["grey", "colour"])
@pytest.mark.parametrize("scale", [2, 16])
def test_grabcut_on_a_narrow_range_16bit_png_finds_the_cup(tmp_path, grey, scale):
    photo = data.coffee()
    reference_image = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) if grey else photo
    reference = _cut(reference_image)
    assert reference.sum() > 20_000  # the cup and saucer, not a speck
    path = _write_16bit(photo, tmp_path / "cup16.png", scale, grey)
    with Image.open(path) as im:
        assert im.mode == ("I;16" if grey else "RGB")  # Pillow: 16-bit grey; colour only via OpenCV
    shown = ImageCache().get(path)  # what the app displays (Auto-label, Refine, Review) ...
    rendered = load_image(path)  # ... and what the segmenter is given: one rendering
    assert np.array_equal(shown, rendered) and rendered.dtype == np.uint8
    assert int(rendered.max()) - int(rendered.min()) >= 200  # contrast, not a few grey levels
    mask = _cut(rendered)
    assert mask.sum() > 20_000
    assert _iou(mask, reference) >= 0.8, (_iou(mask, reference), int(mask.sum()), int(reference.sum()))


def test_render_high_bit_depth_keeps_full_range_and_flat_images():
    ramp = np.linspace(0, 65535, 1000)[None, :]
    out = render_high_bit_depth(ramp)
    assert out[0, 0] == 0 and out[0, -1] == 255 and abs(int(out[0, 500]) - 128) <= 1  # plain scaling
    assert render_high_bit_depth(np.full((4, 4), 1000.0)).max() <= 5  # flat and dark stays dark
    twelve = render_high_bit_depth(np.linspace(0, 4095, 1000)[None, :])  # 12-bit data: stretched
    assert twelve[0, 0] == 0 and twelve[0, -1] == 255 and abs(int(twelve[0, 500]) - 128) <= 2
    colour = render_high_bit_depth(np.stack([np.full((2, 500), 100.0), np.linspace(0, 3000, 1000).reshape(2, 500),
                                             np.full((2, 500), 1500.0)], axis=2))
    assert colour[..., 0].max() < colour[..., 2].min()  # one stretch for all channels: hues kept
