"""Pipeline speed and memory: full-size SAM2.1-tiny, Florence-2-base, DINOv2-base (random weights).

    python launch.py bench pipeline                        # CPU, the default precision + the other one
    python launch.py bench pipeline --dtype bfloat16 --no-compare-dtype --json
    python launch.py bench pipeline --device cuda --batch-images 8   # + batched images/s

No pretrained weights exist on the build machine, so the real architectures are built from
configs with random weights (the arithmetic, hence time and memory, is the real thing), saved
with ``save_pretrained`` into ``--models-dir`` (built once, in a subprocess, so this process's
peak RSS is that of the app) and loaded back through ``ModelManager`` exactly as the app does.
Config sizes replicate the released checkpoints:

- SAM2.1-hiera-tiny: transformers' ``Sam2Config()`` defaults (Hiera 96-d, blocks 1-2-7-2,
  global attention at 5/7/9, 1024 x 1024 input, FPN 256) = ``facebook/sam2.1-hiera-tiny``.
- Florence-2-base: DaViT 128/256/512/1024, depths 1-1-9-1, window 12, projection 768; BART
  d_model 768, 6 + 6 layers, 12 heads, FFN 3072, vocabulary 51289; 768 x 768 input (577 image
  tokens). The tokenizer is the test suite's offline BPE (real token ids are not needed).
- DINOv2-base: ``Dinov2Config(image_size=518)`` (768-d, 12 layers, patch 14) = ``facebook/dinov2-base``.

Measured (seconds unless named otherwise; medians of ``--repeats``):

- ``sam2.encoder_s``: ``set_image`` of a new 1024 x 1024 image (preprocess + image encoder).
- ``sam2.click_p50_ms`` / ``click_p95_ms``: ``predict_points`` with the embedding cached, over
  ``--clicks`` clicks of refinement sessions (growing +/- clicks, previous logits fed back),
  including the mask resize to 1024 x 1024.
- ``florence.generate_s``: ``FlorenceDetector.generate_pieces`` on a 1024 x 1024 image with
  exactly ``--tokens`` generated tokens (min_new_tokens = max_new_tokens), split into
  ``prefill_s`` (processor + vision tower + text encoder + first token) and ``per_token_ms``.
- ``dinov2.batch5_s``: ``Dinov2Embedder.embed`` of 5 masked crops (one batch).
- ``autolabel.*``: ``AutoLabeler.label`` on a new 1024 x 1024 image with 5 objects; Florence is
  scripted (a logits processor) to emit the 5 objects' boxes, so every stage does its real
  work on real-size tensors; per-stage seconds from ``last_timings``.
- ``memory.rss_loaded_mb`` (all three loaded and used) and ``memory.peak_rss_mb`` (ru_maxrss),
  taken after the auto-label runs and before the bench reads the PyTorch weights that the app
  frees under OpenVINO back (``runtime_speedup``, the FLOP count); ``parameters_mb`` counts the
  weights held in memory.
- ``main.batched`` (with ``--batch-images N``): ``images_per_s``, whole auto-label (scripted, 5
  objects per image, as ``autolabel``) of N new images through ``AutoLabeler.label_many``
  (Florence-2's generation batched, SAM2's encoder one forward per ``cache_size`` images),
  against ``one_by_one_images_per_s`` (the same images through ``label``) and their
  ``speedup``; ``sam2_encoder_images_per_s`` and ``florence_30tok_images_per_s``: those two
  stages alone on the batch. Target (issue 14): >= 10 images/s on one H100-class GPU with
  ``--device cuda --batch-images 8``. On a CPU the batch gains nothing (the encoders are
  compute-bound, and OpenVINO's are compiled for one image).
- ``reference.matmul_gflops``: a 1024^3 float32 matmul, measured in the same run, so runs on
  busy or different machines can be compared.

- ``main.flops`` (``tests/bench/pipeline_flops.py``): each stage's FLOPs counted with
  ``FlopCounterMode``, achieved GFLOP/s and ``fraction_of_peak`` against the matmul of the same
  precision (``largest_gap``: the stage losing most seconds against the peak).
- ``fidelity`` (``tests/bench/pipeline_fidelity.py``): bfloat16 against float32 on the same
  inputs (Florence logits, auto-label boxes / masks / embeddings, SAM2 masks and logits, DINOv2
  cosine); measured whenever both precisions run. With the defaults that is the app's path
  (bfloat16, encoders on OpenVINO) against the reference (float32, transformers on PyTorch).
- ``main.runtime`` and ``main.runtime_speedup`` (``tests/bench/pipeline_runtime.py``): which
  runtime each model's vision encoder used, and each OpenVINO encoder against its PyTorch module
  in the same precision, same inputs, interleaved (``speedup`` = PyTorch s / OpenVINO s).

``main`` is the default configuration (``pipeline.models.device.cpu_dtype()``: bfloat16 on CPUs
with native bf16, else float32; ``pipeline.models.openvino_runtime.cpu_runtime()``: the vision
encoders on OpenVINO when installed); ``compare`` the reference: the other precision with every
model on PyTorch and Florence-2's own decoder layers (``decoder="native"``).
``--runtime torch`` measures the PyTorch-only app.

Targets (issue 3, 2 CPU cores): click p95 <= 50 ms, whole image <= 3 s, peak RSS <= 4 GB.
``ratios`` are measured / target (<= 1 meets the target). ``gaps`` explains each miss.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path
from typing import Any

from tests.bench.pipeline_autolabel import (
    TARGET_BATCHED_IMAGES_PER_S,
    measure_autolabel,
    measure_batched,
)
from tests.bench.pipeline_gaps import TARGET_CLICK_P95_MS, TARGET_IMAGE_S, TARGET_RSS_MB, gaps
from tests.bench.pipeline_inputs import (
    scene,
    scripted_ids,
    scripted_kwargs,
)
from tests.bench.pipeline_stages import measure_dinov2, measure_florence, measure_sam2

BUILD_VERSION = "v1"  # bump when the generated model folders change


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where models run (cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="precision (default: the app's, bfloat16 on CPUs with native bf16, else float32)")
    parser.add_argument("--runtime", choices=["torch", "openvino"], default=None,
                        help="the vision encoders' CPU runtime (default: the app's, OpenVINO when installed)")
    parser.add_argument("--compare-dtype", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure the reference: the other precision on PyTorch (default: on for CPU)")
    parser.add_argument("--clicks", type=int, default=30, help="timed clicks (30)")
    parser.add_argument("--tokens", type=int, default=60, help="generated tokens for the Florence timing (60)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the slow measurements (2)")
    parser.add_argument("--batch-images", type=int, default=0,
                        help="also measure batched images/s with this many images per batch (GPU)")
    parser.add_argument("--models-dir", default=None,
                        help="where the random full-size models are cached (~/.cache/agenticlabeling/bench-models)")


# ---------------------------------------------------------------------------- model building
def _models_dir(arg: str | None) -> Path:
    root = Path(arg).expanduser() if arg else Path.home() / ".cache" / "agenticlabeling" / "bench-models"
    return root / BUILD_VERSION


def _build_all(root: str) -> None:
    """Build and save the three full-size random models (runs in a subprocess)."""
    import sys

    import torch
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Dinov2Config,
        Dinov2Model,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
        Sam2Config,
        Sam2ImageProcessor,
        Sam2Model,
    )

    repo = Path(__file__).resolve().parents[2]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tests.pipeline.tiny_models import build_tiny_florence_tokenizer

    root_path = Path(root)
    torch.manual_seed(0)
    sam_dir = root_path / "sam2.1-hiera-tiny-random"
    if not (sam_dir / "config.json").is_file():
        Sam2Model(Sam2Config()).eval().save_pretrained(sam_dir)
        Sam2ImageProcessor().save_pretrained(sam_dir)
    dino_dir = root_path / "dinov2-base-random"
    if not (dino_dir / "config.json").is_file():
        Dinov2Model(Dinov2Config(image_size=518)).eval().save_pretrained(dino_dir)
    flo_dir = root_path / "florence-2-base-random"
    if not (flo_dir / "config.json").is_file():
        tokenizer = build_tiny_florence_tokenizer()
        image_processor = CLIPImageProcessor(
            do_resize=True, size={"height": 768, "width": 768}, resample=3, do_center_crop=False,
            crop_size={"height": 768, "width": 768}, do_rescale=True, rescale_factor=1 / 255,
            do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
            do_convert_rgb=True,
        )
        image_processor.image_seq_length = 577  # (768 / 32)^2 + 1 temporal token
        processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
        text = BartConfig(
            vocab_size=51289, d_model=768, encoder_layers=6, decoder_layers=6,
            encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
            decoder_ffn_dim=3072, max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
            forced_bos_token_id=tokenizer.bos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
        )
        vision = Florence2VisionConfig(
            depths=(1, 1, 9, 1), embed_dim=(128, 256, 512, 1024), num_heads=(4, 8, 16, 32),
            num_groups=(4, 8, 16, 32), window_size=12, projection_dim=768, drop_path_rate=0.0,
        )
        config = Florence2Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                 image_token_id=tokenizer.image_token_id)
        model = Florence2ForConditionalGeneration(config).eval()
        model.generation_config.num_beams = 1
        model.save_pretrained(flo_dir)
        processor.save_pretrained(flo_dir)


def ensure_models(root: Path) -> dict[str, str]:
    """The three model folders, built (in a fresh subprocess) when missing."""
    folders = {
        "detector": root / "florence-2-base-random",
        "segmenter": root / "sam2.1-hiera-tiny-random",
        "embedder": root / "dinov2-base-random",
    }
    if not all((f / "config.json").is_file() for f in folders.values()):
        root.mkdir(parents=True, exist_ok=True)
        proc = mp.get_context("spawn").Process(target=_build_all, args=(str(root),))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"building the benchmark models failed (exit code {proc.exitcode})")
    return {role: str(f) for role, f in folders.items()}


# ---------------------------------------------------------------------------- scene
# ---------------------------------------------------------------------------- measurements
def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def reference_gflops() -> dict[str, float]:
    import torch

    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(1024, 1024, dtype=dtype)
        b = torch.randn(1024, 1024, dtype=dtype)
        a @ b
        times = []
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        out[f"matmul_{name}_gflops"] = 2 * 1024**3 / min(times) / 1e9
    return out


def run_suite(folders: dict[str, str], device: str, dtype: str | None, args: argparse.Namespace,
              *, memory: bool, count_flops: bool = True, runtime: str | None = None,
              decoder: str | None = None, flop_counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Every measurement in one precision and runtime; ``_capture`` (numpy outputs for
    ``fidelity``) and ``_flop_counts`` are popped by ``run``. ``flop_counts``: counts from another
    suite (FLOPs depend on neither the precision nor the runtime, so they are counted once, on
    the PyTorch modules: FlopCounterMode cannot see OpenVINO's work)."""
    from pipeline.models import released_weights
    from pipeline.models.manager import ModelManager
    from tests.bench import pipeline_fidelity, pipeline_flops, pipeline_runtime

    rss0 = _rss_mb()
    mgr = ModelManager("cpu" if device == "cpu" else "gpu", overrides=folders, device=device, dtype=dtype,
                       runtime=runtime, decoder=decoder)
    t = time.perf_counter()
    seg, det, emb = mgr.segmenter(), mgr.detector(), mgr.embedder()
    load_s = time.perf_counter() - t
    out: dict[str, Any] = {"dtype": str(seg.dtype).removeprefix("torch."), "load_s": load_s}
    labeler = mgr.labeler()
    out["runtime"] = pipeline_runtime.runtimes(labeler)
    out["florence_decoder"] = det.decoder  # "int8" or "native" (pipeline/detect/florence_int8.py)
    out["sam2"] = measure_sam2(seg, args.clicks, args.repeats, device)
    out["florence"] = measure_florence(det, args.tokens, args.repeats, device)
    out["dinov2"] = measure_dinov2(emb, args.repeats, device)
    out["autolabel"], last = measure_autolabel(labeler, args.repeats, seed0=500)
    if memory:  # the app's work is done: what follows reads the freed PyTorch weights back
        out["memory"] = {
            "rss_before_load_mb": rss0,
            "rss_loaded_mb": _rss_mb(),
            "peak_rss_mb": _peak_rss_mb(),
            "parameters_mb": sum(released_weights.tensor_bytes(m) for m in (seg.model, det.model, emb.model)) / 2**20,
        }
    if "openvino" in out["runtime"].values():
        out["runtime_speedup"] = pipeline_runtime.encoder_speedup(labeler, scene, args.repeats)
    if count_flops and not flop_counts:
        with pipeline_runtime.pytorch_encoders(labeler):
            flop_counts = pipeline_flops.count_stage_flops(labeler, scripted_kwargs, scene)
    if count_flops:
        out["_flop_counts"] = flop_counts
    out["_capture"] = pipeline_fidelity.capture(labeler, last, scripted_ids, scene)
    if args.batch_images:
        out["batched"] = measure_batched(labeler, args.batch_images, device)
    mgr.unload()
    return out


