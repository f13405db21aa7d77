"""Training workflow: dataset version -> YOLO export (reused when present) -> ultralytics training,
recorded in the registry as a run with per-epoch metrics. Used by ``launch.py train`` and the
Train tab alike.

Files: the export the trainer reads lives in ``<data>/exports/train/<dataset_id>_yolo_<task>/``
(or the dataset's own latest YOLO export of the same task, when it has one); the run folder is
``<data>/runs/<run_id>/`` (ultralytics' layout: ``weights/best.pt``, ``weights/last.pt``,
``results.csv``, ``args.yaml``), evaluation results go to ``<data>/runs/<run_id>/eval/``.

Stopping: set the stop event (the UI's Stop, the CLI's first Ctrl+C): the epoch in progress is
validated and saved, the run ends ``stopped`` with the best weights so far. A hard interrupt
(``KeyboardInterrupt`` inside training, e.g. a second Ctrl+C) also ends the run ``stopped``,
keeping whatever ``best.pt``/``last.pt`` was saved last.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUNS_DIR = "runs"


@dataclass
class TrainRequest:
    """What the user asked for (CLI flags / Train tab fields).

    Attributes:
        dataset: dataset name (latest version, or ``version``) or ``ds_…`` id.
        model: ``yolo11n.pt`` / ``yolo11n-seg.yaml`` / a path (see pipeline.train.yolo_train.resolve_model).
        epochs, imgsz, batch: as ultralytics (``imgsz`` square pixels).
        device: ``"cpu"`` or ``"cuda"``.
        workers: dataloader processes (0 in the server: training runs in a thread).
        version: dataset version number (with a dataset name).
        extra: other ultralytics train arguments (``patience``, ``seed``, ``lr0``...).
    """

    dataset: str
    model: str
    epochs: int = 10
    imgsz: int = 640
    batch: int = 16
    device: str = "cpu"
    workers: int = 0
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_dir(data_dir: Path, run_id: str) -> Path:
    """``<data>/runs/<run_id>``."""
    return Path(data_dir) / RUNS_DIR / run_id


def model_search_dirs(data_dir: Path) -> list[Path]:
    """Where a bare ``yolo11n.pt`` is looked for: ``<data>/models/yolo``, ``<data>/models``."""
    return [Path(data_dir) / "models" / "yolo", Path(data_dir) / "models"]


def _export_matches(folder: Path, dataset_id: str, task: str, state: dict) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return ((folder / "data.yaml").is_file() and manifest.get("format") == "yolo" and manifest.get("task") == task
            and (manifest.get("dataset") or {}).get("dataset_id") == dataset_id
            and manifest.get("registry_state") == state)  # an object edited since: export again


def export_for_training(reg: Any, data_dir: Path, dataset: str, task: str, *, version: int | None = None) -> tuple[dict, Path, bool]:
    """The dataset row and a YOLO export of it for ``task``; reuses an existing one while no
    object has changed since it was written (the manifest's ``registry_state``).

    Returns:
        ``(dataset row, export folder, reused)``.

    Raises:
        ValueError: no such dataset (the message lists the known ones) or an empty one.
    """
    from registry.dataset_reads import get_dataset
    from registry.export import export_dataset
    from registry.runs import objects_state

    ds = get_dataset(reg, dataset, version)
    state = objects_state(reg.connection)
    for folder in (Path(ds["export_path"]) if ds.get("export_path") else None,
                   Path(data_dir) / "exports" / "train" / f"{ds['dataset_id']}_yolo_{task}"):
        if folder is not None and _export_matches(folder, ds["dataset_id"], task, state):
            return ds, folder, True
    out = Path(data_dir) / "exports" / "train" / f"{ds['dataset_id']}_yolo_{task}"
    export_dataset(reg, ds["dataset_id"], out, "yolo", task, overwrite=out.exists())
    return ds, out, False


def start_run(reg: Any, data_dir: Path, req: TrainRequest) -> str:
    """Checks the request, exports the dataset and records the run (``queued``); returns its id.

    Raises:
        ValueError: a bad model, dataset or number (nothing is recorded).
    """
    from pipeline.train.yolo_train import DEVICES, TrainConfig, model_task, resolve_model

    for name, low in (("epochs", 1), ("imgsz", 32), ("batch", 1)):
        if int(getattr(req, name)) < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {getattr(req, name)}")
    if not (req.device in DEVICES or str(req.device).isdigit()):
        raise ValueError(f"device: expected one of {DEVICES} or a CUDA index, got {req.device!r}")
    model = resolve_model(req.model, model_search_dirs(data_dir))
    task = model_task(model)
    ds, export_dir, reused = export_for_training(reg, data_dir, req.dataset, task, version=req.version)
    TrainConfig(export_dir / "data.yaml", model, Path(data_dir) / RUNS_DIR, "check", epochs=req.epochs,
                imgsz=req.imgsz, batch=req.batch, device=req.device, extra=dict(req.extra or {})).check()
    params = {**asdict(req), "resolved_model": model, "export_reused": reused}
    return reg.create_run(model=req.model, task=task, params=params, dataset_id=ds["dataset_id"],
                          dataset_name=ds["name"], dataset_version=str(ds["version"]), export_path=str(export_dir))


def execute_run(
    reg: Any, data_dir: Path, run_id: str, *, stop: threading.Event | None = None,
    on_epoch: Callable[[int, dict], None] | None = None, say: Callable[[str], None] | None = None,
    quiet: bool = False,
) -> dict:
    """Trains a recorded (queued) run and records its epochs, status and best weights.

    Args:
        on_epoch: also called with each epoch's metrics after they are stored.
        say: receives one human-readable line per event (start, each epoch, end).
        quiet: silence ultralytics' own console output while training.

    Returns:
        The final run row.

    Raises:
        Whatever training raised, after the run was marked ``failed`` with the message.
    """
    from pipeline.train.yolo_train import TrainConfig, train

    say = say or (lambda line: log.info("%s", line))
    run = reg.get_run(run_id)
    p = run["params"]
    stop = stop or threading.Event()
    config = TrainConfig(Path(run["export_path"]) / "data.yaml", p["resolved_model"], Path(data_dir) / RUNS_DIR,
                         run_id, epochs=int(p["epochs"]), imgsz=int(p["imgsz"]), batch=int(p["batch"]),
                         device=str(p["device"]), workers=int(p.get("workers") or 0), extra=dict(p.get("extra") or {}))

    def record(epoch: int, metrics: dict) -> None:
        reg.record_epoch(run_id, epoch, metrics)
        say(epoch_line(epoch, config.epochs, metrics))
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    _mlflow_into_data_folder(data_dir)
    reg.update_run(run_id, status="running")
    say(f"{run_id}: training {run['model']} ({run['task']}) on {run['dataset_name']} v{run['dataset_version']} "
        f"for {config.epochs} epochs at {config.imgsz}px, batch {config.batch}, {config.device}")
    try:
        with _quiet_ultralytics(quiet):
            result = train(config, on_epoch=record, stop=stop)
    except KeyboardInterrupt:
        best = _saved_weights(run_dir(data_dir, run_id))
        row = reg.update_run(run_id, status="stopped", best_weights=best and str(best),
                             best_metrics=_best_from_epochs(reg.run_epochs(run_id)), error="interrupted")
        say(f"{run_id}: interrupted; best weights so far: {best or 'none saved yet'}")
        return row
    except Exception as exc:
        best = _saved_weights(run_dir(data_dir, run_id))  # what was saved before it failed
        reg.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}", best_weights=best and str(best))
        say(f"{run_id}: failed: {exc}")
        raise
    row = reg.update_run(run_id, status=result.status, best_weights=result.best_weights and str(result.best_weights),
                         best_metrics=result.best_metrics)
    say(f"{run_id}: {result.status} after {len(result.epochs)} epochs; best weights {result.best_weights}")
    return row


def train_run(reg: Any, data_dir: Path, req: TrainRequest, **kwargs: Any) -> dict:
    """:func:`start_run` then :func:`execute_run`; returns the final run row."""
    return execute_run(reg, data_dir, start_run(reg, data_dir, req), **kwargs)


def epoch_line(epoch: int, total: int, m: dict) -> str:
    """``epoch 2/10: box_loss 1.234 · mAP50 0.412 · mAP50-95 0.201`` (mask numbers when present)."""
    parts = [f"epoch {epoch}/{total}:"]
    for key, label in (("box_loss", "box_loss"), ("seg_loss", "seg_loss"), ("box_map50", "mAP50"),
                       ("box_map50_95", "mAP50-95"), ("mask_map50", "mask mAP50")):
        if m.get(key) is not None:
            parts.append(f"{label} {m[key]:.3f}")
    return " ".join(parts[:1]) + " " + " · ".join(parts[1:])


def _mlflow_into_data_folder(data_dir: Path) -> None:
    """When MLflow is installed, ultralytics' own MLflow callback logs every run; point its store
    at ``<data>/runs/mlflow`` (experiment ``agenticlabeling``) unless the user chose one, instead
    of ultralytics' default under the working directory. Nothing happens without MLflow."""
    import importlib.util
    import os

    if importlib.util.find_spec("mlflow") is None:
        return
    os.environ.setdefault("MLFLOW_TRACKING_URI", str(Path(data_dir).resolve() / RUNS_DIR / "mlflow"))
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "agenticlabeling")


