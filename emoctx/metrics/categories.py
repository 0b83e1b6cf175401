"""Category figures: precision-recall curves, average precision (two variants), mAP, decision thresholds.

See :mod:`emoctx.metrics` for how each is computed. A person is predicted positive when
``score >= threshold``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from emoctx.metrics.inputs import as_array, category_inputs, json_float, mean_defined

log = logging.getLogger(__name__)


AP_VARIANTS: tuple[str, ...] = ("sklearn", "voc")


THRESHOLD_RULES: tuple[str, ...] = ("f1", "pr_equal")


# Two |precision - recall| (or two F1) values closer than this are a tie for the threshold rules.
_TIE_TOL = 1e-12


def _ranked_counts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score threshold, highest threshold first."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], targets[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last item of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return tps, fps, s[last]


def precision_recall_curve(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold (``score >= threshold``), highest first.

    The same points as ``sklearn.metrics.precision_recall_curve`` without its appended (recall 0,
    precision 1) end point, in float64. Tied scores form one point.

    Hand-written (about ten lines) rather than torchmetrics' ``binary_precision_recall_curve``, which
    returns float32 precision/recall (AP off sklearn by up to ~1e-7) and silently applies a sigmoid to
    scores outside [0, 1]; in float32 that saturates large logits to exactly 1.0 and creates ties that are
    not in the data, changing the AP (e.g. 0.694 instead of 0.639 on logits 30, 25, 20).

    Args:
        scores: (N,) scores; any monotone scale (probabilities or logits).
        targets: (N,) 0/1 labels.

    Returns:
        ``(precision, recall, thresholds)``, each of length = number of distinct scores. ``recall`` is NaN
        when there is no positive example.
    """
    s = as_array(scores, "scores").ravel()
    y = as_array(targets, "targets").ravel()
    if s.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    tps, fps, thresholds = _ranked_counts(s, y)
    precision = tps / (tps + fps)
    n_pos = tps[-1]
    recall = tps / n_pos if n_pos > 0 else np.full(tps.shape, np.nan)
    return precision, recall, thresholds


def average_precision(scores: Any, targets: Any, variant: str = "sklearn") -> float:
    """Average precision of one category; NaN when it has no positive example.

    Args:
        scores: (N,) scores.
        targets: (N,) 0/1 labels.
        variant: ``"sklearn"`` (step-wise, no interpolation) or ``"voc"`` (all-point interpolated envelope).

    Returns:
        AP in [0, 1], or NaN when ``targets`` has no positive.
    """
    if variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {variant!r}; choose one of {AP_VARIANTS}")
    precision, recall, _ = precision_recall_curve(scores, targets)
    if recall.size == 0 or not np.isfinite(recall[-1]):
        return math.nan
    if variant == "sklearn":
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    # VOC all-point: pad (recall 0, precision 0) and (recall 1, precision 0), make precision non-increasing
    # from right to left, then add the envelope's area at each recall change.
    mrec = np.r_[0.0, recall, 1.0]
    mpre = np.maximum.accumulate(np.r_[0.0, precision, 0.0][::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[change] - mrec[change - 1]) * mpre[change]))


def per_category_ap(
    scores: Any,
    targets: Any,
    ap_variant: str = "sklearn",
    names: Sequence[str] | None = None,
    context: str = "",
) -> np.ndarray:
    """Average precision of each category; NaN (with one warning naming them) where there is no positive.

    Args:
        scores: (N, C) scores, columns in the order of ``names``.
        targets: (N, C) 0/1 labels.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        names: category names of the columns; default :data:`emoctx.labels.CATEGORIES`.
        context: text added to the warning (e.g. which subset is evaluated).

    Returns:
        (C,) float64 array.
    """
    if ap_variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {ap_variant!r}; choose one of {AP_VARIANTS}")
    s, t, names, _ = category_inputs(scores, targets, names)
    ap = np.array([average_precision(s[:, c], t[:, c], ap_variant) for c in range(s.shape[1])])
    undefined = [names[c] for c in np.flatnonzero(np.isnan(ap))]
    if undefined:
        where = f" ({context})" if context else ""
        warnings.warn(
            f"average precision undefined for {len(undefined)} categor{'y' if len(undefined) == 1 else 'ies'} "
            f"without positive examples{where}: {', '.join(undefined)}; left out of the mAP",
            RuntimeWarning,
            stacklevel=2,
        )
    return ap


def mean_average_precision(
    scores: Any,
    targets: Any,
    ap_variant: str = "sklearn",
    names: Sequence[str] | None = None,
    context: str = "",
) -> dict[str, Any]:
    """Mean average precision over the categories that have positives, with every per-category AP.

    Returns:
        ``{"mAP": fraction or None, "ap_variant": ..., "ap/<slug>": fraction or None, ...,
        "num_categories_evaluated": int, "undefined_ap": [category names]}``.
    """
    _, _, names, slugs = category_inputs(scores, targets, names)
    ap = per_category_ap(scores, targets, ap_variant, names, context)
    defined = ap[~np.isnan(ap)]
    out: dict[str, Any] = {
        "mAP": float(defined.mean()) if defined.size else None,
        "ap_variant": ap_variant,
    }
    out.update({f"ap/{slug}": json_float(v) for slug, v in zip(slugs, ap)})
    out["num_categories_evaluated"] = int(defined.size)
    out["undefined_ap"] = [n for n, v in zip(names, ap) if np.isnan(v)]
    return out


