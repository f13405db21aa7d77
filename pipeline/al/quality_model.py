"""A learned quality score: a small projector on frozen embeddings trained by pairwise ranking.

Input: (N, D) float32 object embeddings (L2-normalised DINOv2 crops: D = 768 for DINOv2-base,
384 for -small; the input size follows the registry's embeddings, the tests use 32-d) and an
ordinal label per object (higher = better; e.g. 1 = approved as is, 0 = rejected or corrected).
The network is a projector ``D -> 512 -> 256`` (Linear, LayerNorm, GELU, dropout 0.1 each) and a
linear score head; ``torch.nn.MarginRankingLoss`` trains it on pairs (better, worse) so the
better object scores higher; AdamW, a cosine learning-rate schedule and early stopping on the
held-out pairs' accuracy. The score in [0, 1] is the sigmoid of the head's output.

Pairs are built within a split only, and the splits are by group (the image an object lies on),
never by object: two crops of one image never sit on both sides of the train/held-out line.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_FILE = "quality.pt"
META_FILE = "quality.json"


@dataclass
class QualityConfig:
    """Training settings (defaults as in the pairwise-ranking plan)."""

    hidden: tuple[int, int] = (512, 256)
    dropout: float = 0.1
    margin: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1e-2
    epochs: int = 40
    pairs_per_epoch: int = 8192
    batch_size: int = 512
    patience: int = 6
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    # A ~0.4M-parameter net on batches of 512 gains little from more CPU threads, and on a busy
    # machine two OpenMP threads ran a step ~8x slower than one (measured here); 0 = torch's default.
    threads: int = 1


class QualityNet(nn.Module):
    """Projector ``input_dim -> 512 -> 256`` (LayerNorm, GELU, dropout) + a linear score head."""

    def __init__(self, input_dim: int, hidden: tuple[int, int] = (512, 256), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(input_dim)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        self.projector = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self.input_dim = int(input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_dim) float32 -> (B,) raw scores (higher = better)."""
        return self.head(self.projector(x)).squeeze(-1)


def split_groups(groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int = 0) -> np.ndarray:
    """(N,) split per object, 0 train / 1 val / 2 test, assigned per group (image), never per object."""
    uniq = np.unique(np.asarray(groups))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    n_test = max(1, round(test_fraction * len(uniq))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(uniq))) if val_fraction > 0 else 0
    if len(uniq) < n_test + n_val + 1:
        raise ValueError(f"quality training: expected objects on at least {n_test + n_val + 1} images "
                         f"(train, validation and test are split by image), got {len(uniq)}; review objects on more images")
    part = np.zeros(len(uniq), np.int8)
    part[perm[:n_test]] = 2
    part[perm[n_test:n_test + n_val]] = 1
    lookup = dict(zip(uniq.tolist(), part.tolist(), strict=True))
    return np.array([lookup[g] for g in np.asarray(groups).tolist()], np.int8)


