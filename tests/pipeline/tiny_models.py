"""Tiny, randomly initialised models saved like real checkpoints, for tests without weights.

Each builder writes a folder that ``from_pretrained`` loads exactly like a hub checkpoint
(config.json + model.safetensors + processor files), so the real loading, preprocessing,
forward and post-processing code runs, just on a model of a few hundred kilobytes.
Random weights produce arbitrary output: assert on types, shapes and invariants only.

Builders here: ``build_tiny_florence(dir)``. (SAM2/DINOv2 builders may be added alongside.)
"""
from __future__ import annotations

from pathlib import Path

# Words the tiny BPE learns, so prompts tokenise into a handful of tokens, not bytes.
_CORPUS = (
    "Locate the phrases in the caption: What does the image describe? Locate the objects with "
    "category name in the image. person people car cars traffic light dog cat bus truck bicycle "
    "a an the of in on with and red green blue small large"
)
# Florence-2's structural tokens (a subset of the real tokenizer's additions).
_FLORENCE_TOKENS = ["<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ground>", "</ground>",
                    "<obj>", "</obj>", "<poly>", "</poly>", "<sep>", "<region_cap>", "</region_cap>"]

FLORENCE_IMAGE_SIZE = 64  # the tiny processor resizes to 64x64 (the real one: 768x768)


def build_tiny_florence_tokenizer():
    """A byte-level BPE tokenizer shaped like Florence-2's BART tokenizer, built offline.

    Special tokens ``<s>`` (0), ``<pad>`` (1), ``</s>`` (2), ``<unk>`` (3) as in BART; the 1000
    location tokens ``<loc_0>``..``<loc_999>``, Florence's structural tokens and ``<image>`` are
    added tokens, like in the real checkpoint.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with ``image_token``/``image_token_id``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=1024,
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.add_tokens([AddedToken(f"<loc_{i}>", normalized=False) for i in range(1000)])
    fast.add_tokens([AddedToken(t, normalized=False) for t in _FLORENCE_TOKENS])
    return fast


def build_tiny_florence(directory: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random ``Florence2ForConditionalGeneration`` + ``Florence2Processor``.

    Vision tower: a 4-stage DaViT with 8..32 channels, one block per stage, window 2 (input
    64x64 -> 2x2 grid + 1 temporal token = 5 image tokens). Language model: a 1+1 layer BART
    with d_model 32. The processor resizes to 64x64 (no crop) and normalises like the real one.

    Args:
        directory: where to write (created; existing files overwritten).
        seed: torch seed for the random weights.

    Returns:
        The folder (holding config.json, model.safetensors, processor and tokenizer files).
    """
    import torch
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_florence_tokenizer()
    grid = FLORENCE_IMAGE_SIZE // 32
    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE},
        resample=3,  # bicubic, as in the real processor_config.json
        do_center_crop=False,
        crop_size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    )
    image_processor.image_seq_length = grid * grid + 1
    processor = Florence2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        post_processor_config={
            "ocr": {"pattern": None, "area_threshold": 0.0},
            "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
            "pure_text": {},
            "description_with_bboxes": {},
            "description_with_polygons": {},
            "polygons": {},
            "bboxes": {},
            "description_with_bboxes_or_polygons": {},
        },
    )
    vocab_size = len(tokenizer)
    text_config = BartConfig(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = Florence2VisionConfig(
        depths=(1, 1, 1, 1),
        embed_dim=(8, 16, 16, 32),
        num_heads=(1, 2, 2, 4),
        num_groups=(1, 2, 2, 4),
        window_size=2,
        projection_dim=32,
        drop_path_rate=0.0,
        max_position_embeddings=8,
    )
    config = Florence2Config(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        image_token_id=tokenizer.image_token_id,
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config.num_beams = 1
    model.generation_config.max_new_tokens = 24
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory



def scripted_logits_processor(token_ids: list[int], eos_token_id: int):
    """A ``LogitsProcessor`` that makes ``generate`` emit ``token_ids`` in order, then EOS, on
    every row of its batch.

    Random tiny models emit arbitrary tokens; tests that need a known output (e.g. boxes at
    known bins) force it with this while the model still runs every step. Only the processed
    scores change: the raw logits (what confidences are computed from) stay the model's own.
    """
    return scripted_rows_processor([token_ids], eos_token_id)


def scripted_rows_processor(rows: list[list[int]], eos_token_id: int):
    """:func:`scripted_logits_processor` for a batch: row b of ``generate``'s batch (with beam
    search, of batch x beams) emits ``rows[b]`` in order, then EOS; a single script is forced on
    every row."""
    import torch
    from transformers import LogitsProcessor

    scripts = [[*r, eos_token_id] for r in rows]

    class _Rows(LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if self.start is None:
                self.start = input_ids.shape[1]
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, float("-inf"))
            if len(scripts) == 1:
                forced[:, scripts[0][min(step, len(scripts[0]) - 1)]] = 0.0
            else:
                for b, script in enumerate(scripts):
                    forced[b, script[min(step, len(script) - 1)]] = 0.0
            return forced

    return _Rows()


def florence_output_ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` as Florence-2 would generate it (added tokens like ``<loc_k>`` whole)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
