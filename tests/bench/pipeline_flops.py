"""FLOP accounting for ``bench pipeline``: how far each stage is from the machine's matmul peak.

Each stage's arithmetic is counted once (untimed) with ``torch.utils.flop_counter.FlopCounterMode``
on the same inputs the timed run used; achieved GFLOP/s = counted FLOPs / the stage's measured
seconds, and ``fraction_of_peak`` = achieved / the 1024^3 matmul GFLOP/s of the same precision
measured in the same run (``reference_gflops``). FlopCounterMode counts matrix products,
convolutions and attention (mm, addmm, bmm, baddbmm, convolution, SDPA); element-wise work
(norms, GELU, softmax outside SDPA, resizes) costs time but no counted FLOPs, so a low fraction
means either such work or small, memory-bound matmuls dominate. CPU SDPA
(``_scaled_dot_product_flash_attention_for_cpu``) is not in torch's table and is added here
with torch's own SDPA formula.

Stages (FLOPs per call):

- ``detect``: Florence-2 ``detect`` = vision tower + text encoder + decoder generation of the
  scripted output (the tokens the timed auto-label run generated); ``florence_vision`` alone.
- ``segment_encode``: SAM2 image encoder of one image; ``segment_decode``: 5 boxes decoded.
- ``click``: one refinement click (3 points + previous logits) on the cached embedding.
- ``embed``: DINOv2 on 5 masked crops (one batch).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """torch's SDPA formula (2 batched matmuls) for the CPU flash-attention kernel."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query.shape, key.shape, value.shape)


_cpu_sdpa_flops._get_raw = True  # type: ignore[attr-defined]  # takes tensors, not shapes


def _mode():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn's result, the FLOPs its matmuls/convolutions/attention performed)."""
    import torch

    mode = _mode()
    with torch.inference_mode(), mode:
        result = fn()
    return result, int(mode.get_total_flops())


def stage(flops: int, seconds: float, peak_gflops: float) -> dict[str, float]:
    """One stage's row: GFLOP, seconds, achieved GFLOP/s and fraction of the matmul peak."""
    achieved = flops / seconds / 1e9 if seconds > 0 else 0.0
    return {
        "gflop": flops / 1e9,
        "seconds": seconds,
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak_gflops if peak_gflops > 0 else 0.0,
    }


def count_stage_flops(labeler: Any, scripted: Callable[..., Any],
                      scene: Callable[..., tuple[np.ndarray, np.ndarray, list[str]]]) -> dict[str, int]:
    """Every stage's FLOPs on the bench's auto-label scene (the same in every precision).

    Args:
        labeler: an ``AutoLabeler`` over Florence-2 / SAM2 / DINOv2.
        scripted: ``scripted(det, boxes, labels) -> generate_kwargs`` forcing the scene's boxes.
        scene: the bench's scene generator (image, xyxy (5, 4) absolute pixels, labels).
    """
    det, seg, emb = labeler.detector, labeler.segmenter, labeler.embedder
    image, boxes, labels = scene(500)
    classes = sorted(set(labels))
    dets, f_detect = count_flops(lambda: det.detect(image, classes, confidence=0.0,
                                                    generate_kwargs=scripted(det, boxes, labels)))
    inputs = det.preprocess(image, "<CAPTION_TO_PHRASE_GROUNDING>" + ". ".join(classes) + ".")
    _, f_vision = count_flops(lambda: det.model.model.get_image_features(inputs["pixel_values"]))
    _, f_encode = count_flops(lambda: seg._encode(image))
    seg.set_image(image)
    (masks, _), f_decode = count_flops(lambda: seg.predict_boxes(dets.xyxy))
    box = boxes[0]
    pts = np.array([(box[:2] + box[2:]) / 2, box[:2] + 3, box[2:] + 20], np.float32)
    first = seg.predict_points(pts[:1], np.array([1]))
    _, f_click = count_flops(lambda: seg.predict_points(pts, np.array([1, 1, 0]), mask_input=first.low_res_logits,
                                                        multimask=False))
    _, f_embed = count_flops(lambda: emb.embed(image, dets.xyxy, masks))
    return {"detect": f_detect, "florence_vision": f_vision, "segment_encode": f_encode,
            "segment_decode": f_decode, "click": f_click, "embed": f_embed}


def flops_report(counts: dict[str, int], suite: dict[str, Any], peak_gflops: float) -> dict[str, Any]:
    """Relate ``count_stage_flops`` counts to one suite's timings and its precision's matmul peak.

    Args:
        counts: ``count_stage_flops``'s result.
        suite: ``run_suite``'s measurements (``autolabel``, ``sam2``, ``florence``).
        peak_gflops: the 1024^3 matmul GFLOP/s of the suite's precision, measured in this run.

    Returns:
        ``{"peak_gflops", "stages": {name: stage(...)}, "largest_gap": {"stage", "seconds_above_peak"}}``.
    """
    al, sam, fl = suite["autolabel"], suite["sam2"], suite["florence"]
    seconds = {"detect": al["detect_s"], "florence_vision": fl["vision_tower_s"],
               "segment_encode": al["segment_encode_s"], "segment_decode": al["segment_decode_s"],
               "click": sam["click_p50_ms"] / 1000.0, "embed": al["embed_s"]}
    stages = {k: stage(counts[k], seconds[k], peak_gflops) for k in counts}
    # where the distance is largest: seconds lost against running this stage at the peak
    floor = (lambda gflop: gflop / peak_gflops) if peak_gflops > 0 else (lambda gflop: 0.0)
    lost = {k: v["seconds"] - floor(v["gflop"]) for k, v in stages.items() if k != "florence_vision"}
    worst = max(lost, key=lost.get)
    return {"peak_gflops": peak_gflops, "stages": stages,
            "largest_gap": {"stage": worst, "seconds_above_peak": lost[worst]}}
