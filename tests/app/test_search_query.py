"""Search by an uploaded image prepares the query exactly like stored objects (masked crop).

Real GrabCut masks and a real (tiny, random) DINOv2: stored objects are embedded as the
auto-labeler embeds them; then each object's own crop, cut out of the image and uploaded as a
query, must find that object first.
"""
from __future__ import annotations

import numpy as np
import pytest

from app.workflows.search import embed_query, search_by_image
from pipeline.segment.grabcut import GrabCutSegmenter
from registry.facade import ObjectIn, Registry
from tests.app.fakes import colour_components, make_scene
from tests.pipeline.tiny_models_sam2_dino import TINY_DINO_DIM, build_tiny_dinov2


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from pipeline.embed.dinov2 import Dinov2Embedder

    return Dinov2Embedder.from_pretrained(build_tiny_dinov2(tmp_path_factory.mktemp("dino")), device="cpu")


def grabcut_segment(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    seg = GrabCutSegmenter()
    seg.set_image(image)
    masks, _ = seg.predict_boxes(np.asarray(box, np.float32).reshape(1, 4))
    return masks[0]


@pytest.fixture
def stored(tmp_path, embedder):
    """Six distinct objects (two scenes) registered with GrabCut masks and masked-crop embeddings."""
    import cv2

    reg = Registry(tmp_path / "data", embedding_dim=TINY_DINO_DIM, embedding_version=embedder.version)
    objects = []
    for seed in (3, 4):
        image = make_scene(seed)
        if seed == 4:  # other colours per shape, so no two stored objects look alike
            image = np.ascontiguousarray(image[..., [2, 0, 1]])
        path = tmp_path / f"scene_{seed}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        comps = colour_components(image)
        boxes = np.asarray([c[2] for c in comps], np.float32)
        seg = GrabCutSegmenter()
        seg.set_image(image)
        masks, _ = seg.predict_boxes(boxes)
        vecs = embedder.embed(image, boxes, masks)
        sid = reg.register_source(path, width=image.shape[1], height=image.shape[0])
        res = reg.register_objects(sid, [ObjectIn(category=c[0], xyxy=tuple(b), mask=m, confidence=0.9, embedding=v)
                                         for c, b, m, v in zip(comps, boxes, masks, vecs, strict=True)])
        objects += [(oid, image, tuple(b)) for oid, b in zip(res.object_ids, boxes, strict=True)]
    reg.sync_outbox()
    assert len(objects) == 6
    yield reg, objects
    reg.close()


@pytest.mark.parametrize("margin", [0, 12])
def test_an_objects_own_crop_uploaded_as_a_query_ranks_itself_first(stored, embedder, margin):
    reg, objects = stored
    for oid, image, (x0, y0, x1, y1) in objects:
        h, w = image.shape[:2]
        crop = image[max(0, int(y0) - margin):min(h, int(np.ceil(y1)) + margin),
                     max(0, int(x0) - margin):min(w, int(np.ceil(x1)) + margin)]
        hits = search_by_image(reg, embedder, crop, k=3, segment=grabcut_segment)
        assert hits[0]["object_id"] == oid, (oid, [(h["object_id"], h["similarity"]) for h in hits])
        assert hits[0]["similarity"] > 0.99


def test_the_query_vector_is_the_stored_vector_for_the_same_pixels_and_mask(stored, embedder):
    reg, objects = stored
    oid, image, box = objects[0]
    vec = embed_query(embedder, image, box, segment=grabcut_segment)
    stored_vec = reg.get_embedding(oid)
    assert float(vec @ stored_vec) > 0.999
    plain = embed_query(embedder, image, box)  # no segmenter: the unmasked box crop differs
    assert float(plain @ stored_vec) < float(vec @ stored_vec)
