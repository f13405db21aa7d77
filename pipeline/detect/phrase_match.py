"""Matching generated phrases to requested class names (pure Python, no numpy, no torch).

Florence-2 names what it grounds in its own words: ``"People"``, ``"the Traffic Lights"``,
``"red car"``, ``"car car"``. ``LabelMatcher`` maps such a phrase back to one of the requested
classes (or their synonyms), after ``normalize_phrase`` (NFKC, case-folded, trimmed, leading
article dropped) and a rule-based English singular (``singularize``).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_SEPARATORS = re.compile(r"[.,;:|/]+")
_ARTICLES = ("a ", "an ", "the ")
_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "knives": "knife",
    "leaves": "leaf", "wolves": "wolf", "shelves": "shelf", "halves": "half", "lives": "life",
    "wives": "wife", "calves": "calf", "loaves": "loaf", "buses": "bus", "glasses": "glasses",
}
_NO_SINGULAR = ("ss", "us", "is", "ous")


def normalize_phrase(text: str) -> str:
    """Canonical form of a phrase for matching.

    Unicode NFKC, case-folded, separators/punctuation at the ends removed, inner whitespace
    collapsed to one space, a leading article (a/an/the) dropped. ``"  The Traffic\\tLight. "``
    -> ``"traffic light"``. Non-ASCII letters are kept (class names need not be English).
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s_]+", " ", text).strip(" .,;:!?\"'()[]{}-")
    for article in _ARTICLES:
        if text.startswith(article) and len(text) > len(article):
            text = text[len(article):].lstrip()
            break
    return text


def singularize(word: str) -> str:
    """A simple English singular of one word (``"buses"`` -> ``"bus"``, ``"boxes"`` -> ``"box"``).

    Rule-based on purpose (irregular table + suffix rules): class names are short nouns.
    Words that do not look plural are returned unchanged.
    """
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_NO_SINGULAR):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return word[:-2]
    return word[:-1]


def _singular_phrase(phrase: str) -> str:
    words = phrase.split(" ")
    return " ".join([*words[:-1], singularize(words[-1])]) if words and words[-1] else phrase


def _collapse_repeats(phrase: str) -> str:
    """``"car car car"`` -> ``"car"``; ``"traffic light traffic light"`` -> ``"traffic light"``."""
    words = phrase.split(" ")
    for size in range(1, len(words) // 2 + 1):
        if len(words) % size == 0:
            unit = words[:size]
            if unit * (len(words) // size) == words:
                return " ".join(unit)
    return phrase


@dataclass
class LabelMatcher:
    """Maps generated phrases back to the requested class names.

    A phrase matches class ``i`` when, after ``normalize_phrase``, it equals the class name or
    one of its synonyms, in singular or plural form, or when it repeats one (``"car car"``).
    Failing that, the phrase is split at separators (``"person. car"``) and the first part that
    matches wins; then the longest class name found inside the phrase as whole words wins
    (``"red car"`` -> ``car``). Anything else is not a requested class (None).

    Args:
        classes: the requested class names, in order (class ids index this list).
        synonyms: class name -> other names that mean it.
    """

    classes: Sequence[str]
    synonyms: Mapping[str, Sequence[str]] | None = None
    _keys: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        for i, name in enumerate(self.classes):
            self._add(name, i)
        by_norm = {normalize_phrase(c): i for i, c in enumerate(self.classes)}
        for name, alts in (self.synonyms or {}).items():
            idx = by_norm.get(normalize_phrase(name))
            if idx is None:
                continue  # synonyms of classes not asked for
            for alt in alts:
                self._add(alt, idx)

    def _add(self, name: str, idx: int) -> None:
        key = normalize_phrase(name)
        if key:
            self._keys.setdefault(key, idx)
            self._keys.setdefault(_singular_phrase(key), idx)

    def _exact(self, phrase: str) -> int | None:
        for candidate in (phrase, _singular_phrase(phrase), _collapse_repeats(phrase)):
            if candidate in self._keys:
                return self._keys[candidate]
        collapsed = _collapse_repeats(phrase)
        return self._keys.get(_singular_phrase(collapsed))

    def match(self, phrase: str) -> int | None:
        """The class id ``phrase`` names, or None when it names no requested class."""
        norm = normalize_phrase(phrase)
        if not norm:
            return None
        found = self._exact(norm)
        if found is not None:
            return found
        for part in _SEPARATORS.split(norm):
            part = normalize_phrase(part)
            if part and (found := self._exact(part)) is not None:
                return found
        words = re.sub(r"[^\w\s]", " ", norm).split()
        for size in range(len(words), 0, -1):  # longest whole-word span first
            for start in range(len(words) - size + 1):
                found = self._exact(" ".join(words[start:start + size]))
                if found is not None:
                    return found
        return None
