"""Evaluation runs and their reports: ``metrics.json``, ``report.md`` and PNG plots.

Two entry points, one result:

* :func:`evaluate_model`: run an emoctx model on records with their ground-truth boxes, and also write its
  predictions as ``predictions.parquet`` (the form :func:`evaluate_predictions` reads);
* :func:`evaluate_predictions`: score a predictions file from any system
  (:mod:`emoctx.evaluation.inference` describes the form) against records.

Both build one metrics document (:func:`evaluation_document`) and write every view of it
(:func:`write_outputs`), atomically:

* ``metrics.json``: every figure (fractions, not percent; ``null`` where undefined), the AP variant, the
  identity of the model (file hash, network, streams, training config) or of the predictions file, the
  records file and the counts; agreement with the human annotators; breakdowns per gender, age group and
  source database;
* ``report.md``: the same as tables (AP, precision, recall, F1, SAGR and Jaccard in percent);
* ``ap_per_category.png``, ``pr_curves.png``, ``vad_scatter.png``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx import __version__, labels
from emoctx.errors import EmoctxError
from emoctx.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PREDICTIONS_FILE = "predictions.parquet"
AP_PLOT = "ap_per_category.png"
PR_PLOT = "pr_curves.png"
VAD_PLOT = "vad_scatter.png"
BREAKDOWN_COLUMNS: tuple[str, ...] = ("gender", "age", "source")
DEFAULT_MIN_ANNOTATORS = 3

_AP_VARIANT_TEXT = {
    "sklearn": "scikit-learn `average_precision_score` (step-wise, no interpolation)",
    "voc": "PASCAL VOC all-point interpolated envelope (the EMOTIC authors' MATLAB script)",
}


@dataclass
class Evaluation:
    """The result of an evaluation run.

    Attributes:
        metrics: the metrics document (the content of ``metrics.json``).
        files: ``{kind: path}`` of every file written (``metrics``, ``report``, plots, ``predictions``).
    """

    metrics: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- helpers
def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _warnings_to_log(level: int = logging.WARNING) -> Iterator[None]:
    """Turn the metrics' RuntimeWarnings (undefined AP, ...) into log records of ``level``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for w in caught:
        log.log(level, "%s", w.message)


def _plain(obj: Any) -> Any:
    """A JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None, paths to str."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _threshold_values(thresholds: np.ndarray | None) -> dict[str, float | None] | None:
    if thresholds is None:
        return None
    return {s: (float(v) if math.isfinite(v) else None) for s, v in zip(labels.SLUGS, thresholds)}


# -------------------------------------------------------------------------------------- the document
def evaluation_document(
    records: pd.DataFrame,
    scores: np.ndarray,
    vad: np.ndarray | None,
    ap_variant: str = "sklearn",
    thresholds: np.ndarray | None = None,
    thresholds_from: str | None = None,
    source: Mapping[str, Any] | None = None,
    records_info: Mapping[str, Any] | None = None,
    min_annotators: int = DEFAULT_MIN_ANNOTATORS,
    ranking: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every figure for predictions on records: the content of ``metrics.json``.

    Args:
        records: the evaluated records (one row per person, aligned with ``scores``).
        scores: (N, C) category scores (the scale of the thresholds; what AP ranks without ``ranking``).
        vad: (N, 3) V/A/D predictions on 1-10, or None.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        thresholds: (C,) decision thresholds (``inf``: never predicted), or None for no P/R/F1 figures.
        thresholds_from: where the thresholds come from (shown in the report).
        source: identity of the model or predictions file.
        records_info: identity of the records file and the counts.
        min_annotators: persons with fewer annotators are not used for the agreement figures.
        ranking: (N, C) raw outputs that AP ranks (see :func:`emoctx.metrics.evaluate_arrays`), or None.

    Returns:
        ``{"emoctx_version", "created", "ap_variant", "ap_ranks", "num_persons", "source", "records",
        "thresholds", "positives", "overall", "agreement", "breakdowns"}``; ``overall`` holds the keys of
        :func:`emoctx.metrics.evaluate_arrays`, ``agreement`` those of
        :func:`emoctx.metrics.agreement_from_records` (or ``{"skipped": reason}``) and ``breakdowns``
        ``{column: {group: figures}}`` for gender, age and source where the records have them.
    """
    from emoctx.data.records import category_matrix, vad_matrix
    from emoctx.metrics import AP_VARIANTS, breakdown, evaluate_arrays

    if ap_variant not in AP_VARIANTS:
        raise EmoctxError(f"unknown AP variant {ap_variant!r}; choose one of {list(AP_VARIANTS)}")
    records = records.reset_index(drop=True)
    if len(records) == 0:
        raise EmoctxError("no person to evaluate")
    targets = category_matrix(records).astype(np.float64)
    vad_true = vad_matrix(records).astype(np.float64) if vad is not None else None

    with _warnings_to_log():
        overall = evaluate_arrays(
            scores, targets, vad, vad_true, ap_variant=ap_variant, thresholds=thresholds, ranking=ranking
        )
    breakdowns: dict[str, Any] = {}
    for col in BREAKDOWN_COLUMNS:
        if col in records.columns and records[col].notna().any():
            # Small groups often lack some categories: their warnings go to the debug log, the figures
            # say it (undefined_ap).
            with _warnings_to_log(logging.DEBUG):
                breakdowns[col] = breakdown(
                    records[col].rename(col),
                    scores,
                    targets,
                    vad,
                    vad_true,
                    ap_variant=ap_variant,
                    thresholds=thresholds,
                    ranking=ranking,
                )
    doc: dict[str, Any] = {
        "emoctx_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ap_variant": ap_variant,
        "ap_variant_description": _AP_VARIANT_TEXT[ap_variant].replace("`", ""),
        "ap_ranks": "raw outputs" if ranking is not None else "scores",
        "num_persons": int(len(records)),  # every figure is over these persons: compare on the same ones
        "source": dict(source or {}),
        "records": dict(records_info or {}),
        "thresholds": (
            None if thresholds is None else {"from": thresholds_from, "values": _threshold_values(thresholds)}
        ),
        "positives": {s: int(n) for s, n in zip(labels.SLUGS, targets.sum(axis=0))},
        "overall": overall,
        "agreement": _agreement(records, scores, vad, thresholds, min_annotators),
        "breakdowns": breakdowns,
    }
    return _plain(doc)


