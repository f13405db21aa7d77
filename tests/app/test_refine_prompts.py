"""Refine's prompts reach the segmenter as the user meant them (real GrabCut, spied on)."""
from __future__ import annotations

import numpy as np

from app.context import AppContext
from app.workflows import refine as rf
from pipeline.segment.grabcut import GrabCutSegmenter
from registry.facade import Registry
from tests.app.fakes import colour_components, write_scene


class SpySegmenter(GrabCutSegmenter):
    """The real GrabCut, recording every prompt it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []

    def predict_points(self, points, labels, *, box=None, mask_input=None, multimask=False):
        self.calls.append(("points", {"points": np.asarray(points).tolist(), "box": box, "mask_input": mask_input}))
        return super().predict_points(points, labels, box=box, mask_input=mask_input, multimask=multimask)

    def predict_boxes(self, xyxy):
        self.calls.append(("boxes", {"xyxy": np.asarray(xyxy).tolist()}))
        return super().predict_boxes(xyxy)


def test_a_new_box_after_clicks_is_segmented_alone_without_the_old_mask(tmp_path):
    path = write_scene(tmp_path / "scene.png", seed=5)
    seg = SpySegmenter()
    ctx = AppContext(registry=Registry(tmp_path / "data"), data_dir=tmp_path / "data",
                     labeler_provider=lambda: None, segmenter_provider=lambda name: seg)
    comps = {name: (mask, box) for name, mask, box in colour_components(rf.IMAGES.get(str(path)))}
    red_mask, (rx0, ry0, rx1, ry1) = comps["red"]
    green_mask, (gx0, gy0, gx1, gy1) = comps["green"]

    s = rf.open_image(path)
    rf.click(ctx, s, (rx0 + rx1) / 2, (ry0 + ry1) / 2, "positive")
    rf.click(ctx, s, rx0 + 3, (ry0 + ry1) / 2, "positive")
    assert s.mask is not None and (s.mask & red_mask).sum() > 0.5 * red_mask.sum()

    rf.click(ctx, s, gx0 - 4, gy0 - 4, "box")
    rf.click(ctx, s, gx1 + 4, gy1 + 4, "box")
    kind, args = seg.calls[-1]
    assert kind == "boxes", seg.calls[-1]
    assert s.points == [] and s.box == (gx0 - 4, gy0 - 4, gx1 + 4, gy1 + 4)
    assert (s.mask & green_mask).sum() > 0.8 * green_mask.sum()
    assert not (s.mask & red_mask).any()  # nothing of the old outline comes back

    # a click after the box refines the box's mask, not the red disc's
    rf.click(ctx, s, (gx0 + gx1) / 2, (gy0 + gy1) / 2, "positive")
    kind, args = seg.calls[-1]
    assert kind == "points" and len(args["points"]) == 1
    assert not (s.mask & red_mask).any()
    # undo brings the red disc's prompts back, in order
    assert rf.undo_state(s) and rf.undo_state(s)
    assert rf.undo_state(s) and len(s.points) == 2 and s.box is None
    ctx.registry.close()
