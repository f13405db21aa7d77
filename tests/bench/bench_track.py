"""Tracker at scale: speed and MOTA/IDF1 of pipeline.track vs the greedy IoU baseline, and the
whole ``track`` workflow (registry read + tracking + writing the tracks).

    python launch.py bench track [--frames 1000] [--objects 20] [--dim 64] [--json]

The scene is synthetic and needs no rendering: ``--objects`` boxes (24..64 px) move at constant
velocity in a 1280x720 frame, bouncing off its edges; each has a random unit embedding (a
stand-in for DINOv2) seen with noise. Detections miss 10 % of objects at random, and the one
object in four that passes through a band across the frame (x 600..680) is hidden there
(occlusion gaps); 0.5 false positives per frame with random embeddings. The reference is the
greedy IoU tracker of tests/pipeline/track/test_tracker_quality.py, measured on the same
detections in the same run. Boxes are xyxy, absolute pixels.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

W, H = 1280, 720


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=1000, help="frames (default 1000)")
    parser.add_argument("--objects", type=int, default=20, help="objects in the scene (default 20)")
    parser.add_argument("--dim", type=int, default=64, help="embedding length (default 64; DINOv2-base: 768)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-workflow", action="store_true", help="skip the registry round trip")


def scene(frames: int, objects: int, dim: int, seed: int):
    """``(truth, detections)`` as in the quality test: truth[f] = [(gid, xyxy)]."""
    from pipeline.track import FrameDetections

    rng = np.random.default_rng(seed)
    size = rng.uniform(24, 64, objects)
    pos = rng.uniform(0, 1, (objects, 2)) * (np.array([W, H]) - size[:, None])
    vel = rng.normal(0, 3, (objects, 2))
    looks = rng.normal(size=(objects, dim))
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    hides = rng.random(objects) < 0.25
    truth, dets = [], []
    for f in range(frames):
        gt, boxes, feats = [], [], []
        for g in range(objects):
            box = np.array([*pos[g], *(pos[g] + size[g])])
            cx = (box[0] + box[2]) / 2
            if not (hides[g] and 600 <= cx <= 680):
                gt.append((g + 1, box))
                if rng.random() > 0.1:
                    boxes.append(box + rng.normal(0, 1.5, 4))
                    feats.append(looks[g] + rng.normal(0, 0.05, dim))
        for _ in range(rng.poisson(0.5)):
            x, y, s = rng.uniform(0, W - 60), rng.uniform(0, H - 60), rng.uniform(20, 60)
            boxes.append(np.array([x, y, x + s, y + s]))
            feats.append(rng.normal(size=dim))
        b = np.array(boxes).reshape(-1, 4)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        truth.append(gt)
        dets.append(FrameDetections(f, b, ["thing"] * len(b), np.array(feats).reshape(-1, dim),
                                    [f"f{f}_{n}" for n in range(len(b))]))
        pos += vel
        for axis, limit in ((0, W), (1, H)):  # bounce off the frame's edges
            out = (pos[:, axis] < 0) | (pos[:, axis] + size > limit)
            vel[out, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - size)
    return truth, dets


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.track import TrackerConfig, track
    from tests.pipeline.track.test_tracker_quality import evaluate, greedy_iou_tracker

    truth, dets = scene(args.frames, args.objects, args.dim, args.seed)
    n_dets = sum(len(d.xyxy) for d in dets)
    t0 = time.perf_counter()
    tracks = track(dets, TrackerConfig())
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = greedy_iou_tracker(dets)
    t_base = time.perf_counter() - t0
    ours_m = evaluate(truth, dets, {k: t.track_id for t in tracks for k in t.keys})
    base_m = evaluate(truth, dets, base)
    result: dict[str, Any] = {
        "config": {"frames": args.frames, "objects": args.objects, "dim": args.dim, "detections": n_dets,
                   "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "tracker": {"seconds": t_ours, "frames_per_s": args.frames / t_ours, "tracks": len(tracks),
                    **{k: ours_m[k] for k in ("mota", "idf1", "num_switches")}},
        "greedy_iou": {"seconds": t_base, "frames_per_s": args.frames / t_base,
                       **{k: base_m[k] for k in ("mota", "idf1", "num_switches")}},
        "ratio": {"time_tracker_over_greedy": t_ours / t_base, "idf1_tracker_minus_greedy": ours_m["idf1"] - base_m["idf1"]},
    }
    if not args.no_workflow:
        result["workflow"] = _workflow(dets, args, t_ours)
    return result


def _workflow(dets, args: argparse.Namespace, t_track: float) -> dict[str, Any]:
    """``track_source`` on a registry holding the same detections (bulk-registered per frame)."""
    from app.workflows.tracking import track_source
    from registry.facade import ObjectIn, Registry

    with tempfile.TemporaryDirectory(prefix="agl-bench-track-") as tmp:
        video = Path(tmp) / "scene.mp4"
        video.write_bytes(b"bench stand-in for a video file")
        with Registry(Path(tmp) / "data", embedding_dim=args.dim, embedding_version="bench", index="exact",
                      sync_on_write=False) as reg:
            sid = reg.register_source(video, source_type="video", width=W, height=H, fps=30.0, frame_count=args.frames)
            for fr in dets:
                fid = reg.add_frame(sid, fr.frame_idx)
                boxes = np.clip(fr.xyxy, 0, [W, H, W, H])
                reg.register_objects(sid, [ObjectIn("thing", tuple(map(float, b)), frame_id=fid, confidence=0.8,
                                                    embedding=e.astype(np.float32)) for b, e in zip(boxes, fr.embeddings, strict=True)],
                                     dedupe=False)
            t0 = time.perf_counter()
            out = track_source(reg, sid)
            total = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = track_source(reg, sid)  # re-run: replaces the tracker's own tracks
            rerun = time.perf_counter() - t0
    return {"seconds": total, "rerun_seconds": rerun, "tracks": out["tracks"], "objects_linked": out["objects_linked"],
            "replaced_on_rerun": again["replaced_tracks"], "tracking_share": t_track / total}