# ---------------------------------------------------------------------------- report
def _runtime_label(suite: dict[str, Any]) -> str:
    """The encoders' runtime (``"openvino"``, ``"torch"``, ``"openvino+torch"`` when the models
    differ) and, when it is int8, Florence's decoder (``"openvino_int8"``)."""
    label = "+".join(sorted(set(suite["runtime"].values())))
    return label + ("_int8" if suite.get("florence_decoder") == "int8" else "")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: expected a CUDA GPU, torch sees none; use --device cpu")
    from pipeline.models.device import cpu_dtype, cpu_has_native_bf16
    from tests.bench.pipeline_flops import flops_report

    dtype = args.dtype or (str(cpu_dtype()).removeprefix("torch.") if device == "cpu" else None)
    compare = args.compare_dtype if args.compare_dtype is not None else device == "cpu"
    folders = ensure_models(_models_dir(args.models_dir))
    peaks = reference_gflops()  # re-measured after each suite; the best counts (a busy machine)
    result: dict[str, Any] = {
        "machine": {"device": device, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "load_avg_1m_at_start": os.getloadavg()[0], "cpu_native_bf16": cpu_has_native_bf16(),
                    **peaks},
    }
    from pipeline.models.openvino_runtime import cpu_runtime

    runtime = args.runtime or (cpu_runtime() if device == "cpu" else "torch")
    main = run_suite(folders, device, dtype, args, memory=True, runtime=runtime)
    peaks = {k: max(v, w) for (k, v), w in zip(peaks.items(), reference_gflops().values(), strict=True)}
    result["main"] = main
    captures = {main["dtype"]: main.pop("_capture")}
    counts = main.pop("_flop_counts")
    other = None
    if compare and device == "cpu":
        other_dtype = "bfloat16" if main["dtype"] == "float32" else "float32"
        args_other = argparse.Namespace(**{**vars(args), "batch_images": 0})
        # the reference: the transformers modules as they are (PyTorch, the model's own decoder
        # layers) in the other precision
        other = run_suite(folders, device, other_dtype, args_other, memory=False, flop_counts=counts,
                          runtime="torch", decoder="native")
        peaks = {k: max(v, w) for (k, v), w in zip(peaks.items(), reference_gflops().values(), strict=True)}
        captures[other["dtype"]] = other.pop("_capture")
        other.pop("_flop_counts")
        result["compare"] = other
    result["machine"].update(peaks)
    for suite in (main, other):
        if suite is not None:
            # the reference matmul runs on the CPU: no fraction of peak for a GPU run
            peak = peaks.get(f"matmul_{suite['dtype']}_gflops", 0.0) if device == "cpu" else 0.0
            suite["flops"] = flops_report(counts, suite, peak)
    if "float32" in captures and "bfloat16" in captures:
        from tests.bench.pipeline_fidelity import compare as compare_fidelity

        suites = {s["dtype"]: s for s in (main, other) if s is not None}
        result["fidelity"] = {"reference": f"float32 on {_runtime_label(suites['float32'])}",
                              "measured": f"bfloat16 on {_runtime_label(suites['bfloat16'])}",
                              **compare_fidelity(captures["float32"], captures["bfloat16"])}
    mem = main["memory"]
    result["ratios"] = {
        "click_p95_vs_50ms": main["sam2"]["click_p95_ms"] / TARGET_CLICK_P95_MS,
        "click_p95_one_thread_vs_all_threads": main["sam2"]["click_p95_ms"] / main["sam2"]["click_p95_ms_all_threads"],
        "whole_image_vs_3s": main["autolabel"]["total_s"] / TARGET_IMAGE_S,
        "peak_rss_vs_4GB": mem["peak_rss_mb"] / TARGET_RSS_MB,
    }
    if "batched" in main:
        result["ratios"]["batched_images_per_s_vs_10"] = main["batched"]["images_per_s"] / TARGET_BATCHED_IMAGES_PER_S
    for name, row in main.get("runtime_speedup", {}).items():
        result["ratios"][f"pytorch_vs_openvino_{name}"] = row["speedup"]
    if other is not None:
        o, m = (f"{x['dtype']}_{_runtime_label(x)}" for x in (other, main))
        result["ratios"].update({
            f"{o}_click_p95_vs_50ms": other["sam2"]["click_p95_ms"] / TARGET_CLICK_P95_MS,
            f"{o}_whole_image_vs_3s": other["autolabel"]["total_s"] / TARGET_IMAGE_S,
            f"{o}_vs_{m}_whole_image": other["autolabel"]["total_s"] / main["autolabel"]["total_s"],
            f"{o}_vs_{m}_sam2_encoder": other["sam2"]["encoder_s"] / main["sam2"]["encoder_s"],
            f"{o}_vs_{m}_florence": other["florence"]["generate_s"] / main["florence"]["generate_s"],
        })
    result["gaps"] = gaps(main, other) or {"none": "all targets met"}
    return result
