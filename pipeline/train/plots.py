"""PNG plots of evaluation results (matplotlib, Agg backend: no display, no font download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: str | Path, *, title: str = "") -> Path:
    """Writes the confusion matrix (rows = true class, columns = predicted; last = background)
    with its counts in the cells; returns ``path``."""
    plt = _pyplot()
    labels = [*names, "background"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2.2 + 0.7 * n, 1.8 + 0.6 * n), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(int(matrix.max()), 1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > peak / 2 else "black")
    ax.set_title(title or "confusion matrix (IoU 0.5)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_pr_curves(curves: dict[str, dict[str, list[float]]], per_class: dict[str, dict], path: str | Path,
                   *, title: str = "") -> Path:
    """Writes precision-recall curves at IoU 0.5, one line per class (legend: AP50); returns ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, c in curves.items():
        ap50 = (per_class.get(name) or {}).get("ap50")
        ax.plot(c["recall"], c["precision"], label=f"{name} (AP50 {ap50:.3f})" if ap50 is not None else name)
    if not curves:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or "precision-recall (IoU 0.5)", fontsize=10)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
