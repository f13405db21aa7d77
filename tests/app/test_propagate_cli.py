"""``launch.py propagate`` and ``app.workflows.propagate`` end to end on a seeded video source.

GrabCut fallback (no weights): the CLI follows two moving squares, writes one object per later
frame into each prompt's track, says it fell back, and re-running replaces instead of
duplicating. SAM2 path: the production wiring (ModelManager -> Sam2VideoPropagator) on a tiny
random SAM2.1 video folder, with the decoder's scores and masks scripted where content matters.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli.main import main
from app.workflows.propagate import propagate
from pipeline.mask_ops import box_iou_matrix
from registry.facade import Registry
from registry.records import ObjectIn
from tests.pipeline.segment_video.tiny_video_model import (
    build_tiny_sam2_video,
    script_object_scores,
)
from tests.video_fixtures import box_mask, moving_boxes, seed_video_source, write_video

N_FRAMES = 6


def _seed(data_dir, n=N_FRAMES, *, prompt_frame=0, with_masks=False):
    frames, truth = moving_boxes(n)
    video = write_video(data_dir.parent / "clip.mp4", frames)
    with Registry(data_dir, sync_on_write=False) as reg:
        src, fids = seed_video_source(reg, video, frames)
        objs = []
        for tid, box in truth[prompt_frame]:
            mask = box_mask(box, frames[0].shape[:2]) if with_masks else None
            objs.append(ObjectIn(category=("red", "blue")[tid], xyxy=tuple(float(v) for v in box), mask=mask,
                                 confidence=0.9, frame_id=fids[prompt_frame], detection_model="manual"))
        prompts = reg.register_objects(src, objs, dedupe=False).object_ids
    return src, fids, prompts, truth


def _objects_by_frame(reg, src, fids):
    index = {fid: i for i, fid in enumerate(fids)}
    out: dict[int, list[dict]] = {}
    for o in reg.list_objects(source_id=src, limit=None, order="created_asc"):
        out.setdefault(index[o["frame_id"]], []).append(o)
    return out


def _xyxy(o):
    x, y, w, h = o["bbox_xywh"]
    return np.array([x, y, x + w, y + h], np.float32)


def test_cli_grabcut_fallback_follows_both_squares_into_their_tracks(data_dir, capsys):
    src, fids, prompts, truth = _seed(data_dir)
    code = main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.loads(captured.out)
    assert "warning: SAM2.1 video weights are not available" in captured.err and "grabcut-track" in captured.err
    assert res["segmenter"] == "grabcut-track" and res["frames"] == N_FRAMES - 1
    assert res["written"] == 2 * (N_FRAMES - 1) and res["replaced"] == 0 and not res["drift"]
    with Registry(data_dir, sync_on_write=False) as reg:
        by_frame = _objects_by_frame(reg, src, fids)
        assert sorted(by_frame) == list(range(N_FRAMES)) and all(len(v) == 2 for v in by_frame.values())
        for i in range(1, N_FRAMES):
            for o in by_frame[i]:
                prop = o["metadata"]["propagation"]
                pid = prop["from_object"]
                tid = prompts.index(pid)
                assert o["detection_model"] == "grabcut-track" and o["has_mask"]
                assert o["category"] == ("red", "blue")[tid]
                assert prop["from_frame"] == 0 and prop["drift"] is False and 0 <= prop["score"] <= 1
                iou = box_iou_matrix(_xyxy(o)[None], dict(truth[i])[tid][None])[0, 0]
                assert iou >= 0.7, (i, tid, iou)
        for pid in prompts:
            track = reg.get_track(res["tracks"][pid])
            assert [o["frame_idx"] for o in track["objects"]] == list(range(N_FRAMES))
            assert track["objects"][0]["object_id"] == pid and track["metadata"]["created_by"] == "propagation"
            assert track["category"] == reg.get_object(pid)["category"]
        n_before = reg.count_objects(source_id=src)
    # re-running replaces the propagated objects: same count, same tracks
    assert main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "0", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["replaced"] == 2 * (N_FRAMES - 1) and again["tracks"] == res["tracks"]
    with Registry(data_dir, sync_on_write=False) as reg:
        assert reg.count_objects(source_id=src) == n_before
        assert reg.get_track(res["tracks"][prompts[0]])["object_count"] == N_FRAMES
        assert len(reg.list_tracks(src)) == 2


def test_cli_objects_max_frames_and_backward(data_dir, capsys):
    src, fids, prompts, truth = _seed(data_dir, prompt_frame=3)
    code = main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "3", "--objects", prompts[1],
                 "--max-frames", "2", "--backward"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "2 object(s) written on 2 frame(s) before frame 3 from 1 prompt(s) with grabcut-track" in out.out
    with Registry(data_dir, sync_on_write=False) as reg:
        by_frame = _objects_by_frame(reg, src, fids)
        assert sorted(by_frame) == [1, 2, 3] and len(by_frame[3]) == 2
        for i in (1, 2):
            (o,) = by_frame[i]
            assert o["metadata"]["propagation"]["from_object"] == prompts[1]
            assert box_iou_matrix(_xyxy(o)[None], dict(truth[i])[1][None])[0, 0] >= 0.7


def test_cli_bad_input_is_one_clear_line(data_dir, capsys):
    src, fids, prompts, _ = _seed(data_dir, n=3)
    assert main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "7"]) == 2
    assert "has no stored frame 7; its stored frames are 0..2 (3 stored)" in capsys.readouterr().err
    assert main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "1"]) == 2
    assert "frame 1 of source" in capsys.readouterr().err
    assert main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "1", "--objects",
                 prompts[0]]) == 2
    assert f"object {prompts[0]} lies on another frame" in capsys.readouterr().err
    with Registry(data_dir, sync_on_write=False) as reg:
        assert reg.count_objects(source_id=src) == 2 and reg.list_tracks(src) == []


def test_a_broken_frame_file_names_the_frame_and_keeps_earlier_chunks(data_dir, capsys, monkeypatch):
    import app.workflows.propagate as wf

    monkeypatch.setattr(wf, "CHUNK_FRAMES", 2)
    src, fids, prompts, _ = _seed(data_dir, n=6)
    with Registry(data_dir, sync_on_write=False) as reg:
        broken = reg.image_path(fids[4])
    broken.write_bytes(b"not a png")
    assert main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "0"]) == 2
    err = capsys.readouterr().err
    assert f"error: frame 4 ({broken}) cannot be read" in err and "launch.py video add" in err
    with Registry(data_dir, sync_on_write=False) as reg:
        by_frame = _objects_by_frame(reg, src, fids)
        # frames 1-2 (a full chunk) and 3 (computed before the broken frame) are written; nothing after
        assert sorted(by_frame) == [0, 1, 2, 3] and all(len(by_frame[i]) == 2 for i in (1, 2, 3))


@pytest.fixture
def sam2_weights(data_dir):
    """The tiny SAM2.1 video folder where `models download` puts facebook/sam2.1-hiera-tiny."""
    return build_tiny_sam2_video(data_dir / "models" / "facebook--sam2.1-hiera-tiny")


def test_cli_uses_sam2_video_when_its_weights_are_there(data_dir, sam2_weights, capsys):
    src, fids, prompts, _ = _seed(data_dir, n=4)
    code = main(["propagate", "--data", str(data_dir), "--source", src, "--from-frame", "0", "--json",
                 "--device", "cpu", "--drift-threshold", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.loads(captured.out)
    assert res["segmenter"] == "sam2-video" and res["warning"] is None and "warning" not in captured.err
    assert res["frames"] >= 1
    with Registry(data_dir, sync_on_write=False) as reg:
        for oid in res["object_ids"]:
            o = reg.get_object(oid)
            assert o["detection_model"] == "sam2-video" and o["metadata"]["propagation"]["from_frame"] == 0


def test_workflow_sam2_writes_scripted_masks_links_tracks_and_stops_on_drift(data_dir, sam2_weights):
    from pipeline.models.manager import ModelManager

    src, fids, prompts, _ = _seed(data_dir, n=N_FRAMES, with_masks=True)
    manager = ModelManager(weights_dir=data_dir / "models", device="cpu")
    prop = manager.video_propagator()  # cached: the workflow gets this very instance
    # decoder calls per frame: object 0, object 1 (mask prompts call it once each on frame 0);
    # object 1 is lost on frame 3 (calls 6, 7 are frame 3)
    script_object_scores(prop.model, lambda call, n: [-8.0 if call == 7 else 8.0] * n,
                         mask_region=(0.25, 0.25, 0.5, 0.75))
    with Registry(data_dir, sync_on_write=False) as reg:
        tracked = reg.create_track([prompts[0]], metadata={"created_by": "tracker"})
        res = propagate(manager, reg, src, 0)
        assert res["segmenter"] == "sam2-video" and res["warning"] is None
        assert res["drift"] == [{"object_id": prompts[1], "frame_idx": 3, "score": pytest.approx(1 / (1 + np.exp(8)))}]
        assert res["tracks"][prompts[0]] == tracked  # the existing track is extended
        t0 = reg.get_track(tracked)
        assert [o["frame_idx"] for o in t0["objects"]] == list(range(N_FRAMES))
        t1 = reg.get_track(res["tracks"][prompts[1]])
        assert [o["frame_idx"] for o in t1["objects"]] == [0, 1, 2]  # the drift frame's mask is empty
        o = t0["objects"][2]
        assert o["bbox_xywh"] == [32.0, 24.0, 32.0, 48.0]  # the scripted quarter: x 25-50 %, y 25-75 %
        assert o["confidence"] == pytest.approx(1 / (1 + np.exp(-8)), rel=1e-5)
        assert o["metadata"]["propagation"]["model"] == "sam2.1-hiera-tiny"
        mask = reg.get_mask(o["object_id"])
        assert mask.sum() >= 0.98 * 32 * 48 and not mask[:, :32].any() and not mask[:, 64:].any()
        assert res["written"] == (N_FRAMES - 1) + 2


def test_rerun_keeps_what_a_person_reviewed(data_dir):
    src, fids, prompts, _ = _seed(data_dir, n=4)
    with Registry(data_dir, sync_on_write=False) as reg:
        first = propagate(object(), reg, src, 0)  # no models at all: the GrabCut fallback
        assert first["segmenter"] == "grabcut-track" and first["written"] == 6
        on_2 = [o for o in _objects_by_frame(reg, src, fids)[2] if o["metadata"]["propagation"]["from_object"] == prompts[0]]
        approved = reg.update_object(on_2[0]["object_id"], status="approved", validated_by="ann")["object_id"]
        again = propagate(object(), reg, src, 0)
        assert again["kept"] == [{"object_id": prompts[0], "frame_idx": 2, "kept_object": approved}]
        assert again["replaced"] == 5 and again["written"] == 5
        assert reg.get_object(approved)["validation_status"] == "approved"
        assert reg.count_objects(source_id=src) == 2 + 6
        track = reg.get_track(again["tracks"][prompts[0]])
        assert [o["frame_idx"] for o in track["objects"]] == [0, 1, 2, 3]
        assert approved in {o["object_id"] for o in track["objects"]}


def test_an_image_only_sam2_folder_falls_back_to_grabcut_and_says_why(data_dir):
    from pipeline.models.manager import ModelManager
    from tests.pipeline.tiny_models_sam2_dino import build_tiny_sam2

    build_tiny_sam2(data_dir / "models" / "facebook--sam2.1-hiera-tiny")
    src, fids, prompts, _ = _seed(data_dir, n=3)
    with Registry(data_dir, sync_on_write=False) as reg:
        res = propagate(ModelManager(weights_dir=data_dir / "models", device="cpu"), reg, src, 0, max_frames=1)
    assert res["segmenter"] == "grabcut-track" and res["written"] == 2
    assert "expected a 'sam2_video' checkpoint" in res["warning"]


def test_build_context_wires_the_video_propagator(data_dir, sam2_weights):
    from app.cli.serve import build_context
    from pipeline.segment.sam2_video import Sam2VideoPropagator

    src, fids, prompts, _ = _seed(data_dir, n=3, with_masks=True)
    ctx = build_context(data_dir, profile="cpu", segmenter="sam2")
    try:
        prop = ctx.video_propagator_provider()
        assert isinstance(prop, Sam2VideoPropagator) and prop is ctx.video_propagator_provider()  # loaded once
        script_object_scores(prop.model, lambda call, n: [8.0] * n, mask_region=(0.1, 0.1, 0.4, 0.4))
        res = propagate(ctx, ctx.registry, src, 0, max_frames=1)
        assert res["segmenter"] == "sam2-video" and res["warning"] is None and res["written"] == 2
    finally:
        ctx.registry.close()


def test_cli_summary_names_drift_and_kept_frames():
    from app.cli.propagate import _summary

    text = _summary({"written": 7, "frames": 4, "backward": False, "from_frame": 2, "prompts": ["obj_a", "obj_b"],
                     "segmenter": "sam2-video", "replaced": 3, "tracks": {"obj_a": "trk_1", "obj_b": "trk_2"},
                     "drift": [{"object_id": "obj_b", "frame_idx": 5, "score": 0.125}],
                     "kept": [{"object_id": "obj_a", "frame_idx": 4, "kept_object": "obj_k"}]})
    assert text.splitlines() == [
        "7 object(s) written on 4 frame(s) after frame 2 from 2 prompt(s) with sam2-video; "
        "3 earlier propagated object(s) replaced",
        "  obj_a -> track trk_1",
        "  obj_b -> track trk_2",
        "  drift: obj_b at frame 5 (score 0.12); re-prompt from there",
        "  1 frame(s) kept their existing track object instead (e.g. obj_k on frame 4)",
    ]


def test_a_rejected_object_on_the_prompt_frame_is_not_followed(data_dir):
    """A false positive a person rejected on frame K must not be propagated by "all objects of K"."""
    src, fids, prompts, _ = _seed(data_dir, n=4)
    with Registry(data_dir, sync_on_write=False) as reg:
        reg.update_object(prompts[1], status="rejected", validated_by="ann")
        res = propagate(object(), reg, src, 0)
        assert res["prompts"] == [prompts[0]]
        assert res["written"] == 3
        followed = {o["metadata"]["propagation"]["from_object"] for f, objs in _objects_by_frame(reg, src, fids).items()
                    if f > 0 for o in objs}
        assert followed == {prompts[0]}
        reg.update_object(prompts[0], status="rejected", validated_by="ann")
        with pytest.raises(ValueError, match="rejected"):
            propagate(object(), reg, src, 0)
        # naming a rejected object on purpose still follows it
        assert propagate(object(), reg, src, 0, object_ids=[prompts[1]])["prompts"] == [prompts[1]]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_drift_threshold_outside_0_1_is_refused_before_anything_is_written(data_dir, bad):
    src, _, _, _ = _seed(data_dir, n=3)
    with Registry(data_dir, sync_on_write=False) as reg:
        before = reg.count_objects(source_id=src)
        with pytest.raises(ValueError, match="drift_threshold"):
            propagate(object(), reg, src, 0, drift_threshold=bad)
        assert reg.count_objects(source_id=src) == before
