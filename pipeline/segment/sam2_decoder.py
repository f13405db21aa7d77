"""SAM2's prompt path (prompt encoder + mask decoder) on cached image features, with the mask
decoder optionally compiled by OpenVINO.

A click decodes on the image embedding computed once per image: transformers'
``Sam2Model.forward(image_embeddings=...)`` runs the prompt encoder (points, box, previous mask:
well under a millisecond) and the mask decoder (the two-way transformer over the 4096 image
tokens and the 256^2 x 32 upscaling path: ~3.7 GFLOP of hundreds of small ops). In eager
PyTorch that decoder is op overhead more than arithmetic (p50 ~48 ms in bfloat16 on 2 cores,
5 ms of it at the matmul peak), and its OpenMP threads lose badly when the cores are shared.
:class:`MaskDecoderCore` is the same decoder written for tracing (batch of one image, any
number of prompts ``P`` and of prompt tokens ``N``, every mask token's output returned); the
multimask choice (``multimask_output``, SAM2's dynamic fall-back on unstable single masks) is
made afterwards in PyTorch by the decoder's own code, so both runtimes share it.

:func:`decode` is what ``Sam2Segmenter`` calls: the same steps as ``Sam2Model.forward`` for
cached features (the no-prompt pad point, the mask prompt resized to the prompt encoder's
grid), then either the transformers decoder (``ov_decoder is None``) or the compiled one.
``tests/pipeline/test_sam2_decoder.py`` checks the compiled decoder against the transformers
path for clicks, boxes, box batches and mask prompts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class MaskDecoderCore(torch.nn.Module):
    """``Sam2MaskDecoder.forward`` for one image and every mask token (what OpenVINO traces).

    Inputs: ``image_embeddings`` (1, C, h, w), ``image_pe`` (1, C, h, w), ``sparse`` (1, P, N, C),
    ``dense`` (1, C, h, w), ``feat_s0`` / ``feat_s1`` (the projected high-resolution features).
    Returns ``masks`` (1, P, T, 4h, 4w), ``iou`` (1, P, T) and ``object_score`` (1, P, 1) for
    all ``T`` mask tokens (token 0 = the single-mask output, 1.. = the multimask outputs).
    """

    def __init__(self, mask_decoder: torch.nn.Module) -> None:
        super().__init__()
        self.md = mask_decoder

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, feat_s0: torch.Tensor, feat_s1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        md = self.md
        _, channels, height, width = image_embeddings.shape
        p = sparse.shape[1]
        output_tokens = torch.cat([md.obj_score_token.weight, md.iou_token.weight, md.mask_tokens.weight], dim=0)
        output_tokens = output_tokens[None, None].expand(1, p, -1, -1)
        tokens = torch.cat((output_tokens, sparse.to(output_tokens.dtype)), dim=2)
        image = (image_embeddings + dense).repeat_interleave(p, dim=0)
        pe = image_pe.repeat_interleave(p, dim=0)
        tokens, image = md.transformer(point_embeddings=tokens, image_embeddings=image,
                                       image_positional_embeddings=pe, attention_similarity=None,
                                       target_embedding=None)
        iou_token = tokens[:, :, 1, :]
        mask_tokens = tokens[:, :, 2:2 + md.num_mask_tokens, :]
        image = image.transpose(2, 3).reshape(p, channels, height, width)
        up = md.upscale_conv1(image) + feat_s1.repeat_interleave(p, dim=0)
        up = md.activation(md.upscale_layer_norm(up))
        up = md.activation(md.upscale_conv2(up) + feat_s0.repeat_interleave(p, dim=0))
        hyper = torch.stack([md.output_hypernetworks_mlps[i](mask_tokens[:, :, i, :])
                             for i in range(md.num_mask_tokens)], dim=2)
        _, up_channels, up_h, up_w = up.shape
        masks = (hyper @ up.reshape(1, p, up_channels, up_h * up_w)).reshape(1, p, -1, up_h, up_w)
        return masks, md.iou_prediction_head(iou_token), md.pred_obj_score_head(tokens[:, :, 0, :])


def example_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """Float32 example inputs of :class:`MaskDecoderCore` for ``model`` (a ``Sam2Model``): one
    click, zero features. Shapes follow the model's config."""
    pe = model.get_image_wide_positional_embeddings().float()
    channels, h, w = pe.shape[1:]
    s0_channels = model.mask_decoder.conv_s0.out_channels
    s1_channels = model.mask_decoder.conv_s1.out_channels
    return (
        torch.zeros(1, channels, h, w), pe, torch.zeros(1, 1, 2, channels), torch.zeros(1, channels, h, w),
        torch.zeros(1, s0_channels, 4 * h, 4 * w), torch.zeros(1, s1_channels, 2 * h, 2 * w),
    )