def _saved_weights(folder: Path) -> Path | None:
    return next((p for p in (folder / "weights" / "best.pt", folder / "weights" / "last.pt") if p.is_file()), None)


def _best_from_epochs(epochs: list[dict]) -> dict:
    if not epochs:
        return {}
    best = max(epochs, key=lambda e: e.get("fitness") if e.get("fitness") is not None else float("-inf"))
    out = {k: v for k, v in best.items() if k not in ("run_id", "extras", "epoch") and v is not None}
    out["best_epoch"] = best["epoch"]
    return out


class _quiet_ultralytics:  # noqa: N801 - used as a context manager
    """Raises ultralytics' logger to WARNING (which also hides its progress bars) while active."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.level: int | None = None

    def __enter__(self) -> None:
        if self.quiet:
            from ultralytics.utils import LOGGER

            self.level = LOGGER.level
            LOGGER.setLevel(logging.WARNING)

    def __exit__(self, *exc: Any) -> None:
        if self.level is not None:
            from ultralytics.utils import LOGGER

            LOGGER.setLevel(self.level)


class BackgroundTraining:
    """One training run at a time in a background thread (the Train tab's).

    Attributes:
        run_id: the current (or last) run id; None before the first start.
        lines: the latest log lines (at most 500).
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.lines: deque[str] = deque(maxlen=500)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, reg: Any, data_dir: Path, req: TrainRequest) -> str:
        """Records the run and starts training it in a thread; returns the run id.

        Raises:
            RuntimeError: a run is already training (stop it first).
            ValueError: a bad request (nothing recorded).
        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"run {self.run_id} is still training: stop it first, or wait for it to finish")
            run_id = start_run(reg, data_dir, req)
            self.run_id, self.error = run_id, None
            self.lines.clear()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._work, args=(reg, data_dir, run_id, self._stop),
                                            name=f"train-{run_id}", daemon=True)
            self._thread.start()
            return run_id

    def _work(self, reg: Any, data_dir: Path, run_id: str, stop: threading.Event) -> None:
        try:
            execute_run(reg, data_dir, run_id, stop=stop, say=self.lines.append, quiet=True)
        except Exception as exc:  # recorded as failed by execute_run; keep the thread quiet
            self.error = str(exc)
            log.exception("training run %s failed", run_id)

    def stop(self) -> bool:
        """Asks the running training to stop after the current batch; False when none runs."""
        if not self.running:
            return False
        self._stop.set()
        self.lines.append(f"{self.run_id}: stop requested; finishing the current epoch's validation")
        return True

    def join(self, timeout: float | None = None) -> None:
        """Waits for the training thread (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)


