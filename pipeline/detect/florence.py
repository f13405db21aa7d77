"""Text-prompted box detection with Florence-2 (transformers-native classes, no remote code).

Pipeline: preprocess -> generate -> parse.

* Preprocess: ``Florence2Processor`` resizes the RGB image to 768x768 (bicubic, aspect ratio
  NOT kept), rescales to [0, 1] and normalises with the ImageNet mean/std; the prompt is
  ``<CAPTION_TO_PHRASE_GROUNDING>`` + the class names joined as ``"person. car. traffic light."``
  (the processor expands it to ``"Locate the phrases in the caption: ..."``).
* Generate: greedy decoding (``num_beams=1``) with ``output_logits=True`` so that every
  generated token's probability under the raw logits is known.
* Parse: location tokens ``<loc_k>`` are bins of a 1000-bin grid over the whole image, so boxes
  map to original pixels as ``(k + 0.5) * side / 1000`` (what
  ``Florence2Processor.post_process_generation`` does, without its integer cast). Labels map back
  to the requested class names; confidence = geometric mean of the 4 location-token
  probabilities x the joint probability of the label tokens. See
  ``pipeline.detect.florence_parse`` for the exact definitions.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.detect.florence_parse import (
    LOC_BINS,
    TASK_GROUNDING,
    boxes_to_detections,
    grounding_prompt,
    parse_tokens,
)
from pipeline.models.device import pick_device_dtype
from pipeline.types import Detections

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256  # ~40 boxes; each box costs 4 location tokens + its phrase
DEFAULT_LOC_TOLERANCE = 3  # bins either side whose probability counts for a location token


class FlorenceDetector:
    """Florence-2 phrase-grounding detector: image + class names -> boxes with confidences.

    Build it with ``FlorenceDetector.from_pretrained(folder)``; the constructor takes already
    loaded objects. ``detect`` is serialised by a lock (one generate at a time per model).

    Args:
        model: a loaded ``Florence2ForConditionalGeneration`` (in eval mode, on its device).
        processor: the matching ``Florence2Processor``.
        name: model label recorded as ``detection_model`` (e.g. ``"florence-2-base"``).
        max_new_tokens: default generation budget per image.
        loc_tolerance: location-token probability window, in bins (see florence_parse).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "florence-2",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        loc_tolerance: int = DEFAULT_LOC_TOLERANCE,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.max_new_tokens = int(max_new_tokens)
        self.loc_tolerance = int(loc_tolerance)
        self._lock = threading.Lock()
        tokenizer = processor.tokenizer
        loc_tokens = [f"<loc_{i}>" for i in range(LOC_BINS)]
        loc_ids = tokenizer.convert_tokens_to_ids(loc_tokens)
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in loc_ids:
            raise ValueError(
                "processor: expected a Florence-2 tokenizer with <loc_0>..<loc_999> tokens, got "
                f"{type(tokenizer).__name__} without them; load the processor saved with the model"
            )
        self._loc_ids = torch.tensor(loc_ids, dtype=torch.long)
        self._bin_of_id = {tid: i for i, tid in enumerate(loc_ids)}
        # Added tokens (special, location, structural) are whole pieces; other ids are text.
        self._added = {tid: tok.content for tid, tok in tokenizer.added_tokens_decoder.items()}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        **kwargs: Any,
    ) -> FlorenceDetector:
        """Load model and processor from a folder (see ``pipeline.models.loader.resolve_weights``).

        Args:
            path: a folder written by ``save_pretrained`` (config.json, weights, processor files).
            device: ``"cpu"``, ``"cuda"``, ... ; None picks automatically (``pick_device_dtype``).
            dtype: torch dtype or its name; None uses the device's default (CUDA: bf16/fp16,
                CPU: float32 or ``$AGL_CPU_DTYPE``).
            **kwargs: passed to the constructor (``name``, ``max_new_tokens``, ``loc_tolerance``).

        Raises:
            FileNotFoundError: ``path`` is not a folder.
        """
        from transformers import Florence2ForConditionalGeneration, Florence2Processor

        from pipeline.models.device import parse_dtype

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"Florence-2 folder: expected a model folder, got {path} (missing)")
        auto_device, auto_dtype = pick_device_dtype(None if device is None else str(device))
        if isinstance(dtype, str):
            dtype = parse_dtype(dtype)
        dtype = dtype or auto_dtype
        model = Florence2ForConditionalGeneration.from_pretrained(path, dtype=dtype)
        model.to(auto_device).eval()
        processor = Florence2Processor.from_pretrained(path)
        kwargs.setdefault("name", path.name)
        return cls(model, processor, **kwargs)

    def detect(
        self,
        image: np.ndarray,
        classes: Sequence[str],
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        confidence: float = 0.0,
        max_new_tokens: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> Detections:
        """Boxes of the requested classes in ``image``.

        Args:
            image: (H, W, 3) uint8 RGB.
            classes: class names to find (the prompt; also ``class_names`` of the result).
            synonyms: class name -> synonyms; generated phrases matching a synonym map to the
                class (the prompt names the classes only).
            confidence: minimum confidence kept, in [0, 1].
            max_new_tokens: generation budget (default: the detector's ``max_new_tokens``).
            generate_kwargs: extra ``model.generate`` arguments (e.g. a ``logits_processor``).

        Returns:
            ``Detections`` with ``xyxy`` float32 absolute pixels of ``image`` (x = column,
            y = row), ``confidence`` (see module docstring), ``class_id`` into ``classes``,
            ``mask=None``, and ``data``: ``"loc_score"``, ``"label_score"`` (N,) float32,
            ``"raw_label"`` (N,) object (the phrase as generated).

        Raises:
            ValueError: a bad image, no class names, or confidence outside [0, 1].
        """
        image = _check_image(image)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence: expected a value in [0, 1], got {confidence}")
        class_names = list(classes)
        prompt = TASK_GROUNDING + grounding_prompt(class_names)
        height, width = image.shape[:2]
        pieces, probs = self.generate_pieces(image, prompt, max_new_tokens, generate_kwargs)
        parsed = boxes_to_detections(
            parse_tokens(pieces, probs), class_names, (width, height),
            synonyms=synonyms, confidence=confidence,
        )
        return Detections(
            xyxy=parsed.xyxy,
            confidence=parsed.confidence,
            class_id=parsed.class_id,
            class_names=class_names,
            data={
                "loc_score": parsed.loc_score,
                "label_score": parsed.label_score,
                "raw_label": parsed.raw_label,
            },
        )

    def generate_pieces(
        self,
        image: np.ndarray,
        prompt: str,
        max_new_tokens: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], list[float]]:
        """Run the model; return the output as pieces and one probability per piece.

        Pieces: each added token (``<s>``, ``</s>``, ``<loc_k>``, ``<od>``...) alone; runs of
        ordinary text tokens decoded together (so multi-byte characters decode whole), their
        probability the product of the run's token probabilities. A location token's probability
        is the softmax mass of the bins within ``loc_tolerance`` of the emitted bin.
        """
        inputs = self.processor(text=prompt, images=image, return_tensors="pt")
        device, dtype = self.device, self.dtype
        inputs = {
            k: v.to(device=device, dtype=dtype) if k == "pixel_values" else v.to(device)
            for k, v in inputs.items()
        }
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(max_new_tokens or self.max_new_tokens),
            "num_beams": 1,
            "do_sample": False,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        kwargs.update(generate_kwargs or {})
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        logits = torch.stack(out.logits, dim=1)[0].float()  # (steps, vocab)
        steps = logits.shape[0]
        ids = out.sequences[0, -steps:] if steps else out.sequences[0, :0]
        return self._pieces(ids.cpu(), logits.cpu())

    def _pieces(self, ids: torch.Tensor, logits: torch.Tensor) -> tuple[list[str], list[float]]:
        if len(ids) == 0:
            return [], []
        probs = torch.softmax(logits, dim=-1)
        chosen = probs.gather(1, ids[:, None])[:, 0]
        loc_probs = probs[:, self._loc_ids]  # (steps, 1000)
        cumulative = torch.nn.functional.pad(loc_probs.cumsum(dim=1), (1, 0))
        pieces: list[str] = []
        piece_probs: list[float] = []
        run: list[int] = []
        run_prob = 1.0

        def flush() -> None:
            nonlocal run, run_prob
            if run:
                text = self.processor.tokenizer.decode(
                    run, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                pieces.append(text)
                piece_probs.append(run_prob)
                run, run_prob = [], 1.0

        tol = self.loc_tolerance
        for step, tid in enumerate(ids.tolist()):
            if tid in self._bin_of_id:
                flush()
                k = self._bin_of_id[tid]
                lo, hi = max(0, k - tol), min(LOC_BINS, k + tol + 1)
                pieces.append(self._added[tid])
                piece_probs.append(float((cumulative[step, hi] - cumulative[step, lo]).clamp(0, 1)))
            elif tid in self._added:
                flush()
                pieces.append(self._added[tid])
                piece_probs.append(float(chosen[step]))
            else:
                run.append(tid)
                run_prob *= float(chosen[step])
        flush()
        return pieces, piece_probs


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image: expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype "
            f"{image.dtype}; load images with pipeline.image_io.load_image"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image: expected a non-empty image, got shape {image.shape}")
    return image