def sample_pairs(labels: np.ndarray, idx: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` (better, worse) index pairs among ``idx`` (labels[better] > labels[worse]),
    uniform over such pairs; every pair when there are at most ``n``."""
    idx = np.asarray(idx, np.int64)
    lab = np.asarray(labels, np.float64)[idx]
    levels, counts = np.unique(lab, return_counts=True)
    total = int((counts.sum() ** 2 - (counts ** 2).sum()) // 2)
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if total <= n:
        better, worse = [], []
        for lo in levels[:-1]:
            w_i, b_i = idx[lab == lo], idx[lab > lo]
            better.append(np.repeat(b_i, len(w_i)))
            worse.append(np.tile(w_i, len(b_i)))
        return np.concatenate(better), np.concatenate(worse)
    got_b: list[np.ndarray] = []
    got_w: list[np.ndarray] = []
    have = 0
    while have < n:  # rejection sampling: random pairs, keep those with different labels
        i = rng.integers(0, len(idx), 4 * n)
        j = rng.integers(0, len(idx), 4 * n)
        keep = lab[i] != lab[j]
        i, j = i[keep], j[keep]
        hi = np.where(lab[i] > lab[j], i, j)
        lo = np.where(lab[i] > lab[j], j, i)
        got_b.append(idx[hi])
        got_w.append(idx[lo])
        have += len(hi)
    return np.concatenate(got_b)[:n], np.concatenate(got_w)[:n]


def pairwise_accuracy(scores: np.ndarray, better: np.ndarray, worse: np.ndarray) -> float | None:
    """Fraction of pairs whose better object scores higher (ties count half); None without pairs."""
    if len(better) == 0:
        return None
    s = np.asarray(scores, np.float64)
    d = s[better] - s[worse]
    return float((d > 0).mean() + 0.5 * (d == 0).mean())


@torch.no_grad()
def predict(model: QualityNet, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(N,) float32 quality scores in [0, 1] (sigmoid of the head), in batches."""
    model.eval()
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[1] != model.input_dim:
        raise ValueError(f"embeddings: expected shape (N, {model.input_dim}), got {x.shape}")
    out = [torch.sigmoid(model(torch.from_numpy(x[s:s + batch_size]))).numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@dataclass
class TrainReport:
    """What training did: pairwise accuracy per split, epochs, the split of each object."""

    accuracy: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int = 0
    split: np.ndarray | None = None
    held_out: tuple[np.ndarray, np.ndarray] | None = None  # the test pairs (better, worse)

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "pairs": self.pairs, "epochs_run": self.epochs_run,
                "best_epoch": self.best_epoch}


def train_quality(
    embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, config: QualityConfig | None = None,
    *, progress: Callable[[int, float, float | None], None] | None = None,
) -> tuple[QualityNet, TrainReport]:
    """Trains the ranking model; returns the best (by validation pair accuracy) model and a report.

    Args:
        embeddings: (N, D) float32.
        labels: (N,) ordinal labels, higher = better (at least two levels).
        groups: (N,) the image each object lies on (splits are by group).
        config: training settings.
        progress: called after each epoch with (epoch, mean train loss, validation accuracy).

    Raises:
        ValueError: misshapen inputs, one label level only, or too few images to split.
    """
    cfg = config or QualityConfig()
    x = np.asarray(embeddings, np.float32)
    y = np.asarray(labels, np.float64).ravel()
    g = np.asarray(groups).ravel()
    if x.ndim != 2 or len(x) != len(y) or len(y) != len(g):
        raise ValueError(f"expected embeddings (N, D) with N labels and N groups, got {x.shape}, {y.shape}, {g.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"quality training: expected both good and bad examples (two label levels), got only "
                         f"{np.unique(y).tolist()}; approve and reject (or relabel) some objects first")
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(x, y, g, cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(x: np.ndarray, y: np.ndarray, g: np.ndarray, cfg: QualityConfig,
           progress: Callable[[int, float, float | None], None] | None) -> tuple[QualityNet, TrainReport]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    split = split_groups(g, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    tr, va, te = (np.flatnonzero(split == k) for k in range(3))
    val_pairs = sample_pairs(y, va, 20_000, rng)
    test_pairs = sample_pairs(y, te, 20_000, rng)
    model = QualityNet(x.shape[1], tuple(cfg.hidden), cfg.dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(min(cfg.pairs_per_epoch, max(cfg.batch_size, 8 * len(tr))) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    loss_fn = nn.MarginRankingLoss(margin=cfg.margin)
    xt = torch.from_numpy(x)
    best_acc, best_state, best_epoch, stale, epoch = -1.0, None, 0, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        # about 8 pairs per training object and epoch, at most pairs_per_epoch
        b, w = sample_pairs(y, tr, min(cfg.pairs_per_epoch, max(cfg.batch_size, 8 * len(tr))), rng)
        if len(b) == 0:
            raise ValueError("quality training: the training images hold no (better, worse) pair; review more objects")
        perm = rng.permutation(len(b))
        losses = []
        for s in range(0, len(perm), cfg.batch_size):
            sel = perm[s:s + cfg.batch_size]
            sb, sw = model(xt[b[sel]]), model(xt[w[sel]])
            loss = loss_fn(sb, sw, torch.ones_like(sb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        val_acc = pairwise_accuracy(predict(model, x[va]), *_local(val_pairs, va)) if len(va) else None
        if progress is not None:
            progress(epoch, float(np.mean(losses)), val_acc)
        score = val_acc if val_acc is not None else -float(np.mean(losses))
        if score > best_acc:
            best_acc, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    scores = predict(model, x)
    report = TrainReport(split=split, held_out=test_pairs, epochs_run=epoch, best_epoch=best_epoch)
    for name, pairs in {"train": sample_pairs(y, tr, 20_000, rng), "val": val_pairs, "test": test_pairs}.items():
        report.accuracy[name] = pairwise_accuracy(scores, *pairs)
        report.pairs[name] = int(len(pairs[0]))
    return model, report


def _local(pairs: tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global pair indices -> positions within ``idx`` (for scores computed on x[idx])."""
    pos = {int(v): k for k, v in enumerate(idx.tolist())}
    return (np.array([pos[int(i)] for i in pairs[0]], np.int64), np.array([pos[int(i)] for i in pairs[1]], np.int64))


def save_checkpoint(folder: str | Path, model: QualityNet, *, embedding_version: str, config: QualityConfig,
                    extra: dict | None = None) -> Path:
    """Writes ``quality.pt`` (state dict) and ``quality.json`` (embedding model id and dim,
    settings, metrics) into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(folder / WEIGHTS_FILE)
    meta = {"embedding_version": embedding_version, "embedding_dim": model.input_dim,
            "config": asdict(config), **(extra or {})}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return folder


def load_checkpoint(folder: str | Path, *, embedding_version: str, embedding_dim: int) -> tuple[QualityNet, dict]:
    """The model and its metadata; refuses one trained on other embeddings.

    Raises:
        FileNotFoundError: no checkpoint in ``folder`` (says to train first).
        ValueError: the checkpoint's embedding version or dim differs from the given ones.
    """
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"no quality model in {folder}: run `launch.py quality train --data DIR` first")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    if meta.get("embedding_version") != embedding_version or int(meta.get("embedding_dim", -1)) != int(embedding_dim):
        raise ValueError(f"quality model in {folder} was trained on {meta.get('embedding_version')!r} "
                         f"({meta.get('embedding_dim')}-d) embeddings, the registry holds {embedding_version!r} "
                         f"({embedding_dim}-d); retrain with `launch.py quality train`")
    cfg = meta.get("config") or {}
    model = QualityNet(int(embedding_dim), tuple(cfg.get("hidden", (512, 256))), float(cfg.get("dropout", 0.1)))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, meta
