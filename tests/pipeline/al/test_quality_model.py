"""The learned quality score on synthetic data where quality depends on the embedding: pairwise
accuracy on held-out pairs (split by image) printed against the baselines "1 - confidence" and
"label differs from the majority of its 10 nearest neighbours"; checkpoint round trip and the
refusal of a checkpoint trained on other embeddings. 32-d inputs stand in for DINOv2's 768."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.al.quality_baselines import confidence_quality, knn_label_quality
from pipeline.al.quality_model import (
    QualityConfig,
    load_checkpoint,
    pairwise_accuracy,
    predict,
    sample_pairs,
    save_checkpoint,
    split_groups,
    train_quality,
)
from tests.pipeline.al.synthetic import quality_set as synthetic

D = 32


def test_learned_quality_beats_confidence_and_knn_baselines(tmp_path):
    data = synthetic(0)
    model, report = train_quality(data["x"], data["good"], data["image"], QualityConfig(epochs=20, pairs_per_epoch=2048, batch_size=256, patience=4))
    split = report.split
    # held-out images never lend an object to training
    assert not set(data["image"][split == 2]) & set(data["image"][split == 0])
    better, worse = report.held_out
    assert len(better) > 1000 and (split[better] == 2).all() and (split[worse] == 2).all()
    learned = pairwise_accuracy(predict(model, data["x"]), better, worse)
    conf = pairwise_accuracy(confidence_quality(data["conf"]), better, worse)
    knn = pairwise_accuracy(knn_label_quality(data["x"], data["label"], k=10), better, worse)
    print(f"\nheld-out pairwise accuracy ({len(better)} pairs on {len(set(data['image'][split == 2]))} images): "
          f"learned {learned:.3f} · 1 - confidence {conf:.3f} · kNN-10 label disagreement {knn:.3f} · "
          f"epochs {report.epochs_run} (best {report.best_epoch})")
    assert learned == pytest.approx(report.accuracy["test"])
    assert learned > 0.85
    assert learned > conf + 0.15 and learned > knn + 0.15
    assert 0.5 < conf < 0.7 and knn > 0.5  # the baselines carry some signal, not nothing
    scores = predict(model, data["x"][:5])
    assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
    # checkpoint: same scores after a round trip; a mismatch of version or dim is refused
    save_checkpoint(tmp_path / "q", model, embedding_version="tiny-al", config=QualityConfig(),
                    extra={"metrics": report.to_dict()})
    again, meta = load_checkpoint(tmp_path / "q", embedding_version="tiny-al", embedding_dim=D)
    assert np.allclose(predict(again, data["x"][:50]), predict(model, data["x"][:50]), atol=1e-6)
    assert meta["embedding_dim"] == D and meta["metrics"]["accuracy"]["test"] == report.accuracy["test"]
    with pytest.raises(ValueError, match=r"trained on 'tiny-al' \(32-d\) embeddings, the registry holds 'dinov2-base' \(768-d\)"):
        load_checkpoint(tmp_path / "q", embedding_version="dinov2-base", embedding_dim=768)
    with pytest.raises(FileNotFoundError, match="quality train"):
        load_checkpoint(tmp_path / "none", embedding_version="x", embedding_dim=D)


def test_pairs_and_splits():
    rng = np.random.default_rng(0)
    labels = np.array([1, 1, 0, 0, 0, 2])
    b, w = sample_pairs(labels, np.arange(6), 100, rng)
    assert len(b) == 2 * 3 + 1 * 5 and (labels[b] > labels[w]).all()  # every discordant pair
    b, w = sample_pairs(labels, np.arange(6), 4, rng)
    assert len(b) == 4 and (labels[b] > labels[w]).all()
    groups = np.repeat(np.arange(20), 3)
    split = split_groups(groups, 0.2, 0.2, seed=1)
    for g in range(20):
        assert len(set(split[groups == g])) == 1  # one image, one split
    assert {int(v) for v in split} == {0, 1, 2}
    with pytest.raises(ValueError, match="at least 3 images"):
        split_groups(np.array([0, 0, 1]), 0.2, 0.2)
    with pytest.raises(ValueError, match="both good and bad"):
        train_quality(np.zeros((6, 4), np.float32), np.ones(6), np.arange(6))
    q = knn_label_quality(np.array([[1, 0], [1, 0.01], [1, -0.01], [0, 1]], np.float32), ["a", "a", "b", "b"], k=2)
    assert q.tolist() == [1.0, 1.0, 0.0, 0.0]  # the last one's two nearest are both "a"
