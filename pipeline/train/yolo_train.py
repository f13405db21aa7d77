"""Train an ultralytics YOLO model on an exported YOLO dataset, offline-safe and stoppable.

Ultralytics' own trainer does the work (``YOLO(model).train(...)``); this module only

* resolves the model (:func:`resolve_model`): a ``.yaml`` architecture (random weights: an
  ultralytics name such as ``yolo11n-seg.yaml`` or a file) or a local ``.pt`` checkpoint; a
  ``.pt`` that is not on disk is refused with the fix instead of being downloaded;
* keeps ultralytics off the network: ``plots=False`` (plotting fetches ``Arial.ttf``), AMP off on
  CPU (the AMP check downloads ``yolo26n.pt``; on CUDA it runs only when its weights are already
  cached, else ``amp=False``), and the dataset check's font lookup answered by a local font
  (:func:`ensure_offline_font`) so it never tries a download;
* turns each epoch's numbers into the registry's names (:func:`normalize_metrics`) and passes
  them to ``on_epoch(epoch, metrics)`` (ultralytics' ``on_fit_epoch_end`` callback);
* stops on request: when ``stop`` (a ``threading.Event``) is set, a batch-end callback sets the
  trainer's ``stop`` attribute; ultralytics then validates and saves the epoch in progress and
  leaves the loop, so ``best.pt`` holds the best weights so far.

If MLflow is installed, ultralytics' built-in MLflow callback logs the run as well (its
``mlflow`` setting; the MLflow run name is the run's ``name``). Nothing here requires it.

Metric conventions: precision, recall, mAP50 and mAP50-95 are fractions in [0, 1] computed by
ultralytics' validator on the dataset's ``val`` split; ``box_*`` for boxes, ``mask_*`` for masks
(segmentation models only); losses are ultralytics' training losses (>= 0).
"""
from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ultralytics metric key -> registry column (see registry/runs.py).
METRIC_KEYS = {
    "train/box_loss": "box_loss", "train/cls_loss": "cls_loss", "train/dfl_loss": "dfl_loss",
    "train/seg_loss": "seg_loss",
    "metrics/precision(B)": "box_precision", "metrics/recall(B)": "box_recall",
    "metrics/mAP50(B)": "box_map50", "metrics/mAP50-95(B)": "box_map50_95",
    "metrics/precision(M)": "mask_precision", "metrics/recall(M)": "mask_recall",
    "metrics/mAP50(M)": "mask_map50", "metrics/mAP50-95(M)": "mask_map50_95",
    "fitness": "fitness",
}
DEVICES = ("cpu", "cuda")
#: train arguments the config itself sets: ``extra`` may not override them (the run folder, the
#: dataset, the recorded numbers and the in-process dataloader depend on them).
OWNED_ARGS = ("data", "model", "project", "name", "exist_ok", "epochs", "imgsz", "batch", "device", "workers",
              "resume")


def normalize_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """Ultralytics' epoch numbers under the registry's names.

    Args:
        raw: e.g. ``{"train/box_loss": 1.2, "metrics/mAP50(B)": 0.4, "val/box_loss": 1.5,
            "lr/pg0": 0.01}`` (losses, ``trainer.metrics``, learning rates).

    Returns:
        Known keys renamed (``box_loss``, ``box_map50``, ...); any other numeric key kept as is
        (``val/box_loss``, ``lr/pg0``: the registry stores those in ``extras``). Values that
        are not finite numbers are dropped.
    """
    out: dict[str, float] = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[METRIC_KEYS.get(key, key)] = number
    return out


