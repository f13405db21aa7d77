"""Florence-2 grounding prompts that fit the model, and merging their results (pure: numpy only).

Why prompts are split: Florence-2's text encoder reads the image tokens followed by the prompt
tokens, at most ``text_config.max_position_embeddings`` positions in all (Florence-2-base/large:
1024 positions, 577 image tokens at 768 x 768, so ~445 prompt tokens, i.e. roughly 150-200 class
names). A longer prompt does not fail cleanly: the position embedding lookup raises
``IndexError`` deep inside ``generate``. So the requested classes are packed greedily, in order,
into captions whose exact token count fits (``plan_prompts``); the detector runs one ``generate``
per caption and merges the results (``dedupe_boxes``).

Units: a class and its synonyms form one unit and are never split across prompts, so the
phrase the model grounds ("automobile") always maps back to its class within its own prompt.
Each prompt's ``class_ids`` maps its local class ids back into the caller's class list.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.detect.florence_parse import grounding_prompt
from pipeline.detect.phrase_match import normalize_phrase
from pipeline.types import Detections


@dataclass(frozen=True)
class PromptPlan:
    """One grounding prompt: a caption naming some of the requested classes.

    Attributes:
        caption: the caption after the task token, e.g. ``"car. automobile. person."``.
        class_names: the classes this prompt names (local class ids index this list).
        class_ids: (len(class_names),) int64, local class id -> id in the caller's class list.
        synonyms: class name -> the synonyms named in this caption (for ``LabelMatcher``).
    """

    caption: str
    class_names: list[str]
    class_ids: np.ndarray
    synonyms: dict[str, list[str]] = field(default_factory=dict)


def _clean(name: str) -> str:
    return re.sub(r"\s+", " ", str(name)).strip(" .")


def class_units(
    classes: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[int, str, list[str]]]:
    """(id in ``classes``, class name, its synonyms) per distinct requested class, in order.

    Names are whitespace-collapsed and stripped of dots (they are joined with ``". "``); a class
    repeated in ``classes`` (same ``normalize_phrase``) keeps its first id; a synonym equal to a
    class name or to an earlier synonym is left out (the matcher would map it to the first).

    Raises:
        ValueError: no non-empty class name.
    """
    seen: set[str] = set()
    units: list[tuple[int, str, list[str]]] = []
    for i, raw in enumerate(classes):
        name = _clean(raw)
        key = normalize_phrase(name)
        if not key or key in seen:
            continue
        seen.add(key)
        units.append((i, name, []))
    if not units:
        raise ValueError(f"classes: expected at least one non-empty class name, got {list(classes)!r}")
    by_key = {normalize_phrase(unit[1]): unit for unit in units}
    for cls_name, alts in (synonyms or {}).items():
        unit = by_key.get(normalize_phrase(cls_name))
        if unit is None:
            continue  # synonyms of a class not asked for
        for alt in alts or ():
            alt = _clean(alt)
            key = normalize_phrase(alt)
            if key and key not in seen:
                seen.add(key)
                unit[2].append(alt)
    return units


def plan_prompts(
    classes: Sequence[str],
    synonyms: Mapping[str, Sequence[str]] | None,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> list[PromptPlan]:
    """Pack the classes (with their synonyms) into as few captions as fit ``max_tokens``.

    Args:
        classes: the requested class names (the caller's list; ids index it).
        synonyms: class name -> synonyms to name in the prompt as well.
        count_tokens: caption -> the encoder length it gives (image tokens + special tokens +
            task template + caption), computed with the model's own tokenizer.
        max_tokens: the encoder's positions (``text_config.max_position_embeddings``).

    Returns:
        One ``PromptPlan`` per prompt, classes in request order.

    Raises:
        ValueError: no class name, or one class with its synonyms does not fit a prompt alone.
    """
    plans: list[PromptPlan] = []
    current: list[tuple[int, str, list[str]]] = []

    def caption_of(units: list[tuple[int, str, list[str]]]) -> str:
        return grounding_prompt([n for _, name, alts in units for n in (name, *alts)])

    def close() -> None:
        if current:
            plans.append(PromptPlan(
                caption=caption_of(current),
                class_names=[name for _, name, _ in current],
                class_ids=np.array([i for i, _, _ in current], dtype=np.int64),
                synonyms={name: list(alts) for _, name, alts in current if alts},
            ))

    for unit in class_units(classes, synonyms):
        if count_tokens(caption_of([*current, unit])) <= max_tokens:
            current.append(unit)
            continue
        close()
        current = [unit]
        needed = count_tokens(caption_of(current))
        if needed > max_tokens:
            raise ValueError(
                f"class {unit[1]!r} (with synonyms {unit[2]}): expected a prompt of at most "
                f"{max_tokens} encoder tokens, got {needed}; shorten the name or its synonyms"
            )
    close()
    return plans


def dedupe_boxes(class_id: np.ndarray, xyxy: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Indices of the rows to keep after dropping identical boxes of the same class.

    Two prompts may ground the same object with the same bins (e.g. a class and its synonym, or
    a class repeated across prompts): identical ``(class_id, xyxy)`` rows are kept once, the most
    confident one (the first on ties). Rows keep their original order.

    Args:
        class_id: (N,) int class ids.
        xyxy: (N, 4) float boxes (absolute pixels); compared exactly.
        confidence: (N,) float.

    Returns:
        (K,) int64 sorted indices into the N rows.
    """
    best: dict[tuple, int] = {}
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    for i, (cid, box) in enumerate(zip(np.asarray(class_id).tolist(), boxes.tolist(), strict=True)):
        key = (int(cid), *box)
        j = best.get(key)
        if j is None or confidence[i] > confidence[j]:
            best[key] = i
    return np.array(sorted(best.values()), dtype=np.int64)


def merge_prompt_outputs(parts: list[tuple[Any, np.ndarray, bool]], class_names: list[str]) -> Detections:
    """One image's detections from its prompts' parsed outputs ``(parsed, class ids, truncated)``:
    concatenated, identical ``(class, box)`` rows kept once (``dedupe_boxes``)."""
    class_id = np.concatenate([ids for _, ids, _ in parts])
    xyxy = np.concatenate([p.xyxy for p, _, _ in parts])
    conf = np.concatenate([p.confidence for p, _, _ in parts])
    keep = dedupe_boxes(class_id, xyxy, conf)
    return Detections(
        xyxy=xyxy[keep],
        confidence=conf[keep],
        class_id=class_id[keep],
        class_names=class_names,
        data={
            "loc_score": np.concatenate([p.loc_score for p, _, _ in parts])[keep],
            "label_score": np.concatenate([p.label_score for p, _, _ in parts])[keep],
            "raw_label": np.concatenate([p.raw_label for p, _, _ in parts])[keep],
            "truncated": np.concatenate([np.full(len(p), t) for p, _, t in parts]).astype(bool)[keep],
        },
    )
