"""The metrics document of one evaluation: every figure, the identities, the agreement and the breakdowns.

:func:`evaluation_document` computes it from scores and records (:mod:`emoctx.metrics`); it is what
``metrics.json`` holds (fractions, not percent; ``null`` where undefined), and what ``report.md``
(:mod:`emoctx.evaluation.report`) and the plots (:mod:`emoctx.evaluation.plots`) show.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx import __version__, labels
from emoctx.errors import EmoctxError
from emoctx.io import jsonable

log = logging.getLogger(__name__)


BREAKDOWN_COLUMNS: tuple[str, ...] = ("gender", "age", "source")


DEFAULT_MIN_ANNOTATORS = 3


AP_VARIANT_TEXT = {
    "sklearn": "scikit-learn `average_precision_score` (step-wise, no interpolation)",
    "voc": "PASCAL VOC all-point interpolated envelope (the EMOTIC authors' MATLAB script)",
}


@contextlib.contextmanager
def _warnings_to_log(level: int = logging.WARNING) -> Iterator[None]:
    """Turn the metrics' RuntimeWarnings (undefined AP, ...) into log records of ``level``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for w in caught:
        log.log(level, "%s", w.message)


def _threshold_values(thresholds: np.ndarray | None) -> dict[str, float | None] | None:
    if thresholds is None:
        return None
    return jsonable(dict(zip(labels.SLUGS, thresholds)))  # inf (never predicted) -> None


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
        "ap_variant_description": AP_VARIANT_TEXT[ap_variant].replace("`", ""),
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
    return jsonable(doc)


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


def document_title(doc: Mapping[str, Any]) -> str:
    """``<model or predictions file> on <records file>``: the title of the report and the plots."""
    src = doc.get("source", {})
    name = Path(str(src.get("path", ""))).name or "predictions"
    return f"{name} on {Path(str(doc.get('records', {}).get('path', 'records'))).name}"


def number_text(v: Any, digits: int = 3) -> str:
    """A figure as the report and the plots show it (``—`` when undefined)."""
    return "—" if v is None else f"{v:.{digits}f}"
