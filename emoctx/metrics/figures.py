"""Every figure of one evaluation at once (:func:`evaluate_arrays`), and per group of persons (:func:`breakdown`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from emoctx.metrics.categories import mean_average_precision, precision_recall_f1_at
from emoctx.metrics.inputs import as_array, category_inputs
from emoctx.metrics.vad import vad_metrics

log = logging.getLogger(__name__)


def evaluate_arrays(
    scores: Any,
    targets: Any,
    vad_pred: Any | None,
    vad_true: Any | None,
    ap_variant: str = "sklearn",
    thresholds: Any | None = None,
    names: Sequence[str] | None = None,
    context: str = "",
    ranking: Any | None = None,
) -> dict[str, Any]:
    """Every figure for one set of persons: mAP and per-category AP, V/A/D errors, and (with thresholds) F1.

    Args:
        scores: (N, C) category scores (any monotone scale): the scale of ``thresholds``, and what AP ranks
            unless ``ranking`` is given.
        targets: (N, C) 0/1 category labels.
        vad_pred: (N, 3) predicted V/A/D on the 1-10 scale, or None for a categories-only model.
        vad_true: (N, 3) true V/A/D on the 1-10 scale, NaN where missing, or None.
        ap_variant: ``"sklearn"`` or ``"voc"`` (recorded in the result as ``ap_variant``).
        thresholds: optional (C,) decision thresholds; adds the :func:`precision_recall_f1_at` figures.
        names: category names of the columns; default :data:`emoctx.labels.CATEGORIES`.
        context: text added to warnings (e.g. the subset evaluated).
        ranking: optional (N, C) raw outputs that AP ranks instead of ``scores`` (e.g. a model's outputs
            before its clamp to 0-1, which ties persons).

    Returns:
        A flat JSON-serialisable dict: ``num_persons``, the keys of :func:`mean_average_precision`, of
        :func:`vad_metrics` (when V/A/D is given) and of :func:`precision_recall_f1_at` (when thresholds
        are given).
    """
    s, t, names, _ = category_inputs(scores, targets, names)
    r = s if ranking is None else category_inputs(ranking, targets, names)[0]
    out: dict[str, Any] = {"num_persons": int(s.shape[0])}
    out.update(mean_average_precision(r, t, ap_variant, names, context))
    if vad_pred is not None and vad_true is not None:
        vp, vt = as_array(vad_pred, "vad_pred"), as_array(vad_true, "vad_true")
        if len(vp) != len(s) or len(vt) != len(s):
            raise ValueError(
                f"vad_pred/vad_true: {len(vp)}/{len(vt)} rows, expected one per person ({len(s)})"
            )
        out.update(vad_metrics(vp, vt))
    if thresholds is not None:
        out.update(precision_recall_f1_at(s, t, thresholds, names))
    return out


def breakdown(
    df_groups: pd.Series | Sequence[Any],
    scores: Any,
    targets: Any,
    vad_pred: Any | None = None,
    vad_true: Any | None = None,
    ap_variant: str = "sklearn",
    thresholds: Any | None = None,
    names: Sequence[str] | None = None,
    missing_label: str = "unknown",
    ranking: Any | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_arrays` per group value (e.g. gender, age or source), with the count of each group.

    Rows are matched to groups by position. Missing group values (None/NaN) form the group
    ``missing_label``. ``ranking``: raw outputs that AP ranks (see :func:`evaluate_arrays`).

    Returns:
        ``{group value as str: figures}``, sorted by group; each figures dict has ``num_persons``.
    """
    s, t, names, _ = category_inputs(scores, targets, names)
    groups = pd.Series(df_groups).reset_index(drop=True)
    if len(groups) != len(s):
        raise ValueError(f"groups: {len(groups)} values, expected one per person ({len(s)})")
    keys = np.array([missing_label if pd.isna(g) else str(g) for g in groups], dtype=object)
    vp = None if vad_pred is None else as_array(vad_pred, "vad_pred")
    vt = None if vad_true is None else as_array(vad_true, "vad_true")
    r = None if ranking is None else category_inputs(ranking, targets, names)[0]
    label = f"{groups.name}=" if groups.name is not None else "group "
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        out[key] = evaluate_arrays(
            s[rows],
            t[rows],
            None if vp is None else vp[rows],
            None if vt is None else vt[rows],
            ap_variant=ap_variant,
            thresholds=thresholds,
            names=names,
            context=f"{label}{key}",
            ranking=None if r is None else r[rows],
        )
    return out
