"""SAM2.1 video propagation: per-frame time and peak memory, bounded session vs transformers' default.

    python launch.py bench video                          # CPU: 8 frames at 512 x 512, 2 objects
    python launch.py bench video --frames 64 --device cuda --json

The full-size SAM2.1-hiera-tiny video architecture (transformers' ``Sam2VideoConfig()``
defaults: Hiera 96-d, blocks 1-2-7-2, 1024 x 1024 input, 7 mask memories, 16 object pointers)
with random weights (seeded): the arithmetic, hence time and memory, is the real thing. Frames
are a synthetic clip of moving squares at ``--size`` x ``--size``, generated one at a time.

Two variants, measured in the same run:

- ``bounded``: :class:`pipeline.segment.sam2_video.Sam2VideoPropagator` as the app uses it
  (state outside the memory windows dropped after each frame);
- ``default``: the same with ``keep_history=True``, i.e. transformers' inference session as it
  is (every preprocessed frame and every object-frame output kept): the reference.

Each variant runs in its own process on CPU (so ``peak_rss_mb`` is its own), or one after the
other on CUDA (``cuda_peak_mb`` = ``torch.cuda.max_memory_allocated`` after a reset).

Figures per variant: ``per_frame_s`` (median over the frames after the prompt frame: preprocess,
image encoder, memory attention, decoder, memory encoder, mask resize), ``first_frame_s``,
``state_mb`` (tensors the session holds after the last frame), ``peak_rss_mb`` /
``cuda_peak_mb``. ``ratios`` are bounded / default (below 1 = the bounded session holds less);
``state_growth_mb_per_frame`` is the default session's growth, which the bounded one does not have.
Objects are followed through every frame (``stop_on_drift=False``): random weights lose them.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time
from typing import Any

import numpy as np

VARIANTS = ("bounded", "default")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=8, help="frames including the prompt frame (8)")
    parser.add_argument("--size", type=int, default=512, help="frame side in pixels (512)")
    parser.add_argument("--objects", type=int, default=2, help="objects followed (2)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="precision (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--in-process", action="store_true",
                        help="run both variants in this process (quicker; peak_rss_mb is then the max of both)")
    parser.add_argument("--arch", choices=["full", "tiny"], default="full",
                        help="full: SAM2.1-hiera-tiny (default); tiny: the test suite's toy model, only to check "
                             "that the benchmark runs (its figures mean nothing)")


def clip(n: int, side: int, objects: int):
    """Yields ``n`` RGB uint8 (side, side, 3) frames with ``objects`` squares moving 2 % a frame."""
    sq = max(8, side // 6)
    for i in range(n):
        img = np.full((side, side, 3), 110, np.uint8)
        for k in range(objects):
            x = int((0.05 + 0.02 * i + 0.3 * k) * side) % (side - sq)
            y = int((0.2 + 0.25 * k) * side) % (side - sq)
            img[y:y + sq, x:x + sq] = (200 - 60 * k, 60 + 50 * k, 40 + 80 * k)
        yield img


def prompt_boxes(side: int, objects: int) -> np.ndarray:
    """xyxy boxes (absolute pixels) of the squares on frame 0 of :func:`clip`."""
    sq = max(8, side // 6)
    out = []
    for k in range(objects):
        x = int((0.05 + 0.3 * k) * side) % (side - sq)
        y = int((0.2 + 0.25 * k) * side) % (side - sq)
        out.append([x, y, x + sq, y + sq])
    return np.array(out, np.float32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _config(arch: str):
    from transformers import Sam2VideoConfig

    if arch == "tiny":
        from tests.pipeline.segment_video.tiny_video_model import tiny_video_config

        return tiny_video_config()
    return Sam2VideoConfig()  # = facebook/sam2.1-hiera-tiny


def measure(variant: str, frames: int, size: int, objects: int, device: str, dtype_name: str,
            arch: str = "full") -> dict[str, Any]:
    """Runs one variant; returns its figures."""
    import torch
    from transformers import Sam2VideoModel

    from pipeline.segment.sam2_video import Sam2VideoPropagator, session_state

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    model = Sam2VideoModel(_config(arch)).eval().to(device=device, dtype=dtype)
    prop = Sam2VideoPropagator(model, device=device, dtype=dtype, keep_history=variant == "default",
                               name="sam2.1-hiera-tiny-random")
    rss_loaded = _peak_rss_mb()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    t = time.perf_counter()
    for _ in prop.propagate(clip(frames, size, objects), prompt_boxes(size, objects), drift_threshold=0.0,
                            stop_on_drift=False):
        if device == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - t)
        t = now
    state = session_state(prop.last_session)
    out = {
        "frames": len(times),
        "first_frame_s": times[0],
        "per_frame_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "state_mb": state["bytes"] / 2**20,
        "stored_frames": state["frames"],
        "stored_outputs": state["outputs"],
        "rss_model_loaded_mb": rss_loaded,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _child(queue, *args) -> None:
    try:
        queue.put(("ok", measure(*args)))
    except BaseException as exc:  # report, never hang the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _in_subprocess(*args) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, *args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"bench video ({args[0]}): {value}")
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.frames < 2:
        raise ValueError(f"--frames: expected >= 2 (the prompt frame and at least one more), got {args.frames}")
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: expected a CUDA GPU, torch sees none; use --device cpu")
    dtype = args.dtype or ("float32" if device == "cpu" else "bfloat16")
    result: dict[str, Any] = {"machine": {"device": device, "dtype": dtype, "torch_threads": torch.get_num_threads(),
                                          "load_avg_1m_at_start": os.getloadavg()[0]},
                              "clip": {"frames": args.frames, "size": args.size, "objects": args.objects},
                              "arch": args.arch}
    for variant in VARIANTS:
        call = (variant, args.frames, args.size, args.objects, device, dtype, args.arch)
        own_process = device == "cpu" and not args.in_process
        result[variant] = _in_subprocess(*call) if own_process else measure(*call)
        if device == "cuda":
            torch.cuda.empty_cache()
    b, d = result["bounded"], result["default"]
    result["ratios"] = {
        "bounded_vs_default_per_frame_s": b["per_frame_s"] / d["per_frame_s"],
        "bounded_vs_default_state": b["state_mb"] / max(d["state_mb"], 1e-9),
        "bounded_vs_default_peak_rss": b["peak_rss_mb"] / d["peak_rss_mb"],
        "state_growth_mb_per_frame": (d["state_mb"] - b["state_mb"]) / max(1, args.frames - 1),
    }
    if device == "cuda":
        result["ratios"]["bounded_vs_default_cuda_peak"] = b["cuda_peak_mb"] / d["cuda_peak_mb"]
    return result
