"""A tiny Florence-2 checkpoint whose *weights* make it generate a chosen grounding text.

Random tiny weights emit ``</s>`` first, so a chain test on them never sees a box. A logits
processor can force tokens, but only where the test controls ``generate``; ``launch.py label``
and the app load weights from a folder and call the real detector with no hook. So this builder
writes an ordinary checkpoint folder (loadable by ``from_pretrained``, importable by
``launch.py models import``) whose decoder is set up to emit ``text`` token by token:

* the decoder's position embeddings are orthogonal zero-mean vectors ``v_p`` (one per output
  step, unit variance, so every LayerNorm leaves them unchanged);
* the decoder's token embeddings and every residual branch's output projection (self-attention,
  cross-attention, feed-forward) are zero, so the hidden state at step ``p`` is exactly ``v_p``
  while all the real layers still run (vision tower, encoder, attention, cross-attention);
* ``lm_head`` (untied from the embeddings) maps ``v_p`` to logit ``a`` for the scripted token of
  step ``p`` and 0 for every other token, with ``a`` chosen so that token's softmax probability
  is ``prob``.

The output does not depend on the image: boxes are in Florence-2's 1000-bin grid, so draw the
test image's objects where the script puts its boxes (``bins_for_box``).
"""
from __future__ import annotations

import math
from pathlib import Path

from tests.pipeline.tiny_models import build_tiny_florence

MAX_SCRIPT_STEPS = 31  # orthogonal zero-mean vectors in the tiny model's 32 dimensions


def bins_for_box(xyxy: tuple[float, float, float, float], width: int, height: int) -> str:
    """``"<loc_x1><loc_y1><loc_x2><loc_y2>"`` for a box in absolute pixels (x = column).

    Florence-2 bins are ``floor(coord / side * 1000)`` clipped to 0..999; the parser maps bin
    ``k`` back to ``(k + 0.5) * side / 1000``.
    """
    x1, y1, x2, y2 = xyxy
    sides = (width, height, width, height)
    bins = [min(999, max(0, int(v / s * 1000))) for v, s in zip((x1, y1, x2, y2), sides, strict=True)]
    return "".join(f"<loc_{b}>" for b in bins)


def build_scripted_florence(directory: str | Path, text: str, *, prob: float = 0.9, seed: int = 0) -> Path:
    """Save a tiny Florence-2 whose greedy generation is ``<s>`` + ``text`` + ``</s>``.

    Args:
        directory: where to write (created).
        text: the generated grounding text, e.g. ``"cat<loc_100><loc_100><loc_500><loc_500>"``
            (phrases must tokenise with the tiny tokenizer's corpus words: see tiny_models).
        prob: softmax probability of each scripted token under the model's raw logits, in
            (0, 1): what the detector's derived confidence is computed from.
        seed: seed of the random weights of the parts that stay random (vision tower, encoder).

    Returns:
        The folder (config.json, model.safetensors, processor and tokenizer files).
    """
    import torch
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob: expected a value in (0, 1), got {prob}")
    directory = Path(build_tiny_florence(directory, seed=seed))
    processor = Florence2Processor.from_pretrained(directory)
    tok = processor.tokenizer
    script = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    if len(script) > MAX_SCRIPT_STEPS:
        raise ValueError(f"text: expected at most {MAX_SCRIPT_STEPS - 2} tokens, got {len(script) - 2}")

    model = Florence2ForConditionalGeneration.from_pretrained(directory)
    config = model.config
    config.tie_word_embeddings = False
    config.text_config.tie_word_embeddings = False
    untied = Florence2ForConditionalGeneration(config).eval()
    untied.load_state_dict(model.state_dict(), strict=False)
    lm = untied.model.language_model
    dim = config.text_config.d_model
    vocab = config.text_config.vocab_size

    gen = torch.Generator().manual_seed(seed)
    centre = torch.eye(dim) - torch.full((dim, dim), 1.0 / dim)  # removes the mean
    q, _ = torch.linalg.qr(centre @ torch.randn(dim, dim - 1, generator=gen))
    vectors = q.T * math.sqrt(dim)  # (dim-1, dim): orthogonal, zero mean, unit variance
    logit = math.log(prob * (vocab - 1) / (1.0 - prob))

    with torch.no_grad():
        dec = lm.decoder
        offset = getattr(dec.embed_positions, "offset", 2)
        dec.embed_positions.weight.zero_()
        lm.shared.weight.zero_()
        dec.embed_tokens.weight.zero_()
        for layer in dec.layers:
            for lin in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
            for norm in (layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm):
                norm.weight.fill_(1.0)
                norm.bias.zero_()
        dec.layernorm_embedding.weight.fill_(1.0)
        dec.layernorm_embedding.bias.zero_()
        head = torch.zeros(vocab, dim)
        # Step p reads the token emitted at step p-1 at position p (step 0 reads the start token).
        for step, token in enumerate(script):
            dec.embed_positions.weight[offset + step] = vectors[step]
            head[token] += vectors[step] * (logit / dim)
        untied.lm_head.weight.copy_(head)
    untied.generation_config.num_beams = 1
    untied.generation_config.max_new_tokens = MAX_SCRIPT_STEPS + 4
    untied.save_pretrained(directory)
    return directory
