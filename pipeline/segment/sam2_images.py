"""The per-image state of :class:`pipeline.segment.sam2.Sam2Segmenter`: the current image and
the LRU of image embeddings, filled one image at a time (``set_image``) or a batch at a time
(``cache_images``: one encoder forward for several images, what a GPU needs to be busy).

The class using this mixin provides ``lock`` (an ``RLock``), ``cache_size``, ``_cache`` (an
``OrderedDict`` key -> features), ``_key`` / ``_hw`` / ``_features``, ``_encode(image)`` and
``_encode_batch(images)`` (-> one feature list per image).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from pipeline.segment.base import NOT_SET_MESSAGE, check_each, check_image


def image_key(image: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and pixels), used as the LRU key."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{image.shape}|{image.dtype}".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class ImageState:
    """``set_image`` / ``cache_images`` / ``reset_image`` / ``clear_cache`` / ``using``."""

    lock: Any
    cache_size: int
    _cache: Any
    _key: str | None
    _hw: tuple[int, int] | None
    _features: list[torch.Tensor] | None

    @property
    def is_image_set(self) -> bool:
        """True once ``set_image`` has run (and ``reset_image`` has not)."""
        return self._features is not None

    @property
    def image_key(self) -> str | None:
        """The LRU key (pixel hash) of the current image, or None."""
        return self._key

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """(height, width) of the current image in pixels, or None."""
        return self._hw

    def _remember(self, key: str, feats: list[torch.Tensor]) -> None:
        self._cache[key] = feats
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def set_image(self, image: np.ndarray, *, key: str | None = None) -> None:
        """Make ``image`` current, computing its embedding unless the LRU holds it.

        Args:
            image: RGB uint8 (H, W, 3).
            key: a precomputed content key (e.g. the file's sha256) to skip hashing the pixels;
                it must identify exactly these pixels.
        """
        image = check_image(image)
        key = key or image_key(image)
        with self.lock:
            feats = self._cache.get(key)
            if feats is None:
                feats = self._encode(image)  # type: ignore[attr-defined]
                self._remember(key, feats)
            else:
                self._cache.move_to_end(key)
            self._key, self._hw, self._features = key, (image.shape[0], image.shape[1]), feats

    def cache_images(self, images: Sequence[np.ndarray], keys: Sequence[str | None] | None = None) -> list[str]:
        """Encodes the images the LRU does not hold, in one batch, so that ``set_image`` on each
        is a cache hit; the current image is unchanged. Returns each image's key.

        Args:
            images: RGB uint8 (H, W, 3) each, at most ``cache_size`` of them (more would evict
                the first before it is used).
            keys: as ``set_image``'s ``key``, one per image (None entries: the pixel hash).

        Raises:
            ValueError: more images than ``cache_size``, a key list of another length, or a bad
                image (named by its index).
        """
        if len(images) > self.cache_size:
            raise ValueError(f"images: expected at most cache_size={self.cache_size} images, got {len(images)}")
        keys = list(keys) if keys is not None else [None] * len(images)
        if len(keys) != len(images):
            raise ValueError(f"keys: expected one per image ({len(images)}), got {len(keys)}")
        checked = check_each(images, check_image)
        keys = [k or image_key(im) for k, im in zip(keys, checked, strict=True)]
        with self.lock:
            todo: dict[str, np.ndarray] = {}
            for k, im in zip(keys, checked, strict=True):
                if k in self._cache:
                    self._cache.move_to_end(k)
                else:
                    todo.setdefault(k, im)
            if todo:
                for k, feats in zip(todo, self._encode_batch(list(todo.values())), strict=True):  # type: ignore[attr-defined]
                    self._remember(k, feats)
        return keys

    def reset_image(self) -> None:
        """Forget the current image (its embedding stays in the LRU)."""
        with self.lock:
            self._key = self._hw = self._features = None

    def clear_cache(self) -> None:
        """Drop every cached embedding and the current image."""
        with self.lock:
            self._cache.clear()
            self.reset_image()

    @contextmanager
    def using(self, image: np.ndarray, *, key: str | None = None) -> Iterator[Any]:
        """Hold the lock, with ``image`` current, for a sequence of predictions.

        Example:
            >>> with seg.using(image):
            ...     masks, scores = seg.predict_boxes(boxes)
        """
        with self.lock:
            self.set_image(image, key=key)
            yield self

    def _require_image(self) -> tuple[list[torch.Tensor], tuple[int, int]]:
        if self._features is None or self._hw is None:
            raise RuntimeError(f"{NOT_SET_MESSAGE}: no image is set on this {type(self).__name__}")
        return self._features, self._hw
