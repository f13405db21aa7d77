"""Tiny randomly initialised SAM2 and DINOv2 models, saved with ``save_pretrained``.

They have the real architectures (transformers' ``Sam2Model`` / ``Dinov2Model``) at toy sizes,
so tests run the real load/preprocess/forward/postprocess code paths in well under a second.
No pretrained weights exist on the build machine (DESIGN.md, "Weights on this build machine").
"""
from __future__ import annotations

from pathlib import Path

import torch

# SAM2 toy geometry: a 128 x 128 input; Hiera stages at strides 4/8/16/32 -> 32, 16, 8, 4 px;
# the FPN keeps the first three levels, so the decoder sees 8 x 8 embeddings and emits
# 32 x 32 low-resolution masks (the released models: 1024 input, 64 x 64, 256 x 256).
TINY_SAM2_INPUT = 128
TINY_SAM2_LOW_RES = 32
TINY_DINO_DIM = 32


def build_tiny_sam2(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random ``Sam2Model`` (+ its image processor config) to ``folder``.

    Returns:
        The folder, ready for ``Sam2Segmenter.from_pretrained``.
    """
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    folder = Path(folder)
    size = TINY_SAM2_INPUT
    hidden = 32
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[size // 4, size // 4], [size // 8, size // 8], [size // 16, size // 16]],
        fpn_hidden_size=hidden,
    )
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=hidden, image_size=size, patch_size=16),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=hidden, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    model.save_pretrained(folder)
    Sam2ImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def build_tiny_dinov2(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random ``Dinov2Model`` (32-d, 2 layers, patch 14) to ``folder``."""
    from transformers import Dinov2Config, Dinov2Model

    folder = Path(folder)
    config = Dinov2Config(
        hidden_size=TINY_DINO_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
    )
    torch.manual_seed(seed)
    Dinov2Model(config).eval().save_pretrained(folder)
    return folder
