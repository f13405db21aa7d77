"""A tiny randomly initialised ``Sam2VideoModel`` (SAM2.1 with its memory modules), saved with
``save_pretrained`` like the released ``facebook/sam2.1-hiera-*`` folders (``model_type``
``sam2_video``), so both the image segmenter (``Sam2Model``) and the video propagator load it.

Geometry: a 128 x 128 input, the tiny Hiera of ``tests/pipeline/tiny_models_sam2_dino.py``;
the decoder emits 32 x 32 low-resolution masks. The FPN width is 128: transformers' memory
attention reads 64-channel memories (``kv_in_dim=64`` is fixed in its code) and splits object
pointers into 64-wide tokens, so the width must be a multiple of 64 above it.
"""
from __future__ import annotations

from pathlib import Path

import torch

TINY_VIDEO_INPUT = 128
TINY_VIDEO_LOW_RES = 32


def tiny_video_config(*, num_maskmem: int = 7, max_object_pointers: int = 16):
    """The ``Sam2VideoConfig`` of the tiny model (memory windows: SAM2.1's 7 masks, 16 pointers)."""
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
        Sam2VisionConfig,
    )

    size, hidden = TINY_VIDEO_INPUT, 128
    backbone = Sam2HieraDetConfig(
        hidden_size=8, num_attention_heads=1, image_size=[size, size], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]],
        fpn_hidden_size=hidden,
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=hidden, image_size=size, patch_size=16),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32),
        image_size=size, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[size // 16, size // 16],
        memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64,
        num_maskmem=num_maskmem, max_object_pointers_in_encoder=max_object_pointers,
    )


def build_tiny_sam2_video(folder: str | Path, *, seed: int = 0, **windows: int) -> Path:
    """Writes the tiny random ``Sam2VideoModel`` (+ an image processor config) to ``folder``;
    ``windows`` go to :func:`tiny_video_config`."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel

    folder = Path(folder)
    torch.manual_seed(seed)
    Sam2VideoModel(tiny_video_config(**windows)).eval().save_pretrained(folder)
    Sam2ImageProcessor(size={"height": TINY_VIDEO_INPUT, "width": TINY_VIDEO_INPUT}).save_pretrained(folder)
    return folder


def script_object_scores(model, logits_per_call, *, mask_region: tuple[float, float, float, float] | None = None) -> list:
    """Makes the mask decoder report scripted object-score logits (random weights give ~0).

    ``logits_per_call(call_index, n_objects) -> sequence of n logits`` is asked on every decoder
    call; the returned list records the calls. SAM2 blanks a mask whose logit is <= 0, exactly
    as a real model that lost the object would. With ``mask_region = (x0, y0, x1, y1)`` as
    fractions of the frame, every decoded mask is that rectangle (random weights may decode
    empty masks), so tests can assert what is written.
    """
    decoder = model.mask_decoder
    original = decoder.forward
    calls: list = []

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        masks, iou, tokens, obj_logits = out[0], out[1], out[2], out[3]
        scripted = torch.tensor(list(logits_per_call(len(calls), obj_logits.shape[0])),
                                dtype=obj_logits.dtype).reshape(obj_logits.shape)
        calls.append(scripted)
        if mask_region is not None:
            h, w = masks.shape[-2:]
            x0, y0, x1, y1 = mask_region
            masks = torch.full_like(masks, -10.0)
            masks[..., round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)] = 10.0
        return (masks, iou, tokens, scripted, *out[4:])

    decoder.forward = forward
    return calls
