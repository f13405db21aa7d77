"""Hand-made objects say they are hand-made, by whom, and how good the segmenter thinks the
mask is (issue: they were stored as ``florence-2-base`` with confidence 1.000)."""
from __future__ import annotations

from app.workflows import autolabel_session as al
from app.workflows import refine as rf
from tests.app.fakes import colour_components, make_context, write_scene


def test_a_hand_drawn_box_is_stored_as_manual_with_the_segmenters_quality(tmp_path):
    ctx = make_context(tmp_path / "data")
    path = write_scene(tmp_path / "scene.png", seed=3)
    images, _ = al.load_uploads([str(path)])
    assert not al.label_images(ctx.labeler(), images, ["red", "green", "blue"], confidence=0.0)
    n_auto = len(images[0].det)
    assert n_auto == 3
    red_box = next(box for name, _, box in colour_components(al.IMAGES.get(str(path))) if name == "red")
    # a box around the red disc, and one over plain background (a poor, near-empty mask)
    al.add_manual(ctx, images[0], red_box, "disc", user="alice")
    al.add_manual(ctx, images[0], (250, 180, 300, 230), "nothing", user="alice")
    det = images[0].det
    assert list(det.data["detection_model"]) == [None] * n_auto + ["manual", "manual"]
    good, poor = det.confidence[n_auto:]
    assert 0.0 <= poor < 0.5 < good <= 1.0  # the segmenter's estimate, not a flat 1.0

    al.save(ctx, images, None, project="p")
    reg = ctx.registry
    objs = {o["category"]: o for o in reg.list_objects(limit=None)}
    assert objs["red"]["detection_model"] == ctx.detection_model == "fake-detector"
    for name in ("disc", "nothing"):
        assert objs[name]["detection_model"] == "manual"
        assert objs[name]["metadata"]["created_by"] == "alice"
    assert abs(objs["nothing"]["confidence"] - poor) < 1e-6
    # Review's queue (least confident first) brings the poor hand-made mask before the good one
    queue = [o["category"] for o in reg.list_objects(order="confidence_asc", limit=None)]
    assert queue.index("nothing") < queue.index("disc")
    ctx.registry.close()


def test_a_new_object_accepted_in_refine_is_manual_with_the_masks_quality(tmp_path):
    ctx = make_context(tmp_path / "data")
    path = write_scene(tmp_path / "scene.png", seed=4)
    green_box = next(box for name, _, box in colour_components(al.IMAGES.get(str(path))) if name == "green")
    s = rf.open_image(path, category="square")
    x0, y0, x1, y1 = green_box
    rf.click(ctx, s, x0 - 3, y0 - 3, "box")
    rf.click(ctx, s, x1 + 3, y1 + 3, "box")
    assert s.quality is not None and 0.0 < s.quality <= 1.0
    oid = rf.accept(ctx.registry, s, validated_by="bob")
    obj = ctx.registry.get_object(oid)
    assert obj["detection_model"] == "manual"
    assert abs(obj["confidence"] - s.quality) < 1e-6
    assert obj["metadata"]["created_by"] == "bob"
    ctx.registry.close()
