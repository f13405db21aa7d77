"""SAM2.1 mask propagation through video frames, on transformers' ``Sam2VideoModel``.

Objects are prompted (a box, or a mask) on one frame and followed through the frames after it
with SAM2's memory attention: transformers' ``Sam2VideoInferenceSession`` in *streaming* mode
(``model(inference_session=..., frame=...)``), one frame at a time, so frames come from an
iterator and are never all decoded or held.

Pipeline per frame (preprocess -> forward -> postprocess):

- preprocess: RGB uint8 (H, W, 3) -> float in [0, 1] -> bilinear (antialiased) resize to the
  model's square input (1024 for the released checkpoints) -> ImageNet normalisation; the same
  steps as :class:`pipeline.segment.sam2.Sam2Segmenter`, so a frame looks the same to both.
- forward: the session's memory bank (the prompt frame + the last ``num_maskmem - 1`` frames'
  mask memories, and up to ``max_object_pointers_in_encoder`` object pointers) conditions the
  frame's features; prompts go in through ``Sam2VideoProcessor.add_inputs_to_inference_session``.
- postprocess: the decoder's low-resolution mask logits are resized bilinearly straight to the
  frame's (H, W) and thresholded at 0; the per-object score is ``sigmoid(object_score_logits)``
  (SAM2's own "object present" test is logit > 0, i.e. score > 0.5).

Bounded memory. Out of the box the session keeps, for every frame it has seen, the
preprocessed frame (3 x 1024 x 1024 float32, 12 MB) and per object its outputs (the
1024 x 1024 high-resolution mask logits alone are 4 MB; ~6 MB per object-frame in all). After
each frame this class drops (``keep_history=False``, the default):

- the preprocessed frame (its vision features stay in the session's one-frame cache);
- ``high_res_masks`` of every stored output (only read while that frame's memory is encoded);
- outputs of frames older than the memory window (``num_maskmem - 1`` frames) except their
  small object pointers, and those too beyond the pointer window
  (``max_object_pointers_in_encoder - 1`` frames); the prompt frame's output always stays.

What the model reads is unchanged (it looks only inside those windows), so masks are the same
as with the full history; the stored state stays below a bound however long the clip is
(``tests/pipeline/segment_video/test_sam2_video.py`` checks both).

Frame indices inside the session are the propagation steps 0, 1, 2, ... (0 = prompt frame).
Backward propagation is the same computation on frames given in reverse order (SAM2's reverse
mode only flips the sign of the temporal offsets, which this numbering does implicitly).

Coordinates: boxes are xyxy absolute pixels of the frame ((x, y) = (column, row)); masks are
(H, W) / (N, H, W) bool on the frame's pixel grid.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.segment.propagation import (
    DEFAULT_DRIFT_THRESHOLD,
    PropagatedFrame,
    apply_drift_rule,
    check_frame,
    check_prompts,
)
from pipeline.segment.sam2 import IMAGENET_MEAN, IMAGENET_STD

#: ``model_type`` of checkpoints that carry the memory modules (the released
#: ``facebook/sam2.1-hiera-*`` folders); an image-only ``sam2`` folder has none.
VIDEO_MODEL_TYPE = "sam2_video"


def session_state(session: Any) -> dict[str, int]:
    """What a ``Sam2VideoInferenceSession`` holds per frame: counts and bytes.

    Returns:
        ``{"frames": preprocessed frames kept, "outputs": per-object frame outputs kept,
        "bytes": bytes of every tensor in those and in the vision-feature cache}``.
    """

    def nbytes(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(nbytes(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(nbytes(v) for v in value)
        return 0

    frames = session.processed_frames or {}
    outputs = [out for per_obj in session.output_dict_per_obj.values() for kind in per_obj.values()
               for out in kind.values()]
    total = nbytes(frames) + nbytes(outputs) + nbytes(session.cache._vision_features)
    return {"frames": len(frames), "outputs": len(outputs), "bytes": int(total)}


class Sam2VideoPropagator:
    """Follows prompted objects through frames with SAM2.1's video model.

    Build with ``Sam2VideoPropagator.from_pretrained(folder)``; the constructor takes a ready
    ``Sam2VideoModel``.

    Args:
        model: a ``transformers.Sam2VideoModel`` (eval mode is set here).
        device / dtype: where and in which precision it runs.
        image_mean / image_std: normalisation (from the folder's preprocessor config).
        keep_history: keep everything the session stores (transformers' default, memory grows
            with every frame); False (default) drops what lies outside the memory window.
        name: version label stored with the masks.

    Attributes:
        name: ``"sam2-video"`` is what the registry stores as ``detection_model``; ``version``
            is the checkpoint's label (e.g. ``"sam2.1-hiera-tiny"``).
        lock: an ``RLock`` callers hold for a whole propagation on a shared instance.
        last_session: the inference session of the latest ``propagate`` (tests, benchmarks).
        peak_state: the largest :func:`session_state` seen during the latest ``propagate``.
    """

    name = "sam2-video"
    default_drift_threshold = DEFAULT_DRIFT_THRESHOLD

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        keep_history: bool = False,
        name: str = "sam2.1",
    ) -> None:
        if getattr(model.config, "model_type", None) != VIDEO_MODEL_TYPE:
            raise ValueError(f"Sam2VideoPropagator: expected a {VIDEO_MODEL_TYPE!r} model, got "
                             f"{getattr(model.config, 'model_type', None)!r}")
        self.model = model.eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.version = name
        self.keep_history = keep_history
        self.input_size = int(model.config.image_size)
        self.memory_window = max(1, int(model.config.num_maskmem) - 1)
        self.pointer_window = max(1, int(model.config.max_object_pointers_in_encoder) - 1)
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(3, 1, 1)
        self._processor = _prompt_processor(self.input_size)
        # One propagation at a time per model (callers hold it: app.workflows.propagate does), so
        # two users of a shared instance never run two sessions' worth of activations at once.
        self.lock = threading.RLock()
        self.last_session: Any = None
        self.peak_state: dict[str, int] = {"frames": 0, "outputs": 0, "bytes": 0}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        keep_history: bool = False,
        name: str | None = None,
    ) -> Sam2VideoPropagator:
        """Loads a ``save_pretrained`` SAM2.1 video folder (the one the image segmenter uses).

        Raises:
            ValueError: the folder holds an image-only ``sam2`` checkpoint (no memory modules:
                its video masks would come from random weights).
        """
        from transformers import Sam2VideoModel

        from pipeline.models.device import resolve_device_dtype
        from pipeline.models.loader import read_model_type, read_normalisation

        path = Path(path)
        kind = read_model_type(path)
        if kind != VIDEO_MODEL_TYPE:
            raise ValueError(
                f"SAM2 weights at {path}: expected a {VIDEO_MODEL_TYPE!r} checkpoint (with the memory modules "
                f"video propagation needs, like facebook/sam2.1-hiera-tiny), got {kind!r}; download a "
                "released SAM2.1 folder with `launch.py models download`"
            )
        device, dtype = resolve_device_dtype(device, dtype)
        model = Sam2VideoModel.from_pretrained(path, dtype=dtype).to(device)
        mean, std = read_normalisation(path, IMAGENET_MEAN, IMAGENET_STD)
        return cls(model, device=device, dtype=dtype, image_mean=mean, image_std=std,
                   keep_history=keep_history, name=name or path.name)

    # ------------------------------------------------------------------ steps
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 (H, W, 3) -> normalised (1, 3, S, S) on the model's device/dtype."""
        image = image if image.flags.writeable else image.copy()  # torch wants writable memory
        x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        x = F.interpolate(x[None], size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)[0]
        x = (x - self._mean) / self._std
        return x[None].to(device=self.device, dtype=self.dtype)

    @staticmethod
    def postprocess(pred_masks: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        """(N, 1, h, w) low-resolution logits -> (N, H, W) bool at the frame's size."""
        up = F.interpolate(pred_masks.float(), size=hw, mode="bilinear", align_corners=False)
        return (up[:, 0] > 0.0).cpu().numpy()

    def _new_session(self) -> Any:
        from transformers import Sam2VideoInferenceSession

        return Sam2VideoInferenceSession(inference_device=self.device, inference_state_device=self.device,
                                         video_storage_device=self.device, dtype=self.dtype)

    def _add_prompts(self, session: Any, boxes: np.ndarray, masks: list[np.ndarray | None],
                     hw: tuple[int, int]) -> None:
        for i, mask in enumerate(masks):  # one call per object, in order: object i gets index i
            if mask is not None:
                self._processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=i, input_masks=mask)
            else:
                box = [[[float(v) for v in boxes[i]]]]
                self._processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=i, input_boxes=box,
                                                                original_size=hw)
        session.video_height, session.video_width = hw
        # Each add_inputs call names only its own object as "new"; all of them are.
        session.obj_with_new_inputs = list(range(len(masks)))

    def _prune(self, session: Any, step: int) -> None:
        """Drops what the model will not read again (see the module docstring)."""
        if session.processed_frames:
            session.processed_frames.pop(step, None)
        for per_obj in session.output_dict_per_obj.values():
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                for out in per_obj[kind].values():
                    out.pop("high_res_masks", None)
            recent = per_obj["non_cond_frame_outputs"]
            for t in [t for t in recent if t < step - self.pointer_window]:
                del recent[t]
            for t in [t for t in recent if t < step - self.memory_window]:
                recent[t] = {"object_pointer": recent[t]["object_pointer"]}
        for tracked in session.frames_tracked_per_obj.values():
            for t in [t for t in tracked if t < step - self.pointer_window]:
                del tracked[t]

    # ------------------------------------------------------------------ public
    def propagate(
        self,
        frames: Iterable[np.ndarray],
        boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
        *,
        drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
        max_frames: int | None = None,
        stop_on_drift: bool = True,
    ) -> Iterator[PropagatedFrame]:
        """Follows the objects prompted on the first frame through the rest.

        Args:
            frames: RGB uint8 (H, W, 3) frames in propagation order, the prompt frame first;
                read one at a time (an iterator is never materialised).
            boxes: (N, 4) xyxy absolute pixels on the prompt frame (rows of objects that have a
                mask may be NaN).
            masks: N entries: an (H, W) bool mask of the prompt frame (used instead of the box)
                or None.
            drift_threshold: a score below this stops an object (see
                :mod:`pipeline.segment.propagation`); 0 keeps following every non-empty mask.
            max_frames: frames to follow after the prompt frame (None: until the frames end or
                every object drifted).
            stop_on_drift: False flags drift frames but keeps following every object.

        Yields:
            One :class:`PropagatedFrame` per frame, ``step`` 0 being the prompt frame. Stops
            early once every object drifted (no further frame is read).
        """
        session = self._new_session()
        self.last_session = session
        self.peak_state = {"frames": 0, "outputs": 0, "bytes": 0}
        hw: tuple[int, int] | None = None
        active: np.ndarray | None = None
        limit = None if max_frames is None else int(max_frames) + 1
        for step, frame in enumerate(itertools.islice(frames, limit)):  # never reads past the limit
            frame = check_frame(frame, hw, step)
            if step == 0:
                hw = (frame.shape[0], frame.shape[1])
                p_boxes, p_masks = check_prompts(boxes, masks, hw)
                self._add_prompts(session, p_boxes, p_masks, hw)
                active = np.ones(len(p_masks), bool)
            with torch.inference_mode():
                out = self.model(inference_session=session, frame=self.preprocess(frame), frame_idx=step)
                pred = self.postprocess(out.pred_masks, hw)
                scores = torch.sigmoid(out.object_score_logits.float()).reshape(-1).cpu().numpy()
            state = session_state(session)
            if state["bytes"] > self.peak_state["bytes"]:
                self.peak_state = state
            if not self.keep_history:
                self._prune(session, step)
            result = apply_drift_rule(step, pred, scores, active, drift_threshold, stop=stop_on_drift)
            yield result
            if not active.any():
                break


def _prompt_processor(input_size: int) -> Any:
    """A ``Sam2VideoProcessor`` scaling prompts to the model's ``input_size`` square.

    Built in code (it holds no learned state): image-only folders and tiny test models ship no
    processor config, and frames are preprocessed by :meth:`Sam2VideoPropagator.preprocess`.
    """
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    size = {"height": input_size, "width": input_size}
    return Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size),
                              video_processor=Sam2VideoVideoProcessor(size=size), target_size=input_size)
