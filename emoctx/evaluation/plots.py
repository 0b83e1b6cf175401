"""The plots of an evaluation (PNG): per-category AP, precision-recall curves, predicted vs true V/A/D."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emoctx import labels
from emoctx.evaluation.document import document_title, number_text
from emoctx.io import atomic_path

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_ap_bars(path: str | os.PathLike, doc: Mapping[str, Any]) -> Path:
    """Horizontal bars of the per-category AP (percent), best first, with the mAP as a dashed line."""
    plt = _pyplot()
    overall = doc["overall"]
    rows = [
        (name, overall.get(f"ap/{slug}"), doc["positives"][slug])
        for name, slug in zip(labels.CATEGORIES, labels.SLUGS)
    ]
    rows.sort(key=lambda r: -1.0 if r[1] is None else r[1], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.6))
    y = np.arange(len(rows))
    values = [0.0 if ap is None else 100 * ap for _, ap, _ in rows]
    ax.barh(y, values, color="#4C72B0", zorder=1)
    for yi, (_, ap, _) in zip(y, rows):
        if ap is None:
            ax.text(0.8, yi, "n/a (no positives)", va="center", fontsize=8, color="grey")
        elif ap >= 0.12:  # inside the bar's end, clear of the mAP line
            ax.text(100 * ap - 0.8, yi, f"{100 * ap:.1f}", va="center", ha="right", fontsize=8, color="white")
        else:
            ax.text(100 * ap + 0.8, yi, f"{100 * ap:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{name} ({n})" for name, _, n in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"average precision (%), {doc['ap_variant']} variant; (n) = positives")
    if overall.get("mAP") is not None:
        m = 100 * overall["mAP"]
        ax.axvline(m, color="#C44E52", linestyle="--", linewidth=1.2, label=f"mAP {m:.2f}%", zorder=0.5)
        ax.legend(loc="lower right", fontsize=9)
    ax.set_title(f"Per-category AP: {document_title(doc)} ({overall['num_persons']} persons)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, Path(path))


def plot_pr_curves(
    path: str | os.PathLike,
    scores: np.ndarray,
    targets: np.ndarray,
    doc: Mapping[str, Any],
    thresholds: np.ndarray | None = None,
) -> Path:
    """A grid with one precision-recall curve per category, its AP, prevalence and threshold point.

    ``scores`` are what the AP ranked (raw outputs where available); the threshold point is the precision
    and recall at the decision threshold from the figures of ``doc``.
    """
    from emoctx.metrics import precision_recall_curve

    plt = _pyplot()
    ncols = 6
    nrows = math.ceil(labels.NUM_CATEGORIES / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols, 2.5 * nrows), sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    n = max(len(targets), 1)
    for c, (name, slug) in enumerate(zip(labels.CATEGORIES, labels.SLUGS)):
        ax = axes[c]
        pos = int(targets[:, c].sum())
        ap = doc["overall"].get(f"ap/{slug}")
        if pos > 0:
            precision, recall, _ = precision_recall_curve(scores[:, c], targets[:, c])
            ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color="#4C72B0", lw=1.3)
            ax.axhline(pos / n, color="grey", linestyle=":", linewidth=1)
            p_at, r_at = doc["overall"].get(f"precision/{slug}"), doc["overall"].get(f"recall/{slug}")
            if thresholds is not None and math.isfinite(thresholds[c]) and p_at is not None and r_at:
                ax.plot(r_at, p_at, "o", color="#C44E52", markersize=4)
            ax.set_title(f"{name}\nAP {100 * ap:.1f}%  (n={pos})", fontsize=8.5)
        else:
            ax.text(0.5, 0.5, "no positives", ha="center", va="center", fontsize=8, color="grey")
            ax.set_title(f"{name}\nAP n/a", fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.25)
    for ax in axes[labels.NUM_CATEGORIES :]:
        ax.set_visible(False)
    fig.supxlabel("recall", fontsize=10)
    fig.supylabel("precision", fontsize=10)
    point = "; red dot = decision threshold" if thresholds is not None else ""
    fig.suptitle(
        f"Precision-recall per category: {document_title(doc)} (dotted: share of positives{point})",
        fontsize=11,
    )
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_vad_scatter(
    path: str | os.PathLike, vad_pred: np.ndarray, vad_true: np.ndarray, doc: Mapping[str, Any]
) -> Path:
    """Predicted vs true valence, arousal and dominance (three panels; true values jittered)."""
    plt = _pyplot()
    rng = np.random.default_rng(0)  # fixed jitter: the same data give the same picture
    fig, axes = plt.subplots(1, labels.NUM_VAD, figsize=(4.4 * labels.NUM_VAD, 4.6))
    lo, hi = labels.VAD_MIN - 0.5, labels.VAD_MAX + 0.5
    overall = doc["overall"]
    for d, (ax, dim) in enumerate(zip(np.atleast_1d(axes), labels.VAD_NAMES)):
        ok = np.isfinite(vad_true[:, d]) & np.isfinite(vad_pred[:, d])
        x = vad_true[ok, d] + rng.uniform(-0.18, 0.18, int(ok.sum()))
        y = vad_pred[ok, d]
        alpha = float(np.clip(300 / max(len(x), 1), 0.08, 0.8))
        ax.scatter(x, y, s=9, alpha=alpha, color="#4C72B0", edgecolors="none")
        ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ticks = np.arange(labels.VAD_MIN, labels.VAD_MAX + 1)
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xlabel(f"true {dim} (jittered)")
        ax.set_ylabel(f"predicted {dim}")
        ax.grid(alpha=0.25)
        ax.set_title(
            f"{dim.capitalize()}: MAE {number_text(overall.get(f'vad_mae/{dim}'), 2)}, "
            f"CCC {number_text(overall.get(f'vad_ccc/{dim}'), 2)} (n={int(ok.sum())})",
            fontsize=10,
        )
    fig.suptitle(f"Predicted vs true V/A/D (1-10 scale): {document_title(doc)}", fontsize=11)
    fig.tight_layout()
    return _save(fig, Path(path))
