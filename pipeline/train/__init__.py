"""Training and evaluation logic, with no database and no UI.

* :mod:`pipeline.train.yolo_train`: train an ultralytics YOLO model on an exported YOLO dataset
  (``data.yaml``) with ultralytics' own trainer, offline-safe, metrics per epoch to a callable,
  stop on request keeping the best weights so far.
* :mod:`pipeline.train.yolo_detector`: a trained model as a detector (``detect``) for the
  auto-labeler, and batch prediction for evaluation.
* :mod:`pipeline.train.coco_metrics`: COCOeval (bbox / segm) summaries, per-class AP, PR curves,
  a confusion matrix; :mod:`pipeline.train.plots` draws them as PNGs.
"""