def _agreement(
    records: pd.DataFrame,
    scores: np.ndarray,
    vad: np.ndarray | None,
    thresholds: np.ndarray | None,
    min_annotators: int,
) -> dict[str, Any]:
    from emoctx.metrics import agreement_from_records

    if "annotator_categories" not in records.columns:
        return {"skipped": "the records have no per-annotator labels"}
    counts = [
        len(a) if isinstance(a, (list, tuple, np.ndarray)) else 0 for a in records["annotator_categories"]
    ]
    eligible = sum(c >= min_annotators for c in counts)
    if eligible == 0:
        return {
            "skipped": f"no person has at least {min_annotators} annotators "
            f"(most annotators on one person: {max(counts, default=0)})"
        }
    result = agreement_from_records(
        records,
        model_scores=scores if thresholds is not None else None,
        model_vad=vad,
        thresholds=thresholds,
        min_annotators=min_annotators,
    )
    if thresholds is None:
        result["note"] = "no decision thresholds: the model's categories are not compared (calibrate first)"
    return result


# --------------------------------------------------------------------------------------------- writing
def write_outputs(
    out_dir: str | os.PathLike,
    doc: Mapping[str, Any],
    records: pd.DataFrame,
    scores: np.ndarray,
    vad: np.ndarray | None,
    thresholds: np.ndarray | None = None,
    plots: bool = True,
    ranking: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and the PNG plots of one evaluation into ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        doc: the metrics document (:func:`evaluation_document`).
        records: the evaluated records, aligned with ``scores``.
        scores: (N, C) category scores.
        vad: (N, 3) V/A/D predictions, or None.
        thresholds: (C,) decision thresholds, marked on the precision-recall curves.
        plots: write the PNG plots (False: only the JSON and the Markdown).
        ranking: (N, C) raw outputs the precision-recall curves rank (as the AP did), or None.

    Returns:
        ``{"metrics", "report", "ap_plot", "pr_plot", "vad_plot"}`` paths (no plots when ``plots`` is
        false, no ``vad_plot`` without V/A/D).
    """
    from emoctx.data.records import category_matrix, vad_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = records.reset_index(drop=True)
    files: dict[str, Path] = {}
    targets = category_matrix(records)
    if plots:
        files["ap_plot"] = plot_ap_bars(out / AP_PLOT, doc)
        ranked = scores if ranking is None else ranking
        files["pr_plot"] = plot_pr_curves(out / PR_PLOT, ranked, targets, doc, thresholds)
    if plots and vad is not None:
        files["vad_plot"] = plot_vad_scatter(out / VAD_PLOT, vad, vad_matrix(records), doc)
    files["report"] = out / REPORT_FILE
    atomic_write_text(files["report"], markdown_report(doc, {k: p.name for k, p in files.items()}))
    files["metrics"] = out / METRICS_FILE
    atomic_write_text(files["metrics"], json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return files


# ---------------------------------------------------------------------------------------------- plots
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


def _title(doc: Mapping[str, Any]) -> str:
    src = doc.get("source", {})
    name = Path(str(src.get("path", ""))).name or "predictions"
    return f"{name} on {Path(str(doc.get('records', {}).get('path', 'records'))).name}"


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
    ax.set_title(f"Per-category AP: {_title(doc)} ({overall['num_persons']} persons)", fontsize=10)
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
        f"Precision-recall per category: {_title(doc)} (dotted: share of positives{point})", fontsize=11
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
            f"{dim.capitalize()}: MAE {_num(overall.get(f'vad_mae/{dim}'), 2)}, "
            f"CCC {_num(overall.get(f'vad_ccc/{dim}'), 2)} (n={int(ok.sum())})",
            fontsize=10,
        )
    fig.suptitle(f"Predicted vs true V/A/D (1-10 scale): {_title(doc)}", fontsize=11)
    fig.tight_layout()
    return _save(fig, Path(path))


# ------------------------------------------------------------------------------------------- Markdown
def _num(v: Any, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _pct(v: Any, digits: int = 2) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _source_lines(doc: Mapping[str, Any]) -> list[str]:
    src = doc.get("source", {})
    rec = doc.get("records", {})
    lines = []
    if src.get("kind") == "model":
        streams = ", ".join(
            f"{name}: {s.get('backbone')} {s.get('input_size')} px"
            for name, s in src.get("streams", {}).items()
        )
        lines.append(
            f"- **Model**: `{src.get('path')}` (sha256 `{str(src.get('sha256', ''))[:12]}`, written by emoctx "
            f"{src.get('emoctx_version')}; streams {streams}; fusion {src.get('network', {}).get('fusion')}; "
            f"scores: {src.get('score_activation')})"
        )
    else:
        lines.append(
            f"- **Predictions**: `{src.get('path')}` (sha256 `{str(src.get('sha256', ''))[:12]}`, "
            f"{src.get('num_rows')} rows, V/A/D {'given' if src.get('has_vad') else 'not given'})"
        )
    lines.append(
        f"- **Records**: `{rec.get('path')}` (sha256 `{str(rec.get('sha256', ''))[:12]}`): "
        f"{rec.get('num_records')} persons, {rec.get('num_evaluated')} evaluated"
        + (
            f", {rec.get('num_skipped')} skipped ({rec.get('skipped_reason')})"
            if rec.get("num_skipped")
            else ""
        )
    )
    ranks = (
        "the model's raw category outputs (before its sigmoid or clamp)"
        if doc.get("ap_ranks") == "raw outputs"
        else "the scores as given"
    )
    lines.append(
        f"- **AP variant**: `{doc['ap_variant']}`, {_AP_VARIANT_TEXT[doc['ap_variant']]}; AP ranks {ranks}"
    )
    th = doc.get("thresholds")
    lines.append(
        f"- **Decision thresholds**: {th['from']}"
        if th
        else "- **Decision thresholds**: none (no P/R/F1 figures)"
    )
    lines.append(f"- emoctx {doc.get('emoctx_version')}, {doc.get('created')}")
    return lines + [""]


def _category_section(doc: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    o = doc["overall"]
    th = (doc.get("thresholds") or {}).get("values")
    header = ["Category", "Positives", "AP (%)"]
    if th:
        header += ["Threshold", "Precision (%)", "Recall (%)", "F1 (%)"]
    rows = []
    for name, slug in zip(labels.CATEGORIES, labels.SLUGS):
        row = [name, str(doc["positives"][slug]), _pct(o.get(f"ap/{slug}"))]
        if th:
            t = th.get(slug)
            row += [
                "never" if t is None else f"{t:.3f}",
                _pct(o.get(f"precision/{slug}"), 1),
                _pct(o.get(f"recall/{slug}"), 1),
                _pct(o.get(f"f1/{slug}"), 1),
            ]
        rows.append(row)
    mean = ["**mean**", "", f"**{_pct(o.get('mAP'))}**"]
    if th:
        mean += [
            "macro",
            _pct(o.get("precision_macro"), 1),
            _pct(o.get("recall_macro"), 1),
            _pct(o.get("f1_macro"), 1),
        ]
        rows.append(mean)
        rows.append(
            [
                "micro",
                "",
                "",
                "",
                _pct(o.get("precision_micro"), 1),
                _pct(o.get("recall_micro"), 1),
                _pct(o.get("f1_micro"), 1),
            ]
        )
    else:
        rows.append(mean)
    lines = ["## Categories", ""]
    if o.get("undefined_ap"):
        lines += [
            f"AP undefined (no positive example, left out of the mAP): {', '.join(o['undefined_ap'])}.",
            "",
        ]
    if th:
        lines += ["A person is predicted to show a category when its score is at least the threshold.", ""]
    lines += _table(header, rows)
    if "ap_plot" in plots:
        lines += [f"![AP per category]({plots['ap_plot']})", ""]
    if "pr_plot" in plots:
        lines += [f"![Precision-recall curves]({plots['pr_plot']})", ""]
    return lines


def _vad_section(doc: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    o = doc["overall"]
    if "vad_mae" not in o:
        return ["## Valence, arousal, dominance", "", "No V/A/D predictions.", ""]
    header = ["Dimension", "n", "MAE", "RMSE", "PCC", "CCC", "SAGR (%)"]
    rows = [
        [
            dim,
            str(o.get(f"vad_n/{dim}")),
            _num(o.get(f"vad_mae/{dim}")),
            _num(o.get(f"vad_rmse/{dim}")),
            _num(o.get(f"vad_pcc/{dim}")),
            _num(o.get(f"vad_ccc/{dim}")),
            _pct(o.get(f"vad_sagr/{dim}"), 1),
        ]
        for dim in labels.VAD_NAMES
    ]
    rows.append(
        [
            "**mean**",
            "",
            _num(o.get("vad_mae")),
            _num(o.get("vad_rmse")),
            _num(o.get("vad_pcc")),
            _num(o.get("vad_ccc")),
            _pct(o.get("vad_sagr"), 1),
        ]
    )
    lines = ["## Valence, arousal, dominance", ""]
    lines += [
        f"On the {labels.VAD_MIN:g}-{labels.VAD_MAX:g} scale; SAGR = sign agreement around {labels.VAD_MID:g}.",
        "",
    ]
    lines += _table(header, rows)
    if "vad_plot" in plots:
        lines += [f"![Predicted vs true V/A/D]({plots['vad_plot']})", ""]
    return lines


_AGREEMENT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("categories", "category_f1_micro", "Categories F1, micro (%)"),
    ("categories", "category_f1_macro", "Categories F1, macro (%)"),
    ("categories", "category_precision_micro", "Categories precision, micro (%)"),
    ("categories", "category_recall_micro", "Categories recall, micro (%)"),
    ("categories", "category_jaccard", "Categories Jaccard per person (%)"),
    *(("vad", f"vad_mae/{d}", f"{d.capitalize()} MAE") for d in labels.VAD_NAMES),
    *(("vad", f"vad_ccc/{d}", f"{d.capitalize()} CCC") for d in labels.VAD_NAMES),
    ("vad", "vad_pcc", "V/A/D PCC (mean)"),
    ("vad", "vad_sagr", "V/A/D SAGR (mean, %)"),
)


def _agreement_section(doc: Mapping[str, Any]) -> list[str]:
    a = doc.get("agreement") or {}
    lines = ["## Agreement with human annotators", ""]
    if "skipped" in a:
        return lines + [f"Not computed: {a['skipped']}.", ""]
    cats, vad = a.get("categories", {}), a.get("vad", {})
    lines += [
        f"Each annotator is compared with the others of the same person ({a.get('reference_rule')}); the "
        "model is compared with the same references on the same persons. Figures are averaged over the "
        "annotators.",
        "",
        f"Persons with at least {a.get('min_annotators')} annotators: {cats.get('num_persons')} "
        f"(categories), {vad.get('num_persons', '—')} (V/A/D).",
        "",
    ]
    if a.get("note"):
        lines += [f"Note: {a['note']}.", ""]
    rows = []
    for part, key, label in _AGREEMENT_ROWS:
        block = a.get(part) or {}
        if "annotators" not in block or key not in block["annotators"]:
            continue
        fmt = _pct if ("(%)" in label or "%)" in label) else _num
        model = block.get("model", {}).get(key) if "model" in block else None
        rows.append([label, fmt(block["annotators"][key]), fmt(model) if "model" in block else "—"])
    return lines + _table(["Figure", "Annotators", "Model"], rows)


def _breakdown_section(doc: Mapping[str, Any]) -> list[str]:
    b = doc.get("breakdowns") or {}
    lines = ["## Breakdowns", ""]
    if not b:
        return lines + ["The records give no gender, age group or source database.", ""]
    has_vad = "vad_mae" in doc["overall"]
    has_th = doc.get("thresholds") is not None
    header = ["Group", "Persons", "mAP (%)", "Categories with AP"]
    if has_vad:
        header += [f"{d.capitalize()} MAE" for d in labels.VAD_NAMES] + ["CCC (mean)"]
    if has_th:
        header += ["F1 macro (%)"]
    lines += ["Every figure of each group is in `metrics.json` (`breakdowns`).", ""]
    for col, groups in b.items():
        rows = []
        for group, f in groups.items():
            row = [group, str(f["num_persons"]), _pct(f.get("mAP")), str(f.get("num_categories_evaluated"))]
            if has_vad:
                row += [_num(f.get(f"vad_mae/{d}")) for d in labels.VAD_NAMES] + [_num(f.get("vad_ccc"))]
            if has_th:
                row += [_pct(f.get("f1_macro"), 1)]
            rows.append(row)
        lines += [f"### By {col}", ""] + _table(header, rows)
    return lines


def markdown_report(doc: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The Markdown report of a metrics document; ``plots`` maps plot kinds to file names beside it."""
    o = doc["overall"]
    summary_header = ["Persons evaluated", "mAP (%)"]
    summary = [str(o["num_persons"]), _pct(o.get("mAP"))]
    if "vad_mae" in o:
        summary_header += ["V/A/D MAE", "V/A/D CCC"]
        summary += [_num(o.get("vad_mae")), _num(o.get("vad_ccc"))]
    if doc.get("thresholds"):
        summary_header += ["F1 macro (%)", "F1 micro (%)"]
        summary += [_pct(o.get("f1_macro"), 1), _pct(o.get("f1_micro"), 1)]
    lines = [f"# Evaluation: {_title(doc)}", ""]
    lines += _source_lines(doc)
    lines += _table(summary_header, [summary])
    lines += _category_section(doc, plots)
    lines += _vad_section(doc, plots)
    lines += _agreement_section(doc)
    lines += _breakdown_section(doc)
    return "\n".join(lines).rstrip() + "\n"


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """A few lines for a terminal: mAP, V/A/D errors, F1 and the agreement side by side."""
    o = doc["overall"]
    lines = [f"persons: {o['num_persons']}   mAP ({doc['ap_variant']}): {_pct(o.get('mAP'))}%"]
    if "vad_mae" in o:
        maes = "  ".join(f"{d}={_num(o.get(f'vad_mae/{d}'), 2)}" for d in labels.VAD_NAMES)
        lines.append(f"V/A/D MAE (1-10 scale): {maes}   CCC mean: {_num(o.get('vad_ccc'))}")
    if doc.get("thresholds"):
        lines.append(
            f"at the thresholds: F1 macro {_pct(o.get('f1_macro'), 1)}%  micro {_pct(o.get('f1_micro'), 1)}%"
        )
    a = doc.get("agreement") or {}
    if "skipped" not in a:
        cats, vad = a.get("categories", {}), a.get("vad", {})
        ann_f1 = (cats.get("annotators") or {}).get("category_f1_micro")
        mod_f1 = (cats.get("model") or {}).get("category_f1_micro")
        text = f"agreement with annotators ({cats.get('num_persons')} persons): F1 micro annotators {_pct(ann_f1, 1)}%"
        if "model" in cats:
            text += f" vs model {_pct(mod_f1, 1)}%"
        if vad.get("annotators"):
            text += f"; V/A/D MAE annotators {_num(vad['annotators'].get('vad_mae'), 2)}"
            if vad.get("model"):
                text += f" vs model {_num(vad['model'].get('vad_mae'), 2)}"
        lines.append(text)
    return lines


# --------------------------------------------------------------------------------------- entry points
def _records_info(path: Path, num_records: int, evaluated: int, skipped: int, reason: str) -> dict[str, Any]:
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "num_records": num_records,
        "num_evaluated": evaluated,
        "num_skipped": skipped,
        "skipped_reason": reason if skipped else None,
    }


