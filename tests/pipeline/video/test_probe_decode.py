"""Probing and streaming decode of small synthetic videos, and the errors for bad files."""
from __future__ import annotations

import dataclasses
import inspect
import tracemalloc

import numpy as np
import pytest

from pipeline.video import FrameSampler, iter_frames, probe_video
from tests.pipeline.video import bad_videos
from tests.video_fixtures import moving_boxes, write_video


def test_probe_reports_size_fps_count_duration_codec(tmp_path):
    path = bad_videos.small_video(tmp_path / "clip.mp4", n=30)
    info = probe_video(path)
    assert (info.width, info.height) == (128, 96)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == 30
    assert info.duration == pytest.approx(3.0, abs=0.11)
    assert info.codec == "h264" and info.backend == "pyav"


def test_decode_yields_rgb_frames_with_index_and_timestamp(tmp_path):
    frames, truth = moving_boxes(12)
    path = write_video(tmp_path / "clip.mp4", frames)
    got = list(iter_frames(path))
    assert [f.frame_idx for f in got] == list(range(12))
    assert [f.timestamp for f in got] == pytest.approx([i / 10 for i in range(12)])
    first = got[0].image
    assert first.shape == (96, 128, 3) and first.dtype == np.uint8
    # the red square of frame 0 is where the fixture drew it (H.264 at crf 12: close colours)
    x0, y0, x1, y1 = truth[0][0][1].astype(int)
    red = first[y0 + 3:y1 - 3, x0 + 3:x1 - 3].reshape(-1, 3).mean(axis=0)
    assert red[0] > 180 and red[1] < 90 and red[2] < 90
    assert np.abs(got[5].image.astype(int) - frames[5].astype(int)).mean() < 4


def test_every_fps_and_max_frames_sampling(tmp_path):
    path = bad_videos.small_video(tmp_path / "clip.mp4", n=30)
    assert [f.frame_idx for f in iter_frames(path, FrameSampler(every=7))] == [0, 7, 14, 21, 28]
    # 3 per second of a 10 fps video: the first frame at or after each third of a second
    assert [f.frame_idx for f in iter_frames(path, FrameSampler(fps=3))] == [0, 4, 7, 10, 14, 17, 20, 24, 27]
    assert [f.frame_idx for f in iter_frames(path, FrameSampler(every=2, max_frames=4))] == [0, 2, 4, 6]
    # fps above the video's rate keeps every frame
    assert len(list(iter_frames(path, FrameSampler(fps=25)))) == 30


def test_scene_change_keeps_one_frame_per_scene(tmp_path):
    # three shots of 8 frames (dark, bright, mid grey) with a square moving inside each
    frames = []
    for level in (30, 220, 120):
        for i in range(8):
            img = np.full((64, 96, 3), level, np.uint8)
            img[10:30, 5 + 4 * i:25 + 4 * i] = (level + 40) % 256
            frames.append(img)
    path = write_video(tmp_path / "shots.mp4", frames)
    kept = [f.frame_idx for f in iter_frames(path, FrameSampler(scene_change=True))]
    assert kept == [0, 8, 16]
    # with every=3 the candidates are 0, 3, ..., 21: the first of each shot among them
    assert [f.frame_idx for f in iter_frames(path, FrameSampler(every=3, scene_change=True))] == [0, 9, 18]


def test_decode_is_a_generator_with_bounded_memory(tmp_path):
    frames, _ = moving_boxes(120, size=(96, 128))
    path = write_video(tmp_path / "long.mp4", frames)
    del frames
    gen = iter_frames(path)
    assert inspect.isgenerator(gen)
    frame_bytes = 96 * 128 * 3
    tracemalloc.start()
    try:
        n = 0
        for f in gen:
            n += 1
            assert f.image.nbytes == frame_bytes
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 120
    # all 120 frames held at once would be ~4.4 MB; a streaming decode holds a few
    assert peak < 10 * frame_bytes, f"peak {peak} bytes traced while decoding 120 frames of {frame_bytes} bytes"


