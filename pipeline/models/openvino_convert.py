"""Converts one vision encoder to OpenVINO IR, run as a child process by ``openvino_runtime``.

    python -m pipeline.models.openvino_convert ROLE FOLDER HEIGHT WIDTH OUT_DIR [--fp16]

Why a child process: conversion loads a float32 copy of the model and traces it, which took
the app's resident memory from ~4 GB to ~7 GB for the three CPU models, and the allocator
never gave it back; in a child it is all returned when the child exits (and a crash in the
converter cannot take the app down). Writes ``OUT_DIR/model.xml`` + ``model.bin`` and exits 0,
or prints the error and exits 1.

Roles: ``sam2-encoder`` (``Sam2Model.get_image_embeddings``: three feature maps),
``florence-vision`` (Florence-2's vision tower + projector: the image tokens' features),
``dinov2`` (DINOv2's ``last_hidden_state``): each traces a ``(1, 3, HEIGHT, WIDTH)`` float32
input with a dynamic batch dimension. ``sam2-decoder``: SAM2's mask decoder on cached features
(``pipeline.segment.sam2_decoder.MaskDecoderCore``; HEIGHT and WIDTH are the image input its
features come from, the feature shapes follow the model's config), with a dynamic number of
prompts and of prompt tokens.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CallModule(torch.nn.Module):
    """``call(model, x)`` as a float32 module's ``forward``: what OpenVINO traces."""

    def __init__(self, model: torch.nn.Module, call: Callable[[torch.nn.Module, torch.Tensor], Any]) -> None:
        super().__init__()
        self.model = model.float().eval()
        self.call = call

    def forward(self, x: torch.Tensor) -> Any:
        return self.call(self.model, x)


def build(role: str, folder: str | Path) -> torch.nn.Module:
    """The float32 module traced for ``role`` from the weights in ``folder``.

    Raises:
        ValueError: unknown role.
    """
    import transformers

    if role == "sam2-decoder":
        from pipeline.segment.sam2_decoder import MaskDecoderCore, example_inputs

        model = transformers.Sam2Model.from_pretrained(folder).float().eval()
        core = MaskDecoderCore(model.mask_decoder).eval()
        core.example_inputs = example_inputs(model)  # shapes from the model's config
        return core
    if role == "sam2-encoder":
        return CallModule(transformers.Sam2Model.from_pretrained(folder), lambda m, x: tuple(m.get_image_embeddings(x)))
    if role == "florence-vision":
        model = transformers.Florence2ForConditionalGeneration.from_pretrained(folder)
        return CallModule(model, lambda m, x: m.model.get_image_features(x).pooler_output)
    if role == "dinov2":
        return CallModule(transformers.AutoModel.from_pretrained(folder), lambda m, x: m(pixel_values=x).last_hidden_state)
    raise ValueError(f"role: expected sam2-encoder, sam2-decoder, florence-vision or dinov2, got {role!r}")


def example(role: str, module: torch.nn.Module, height: int, width: int) -> tuple[tuple, list]:
    """``(example inputs, input shapes with the dynamic dimensions as -1)`` for tracing ``role``."""
    ov = _ov()
    if role == "sam2-decoder":
        inputs = module.example_inputs
        shapes = [ov.PartialShape(list(t.shape)) for t in inputs]
        shapes[2] = ov.PartialShape([1, -1, -1, int(inputs[2].shape[-1])])  # P prompts of N tokens
        return inputs, shapes
    return (torch.zeros((1, 3, height, width), dtype=torch.float32),), [ov.PartialShape([-1, 3, height, width])]


def _ov() -> Any:
    from pipeline.models.openvino_runtime import _import_openvino

    return _import_openvino()


def convert(role: str, folder: str | Path, height: int, width: int, out_dir: str | Path, fp16: bool) -> Path:
    """Traces ``role``'s module and saves it as IR in ``out_dir``; returns the ``model.xml``."""
    ov = _ov()
    module = build(role, folder)
    inputs, shapes = example(role, module, height, width)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's deprecation and TracerWarnings
        model = ov.convert_model(module, example_input=inputs if len(inputs) > 1 else inputs[0], input=shapes)
    xml = Path(out_dir) / "model.xml"
    ov.save_model(model, xml, compress_to_fp16=fp16)
    return xml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.models.openvino_convert")
    parser.add_argument("role")
    parser.add_argument("folder")
    parser.add_argument("height", type=int)
    parser.add_argument("width", type=int)
    parser.add_argument("out_dir")
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16")
    args = parser.parse_args(argv)
    try:
        convert(args.role, args.folder, args.height, args.width, args.out_dir, args.fp16)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back to PyTorch
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
