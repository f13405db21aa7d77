"""``video add`` throughput and memory: decode, sample and store frames, vs a naive reference.

    python launch.py bench frames [--frames 150] [--width 640] [--height 480] [--json]

A synthetic H.264 video (a textured scene panning, with a cut every 50 frames) is written once
with PyAV. Measured in the same run, each on a fresh data folder:

* ``decode``: :func:`pipeline.video.iter_frames` over every frame (RGB arrays, nothing kept);
* ``scene``: the same with ``scene_change=True`` (grey thumbnails + histograms on top);
* ``add_video``: :func:`app.workflows.video.add_video` storing every frame (PNG files + rows);
* ``naive``: the reference a first version would write: decode every frame into a list, then
  save each with Pillow's default PNG settings, serially.

For each: seconds, frames per second, and the peak RSS growth (psutil, sampled every 20 ms)
over the process's RSS before it. Ratios ``naive / add_video`` are printed for time and memory;
the naive memory grows with the video's length, ``add_video``'s does not.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=150, help="frames in the synthetic video (default 150)")
    parser.add_argument("--width", type=int, default=640, help="frame width (even; default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height (even; default 480)")
    parser.add_argument("--workdir", default=None, help="keep the video and data folders here (default: a temp dir)")


def _write_video(path: Path, n: int, w: int, h: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    # each shot has its own brightness band, so the grey histograms differ at a cut
    scenes = [rng.integers((70 * k) % 160, (70 * k) % 160 + 90, (h // 8, w // 8 + n, 3), dtype=np.uint8)
              for k in range(n // 50 + 1)]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(n):
            tile = scenes[i // 50][:, i % n: i % n + w // 8]
            frame = np.kron(tile, np.ones((8, 8, 1), np.uint8))[:h, :w]  # 8x8 blocks: compressible
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


class _PeakRss:
    """Peak RSS growth (bytes) of this process while the block runs, sampled every 20 ms."""

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._sample, daemon=True)
        self._th.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._th.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def _naive(path: Path, out: Path) -> int:
    from PIL import Image

    from pipeline.video import iter_frames

    frames = [f.image for f in iter_frames(path)]  # everything in RAM first
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        Image.fromarray(img).save(out / f"{i:06d}.png")
    return len(frames)


def run(args: argparse.Namespace) -> dict:
    from app.workflows.video import add_video
    from pipeline.video import FrameSampler, iter_frames
    from registry.facade import Registry

    n, w, h = int(args.frames), int(args.width), int(args.height)
    if n < 1 or w < 16 or h < 16 or w % 2 or h % 2:
        raise ValueError(f"expected --frames >= 1 and even --width/--height >= 16, got {n}, {w}x{h}")
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="agl-bench-frames-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        video = root / "bench.mp4"
        _write_video(video, n, w, h)
        rows: dict[str, dict] = {}

        def measure(name: str, fn) -> None:
            with _PeakRss() as rss:
                t = time.perf_counter()
                count = fn()
                dt = time.perf_counter() - t
            rows[name] = {"frames": count, "seconds": round(dt, 3), "fps": round(count / dt, 1),
                          "peak_rss_growth_mb": round(rss.growth_mb, 1)}

        measure("decode", lambda: sum(1 for _ in iter_frames(video)))
        scene = FrameSampler(scene_change=True)

        def scene_decode() -> int:
            for _ in iter_frames(video, scene):
                pass
            return scene.seen  # frames decoded (fps comparable with "decode"); kept: scene.kept

        measure("scene", scene_decode)
        with Registry(root / "data", index="exact", sync_on_write=False) as reg:
            measure("add_video", lambda: add_video(reg, video)["frames"])
        png_mb = sum(p.stat().st_size for p in (root / "data" / "media" / "frames").rglob("*.png")) / 1e6
        measure("naive", lambda: _naive(video, root / "naive"))
        a, b = rows["add_video"], rows["naive"]
        return {
            "video": {"frames": n, "width": w, "height": h, "codec": "h264"},
            **rows,
            "png_mb": round(png_mb, 1),
            "scene_frames_kept": scene.kept,
            "ratio_time_naive_over_add_video": round(b["seconds"] / a["seconds"], 2),
            "ratio_memory_naive_over_add_video": round(b["peak_rss_growth_mb"] / max(a["peak_rss_growth_mb"], 0.1), 1),
        }
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