def resolve_model(spec: str, search_dirs: list[Path] | tuple[Path, ...] = ()) -> str:
    """The model argument ultralytics should load, never one it would download.

    Args:
        spec: ``yolo11n.pt`` / ``yolo11n-seg.yaml`` / a path to either.
        search_dirs: folders searched for a bare ``.pt`` name (e.g. ``<data>/models/yolo``);
            ultralytics' own weights folder is searched too.

    Returns:
        An existing file path, or an ultralytics architecture name (``*.yaml`` in its package).

    Raises:
        ValueError: not a ``.pt``/``.yaml``, a missing checkpoint, or an unknown yaml, with the fix.
    """
    spec = str(spec or "").strip()
    path = Path(spec).expanduser()
    if path.suffix not in (".pt", ".yaml", ".yml"):
        raise ValueError(f"--model: expected a .pt checkpoint or a .yaml architecture (e.g. yolo11n.pt, "
                         f"yolo11n-seg.yaml), got {spec!r}")
    if path.is_file():
        return str(path.resolve())
    if path.suffix == ".pt":
        from ultralytics.utils import WEIGHTS_DIR

        dirs = [Path(d) for d in search_dirs] + [Path(WEIGHTS_DIR)]
        for d in dirs:
            if (d / path.name).is_file():
                return str((d / path.name).resolve())
        raise ValueError(
            f"--model: expected the checkpoint {spec!r} on disk, got no such file in the working folder or "
            f"{', '.join(str(d) for d in dirs)}; copy it there from a machine with internet "
            f"(ultralytics downloads it as {path.name}), or train from scratch with {path.stem}.yaml"
        )
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(spec)  # the packaged architecture (yolo11n-seg.yaml -> yolo11-seg.yaml, scale n)
        return spec
    except Exception as exc:  # ultralytics raises FileNotFoundError for unknown names
        raise ValueError(f"--model: expected a yaml file or an ultralytics architecture name such as "
                         f"yolo11n.yaml / yolo11n-seg.yaml, got {spec!r} ({exc})") from None


def model_task(model: str) -> str:
    """``"detect"`` or ``"segment"`` for a resolved model (reads the yaml/checkpoint, no training).

    Raises:
        ValueError: a model of another task (classify, pose, obb).
    """
    from ultralytics import YOLO

    task = YOLO(model).task
    if task not in ("detect", "segment"):
        raise ValueError(f"--model: expected a detection or segmentation model, got a {task!r} model ({model})")
    return task


def ensure_offline_font() -> Path | None:
    """Gives ultralytics a local ``Arial.ttf`` so its dataset check never tries to download one.

    ``check_det_dataset`` calls ``check_font("Arial.ttf")``, which looks in ultralytics' settings
    folder and otherwise fetches the font from GitHub. Offline (``YOLO_OFFLINE=1`` or no network)
    that attempt only costs a timeout, but it is a network call; matplotlib's bundled DejaVu Sans
    is copied there under that name instead (only when no such file exists). The fonts are used
    for plot labels alone. Returns the font path, or None when it could not be placed.
    """
    from ultralytics.utils import USER_CONFIG_DIR

    target = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if target.exists():
        return target
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):  # non-ASCII class names ask for the latter
            if not (target.parent / name).exists():
                shutil.copyfile(source, target.parent / name)
        return target
    except OSError:
        return None


