"""The Auto-label tab's labeling step (app.workflows.autolabel_session.label_images) in batches."""
from __future__ import annotations

import numpy as np
import pytest

from app.workflows import autolabel_session as al
from app.workflows.batch_label import default_batch_images
from tests.app.fake_labeler import BatchingLabeler, FixedShapeLabeler
from tests.app.fakes import write_scene

CLASSES = ["red", "green", "blue"]


@pytest.fixture
def uploads(tmp_path):
    paths = [str(write_scene(tmp_path / f"s{i}.png", seed=50 + i)) for i in range(5)]
    images, bad = al.load_uploads(paths)
    assert not bad and len(images) == 5
    return images


def _boxes(images) -> list:
    return [np.round(r.det.xyxy, 3).tolist() for r in images]


def test_batches_label_like_one_by_one_with_progress_per_batch(uploads, tmp_path):
    one = al.load_uploads([r.path for r in uploads])[0]
    assert not al.label_images(FixedShapeLabeler(), one, CLASSES, confidence=0.0)
    labeler, steps = BatchingLabeler(), []
    failed = al.label_images(labeler, uploads, CLASSES, confidence=0.0, batch_images=2,
                             progress=lambda i, n, name: steps.append((i, n)))
    assert not failed and labeler.batches == [2, 2]  # the last image alone, through label
    assert labeler.calls == 5  # every image labeled once (label_many counts its images too)
    assert _boxes(uploads) == _boxes(one) and all(len(r.det) == 3 for r in uploads)
    assert steps == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_a_failing_batch_falls_back_and_only_the_bad_image_fails(uploads):
    poison = tuple(int(v) for v in al.IMAGES.get(uploads[1].path)[0, 0])
    labeler = BatchingLabeler(poison=poison)
    failed = al.label_images(labeler, uploads, CLASSES, confidence=0.0, batch_images=5)
    assert failed == [f"{uploads[1].name}: poisoned image"]
    assert labeler.batches == [5] and [len(r.det) for r in uploads] == [3, 0, 3, 3, 3]


def test_missing_weights_still_stop_the_whole_run(uploads):
    class WeightsMissingError(RuntimeError):
        pass

    class NoWeights(BatchingLabeler):
        def label_many(self, *a, **k):
            raise WeightsMissingError("no weights: launch.py models download")

        def label(self, *a, **k):
            raise WeightsMissingError("no weights: launch.py models download")

    with pytest.raises(WeightsMissingError, match="models download"):
        al.label_images(NoWeights(), uploads, CLASSES, batch_images=3)


def test_the_default_batch_is_one_on_a_cpu(uploads):
    assert default_batch_images(FixedShapeLabeler()) == 1
    labeler = BatchingLabeler()
    al.label_images(labeler, uploads, CLASSES, confidence=0.0)
    assert labeler.batches == [] and labeler.calls == 5  # image by image
