"""Bad input: a clear ValueError naming what was expected, and nothing written."""
from __future__ import annotations

import numpy as np
import pytest

from registry.facade import MAX_CATEGORY_NAME, ObjectIn
from tests.registry.conftest import box_mask, unit


def _table_counts(reg) -> dict:
    return {t: reg.connection.scalar(f"SELECT count(*) FROM {t}")
            for t in ("objects", "categories", "embeddings", "embedding_outbox", "category_names")}


@pytest.mark.parametrize(
    "obj, message",
    [
        (ObjectIn("cat", (-1, 0, 10, 10)), "non-negative"),
        (ObjectIn("cat", (float("nan"), 0, 10, 10)), "finite"),
        (ObjectIn("cat", (0, 0, float("inf"), 10)), "finite"),
        (ObjectIn("cat", (0, 0, 65, 10)), "inside the 64x48 image"),
        (ObjectIn("cat", (0, 0, 10, 49)), "inside the 64x48 image"),
        (ObjectIn("cat", (10, 0, 5, 10)), "x1 > x0"),
        (ObjectIn("cat", (0, 0, 10)), "4 numbers"),
        (ObjectIn("cat", (0, 0, 10, 10), mask=np.zeros((48, 65), bool)), r"shape \(H, W\) = \(48, 64\)"),
        (ObjectIn("cat", (0, 0, 10, 10), mask=np.zeros((64, 48), bool)), "shape"),
        (ObjectIn("cat", (0, 0, 10, 10), embedding=np.ones(7, np.float32)), r"shape \(8,\)"),
        (ObjectIn("cat", (0, 0, 10, 10), embedding=np.full(8, np.nan, np.float32)), "finite"),
        (ObjectIn("cat", (0, 0, 10, 10), embedding=np.zeros(8, np.float32)), "non-zero"),
        (ObjectIn("cat", (0, 0, 10, 10), confidence=1.5), r"\[0, 1\]"),
        (ObjectIn("cat", (0, 0, 10, 10), confidence=float("nan")), r"\[0, 1\]"),
        (ObjectIn("cat", (0, 0, 10, 10), validation_status="done"), "validation_status"),
        (ObjectIn("", (0, 0, 10, 10)), "non-empty"),
        (ObjectIn("   ", (0, 0, 10, 10)), "non-empty"),
        (ObjectIn("x" * 10_000, (0, 0, 10, 10)), f"at most {MAX_CATEGORY_NAME}"),
        (ObjectIn("cat\x00dog", (0, 0, 10, 10)), "control"),
        (ObjectIn("cat", (0, 0, 10, 10), metadata={"x": float("nan")}), "JSON"),
        (ObjectIn("cat", (0, 0, 10, 10), mask_rle={"size": [48, 64], "counts": "zz"}), "corrupt"),
    ],
)
def test_bad_object_writes_nothing(reg, image, obj, message):
    sid = reg.register_source(image)
    good = ObjectIn("good", (0, 0, 5, 5), embedding=unit(8, 1))
    before = _table_counts(reg)
    with pytest.raises(ValueError, match=message):
        reg.register_objects(sid, [good, obj])  # the good one must not be written either
    assert _table_counts(reg) == before


def test_unknown_source_and_frame(reg, image):
    with pytest.raises(ValueError, match="unknown source id"):
        reg.register_objects("src_doesnotexist", [ObjectIn("cat", (0, 0, 5, 5))])
    with pytest.raises(FileNotFoundError):
        reg.register_source(image.parent / "missing.png")
    with pytest.raises(ValueError, match="source_type"):
        reg.register_source(image, source_type="audio")
    not_image = image.parent / "x.png"
    not_image.write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        reg.register_source(not_image)
    assert reg.count_sources() == 0
    assert reg.connection.scalar("SELECT count(*) FROM objects") == 0


@pytest.mark.parametrize("name", [
    "Robert'); DROP TABLE objects;--",
    'a "quoted" name',
    "semi;colon",
    "with/slash\\back",
    "고양이 🐱 Ünïcödé",
    "x" * MAX_CATEGORY_NAME,
])
def test_absurd_but_printable_names_are_stored_faithfully(reg, image, name):
    sid = reg.register_source(image)
    oid = reg.register_objects(sid, [ObjectIn(name, (0, 0, 5, 5), mask=box_mask(48, 64, 0, 0, 5, 5))]).object_ids[0]
    assert reg.get_object(oid)["category"] == name
    assert reg.get_category(name.upper())["name"] == name
    assert reg.count_objects(category=name) == 1
    assert reg.connection.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'objects'") == 1
    assert reg.doctor()["checks"]["integrity"]["ok"]


def test_bad_category_operations(reg):
    with pytest.raises(ValueError, match="at most"):
        reg.create_category("a" * (MAX_CATEGORY_NAME + 1))
    with pytest.raises(ValueError, match="colour"):
        reg.create_category("ok", color="red; DROP")
    with pytest.raises(ValueError, match="unknown category"):
        reg.rename_category("nope", "other")
    with pytest.raises(ValueError, match="control"):
        reg.add_synonyms("nope", ["bad\nname"])
    assert reg.list_categories() == []


def test_bad_updates_write_nothing(reg, image):
    sid = reg.register_source(image)
    oid = reg.register_objects(sid, [ObjectIn("cat", (0, 0, 5, 5), confidence=0.5)]).object_ids[0]
    before = reg.get_object(oid)
    for kwargs, msg in [
        ({"mask": np.zeros((10, 10), bool)}, "shape"),
        ({"xyxy": (0, 0, 100, 5)}, "inside"),
        ({"confidence": -0.1}, r"\[0, 1\]"),
        ({"quality_score": 2}, r"\[0, 1\]"),
        ({"embedding": np.ones(3)}, "shape"),
        ({"category": ""}, "non-empty"),
        ({"status": "approved", "embedding": np.ones(3)}, "shape"),
    ]:
        with pytest.raises(ValueError, match=msg):
            reg.update_object(oid, **kwargs)
        assert reg.get_object(oid) == before