def select_masks(mask_decoder: torch.nn.Module, masks: torch.Tensor, iou: torch.Tensor,
                 multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``Sam2MaskDecoder.forward``'s choice among all tokens' masks (inference mode)."""
    if multimask:
        return masks[:, :, 1:], iou[:, :, 1:]
    if mask_decoder.dynamic_multimask_via_stability:
        return mask_decoder._dynamic_multimask_via_stability(masks, iou)
    return masks[:, :, 0:1], iou[:, :, 0:1]


class FeatureInputs:
    """The current image's decoder inputs as contiguous float32 arrays, made once per image
    (the cached features are in the model's dtype; converting 4M values costs ~3 ms)."""

    def __init__(self) -> None:
        self._of: torch.Tensor | None = None  # held, so its identity cannot be reused
        self.arrays: tuple[np.ndarray, ...] = ()

    def get(self, feats: list[torch.Tensor], image_pe: torch.Tensor) -> tuple[np.ndarray, ...]:
        """``(image embedding, positional embedding, feat_s0, feat_s1)`` for ``feats``."""
        if self._of is not feats[0]:
            def f32(t: torch.Tensor) -> np.ndarray:
                return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float32).numpy())
            self.arrays = (f32(feats[2]), f32(image_pe), f32(feats[0]), f32(feats[1]))
            self._of = feats[0]
        return self.arrays


@torch.inference_mode()
def decode(
    model: torch.nn.Module,
    feats: list[torch.Tensor],
    *,
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask: bool,
    ov_decoder: Any = None,
    ov_inputs: FeatureInputs | None = None,
    image_pe: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder on cached features: ``(logits (P, M, h, w), iou (P, M))``,
    float32.

    With ``ov_decoder`` None this is ``Sam2Model.forward(image_embeddings=feats, ...)``; with a
    compiled :class:`MaskDecoderCore` (``pipeline.models.openvino_runtime.OvEncoder``) the
    prompt encoder runs in PyTorch and the decoder in OpenVINO, given ``ov_inputs`` (the
    per-image float32 feature cache) and ``image_pe`` (the model's positional embeddings).
    """
    if ov_decoder is None:
        out = model(image_embeddings=feats, input_points=points, input_labels=labels, input_boxes=boxes,
                    input_masks=mask_input, multimask_output=multimask)
        return out.pred_masks[0].float(), out.iou_scores[0].float()
    dtype = feats[-1].dtype
    if points is None and boxes is None:  # as Sam2Model.forward: one pad point, label -1
        points = torch.zeros(1, 1, 1, 2, dtype=dtype)
        labels = -torch.ones(1, 1, 1, dtype=torch.int32)
    if mask_input is not None and tuple(mask_input.shape[-2:]) != tuple(model.prompt_encoder.mask_input_size):
        mask_input = F.interpolate(mask_input.float(), size=model.prompt_encoder.mask_input_size,
                                   align_corners=False, mode="bilinear", antialias=True).to(mask_input.dtype)
    sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=boxes,
                                         input_masks=mask_input)
    emb, pe, s0, s1 = ov_inputs.get(feats, image_pe)
    masks, iou, _ = ov_decoder.run(emb, pe, sparse, dense, s0, s1)
    masks, iou = select_masks(model.mask_decoder, masks, iou, multimask)
    return masks[0].float(), iou[0].float()