def evaluate_model(
    model_path: str | os.PathLike,
    records_path: str | os.PathLike,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    ap_variant: str = "sklearn",
    batch_size: int = 64,
    num_workers: int = 2,
    device: str | None = None,
    min_annotators: int = DEFAULT_MIN_ANNOTATORS,
    progress: bool = True,
    thresholds: str | os.PathLike | None = None,
    plots: bool = True,
) -> Evaluation:
    """Run a model on records (ground-truth boxes), score it and write every output into ``out_dir``.

    Persons whose image cannot be read are left out (counted in ``metrics.json``). Average precision ranks
    the model's raw category outputs, as training's validation and test figures do (not the 0-1 scores,
    which a clamp ties); the model's calibrated thresholds, if it has any, apply to its 0-1 scores and give
    the precision/recall/F1 figures. Also writes ``predictions.parquet`` (one row per evaluated person, with
    the 0-1 scores and the raw outputs), which :func:`evaluate_predictions` scores to the same figures.

    Args:
        model_path: an emoctx model file.
        records_path: canonical records of the evaluated split.
        root: dataset root the records' image paths are relative to.
        out_dir: output folder.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        batch_size: persons per forward pass.
        num_workers: data-loading processes.
        device: where to run the model (default GPU when available).
        min_annotators: persons with fewer annotators are not used for the agreement figures.
        progress: show a progress bar.
        thresholds: a model or JSON file whose thresholds replace the model's own (see
            :func:`load_thresholds`).
        plots: write the PNG plots.

    Raises:
        EmoctxError: unusable model or records, or no readable image.
    """
    from emoctx.checkpoint import load_model
    from emoctx.data.records import read_records
    from emoctx.evaluation.inference import (
        predict_records,
        predictions_frame,
        scores_from_raw,
        thresholds_from_dict,
    )

    model_path, records_path = Path(model_path), Path(records_path)
    records = read_records(records_path)
    net, info = load_model(model_path)
    raw, vad, valid = predict_records(
        net,
        info,
        records,
        root,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        raw=True,
    )
    scores = scores_from_raw(raw, info.score_activation)
    if not valid.any():
        raise EmoctxError(
            f"{records_path}: no person with a readable image under {root}; nothing to evaluate"
        )
    calibration = (info.training or {}).get("threshold_calibration")
    if thresholds is not None:
        th, th_from = load_thresholds(thresholds)
    else:
        th = thresholds_from_dict(info.thresholds, str(model_path))
        th_from = "stored in the model file" if th is not None else None
    if thresholds is None and th is not None and calibration:
        th_from += (
            f" (rule {calibration.get('rule')}, fitted on {calibration.get('num_persons')} persons of "
            f"{calibration.get('records')})"
        )
    source = {
        "kind": "model",
        "path": str(model_path),
        "sha256": file_sha256(model_path),
        "emoctx_version": info.emoctx_version,
        "torch_version": info.torch_version,
        "timm_version": info.timm_version,
        "format_version": info.format_version,
        "score_activation": info.score_activation,
        "network": info.network,
        "streams": info.streams,
        "training": info.training,
    }
    kept = records[valid].reset_index(drop=True)
    doc = evaluation_document(
        kept,
        scores[valid],
        vad[valid],
        ap_variant=ap_variant,
        thresholds=th,
        thresholds_from=th_from,
        source=source,
        records_info=_records_info(
            records_path, len(records), int(valid.sum()), int((~valid).sum()), "unreadable image"
        ),
        min_annotators=min_annotators,
        ranking=raw[valid],
    )
    files = write_outputs(out_dir, doc, kept, scores[valid], vad[valid], th, plots=plots, ranking=raw[valid])
    files["predictions"] = Path(out_dir) / PREDICTIONS_FILE
    with atomic_path(files["predictions"]) as tmp:
        predictions_frame(records, scores, vad, valid, raw=raw).to_parquet(tmp, index=False)
    log.info("evaluation written to %s", out_dir)
    return Evaluation(doc, files)


