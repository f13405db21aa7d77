"""Text-prompted box detection with Florence-2 (transformers-native classes, no remote code).

Pipeline: plan prompts -> preprocess -> generate -> parse -> merge.

* Prompts: ``<CAPTION_TO_PHRASE_GROUNDING>`` + the class names *and their synonyms* joined as
  ``"person. car. automobile. traffic light."`` (the processor expands it to ``"Locate the
  phrases in the caption: ..."``). When image tokens + prompt would exceed the text encoder's
  ``max_position_embeddings`` (long class lists), the classes are split into several prompts
  that fit, one ``generate`` each (``pipeline.detect.florence_prompts``); the image's features
  are computed once for all of them (``pipeline.detect.florence_vision``).
* Preprocess: ``Florence2Processor`` resizes the RGB image to 768x768 (bicubic, aspect ratio
  NOT kept), rescales to [0, 1] and normalises with the ImageNet mean/std. The image is passed
  with ``input_data_format="channels_last"``: without it an image 1 or 3 pixels tall is read as
  channels-first.
* Generate: greedy decoding by default (``num_beams=1``; the reference examples use 3 beams,
  about 3x the decoder's work) with ``output_logits=True`` so that every generated token's
  probability under the raw logits is known. With beams, each step's logits are taken from the
  beam the returned sequence came through (``beam_indices``), not from beam 0.
* Budget: ``max_new_tokens`` defaults to 1024 (the reference examples' value), capped by the
  decoder's positions. Each prompt gets its own budget, so a longer class list (more prompts)
  gets more tokens in all. An output that used its whole budget is reported: ``data["truncated"]``
  is True for its boxes and a warning is logged; the last, partial box is dropped by the parser.
* Parse: location tokens ``<loc_k>`` are bins of a 1000-bin grid over the whole image, so boxes
  map to original pixels as ``(k + 0.5) * side / 1000`` (what
  ``Florence2Processor.post_process_generation`` does, without its integer cast). Labels map back
  to the requested class names (a synonym to its class; the phrase as generated is kept in
  ``data["raw_label"]``); confidence = geometric mean of the 4 location-token probabilities x the
  joint probability of the label tokens. See ``pipeline.detect.florence_parse`` for the exact
  definitions.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.detect.florence_decode import Generation, PieceScorer, returned_sequence
from pipeline.detect.florence_parse import TASK_GROUNDING, boxes_to_detections, parse_tokens
from pipeline.detect.florence_prompts import PromptPlan, merge_prompt_outputs, plan_prompts
from pipeline.detect.florence_vision import VisionFeatures
from pipeline.models.device import pick_device_dtype
from pipeline.segment.base import check_each
from pipeline.types import Detections

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 1024  # the reference examples' budget; capped by the decoder's positions
DEFAULT_LOC_TOLERANCE = 3  # bins either side whose probability counts for a location token
_GROUNDING_TEMPLATE = "Locate the phrases in the caption: {input}"  # Florence2Processor's
_PLAN_CACHE = 32  # class lists whose prompt plans are kept


class FlorenceDetector:
    """Florence-2 phrase-grounding detector: image + class names -> boxes with confidences.

    Build it with ``FlorenceDetector.from_pretrained(folder)``; the constructor takes already
    loaded objects. ``detect`` is serialised by a lock (one generate at a time per model).

    Args:
        model: a loaded ``Florence2ForConditionalGeneration`` (in eval mode, on its device).
        processor: the matching ``Florence2Processor``.
        name: model label recorded as ``detection_model`` (e.g. ``"florence-2-base"``).
        max_new_tokens: default generation budget per prompt (capped by the decoder's positions).
        loc_tolerance: location-token probability window, in bins (see florence_parse).
        num_beams: default beam count (1 = greedy).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "florence-2",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        loc_tolerance: int = DEFAULT_LOC_TOLERANCE,
        num_beams: int = 1,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.max_new_tokens = int(max_new_tokens)
        self.loc_tolerance = int(loc_tolerance)
        self.num_beams = _check_beams(num_beams)
        self._lock = threading.Lock()
        self._scorer = PieceScorer(processor.tokenizer)
        self._plans: dict[tuple, list[PromptPlan]] = {}
        templates = getattr(processor, "task_prompts_with_input", None) or {}
        self._template = templates.get(TASK_GROUNDING, _GROUNDING_TEMPLATE)
        # phrases never used as labels, as in transformers' post-processing ("the image")
        post = getattr(processor, "post_processor", None)
        self.banned = sorted(getattr(post, "banned_grounding_tokens", ()) or ())
        self.decoder = "native"  # or "int8": see pipeline.detect.florence_int8
        # The vision tower + projector compiled with OpenVINO (CPU), or None for PyTorch's;
        # set by ``from_pretrained``, read on every call (None = the PyTorch module again).
        self.vision: Any = None
        self.features = VisionFeatures(self)  # get_image_features, shared by one call's prompts

    def _held_parameter(self) -> torch.Tensor:
        """A parameter held in memory (the vision tower's are on ``meta`` once released)."""
        return next(p for p in self.model.parameters() if p.device.type != "meta")

    @property
    def device(self) -> torch.device:
        return self._held_parameter().device

    @property
    def dtype(self) -> torch.dtype:
        return self._held_parameter().dtype

    @property
    def max_encoder_tokens(self) -> int:
        """Positions of the text encoder: image tokens + prompt tokens must fit in them."""
        return int(self.model.config.text_config.max_position_embeddings)

    @property
    def max_decoder_tokens(self) -> int:
        """The most tokens one ``generate`` can emit: the decoder's positions (it reads its start
        token and all but the last generated token; one more raises ``IndexError``)."""
        return int(self.model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        runtime: str | None = None,
        decoder: str | None = None,
        **kwargs: Any,
    ) -> FlorenceDetector:
        """Load model and processor from a folder (see ``pipeline.models.loader.resolve_weights``).

        Args:
            path: a folder written by ``save_pretrained`` (config.json, weights, processor files).
            device: ``"cpu"``, ``"cuda"``, ... ; None picks automatically (``pick_device_dtype``).
            dtype: torch dtype or its name; None uses the device's default (CUDA: bf16/fp16,
                CPU: float32 or ``$AGL_CPU_DTYPE``).
            runtime: the vision tower's CPU runtime, ``"openvino"`` or ``"torch"``; default
                ``pipeline.models.openvino_runtime.cpu_runtime()``.
            decoder: the token loop's layers, ``"int8"`` or ``"native"``; default
                ``pipeline.detect.florence_int8.decoder_mode()`` (int8 on CPU).
            **kwargs: passed to the constructor (``name``, ``max_new_tokens``, ``loc_tolerance``,
                ``num_beams``).

        Raises:
            FileNotFoundError: ``path`` is not a folder.
        """
        from transformers import Florence2ForConditionalGeneration, Florence2Processor

        from pipeline.detect.florence_int8 import DECODERS, decoder_mode, quantize_decoder
        from pipeline.models.device import parse_dtype
        from pipeline.models.openvino_runtime import accelerate
        from pipeline.models.released_weights import release

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
        det = cls(model, processor, **kwargs)
        det.decoder = decoder or decoder_mode(auto_device)
        if det.decoder not in DECODERS:
            raise ValueError(f"decoder: expected one of {DECODERS}, got {det.decoder!r}")
        if det.decoder == "int8":
            quantize_decoder(model)
        size = processor.image_processor.size
        det.vision = accelerate("florence-vision", path, auto_device,
                                (1, 3, int(size["height"]), int(size["width"])), dtype, runtime)
        model.model.get_image_features = det.features  # read by the model's forward
        if det.vision is not None:
            release(det, "model.vision_tower", path)  # DaViT runs compiled: its weights are freed
        return det

    # ------------------------------------------------------------------ prompts
    def prompt_tokens(self, caption: str) -> int:
        """The encoder length of a grounding prompt with ``caption``: image tokens, ``<s>``,
        the task template with the caption, ``</s>`` (what ``Florence2Processor`` builds)."""
        text = self._template.format(input=caption)
        ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return int(self.processor.num_image_tokens) + 2 + len(ids)

    def plan_prompts(
        self, classes: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
    ) -> list[PromptPlan]:
        """The grounding prompts for ``classes`` (+ synonyms), each fitting the encoder.

        Plans are cached per (classes, synonyms): a batch asks for the same classes on every
        image, and planning tokenises each growing caption (~0.3 s for 1000 classes).

        Raises:
            ValueError: no class name, or one class with its synonyms is too long for a prompt.
        """
        key = (tuple(classes), tuple((k, tuple(v or ())) for k, v in sorted((synonyms or {}).items())))
        plans = self._plans.get(key)
        if plans is None:
            plans = plan_prompts(classes, synonyms, self.prompt_tokens, self.max_encoder_tokens)
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plans
        return plans

    def budget(self, max_new_tokens: int | None = None) -> int:
        """Tokens one prompt may generate: ``max_new_tokens`` (default the detector's), capped
        by ``max_decoder_tokens``.

        Raises:
            ValueError: a budget below 1.
        """
        wanted = int(max_new_tokens if max_new_tokens is not None else self.max_new_tokens)
        if wanted < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {wanted}")
        return min(wanted, self.max_decoder_tokens)

    # ------------------------------------------------------------------ detection
    def detect(
        self,
        image: np.ndarray,
        classes: Sequence[str],
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        confidence: float = 0.0,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> Detections:
        """Boxes of the requested classes in ``image``.

        Args:
            image: (H, W, 3) uint8 RGB (any size, 1 x 1 included).
            classes: class names to find (the prompt; also ``class_names`` of the result).
            synonyms: class name -> synonyms; they are named in the prompt after their class, and
                a box grounded by a synonym gets its class's id (the phrase stays in
                ``data["raw_label"]``).
            confidence: minimum confidence kept, in [0, 1].
            max_new_tokens: generation budget per prompt (default: the detector's).
            num_beams: beam count (default: the detector's; 1 = greedy).
            generate_kwargs: extra ``model.generate`` arguments (e.g. a ``logits_processor``).

        Returns:
            ``Detections`` with ``xyxy`` float32 absolute pixels of ``image`` (x = column,
            y = row), ``confidence`` (see module docstring), ``class_id`` into ``classes``,
            ``mask=None``, and ``data``: ``"loc_score"``, ``"label_score"`` (N,) float32,
            ``"raw_label"`` (N,) object (the phrase as generated), ``"truncated"`` (N,) bool
            (the box comes from an output that ran out of budget: more objects may be missing).

        Raises:
            ValueError: a bad image, no class names, or confidence outside [0, 1].
        """
        return self.detect_many([image], classes, synonyms=synonyms, confidence=confidence,
                                max_new_tokens=max_new_tokens, num_beams=num_beams,
                                generate_kwargs=generate_kwargs)[0]

    def detect_many(
        self,
        images: Sequence[np.ndarray],
        classes: Sequence[str],
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        confidence: float = 0.0,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> list[Detections]:
        """:meth:`detect` on several images with the same classes, one ``generate`` per prompt
        for all of them (a batch: what a GPU needs to be busy; each image's output is cut at its
        own end token). Same arguments and results as :meth:`detect`, one per image, in order.

        Raises:
            ValueError: no image, a bad image (named by its index), no class names, or
                confidence outside [0, 1].
        """
        if not len(images):
            raise ValueError("images: expected at least one image, got none")
        checked = check_each(images, _check_image)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence: expected a value in [0, 1], got {confidence}")
        class_names = list(classes)
        parts: list[list] = [[] for _ in checked]
        plans = self.plan_prompts(class_names, synonyms)
        # the prompts share the image: its features are computed once (pipeline.detect.florence_vision)
        with self.features.sharing() if len(plans) > 1 else contextlib.nullcontext():
            for plan in plans:
                gens = self.generate_many(checked, TASK_GROUNDING + plan.caption, max_new_tokens, generate_kwargs,
                                          num_beams=num_beams)
                for i, (image, gen) in enumerate(zip(checked, gens, strict=True)):
                    if gen.truncated:
                        log.warning(
                            "Florence-2 output%s used its whole budget of %d new tokens for the prompt %r: "
                            "boxes after the last complete one are missing; raise max_new_tokens",
                            f" for image {i} of the batch" if len(checked) > 1 else "", gen.max_new_tokens,
                            plan.caption[:80],
                        )
                    height, width = image.shape[:2]
                    parsed = boxes_to_detections(
                        parse_tokens(gen.pieces, gen.probs, banned=self.banned), plan.class_names, (width, height),
                        synonyms=plan.synonyms, confidence=confidence,
                    )
                    parts[i].append((parsed, plan.class_ids[parsed.class_id], gen.truncated))
        return [merge_prompt_outputs(p, class_names) for p in parts]

    def preprocess(self, image: np.ndarray, prompt: str) -> dict[str, torch.Tensor]:
        """Processor inputs for one image and prompt, on the model's device (pixels in its dtype).

        Raises:
            ValueError: the prompt does not fit the encoder (use ``plan_prompts``).
        """
        return self.preprocess_many([image], prompt)

    def preprocess_many(self, images: Sequence[np.ndarray], prompt: str) -> dict[str, torch.Tensor]:
        """:meth:`preprocess` for a batch of images with the same prompt (no padding needed)."""
        checked = check_each(images, _check_image)
        inputs = self.processor(text=[prompt] * len(checked) if len(checked) > 1 else prompt,
                                images=checked if len(checked) > 1 else checked[0], return_tensors="pt",
                                input_data_format="channels_last")
        length = int(inputs["input_ids"].shape[-1])
        if length > self.max_encoder_tokens:
            raise ValueError(
                f"prompt: expected at most {self.max_encoder_tokens} encoder tokens (image tokens "
                f"included), got {length}; split the classes with plan_prompts"
            )
        device, dtype = self.device, self.dtype
        if self.vision is not None:  # OpenVINO takes float32 pixels (no rounding to bfloat16)
            dtype = torch.float32
        return {
            k: v.to(device=device, dtype=dtype) if k == "pixel_values" else v.to(device)
            for k, v in inputs.items()
        }

    def generate(
        self,
        image: np.ndarray,
        prompt: str,
        max_new_tokens: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        *,
        num_beams: int | None = None,
    ) -> Generation:
        """Run the model on one prompt; return the output as pieces with probabilities.

        Pieces: each added token (``<s>``, ``</s>``, ``<loc_k>``, ``<od>``...) alone; runs of
        ordinary text tokens decoded together (so multi-byte characters decode whole), their
        probability the product of the run's token probabilities. A location token's probability
        is the softmax mass of the bins within ``loc_tolerance`` of the emitted bin. Probabilities
        come from the raw logits of the returned sequence at each step (with beams: of the beam
        it came through at that step, ``beam_indices``).
        """
        return self.generate_many([image], prompt, max_new_tokens, generate_kwargs, num_beams=num_beams)[0]

    def generate_many(
        self,
        images: Sequence[np.ndarray],
        prompt: str,
        max_new_tokens: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        *,
        num_beams: int | None = None,
    ) -> list[Generation]:
        """:meth:`generate` for a batch of images with the same prompt, in one ``generate`` call;
        each image's sequence ends at its own first end token (``generate`` pads the rows that
        finished early until the last one does)."""
        budget = self.budget(max_new_tokens)
        beams = _check_beams(self.num_beams if num_beams is None else num_beams)
        inputs = self.preprocess_many(images, prompt)
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget,
            "num_beams": beams,
            "do_sample": False,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        kwargs.update(generate_kwargs or {})
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        eos = self.processor.tokenizer.eos_token_id
        gens = []
        for row in range(len(images)):
            ids, logits = returned_sequence(out, row, eos)
            truncated = len(ids) >= budget or (len(ids) > 0 and int(ids[-1]) != eos)
            pieces, probs = self._pieces(ids.cpu(), logits.cpu())
            gens.append(Generation(pieces, probs, ids.tolist(), bool(truncated), budget))
        return gens

    def generate_pieces(
        self,
        image: np.ndarray,
        prompt: str,
        max_new_tokens: int | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], list[float]]:
        """``generate`` reduced to (pieces, probabilities)."""
        gen = self.generate(image, prompt, max_new_tokens, generate_kwargs)
        return gen.pieces, gen.probs

    def _pieces(self, ids: torch.Tensor, logits: torch.Tensor) -> tuple[list[str], list[float]]:
        return self._scorer.pieces(ids, logits, self.loc_tolerance)


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


def _check_beams(num_beams: int) -> int:
    if int(num_beams) < 1:
        raise ValueError(f"num_beams: expected >= 1 (1 = greedy), got {num_beams}")
    return int(num_beams)
