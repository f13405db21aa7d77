"""A refinement click runs with ``click_threads`` intra-op threads in the calling thread only."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pipeline.models.device import intra_op_threads
from pipeline.segment.sam2 import Sam2Segmenter
from tests.pipeline.tiny_models_sam2_dino import build_tiny_sam2


@pytest.fixture(scope="module")
def seg(tmp_path_factory) -> Sam2Segmenter:
    folder = build_tiny_sam2(tmp_path_factory.mktemp("sam2-threads") / "sam2")
    s = Sam2Segmenter.from_pretrained(folder, device="cpu", dtype=torch.float32)
    rng = np.random.default_rng(0)
    s.set_image(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    return s


def _threads_seen_by_decoder(seg: Sam2Segmenter, monkeypatch) -> list[int]:
    seen: list[int] = []
    decoder = seg.model.mask_decoder
    original = decoder.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", spy)
    return seen


def test_click_decodes_with_click_threads_and_restores_the_count(seg, monkeypatch):
    torch.set_num_threads(2)
    seen = _threads_seen_by_decoder(seg, monkeypatch)
    seg.click_threads = 1
    pts, labels = np.array([[40.0, 30.0], [10.0, 10.0]]), np.array([1, 0])
    fast = seg.predict_points(pts, labels)
    assert seen == [1] and torch.get_num_threads() == 2
    seg.click_threads = None
    try:
        reference = seg.predict_points(pts, labels)
    finally:
        seg.click_threads = "auto"
    assert seen == [1, 2]
    # the thread count changes the schedule, not the result
    assert fast.mask.any() and np.array_equal(fast.mask, reference.mask)
    np.testing.assert_allclose(fast.low_res_logits, reference.low_res_logits, atol=1e-4)


def test_intra_op_threads_leaves_other_running_threads_alone():
    """A thread that already ran torch (a server's worker pool) keeps its count while a click runs.

    (OpenMP keeps the count per thread once the thread has used it; libgomp's initial thread
    also sets the default for threads that have not yet, hence the restore after every click.)
    """
    torch.set_num_threads(2)
    started, go = threading.Event(), threading.Event()
    inside, other = [], []

    def worker() -> None:
        other.append(torch.get_num_threads())
        started.set()
        go.wait(10)
        other.append(torch.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    started.wait(10)
    with intra_op_threads(1):
        inside.append(torch.get_num_threads())
        go.set()
        t.join()
    assert inside == [1] and other == [2, 2] and torch.get_num_threads() == 2


def test_auto_uses_one_thread_only_while_the_cores_are_contended(seg, monkeypatch):
    import pipeline.models.device as device_mod

    torch.set_num_threads(2)
    seen = _threads_seen_by_decoder(seg, monkeypatch)
    assert seg.click_threads == "auto"
    monkeypatch.setattr(device_mod.os, "cpu_count", lambda: 2)
    pts, labels = np.array([[40.0, 30.0]]), np.array([1])
    monkeypatch.setattr(device_mod.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    seg.predict_points(pts, labels)
    monkeypatch.setattr(device_mod.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    seg.predict_points(pts, labels)
    assert seen == [1, 2] and torch.get_num_threads() == 2
