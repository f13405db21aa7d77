"""The pipeline bench's targets and its ``gaps``: for each missed target, where the time goes
and what is left to try."""
from __future__ import annotations

from typing import Any

TARGET_CLICK_P95_MS = 50.0
TARGET_IMAGE_S = 3.0
TARGET_RSS_MB = 4096.0


def gaps(main: dict[str, Any], other: dict[str, Any] | None) -> dict[str, str]:
    gaps: dict[str, str] = {}
    al = main["autolabel"]
    total = al["total_s"]
    if total > TARGET_IMAGE_S:
        parts = ", ".join(f"{k} {al[k + '_s']:.2f} s ({al[k + '_s'] / total:.0%})"
                          for k in ("detect", "segment_encode", "segment_decode", "embed") if al[k + "_s"] > 0)
        fl = main["florence"]
        text = (f"{total:.2f} s vs {TARGET_IMAGE_S} s ({main['dtype']}): {parts}. Florence: prefill "
                f"{fl['prefill_s']:.2f} s (vision tower {fl['vision_tower_s']:.2f} s) + {fl['per_token_ms']:.0f} ms "
                f"per token x {al['detector_tokens']} tokens.")
        if other is not None:
            text += (f" Measured in {other['dtype']}: whole image {other['autolabel']['total_s']:.2f} s "
                     f"(detect {other['autolabel']['detect_s']:.2f} s, SAM2 encoder "
                     f"{other['autolabel']['segment_encode_s']:.2f} s).")
        fl_stages = main.get("flops", {}).get("stages")
        if fl_stages and main["flops"]["peak_gflops"] > 0:
            gflop = sum(fl_stages[k]["gflop"] for k in ("detect", "segment_encode", "segment_decode", "embed"))
            text += (f" Arithmetic: {gflop:.0f} GFLOP per image = {gflop / main['flops']['peak_gflops']:.1f} s at "
                     f"this run's {main['dtype']} matmul peak; largest gap: {main['flops']['largest_gap']['stage']}.")
        best = min(total, other["autolabel"]["total_s"] if other else total)
        if best > TARGET_IMAGE_S:
            text += " Levers left: " + ", ".join(_levers_left(main)) + "."
        gaps["whole_image"] = text
    sam = main["sam2"]
    if sam["click_p95_ms"] > TARGET_CLICK_P95_MS:
        text = (f"p95 {sam['click_p95_ms']:.0f} ms vs {TARGET_CLICK_P95_MS:.0f} ms ({main['dtype']}); p50 "
                f"{sam['click_p50_ms']:.0f} ms, of which the mask resize to 1024^2 is "
                f"{sam['click_mask_resize_ms']:.0f} ms: the rest is SAM2's prompt encoder + two-way "
                f"transformer + upscaling on cached features")
        click = main.get("flops", {}).get("stages", {}).get("click")
        if click and main["flops"]["peak_gflops"] > 0:
            text += (f" ({click['gflop']:.1f} GFLOP per click, {click['gflop'] / main['flops']['peak_gflops'] * 1000:.0f} ms "
                     f"at this run's matmul peak; achieved {click['fraction_of_peak']:.1%} of it)")
        text += (f". With torch's thread count: p95 {sam['click_p95_ms_all_threads']:.0f} ms.")
        if other is not None:
            text += f" {other['dtype']}: p95 {other['sam2']['click_p95_ms']:.0f} ms."
        gaps["click"] = text
    mem = main.get("memory")
    if mem and mem["peak_rss_mb"] > TARGET_RSS_MB:
        gaps["rss"] = (f"peak {mem['peak_rss_mb']:.0f} MB vs {TARGET_RSS_MB:.0f} MB; parameters "
                       f"{mem['parameters_mb']:.0f} MB: bfloat16 halves them")
    return gaps


def _levers_left(main: dict[str, Any]) -> list[str]:
    """What this configuration does not use yet, of the levers docs/speed.md measured, then the
    two that need what this machine lacks."""
    left = []
    if main.get("florence_decoder") != "int8":
        left.append("Florence-2's token loop in int8 (AGL_FLORENCE_DECODER=int8)")
    if any(r != "openvino" for r in main.get("runtime", {}).values()):
        left.append("OpenVINO for the vision encoders and SAM2's decoder (AGL_CPU_RUNTIME=openvino)")
    left.append("a smaller Florence-2 input than 768^2 (whether boxes stay the same needs trained weights)")
    left.append("a GPU (--device cuda; label_many batches the images)")
    return left