@dataclass
class TrainConfig:
    """What to train.

    Attributes:
        data_yaml: the export's ``data.yaml`` (no ``path`` key: splits relative to its folder).
        model: a resolved model (:func:`resolve_model`).
        project: folder holding run folders; the run writes ``<project>/<name>/weights/best.pt``.
        name: the run folder's name (the registry's run id).
        epochs, imgsz, batch: as ultralytics (``imgsz`` square pixels, ``batch`` images).
        device: ``"cpu"`` or ``"cuda"`` (CUDA device 0) or a CUDA index string (``"0"``).
        workers: dataloader processes (0 = in the training thread: safe inside a server).
        extra: any other ultralytics train argument (``patience``, ``lr0``, ``seed``, ...).
    """

    data_yaml: Path
    model: str
    project: Path
    name: str
    epochs: int = 10
    imgsz: int = 640
    batch: int = 16
    device: str = "cpu"
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raises ValueError naming the bad field, the expected and actual value."""
        if not Path(self.data_yaml).is_file():
            raise ValueError(f"data.yaml: expected an exported YOLO dataset file, got {self.data_yaml} (no such file)")
        for name, low in (("epochs", 1), ("imgsz", 32), ("batch", 1)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"--{name}: expected an integer >= {low}, got {getattr(self, name)}")
        if not (self.device in DEVICES or str(self.device).isdigit()):
            raise ValueError(f"--device: expected one of {DEVICES} or a CUDA index, got {self.device!r}")
        owned = sorted(set(self.extra) & set(OWNED_ARGS))
        if owned:
            raise ValueError(f"extra train arguments: expected ultralytics options other than {list(OWNED_ARGS)}, "
                             f"got {owned}; set epochs/imgsz/batch/device with their own fields (the run folder "
                             "and dataset are the run's own)")

    def train_args(self) -> dict[str, Any]:
        """Keyword arguments for ``YOLO.train`` (offline-safe defaults, see the module doc)."""
        device = "0" if self.device == "cuda" else str(self.device)
        args = {
            "data": str(Path(self.data_yaml).resolve()), "epochs": int(self.epochs), "imgsz": int(self.imgsz),
            "batch": int(self.batch), "device": device, "workers": int(self.workers),
            "project": str(Path(self.project).resolve()), "name": self.name, "exist_ok": True,
            "plots": False, "verbose": False, "amp": device != "cpu" and _amp_check_cached(),
        }
        args.update(self.extra)
        return args


def _amp_check_cached() -> bool:
    # ultralytics' AMP check loads yolo26n.pt from its weights folder, downloading it when absent.
    from ultralytics.utils import WEIGHTS_DIR

    return (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file()


@dataclass
class TrainResult:
    """How a training call ended.

    Attributes:
        status: ``"finished"`` (all epochs) or ``"stopped"`` (stop requested).
        save_dir: the run folder (``weights/best.pt``, ``weights/last.pt``, ``results.csv``).
        best_weights: ``weights/best.pt`` when it exists, else ``last.pt``, else None.
        best_metrics: the best checkpoint's validation metrics (registry names), with
            ``best_epoch``; empty when no epoch completed.
        epochs: one metrics dict per completed epoch (``epoch`` 1-based + registry names).
    """

    status: str
    save_dir: Path
    best_weights: Path | None
    best_metrics: dict[str, float]
    epochs: list[dict[str, float]]


def train(
    config: TrainConfig,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Trains with ultralytics' trainer; see the module doc for callbacks and stopping.

    Args:
        config: what to train.
        on_epoch: called after each epoch as ``on_epoch(epoch, metrics)`` (1-based epoch,
            :func:`normalize_metrics` names); exceptions in it stop nothing but are re-raised
            after training (so a storage failure is not silent).
        stop: set it (from any thread) to stop after the current batch; the epoch in progress
            is validated and saved, so ``best.pt`` keeps the best weights so far.

    Raises:
        ValueError: a bad config. Anything ultralytics raises propagates (KeyboardInterrupt too;
            the weights saved so far stay on disk).
    """
    config.check()
    from ultralytics import YOLO

    ensure_offline_font()
    stop = stop or threading.Event()
    epochs: list[dict[str, float]] = []
    state: dict[str, Any] = {"trained": 0, "final": None, "errors": []}
    model = YOLO(config.model)

    def on_train_epoch_end(trainer: Any) -> None:
        state["trained"] = int(trainer.epoch) + 1

    def on_batch_end(trainer: Any) -> None:
        if stop.is_set():
            trainer.stop = True

    def on_fit_epoch_end(trainer: Any) -> None:
        raw = dict(trainer.metrics or {})
        if trainer.tloss is not None:
            raw.update(trainer.label_loss_items(trainer.tloss, prefix="train"))
        epoch = int(trainer.epoch) + 1
        if epoch != state["trained"]:  # final_eval: best.pt validated again (epoch + 1)
            state["final"] = normalize_metrics(dict(trainer.metrics or {}))
            return
        metrics = normalize_metrics({**raw, "fitness": trainer.fitness, **(trainer.lr or {})})
        epochs.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            try:
                on_epoch(epoch, metrics)
            except Exception as exc:  # keep training; report after
                state["errors"].append(exc)
        if stop.is_set():
            trainer.stop = True  # checked right after this callback: no further epoch starts

    model.add_callback("on_train_epoch_end", on_train_epoch_end)
    model.add_callback("on_train_batch_end", on_batch_end)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    model.train(**config.train_args())
    trainer = model.trainer
    save_dir = Path(trainer.save_dir)
    best = next((p for p in (Path(trainer.best), Path(trainer.last)) if p.is_file()), None)
    if state["errors"]:
        raise state["errors"][0]
    return TrainResult(
        status="stopped" if stop.is_set() and len(epochs) < int(config.epochs) else "finished",
        save_dir=save_dir, best_weights=best, best_metrics=best_metrics(epochs, state["final"]), epochs=epochs,
    )


def best_metrics(epochs: list[dict[str, float]], final: dict[str, float] | None) -> dict[str, float]:
    """The best epoch's metrics (highest ``fitness``), updated with the final validation of
    ``best.pt`` when there was one; ``best_epoch`` names the epoch (1-based)."""
    if not epochs:
        return {}
    best = max(epochs, key=lambda e: e.get("fitness", float("-inf")))
    out = {k: v for k, v in best.items() if k != "epoch" and "/" not in k}
    out.update({k: v for k, v in (final or {}).items() if "/" not in k})
    out["best_epoch"] = best["epoch"]
    return out