def load_thresholds(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Thresholds from a model file (its calibrated ones) or a JSON file ``{slug: number or null}``.

    Returns:
        ``(thresholds, description)``.
    """
    from emoctx.evaluation.inference import thresholds_from_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such thresholds file")
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EmoctxError(f"{path}: not valid JSON ({e})") from e
        if isinstance(values, dict) and isinstance(values.get("thresholds"), dict):
            values = values["thresholds"]  # e.g. {"thresholds": {...}, ...}
        if isinstance(values, dict) and isinstance(values.get("values"), dict):
            values = values["values"]  # the "thresholds" block of a metrics.json
        if not isinstance(values, dict):
            raise EmoctxError(f"{path}: expected an object {{slug: threshold or null}}")
        th = thresholds_from_dict(values, str(path))
    else:
        from emoctx.checkpoint import load_model

        _, info = load_model(path)
        th = thresholds_from_dict(info.thresholds, str(path))
    if th is None:
        raise EmoctxError(f"{path}: holds no thresholds (calibrate the model first: emoctx calibrate)")
    return th, f"from {path}"


def evaluate_predictions(
    predictions_path: str | os.PathLike,
    records_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    ap_variant: str = "sklearn",
    thresholds: np.ndarray | str | os.PathLike | None = None,
    min_annotators: int = DEFAULT_MIN_ANNOTATORS,
    allow_missing: bool = False,
    min_iou: float = 0.5,
    pixel_tolerance: float = 1.0,
    plots: bool = True,
) -> Evaluation:
    """Score a predictions file of any system against records and write every output into ``out_dir``.

    Args:
        predictions_path: ``.parquet``, ``.jsonl`` or ``.csv`` (the form of
            :mod:`emoctx.evaluation.inference`).
        records_path: canonical records of the evaluated split.
        out_dir: output folder.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        thresholds: optional decision thresholds: an array in canonical order, a model file (its calibrated
            thresholds) or a JSON file ``{slug: number or null}``.
        min_annotators: persons with fewer annotators are not used for the agreement figures.
        allow_missing: evaluate only the records that have a prediction (default: an error).
        min_iou: matching rule, see :func:`emoctx.evaluation.inference.match_predictions`.
        pixel_tolerance: matching rule, see :func:`emoctx.evaluation.inference.match_predictions`.
        plots: write the PNG plots.

    Raises:
        EmoctxError: unreadable or invalid files, or rows that match no record.
    """
    from emoctx.data.records import read_records
    from emoctx.evaluation.inference import (
        match_predictions,
        predicted_arrays,
        raw_arrays,
        read_predictions,
    )

    predictions_path, records_path = Path(predictions_path), Path(records_path)
    records = read_records(records_path)
    preds = read_predictions(predictions_path)
    match = match_predictions(
        preds,
        records,
        min_iou=min_iou,
        pixel_tolerance=pixel_tolerance,
        source=str(predictions_path),
        allow_missing=allow_missing,
    )
    th_from = None
    if thresholds is not None and not isinstance(thresholds, np.ndarray):
        thresholds, th_from = load_thresholds(thresholds)
    elif thresholds is not None:
        thresholds, th_from = np.asarray(thresholds, dtype=np.float64), "given"
    valid = match >= 0
    scores, vad = predicted_arrays(preds, match[valid])
    raw = raw_arrays(preds, match[valid])  # what AP ranks when the file gives it
    kept = records[valid].reset_index(drop=True)
    source = {
        "kind": "predictions",
        "path": str(predictions_path),
        "sha256": file_sha256(predictions_path),
        "num_rows": len(preds) + preds.attrs.get("error_rows", 0),
        "num_error_rows": preds.attrs.get("error_rows", 0),
        "has_vad": vad is not None,
        "has_raw": raw is not None,
        "matching": f"same image; box within {pixel_tolerance:g} px or IoU >= {min_iou:g} (one-to-one)",
    }
    doc = evaluation_document(
        kept,
        scores,
        vad,
        ap_variant=ap_variant,
        thresholds=thresholds,
        thresholds_from=th_from,
        source=source,
        records_info=_records_info(
            records_path, len(records), int(valid.sum()), int((~valid).sum()), "no prediction"
        ),
        min_annotators=min_annotators,
        ranking=raw,
    )
    files = write_outputs(out_dir, doc, kept, scores, vad, thresholds, plots=plots, ranking=raw)
    log.info("evaluation written to %s", out_dir)
    return Evaluation(doc, files)