_SHARED_LOCK = threading.Lock()


def shared_training(ctx: Any) -> BackgroundTraining:
    """The one :class:`BackgroundTraining` of an AppContext, shared by the Train tab and the REST
    API (``/api/v1/runs``): one run trains at a time and either surface can stop it."""
    with _SHARED_LOCK:
        if getattr(ctx, "_background_training", None) is None:
            ctx._background_training = BackgroundTraining()
        return ctx._background_training


RUN_PREFIX = "run:"


def is_run_detector(spec: str | None) -> bool:
    """True for a ``run:<run_id>`` detector choice."""
    return bool(spec) and str(spec).startswith(RUN_PREFIX)


def build_run_labeler(reg: Any, spec: str, *, segmenter: Callable[[], Any] | None = None, embedder: Any | None = None,
                      device: str | None = None) -> Any:
    """A :class:`pipeline.train.run_labeler.RunLabeler` for ``run:<run_id>`` (its best weights).

    Args:
        segmenter: returns the segmenter giving masks to detection runs (GrabCut / SAM2); only
            called for detection runs (a segmentation run's model predicts its own masks).
        embedder: optional embedder for the objects' vectors.
        device: ``cpu`` / ``cuda``; None = the device the run trained on.

    Raises:
        ValueError: not ``run:<id>``, an unknown run, or a run without best weights.
    """
    from pipeline.train.run_labeler import RunLabeler
    from pipeline.train.yolo_detector import YoloDetector

    if not is_run_detector(spec):
        raise ValueError(f"--detector: expected run:<run_id> (see launch.py train), got {spec!r}")
    run_id = str(spec)[len(RUN_PREFIX):]
    run = reg.get_run(run_id)
    weights = run.get("best_weights")
    if not weights or not Path(weights).is_file():
        raise ValueError(f"--detector {spec}: expected the run's best weights on disk, got {weights or 'none'} "
                         f"(status {run['status']}); train it to the end of at least one epoch first")
    params = run.get("params") or {}
    detector = YoloDetector(weights, version=f"{RUN_PREFIX}{run_id}", device=device or params.get("device"),
                            imgsz=int(params.get("imgsz") or 640))
    seg = segmenter() if segmenter is not None and detector.task != "segment" else None
    return RunLabeler(detector, seg, embedder)