@pytest.mark.parametrize(
    ("make", "name", "expected"),
    [
        (lambda p, t: bad_videos.empty_file(p), "empty.mp4", "the file is empty (0 bytes)"),
        (lambda p, t: bad_videos.text_file(p), "notes.mp4", "not a video, or a corrupt/truncated one"),
        (lambda p, t: bad_videos.truncated_mp4(p, t), "cut.mp4", "not a video, or a corrupt/truncated one"),
        (lambda p, t: bad_videos.audio_only(p), "song.m4a", "no video stream (streams: audio"),
        (lambda p, t: bad_videos.unknown_codec(p, t), "odd.avi", "unknown video codec"),
        (lambda p, t: bad_videos.still_image(p), "photo.png", "a still image (png), not a video"),
        (lambda p, t: bad_videos.still_image(p), "photo.jpg", "a still image (jpeg), not a video"),
    ],
)
def test_unusable_files_raise_one_clear_error_naming_the_file(tmp_path, make, name, expected):
    work = tmp_path / "work"
    work.mkdir()
    path = make(tmp_path / name, work)
    with pytest.raises(ValueError) as exc:
        probe_video(path)
    msg = str(exc.value)
    assert msg.startswith(f"cannot read video {name!r}: ") and expected in msg
    assert "\n" not in msg and ("; " in msg)  # one line, with what to do
    with pytest.raises(ValueError, match="cannot read video"):
        list(iter_frames(path))


def test_truncated_stream_is_found_while_decoding(tmp_path):
    path = bad_videos.truncated_mkv(tmp_path / "cut.mkv", tmp_path)
    info = probe_video(path)  # the header survives the cut
    assert info.frame_count == 30
    seen = []
    with pytest.raises(ValueError, match=r"cannot read video 'cut.mkv': truncated: the stream ends after \d+ of the 30"):
        for f in iter_frames(path, info=info):
            seen.append(f.frame_idx)
    assert 0 < len(seen) < 30  # the frames before the cut came out first


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        probe_video(tmp_path / "nope.mp4")
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="cannot read video 'd': expected a file, got a folder"):
        probe_video(tmp_path / "d")


def test_opencv_fallback_when_pyav_cannot_open(tmp_path, monkeypatch):
    import av

    from pipeline.video import probe as probe_mod

    path = bad_videos.small_video(tmp_path / "clip.mp4", n=10)

    def refuse(p):
        raise av.error.FFmpegError(1, "simulated: PyAV cannot open this")

    monkeypatch.setattr(probe_mod, "probe_pyav", refuse)
    info = probe_video(path)
    assert info.backend == "opencv" and (info.width, info.height, info.frame_count) == (128, 96, 10)
    got = list(iter_frames(path, FrameSampler(every=3), info=info))
    assert [f.frame_idx for f in got] == [0, 3, 6, 9]
    assert got[0].image.shape == (96, 128, 3)
    pyav = list(iter_frames(path, FrameSampler(every=3), info=dataclasses.replace(info, backend="pyav")))
    assert [f.frame_idx for f in pyav] == [0, 3, 6, 9]
    # both backends decode the same pictures (same FFmpeg underneath; conversions may differ by a level)
    assert np.abs(got[2].image.astype(int) - pyav[2].image.astype(int)).mean() < 2


def test_display_rotation_is_applied_like_players_and_opencv(tmp_path):
    import av
    import cv2

    img = np.full((32, 64, 3), 90, np.uint8)
    img[:8, :16] = (230, 30, 30)  # a red block top-left of a landscape picture
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)  # stored landscape, shown portrait
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    frames = list(iter_frames(path, info=info))
    assert len(frames) == 3 and frames[0].image.shape == (64, 32, 3)
    assert np.abs(frames[0].image.astype(int) - np.rot90(img, 1)).mean() < 3
    cap = cv2.VideoCapture(str(path))  # OpenCV turns it upright by itself: the same picture
    ok, bgr = cap.read()
    cap.release()
    assert ok and np.abs(bgr[..., ::-1].astype(int) - frames[0].image.astype(int)).mean() < 3


def test_animated_gif_is_a_video(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)) for i in range(4)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    info = probe_video(tmp_path / "anim.gif")
    assert (info.width, info.height, info.frame_count, info.codec) == (30, 20, 4, "gif")
    got = list(iter_frames(tmp_path / "anim.gif", info=info))
    assert [int(f.image.mean()) for f in got] == [0, 40, 80, 120]
