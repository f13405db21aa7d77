"""PyTorch weights of the encoders OpenVINO runs are freed at load and read back on demand
(``pipeline.models.released_weights``): the parts still work, the bytes are gone, and a
restore gives back exactly the PyTorch modules of a PyTorch-only load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models import openvino_runtime as ovr
from pipeline.models import released_weights as rw
from tests.chain_models import scene_image

pytestmark = pytest.mark.skipif(not ovr.openvino_installed(), reason="openvino is not installed")


def _parts():
    from pipeline.detect.florence import FlorenceDetector
    from pipeline.embed.dinov2 import Dinov2Embedder
    from pipeline.segment.sam2 import Sam2Segmenter

    return (("segmenter", Sam2Segmenter, "vision_encoder"), ("detector", FlorenceDetector, "model.vision_tower"),
            ("embedder", Dinov2Embedder, ""))


@pytest.mark.parametrize("role", ["segmenter", "detector", "embedder"])
def test_openvino_parts_free_their_pytorch_encoder_and_restore_it(chain, ov_cache, role):
    cls, path = {r: (c, p) for r, c, p in _parts()}[role]
    ov = cls.from_pretrained(chain[role], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = cls.from_pretrained(chain[role], device="cpu", dtype=torch.float32, runtime="torch")
    assert ov.vision is not None and pt.vision is None and not rw.released(pt)
    assert list(rw.released(ov)) == [path]
    sub_ov, sub_pt = rw._get(ov.model, path), rw._get(pt.model, path)
    assert rw.tensor_bytes(sub_ov) == 0 < rw.tensor_bytes(sub_pt)
    assert rw.tensor_bytes(ov.model) == rw.tensor_bytes(pt.model) - rw.tensor_bytes(sub_pt)
    if role == "detector":  # the parameters the part reads its device and dtype from are held
        assert ov.device == torch.device("cpu") and ov.dtype == torch.float32
    assert rw.restore(ov) == [path] and not rw.released(ov)
    restored = rw._get(ov.model, path).state_dict()
    want = sub_pt.state_dict()
    assert restored.keys() == want.keys() and len(want) > 3
    for k, v in want.items():
        assert restored[k].device.type == "cpu" and torch.equal(restored[k], v), k


def test_a_released_segmenter_still_segments_and_restores_to_pytorch(chain, ov_cache):
    from pipeline.segment.sam2 import Sam2Segmenter

    image = scene_image()
    seg = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="openvino")
    pt = Sam2Segmenter.from_pretrained(chain["segmenter"], device="cpu", dtype=torch.float32, runtime="torch")
    seg.set_image(image)
    masks, _ = seg.predict_boxes(np.array([[40, 40, 200, 160]], np.float32))
    assert masks.shape[1:] == image.shape[:2]
    rw.restore(seg)
    vision, seg.vision = seg.vision, None  # the PyTorch encoder again, with the weights read back
    try:
        for a, b in zip(seg._encode(image), pt._encode(image), strict=True):
            assert torch.equal(a, b)
    finally:
        seg.vision = vision
