"""SAM2.1 segmenter on transformers' ``Sam2Model``, shaped like SAM2's own image predictor.

Why transformers' classes and not the ``sam2`` PyPI package (checked with ``pip download sam2``,
version 1.1.0, Dec 2024): PyPI has only an sdist. Its ``pyproject.toml`` lists ``torch>=2.5.1``
as a *build* requirement, so an isolated ``pip install`` first downloads a second multi-GB torch
into the build environment; ``setup.py`` then compiles a CUDA extension by default
(``SAM2_BUILD_CUDA=1``, errors silently skipped), and the runtime pulls ``hydra-core`` and
``iopath`` to read its yaml configs. That is not "installs cleanly from requirements.txt on a
fresh machine without building CUDA code". transformers 5.x ships the same SAM2.1 architecture
(``Sam2Model``, hub ids ``facebook/sam2.1-hiera-*``) with no extra dependency, so it is used here.

Pipeline per image (preprocess -> forward -> postprocess, embedding computed once):

- preprocess: RGB uint8 (H, W, 3) -> float in [0, 1] -> bilinear (antialiased) resize to the
  model's square input (1024 x 1024 for the released checkpoints, aspect NOT preserved, exactly
  as SAM2's ``SAM2Transforms`` and transformers' ``Sam2ImageProcessor`` do) -> ImageNet
  normalisation (mean/std read from the folder's ``preprocessor_config.json`` when present).
  transformers' ``Sam2ImageProcessor`` resizes the uint8 pixels and so rounds them to whole grey
  levels; here floats are resized, as SAM2's own ``SAM2Transforms`` does: the two model inputs
  are up to one grey level apart. ``tests/pipeline/test_parity_sam2.py`` checks the whole
  transformers path (``Sam2Processor`` -> ``Sam2Model`` -> ``post_process_masks``) against this
  class for box, click and previous-mask prompts: masks IoU >= 0.99 with every differing pixel
  on a mask edge, scores within 1e-4.
- forward: ``Sam2Model.get_image_embeddings`` once per image; the three feature maps are kept
  in a bounded LRU keyed by a hash of the pixels, so going back to an image costs nothing.
  Prompts only run the prompt encoder + mask decoder (``Sam2Model.forward(image_embeddings=...)``).
- postprocess: the decoder's 256 x 256 low-resolution logits are resized bilinearly
  (align_corners=False) straight to the original (H, W) and thresholded at 0, as SAM2's
  ``postprocess_masks`` does, so masks are exact to the original size.

Coordinates: boxes are xyxy and points are (x, y) = (column, row), both in absolute pixels of
the ORIGINAL image; they are scaled to the model's input grid here. Masks are (H, W) or
(N, H, W) bool on the original pixel grid. Scores are SAM2's predicted mask IoU, clipped to
[0, 1] (a random-weight or badly prompted model can predict slightly outside).

Click latency: a click runs only the prompt encoder + mask decoder, hundreds of small ops
(matmuls of at most 4096 x 256, element-wise work on 64^2 x 256 and 256^2 x 32 maps). A second
OpenMP thread gains little on them and its synchronisation costs a lot whenever the cores are
shared (another request encoding, other processes). ``click_threads="auto"`` (the default)
therefore decodes a click on one intra-op thread while the 1-minute load average exceeds the
core count by more than half a core (others compete), and on torch's thread count otherwise;
an int forces that count, None keeps torch's. The count is set in the calling thread only
(OpenMP's thread count is per calling thread, so threads already running elsewhere keep theirs)
and restored after (measured in docs/speed.md; ``bench pipeline`` prints ``click_p95_ms`` and
``click_p95_ms_all_threads``). Box batches (``predict_boxes``) keep every thread. On a CPU with
OpenVINO the mask decoder itself runs compiled (``prompt_decoder``,
``pipeline.segment.sam2_decoder``), warmed by one click at load (``warm_up``); the thread count
above then only governs the prompt encoder, and OpenVINO keeps its own pool.

Thread safety: the predictor holds per-image state. Every public call takes ``self.lock`` (an
``RLock``), so a call never sees half of another's state. Two users sharing one instance must
also keep *their* image between calls: ``with seg.using(image): seg.predict_points(...)`` holds
the lock from ``set_image`` to the last prediction (cheap on an LRU hit).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.device import cores_contended, intra_op_threads
from pipeline.segment.base import PointPrediction, check_points
from pipeline.segment.sam2_decoder import FeatureInputs, decode, example_inputs
from pipeline.segment.sam2_images import ImageState

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Masks decoded per forward in predict_boxes: the decoder repeats the image features once per
# prompt (~2.3M floats each at 1024^2 input), so unbounded batches would cost gigabytes.
DEFAULT_BOX_BATCH = 16
# A bool mask given as mask_input becomes logits of this magnitude (SAM2's own logits for a
# confident mask are of this order; a sigmoid of 10 is 0.99995).
_BOOL_MASK_LOGIT = 10.0
# Mask logits passed back as the next prompt are clamped to +/- this, as SAM2's own
# SAM2ImagePredictor does (``torch.clamp(low_res_masks, -32.0, 32.0)``): the prompt encoder was
# trained on logits in that range, and an unbounded value would dominate its convolutions.
MASK_LOGIT_LIMIT = 32.0
# Upper bound of float32 elements interpolated at once when resizing masks to the original size.
_POSTPROCESS_ELEMENTS = 64_000_000


class Sam2Segmenter(ImageState):
    """Box and click segmentation with SAM2.1 (implements ``pipeline.segment.base.Segmenter``).

    Build with ``Sam2Segmenter.from_pretrained(folder)``; the constructor takes a ready model.

    Attributes:
        name: model version label (e.g. ``"sam2.1-hiera-tiny"``).
        device / dtype: where and in which precision the model runs.
        input_size: the square side the image is resized to (1024 for released checkpoints).
        encoder_calls: how many times the image encoder ran (LRU misses); for tests/benchmarks.
        lock: the ``RLock`` guarding the predictor state.
        click_threads: intra-op threads of ``predict_points``: ``"auto"`` (1 while the cores are
            contended, else torch's count), an int, or None (torch's count); see the module
            docstring.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        cache_size: int = 6,
        box_batch: int = DEFAULT_BOX_BATCH,
        name: str = "sam2",
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size: expected >= 1, got {cache_size}")
        self.model = model.eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = name
        self.input_size = int(model.config.prompt_encoder_config.image_size)
        self.mask_input_size = tuple(model.prompt_encoder.mask_input_size)
        self.cache_size = cache_size
        self.box_batch = max(1, int(box_batch))
        self.encoder_calls = 0
        self.click_threads: int | str | None = "auto"
        self.lock = threading.RLock()
        self._mean = torch.tensor(image_mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32).view(3, 1, 1)
        self._cache: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        self._key: str | None = None
        self._hw: tuple[int, int] | None = None
        self._features: list[torch.Tensor] | None = None
        # The image encoder and the mask decoder compiled with OpenVINO (CPU), or None for the
        # PyTorch modules (pipeline.models.openvino_runtime, pipeline.segment.sam2_decoder).
        self.vision: Any = None
        self.prompt_decoder: Any = None
        self._ov_inputs = FeatureInputs()
        self._image_pe: torch.Tensor | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        cache_size: int = 6,
        name: str | None = None,
        runtime: str | None = None,
    ) -> Sam2Segmenter:
        """Load a ``save_pretrained`` SAM2 folder (config.json + weights).

        Args:
            path: the model folder (see ``pipeline.models.loader.resolve_weights``).
            device / dtype: default ``pipeline.models.device.pick_device_dtype()``.
            cache_size: how many image embeddings the LRU keeps (~17 MB each in float32 at 1024^2).
            name: version label; default the folder name.
            runtime: the image encoder's and mask decoder's CPU runtime, ``"openvino"`` or
                ``"torch"``; default
                ``pipeline.models.openvino_runtime.cpu_runtime()``.
        """
        from transformers import Sam2Model

        from pipeline.models.device import resolve_device_dtype
        from pipeline.models.loader import read_normalisation
        from pipeline.models.openvino_runtime import accelerate
        from pipeline.models.released_weights import release

        device, dtype = resolve_device_dtype(device, dtype)
        path = Path(path)
        model = Sam2Model.from_pretrained(path, dtype=dtype).to(device)
        mean, std = read_normalisation(path, IMAGENET_MEAN, IMAGENET_STD)
        seg = cls(model, device=device, dtype=dtype, image_mean=mean, image_std=std,
                  cache_size=cache_size, name=name or path.name)
        size = seg.input_size
        seg.vision = accelerate("sam2-encoder", path, device, (1, 3, size, size), dtype, runtime)
        seg.prompt_decoder = accelerate("sam2-decoder", path, device, (1, 3, size, size), dtype, runtime)
        if seg.vision is not None:  # Hiera + FPN run compiled: their PyTorch weights are freed
            release(seg, "vision_encoder", path)
        try:
            seg.warm_up()
        except Exception as exc:  # a compiled decoder that cannot run a click: PyTorch's takes over
            log.warning("OpenVINO click decoder failed its first call (%s: %s); using PyTorch", type(exc).__name__, exc)
            seg.prompt_decoder = None
        return seg

    # ------------------------------------------------------------------ encoding
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 (H, W, 3) -> normalised (1, 3, S, S) tensor on the model's device/dtype."""
        return self._pixels(image).to(device=self.device, dtype=self.dtype)

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        """:meth:`preprocess` in float32 on the CPU (what the OpenVINO encoder is given)."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        x = F.interpolate(x[None], size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)[0]
        return ((x - self._mean) / self._std)[None]

    @torch.inference_mode()
    def _encode(self, image: np.ndarray) -> list[torch.Tensor]:
        self.encoder_calls += 1
        if self.vision is not None:  # OpenVINO (pipeline.models.openvino_runtime)
            return self.vision(self._pixels(image))
        feats = self.model.get_image_embeddings(self.preprocess(image))
        return [f.detach() for f in feats]

    @torch.inference_mode()
    def _encode_batch(self, images: list[np.ndarray]) -> list[list[torch.Tensor]]:
        """:meth:`_encode` of each image; PyTorch encodes them in one forward (each image's maps
        copied out, so a cache entry holds only its own), OpenVINO's encoder, compiled for one
        image, one by one."""
        if self.vision is not None or len(images) == 1:
            return [self._encode(im) for im in images]
        self.encoder_calls += len(images)
        feats = self.model.get_image_embeddings(torch.cat([self.preprocess(im) for im in images]))
        return [[f[i:i + 1].clone() for f in feats] for i in range(len(images))]

    # ------------------------------------------------------------------ prompts
    def _scale_xy(self, xy: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        """(..., 2) absolute (x, y) pixels of the original image -> model input grid."""
        h, w = hw
        scale = np.array([self.input_size / w, self.input_size / h], dtype=np.float32)
        return torch.from_numpy(np.asarray(xy, dtype=np.float32) * scale)

    def _postprocess(self, low_res: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        """(N, 1, h, w) logits -> (N, H, W) bool at the original size, in memory-bounded chunks."""
        n = low_res.shape[0]
        out = np.zeros((n, *hw), dtype=bool)
        step = max(1, _POSTPROCESS_ELEMENTS // max(1, hw[0] * hw[1]))
        for i in range(0, n, step):
            up = F.interpolate(low_res[i:i + step].float(), size=hw, mode="bilinear", align_corners=False)
            out[i:i + step] = (up[:, 0] > 0.0).cpu().numpy()
        return out

    def _decode(
        self,
        feats: list[torch.Tensor],
        *,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool,
        ov_inputs: FeatureInputs | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on cached features; returns float32 logits (P, M, h, w)
        and IoU (P, M) (``pipeline.segment.sam2_decoder.decode``). ``ov_inputs``: the compiled
        decoder's float32 copies of ``feats``; default the current image's."""
        dev = self.device
        if self.prompt_decoder is not None and self._image_pe is None:
            with torch.inference_mode():
                self._image_pe = self.model.get_image_wide_positional_embeddings()
        return decode(
            self.model, feats,
            points=None if points is None else points.to(dev),
            labels=None if labels is None else labels.to(dev),
            boxes=None if boxes is None else boxes.to(dev),
            mask_input=None if mask_input is None else mask_input.to(device=dev, dtype=self.dtype),
            multimask=multimask, ov_decoder=self.prompt_decoder,
            ov_inputs=self._ov_inputs if ov_inputs is None else ov_inputs,
            image_pe=self._image_pe,
        )

    def warm_up(self) -> None:
        """One click on zero features through the compiled decoder and the mask resize (~95 ms at
        load), so a user's first click does not pay their first-call costs (docs/speed.md). No
        image is set, the cache is untouched; nothing to do without a compiled decoder."""
        if self.prompt_decoder is None:
            return
        emb, _, _, _, s0, s1 = example_inputs(self.model)
        with self.lock, torch.inference_mode():
            logits, _ = self._decode([t.to(self.dtype) for t in (s0, s1, emb)], points=torch.zeros(1, 1, 1, 2),
                                     labels=torch.ones(1, 1, 1, dtype=torch.int32), multimask=True,
                                     ov_inputs=FeatureInputs())
            self._postprocess(logits[0, :1][None], (self.input_size, self.input_size))

    def _mask_prompt(self, mask_input: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        """A previous mask -> (1, 1, h, w) logits for the prompt encoder.

        Accepts this segmenter's ``low_res_logits`` ((h, w), (1, h, w) or (1, 1, h, w) float;
        other sizes are resized by the model) or an (H, W) bool mask of the current image,
        which is resized to the low-res grid and mapped to logits of +/-``_BOOL_MASK_LOGIT``.
        """
        m = np.asarray(mask_input)
        if m.dtype == bool:
            if m.shape != hw:
                raise ValueError(f"mask_input: expected a bool mask of the image's shape {hw}, got {m.shape}")
            t = torch.from_numpy(m.astype(np.float32))[None, None]
            t = F.interpolate(t, size=self.mask_input_size, mode="bilinear", align_corners=False, antialias=True)
            return (t * 2.0 - 1.0) * _BOOL_MASK_LOGIT
        m = m.astype(np.float32)
        if m.ndim not in (2, 3, 4) or m.shape[-2] < 4 or m.shape[-1] < 4 or int(np.prod(m.shape[:-2])) != 1:
            raise ValueError(
                f"mask_input: expected the previous low_res_logits, shape (h, w), (1, h, w) or "
                f"(1, 1, h, w), or an (H, W) bool mask; got {m.shape} {m.dtype}"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError("mask_input: expected finite logits, got NaN or inf")
        m = np.clip(m, -MASK_LOGIT_LIMIT, MASK_LOGIT_LIMIT)  # as SAM2's predictor feeds them back
        return torch.from_numpy(m.reshape(1, 1, *m.shape[-2:]))

    def predict_boxes(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One mask per box.

        Args:
            xyxy: (N, 4) float, (x_min, y_min, x_max, y_max) absolute pixels of the current image.

        Returns:
            masks: (N, H, W) bool at the original resolution.
            scores: (N,) float32 predicted mask IoU in [0, 1].

        Raises:
            RuntimeError: no image set.
            ValueError: ``xyxy`` is not (N, 4) finite numbers.
        """
        boxes = np.asarray(xyxy, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.all(np.isfinite(boxes)):
            raise ValueError(f"xyxy: expected an (N, 4) array of finite pixel coordinates, got shape {boxes.shape}")
        with self.lock:
            feats, hw = self._require_image()
            if len(boxes) == 0:
                return np.zeros((0, *hw), dtype=bool), np.zeros(0, dtype=np.float32)
            masks, scores = [], []
            for i in range(0, len(boxes), self.box_batch):
                chunk = self._scale_xy(boxes[i:i + self.box_batch].reshape(-1, 2, 2), hw).reshape(1, -1, 4)
                # multimask=False: a box is unambiguous; SAM2 then falls back to the best of the
                # three multimask outputs when the single mask is unstable (dynamic multimask).
                logits, iou = self._decode(feats, boxes=chunk, multimask=False)
                masks.append(self._postprocess(logits[:, :1], hw))
                scores.append(iou[:, 0].cpu().numpy())
        return np.concatenate(masks), np.clip(np.concatenate(scores), 0.0, 1.0).astype(np.float32)

    def predict_points(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        *,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> PointPrediction:
        """A mask from clicks, optionally with a box and the previous low-resolution logits.

        Args:
            points: (K, 2) float (x, y) absolute pixels; may be empty/None when ``box`` is given.
            labels: (K,) int, 1 = positive (object), 0 = negative (background).
            box: optional (4,) xyxy absolute pixels.
            mask_input: the previous prediction's ``low_res_logits`` ((h, w) float32), or an
                (H, W) bool mask of the current image (e.g. from another segmenter).
            multimask: decode three candidate masks and return the one with the highest
                predicted IoU (best for a single ambiguous click); False returns SAM2's
                single-mask output (best when refining with several clicks / ``mask_input``).

        Returns:
            PointPrediction: ``mask`` (H, W) bool at the original resolution, ``score`` the
            predicted IoU in [0, 1], ``low_res_logits`` (h, w) float32 (256 x 256 for the released
            models), clamped to [-32, 32] like SAM2's predictor, to pass back as ``mask_input``
            on the next call (logits given as ``mask_input`` are clamped the same way).

        Raises:
            RuntimeError: no image set.
            ValueError: malformed points/labels/box/mask_input, or no prompt at all.
        """
        pts, lab = check_points(np.zeros((0, 2)) if points is None else points,
                                np.zeros(0) if labels is None else labels)
        if not np.all(np.isfinite(pts)):
            raise ValueError("points: expected finite (x, y) pixel coordinates, got NaN or inf")
        if box is not None:
            box = np.asarray(box, dtype=np.float32).reshape(-1)
            if box.shape != (4,) or not np.all(np.isfinite(box)):
                raise ValueError(f"box: expected 4 finite xyxy pixel values, got {box.shape}")
        if len(pts) == 0 and box is None:
            raise ValueError("predict_points: expected at least one point or a box, got neither")
        n = self.click_threads
        if n == "auto":
            n = 1 if cores_contended() else None
        threads = nullcontext() if n is None else intra_op_threads(int(n))
        with self.lock, threads:
            feats, hw = self._require_image()
            mask_t = None if mask_input is None else self._mask_prompt(mask_input, hw)
            pt_t = lab_t = box_t = None
            if len(pts):
                pt_t = self._scale_xy(pts, hw).reshape(1, 1, -1, 2)
                lab_t = torch.from_numpy(lab).reshape(1, 1, -1)
            if box is not None:
                box_t = self._scale_xy(box.reshape(2, 2), hw).reshape(1, 1, 4)
            logits, iou = self._decode(feats, points=pt_t, labels=lab_t, boxes=box_t,
                                       mask_input=mask_t, multimask=multimask)
            best = int(torch.argmax(iou[0]))
            low = logits[0, best:best + 1]
            mask = self._postprocess(low[None], hw)[0]
            score = float(np.clip(iou[0, best].item(), 0.0, 1.0))
        # the mask comes from the raw logits; the logits handed back are clamped (SAM2's predictor)
        low_res = low[0].clamp(-MASK_LOGIT_LIMIT, MASK_LOGIT_LIMIT).cpu().numpy().astype(np.float32)
        return PointPrediction(mask=mask, score=score, low_res_logits=low_res)