def fit_threshold(scores: Any, targets: Any, rule: str = "f1") -> float:
    """Fit one category's decision threshold (predict positive when ``score >= threshold``).

    Candidates are the observed distinct scores.

    * ``"f1"``: the threshold with the highest F1; among equal F1 values, the highest threshold (fewest
      positive predictions).
    * ``"pr_equal"``: the threshold where precision and recall are closest, i.e. minimal
      ``|precision - recall|`` along the PR curve (no float equality test: with tied scores the two may
      never be exactly equal). Points with no true positive (precision = recall = 0) are not candidates.
      Among equal gaps, the highest threshold.

    Returns:
        The threshold, or NaN when the category has no positive example (see :func:`fit_thresholds`).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {THRESHOLD_RULES}")
    precision, recall, thresholds = precision_recall_curve(scores, targets)
    if recall.size == 0 or not np.isfinite(recall[-1]):
        return math.nan
    if rule == "f1":
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = np.flatnonzero(f1 >= f1.max() - _TIE_TOL)
    else:
        gap = np.where(recall > 0, np.abs(precision - recall), np.inf)
        best = np.flatnonzero(gap <= gap.min() + _TIE_TOL)
    # Thresholds are in decreasing order: the first candidate is the highest.
    return float(thresholds[best[0]])


def fit_thresholds(
    scores: Any,
    targets: Any,
    rule: str = "f1",
    names: Sequence[str] | None = None,
    no_positive_threshold: float = math.inf,
) -> np.ndarray:
    """Per-category decision thresholds fitted on validation scores (see :func:`fit_threshold`).

    Args:
        scores: (N, C) validation scores.
        targets: (N, C) 0/1 validation labels.
        rule: ``"f1"`` or ``"pr_equal"``.
        names: category names of the columns; default :data:`emoctx.labels.CATEGORIES`.
        no_positive_threshold: threshold of a category without positive examples; the default ``+inf``
            means it is never predicted (nothing in the data supports predicting it). A warning names it.

    Returns:
        (C,) float64 thresholds on the scale of ``scores``.
    """
    s, t, names, _ = category_inputs(scores, targets, names)
    out = np.array([fit_threshold(s[:, c], t[:, c], rule) for c in range(s.shape[1])])
    missing = np.isnan(out)
    if missing.any():
        warnings.warn(
            f"no positive examples to fit a threshold for: {', '.join(names[c] for c in np.flatnonzero(missing))};"
            f" using {no_positive_threshold}",
            RuntimeWarning,
            stacklevel=2,
        )
        out[missing] = no_positive_threshold
    return out


def precision_recall_f1_at(
    scores: Any,
    targets: Any,
    thresholds: Any,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Precision, recall and F1 per category at the given thresholds, with micro and macro averages.

    A person is predicted positive for a category when ``score >= threshold``. Per category:
    precision = TP / (TP + FP), 0 when nothing is predicted but positives exist; recall = TP / (TP + FN);
    F1 = 2 TP / (2 TP + FP + FN). A category without positive examples has undefined recall (``None``); its
    precision and F1 are 0 when it was predicted and ``None`` otherwise. Macro averages are over the
    categories with positives (like mAP); micro averages pool TP/FP/FN over all categories.

    Args:
        scores: (N, C) scores.
        targets: (N, C) 0/1 labels.
        thresholds: (C,) thresholds or one number for all categories.
        names: category names of the columns; default :data:`emoctx.labels.CATEGORIES`.

    Returns:
        Flat dict: ``precision/<slug>``, ``recall/<slug>``, ``f1/<slug>``, ``support/<slug>`` (number of
        positives), ``precision_micro``, ``recall_micro``, ``f1_micro``, ``precision_macro``,
        ``recall_macro``, ``f1_macro``.
    """
    s, t, names, slugs = category_inputs(scores, targets, names)
    th = np.broadcast_to(as_array(thresholds, "thresholds"), (s.shape[1],))
    pred = s >= th[None, :]
    pos = t > 0.5
    tp = (pred & pos).sum(0).astype(np.float64)
    fp = (pred & ~pos).sum(0).astype(np.float64)
    fn = (~pred & pos).sum(0).astype(np.float64)
    support = pos.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.where(support > 0, 0.0, np.nan))
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    out: dict[str, Any] = {}
    for c, slug in enumerate(slugs):
        out[f"precision/{slug}"] = json_float(precision[c])
        out[f"recall/{slug}"] = json_float(recall[c])
        out[f"f1/{slug}"] = json_float(f1[c])
        out[f"support/{slug}"] = int(support[c])
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    out["precision_micro"] = float(TP / (TP + FP)) if TP + FP > 0 else (0.0 if TP + FN > 0 else None)
    out["recall_micro"] = float(TP / (TP + FN)) if TP + FN > 0 else None
    out["f1_micro"] = float(2 * TP / (2 * TP + FP + FN)) if 2 * TP + FP + FN > 0 else None
    has_pos = support > 0
    out["precision_macro"] = mean_defined(precision[has_pos].tolist())
    out["recall_macro"] = mean_defined(recall[has_pos].tolist())
    out["f1_macro"] = mean_defined(f1[has_pos].tolist())
    return out
