"""Florence-2's token loop on CPU with int8 linear layers (PyTorch dynamic quantisation).

Each generated token runs the BART decoder (6 layers) and the LM head (768 x 51289) on one
position: matrix-vector products that read every weight once per token, ~89 M parameters, so
the loop is bound by memory bandwidth, not arithmetic. In bfloat16 that was 21 ms per token on
the 2-core build machine (float32: 41 ms); with the decoder's and the head's ``nn.Linear``
layers quantised to int8 (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations
quantised per call, fbgemm's VNNI kernels) it is 3.6 ms. ``bench pipeline`` prints the
per-token time and the teacher-forced logits against the float32 reference (``fidelity``).

What changes: the decoder gets its own float32 copy with int8 linear layers (LayerNorms, the
attention arithmetic and the cache stay float32), fed the shared token embedding's output cast
to float32; the LM head becomes an int8 copy of the tied embedding matrix. The vision tower and
the text encoder (one pass over ~600 tokens, compute-bound) keep the model's precision.

``AGL_FLORENCE_DECODER`` picks it: ``int8`` (the default on CPU) or ``native`` (the model's own
layers, the transformers reference). GPUs always run native.
"""
from __future__ import annotations

import copy
import os
import warnings
from typing import Any

import torch

DECODERS = ("int8", "native")


def decoder_mode(device: torch.device | str) -> str:
    """``$AGL_FLORENCE_DECODER`` (``int8`` / ``native``) on a CPU, else ``native``.

    Raises:
        ValueError: the variable names something else.
    """
    value = os.environ.get("AGL_FLORENCE_DECODER", "").strip().lower() or "int8"
    if value not in DECODERS:
        raise ValueError(f"AGL_FLORENCE_DECODER: expected one of {DECODERS}, got {value!r}")
    return value if torch.device(device).type == "cpu" else "native"


def _quantize(module: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


class Int8Decoder(torch.nn.Module):
    """A BART decoder in float32 with int8 linear layers, in place of the model's own.

    Args:
        decoder: the model's ``BartDecoder`` (left unchanged; its layers are copied).
    """

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        shared = decoder.embed_tokens
        decoder.embed_tokens = None  # not copied: the shared embedding stays the model's
        try:
            body = copy.deepcopy(decoder)
        finally:
            decoder.embed_tokens = shared
        self.embed_tokens = shared
        self.config = decoder.config
        self.body = _quantize(body.float().eval())

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        if inputs_embeds is None and input_ids is not None:
            inputs_embeds = self.embed_tokens(input_ids)
        kwargs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
        return self.body(inputs_embeds=None if inputs_embeds is None else inputs_embeds.float(), **kwargs)


def quantize_decoder(model: Any) -> None:
    """Swaps a ``Florence2ForConditionalGeneration``'s decoder and LM head for int8 versions
    (see the module docstring); the model then emits float32 logits."""
    bart = model.model.language_model
    bart.decoder = Int8Decoder(bart.decoder)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features,
                           bias=model.lm_head.bias is not None)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight.float())
        if head.bias is not None:
            head.bias.copy_(model.lm_head.bias.float())
    model.lm_head = _quantize(torch.nn.Sequential(head.eval()))[0]