def run_detector_choices(reg: Any) -> list[tuple[str, str]]:
    """(label, ``run:<id>``) for runs that have best weights, newest first (the Auto-label tab)."""
    out = []
    for r in reg.list_runs():
        if r.get("best_weights") and Path(r["best_weights"]).is_file():
            m = (r.get("best_metrics") or {}).get("box_map50")
            score = f", mAP50 {m:.3f}" if isinstance(m, (int, float)) else ""
            out.append((f"{r['run_id']} ({r['model']}, {r['dataset_name']} v{r['dataset_version']}{score})",
                        f"{RUN_PREFIX}{r['run_id']}"))
    return out


FLORENCE_CHOICE = ("Florence-2 (built-in detector)", "")
_RUN_LABELERS: dict[tuple[str, str, str], Any] = {}
_RUN_LABELERS_LOCK = threading.Lock()


def detector_choices(reg: Any) -> list[tuple[str, str]]:
    """The Auto-label tab's detector choices: the built-in one, then runs with weights."""
    return [FLORENCE_CHOICE, *run_detector_choices(reg)]


def ui_labeler(ctx: Any, spec: str | None) -> Any:
    """The labeler for the Auto-label tab: ``ctx.labeler()`` for the built-in detector, else the
    run's :class:`RunLabeler` (cached per data folder and run; masks from SAM2 when offered,
    else GrabCut; the context's embedder when there is one)."""
    if not is_run_detector(spec):
        return ctx.labeler()
    seg_name = "sam2" if "sam2" in ctx.segmenter_names else ctx.segmenter_names[0]
    key = (str(ctx.data_dir), str(spec), seg_name)
    with _RUN_LABELERS_LOCK:
        lab = _RUN_LABELERS.get(key)
        if lab is None:
            try:
                embedder = ctx.embedder()
            except RuntimeError:  # no embedder weights: objects are stored without vectors
                embedder = None
            lab = build_run_labeler(ctx.registry, str(spec), segmenter=lambda: ctx.segmenter(seg_name),
                                    embedder=embedder)
            _RUN_LABELERS[key] = lab
        return lab
