"""EMOTIC evaluation: average precision, V/A/D errors, decision thresholds and annotator agreement.

Everything is computed the way the literature reports it, and every figure says how it was computed:

* **Average precision** per category on the raw scores, then the mean over the categories (mAP, as a
  fraction in [0, 1]; reports may show percent). AP depends only on the order of the scores, so it ranks the
  model's raw outputs, never outputs squashed into 0-1: a clamp to [0, 1] (the score of a model trained with
  the authors' squared-error loss) ties every person at 0 or at 1, and a float32 sigmoid rounds large outputs
  to exactly 1.0; such ties change the AP. Training (:class:`EmotionMetrics`), ``emoctx evaluate`` and the
  reports all rank the raw outputs, so they give one mAP for one model and split. Two variants, chosen by
  name:

  - ``"sklearn"`` (default): step-wise AP without interpolation, identical to
    ``sklearn.metrics.average_precision_score``: ``sum_i (R_i - R_{i-1}) * P_i`` over the distinct score
    thresholds, highest first.
  - ``"voc"``: the all-point interpolated AP of PASCAL VOC used by the EMOTIC authors' MATLAB script: the
    precision envelope is made monotone (each precision replaced by the highest precision at any higher
    recall) and its area is summed at each change of recall. Without tied scores this is exactly the MATLAB
    computation; tied scores form one point of the curve here (order-independent), whereas the MATLAB
    script walks tied items in input order.

  A category without positive examples has no AP (NaN): it is left out of the mean and named in a
  warning; it is never counted as 0 or 1.
* **V/A/D** on the 1-10 scale, NaN targets meaning "missing": MAE, RMSE, Pearson correlation (PCC), Lin's
  concordance correlation (CCC) and sign agreement around the scale midpoint (SAGR), per dimension and
  averaged over the dimensions.
* **Thresholds** per category fitted on validation scores (``"f1"`` or ``"pr_equal"``) and precision /
  recall / F1 at given thresholds. A person is predicted positive when ``score >= threshold``.
* **Annotator agreement** (leave-one-out, as in EmoNet-style studies): each annotator is scored against the
  combined labels of the other annotators of the same person, and the model against the same references.
* **Expressions** (face models' discrete task, EmoNet's figures): accuracy and macro-F1 over one class per
  person (:func:`expression_metrics`); persons without an expression label (``-1``) are left out.

Functions that return arrays use NaN for undefined values; functions that return dicts return plain,
JSON-serialisable dicts with flat keys (``mAP``, ``ap/<slug>``, ``vad_mae/<dim>``...) and ``None`` for
undefined values. :class:`EmotionMetrics` accumulates the same figures inside a LightningModule.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchmetrics
from scipy import stats
from torchmetrics.utilities import dim_zero_cat

from emoctx.labels import CATEGORIES, EXPRESSIONS, SLUGS, VAD_MID, VAD_NAMES, slugify

log = logging.getLogger(__name__)

AP_VARIANTS: tuple[str, ...] = ("sklearn", "voc")
THRESHOLD_RULES: tuple[str, ...] = ("f1", "pr_equal")
VAD_METRICS: tuple[str, ...] = ("mae", "rmse", "pcc", "ccc", "sagr")

# Two |precision - recall| (or two F1) values closer than this are a tie for the threshold rules.
_TIE_TOL = 1e-12


# --------------------------------------------------------------------------------------------- helpers
def _array(x: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """Any array-like (numpy, torch, nested lists) as a numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64 if dtype is np.float64 else x.dtype).numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as a numeric array ({e})") from e


def _names_and_slugs(names: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if names is None:
        return CATEGORIES, SLUGS
    names = tuple(names)
    return names, tuple(slugify(n) for n in names)


def _category_inputs(
    scores: Any, targets: Any, names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Validate an (N, C) score matrix and its 0/1 target matrix."""
    names, slugs = _names_and_slugs(names)
    s = _array(scores, "scores")
    t = _array(targets, "targets")
    if s.ndim != 2 or s.shape[1] != len(names):
        raise ValueError(f"scores: expected shape (N, {len(names)}), got {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"targets: expected the shape of scores {s.shape}, got {t.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores: {int((~np.isfinite(s)).sum())} value(s) are NaN or infinite")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("targets: must contain only 0 and 1")
    return s, t, names, slugs


def _json_float(x: Any) -> float | None:
    """A float for a JSON document: ``None`` when undefined (NaN) or infinite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values; ``None`` when none is defined."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


# -------------------------------------------------------------------------------- precision-recall curve
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
    s = _array(scores, "scores").ravel()
    y = _array(targets, "targets").ravel()
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
    s, t, names, _ = _category_inputs(scores, targets, names)
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
    _, _, names, slugs = _category_inputs(scores, targets, names)
    ap = per_category_ap(scores, targets, ap_variant, names, context)
    defined = ap[~np.isnan(ap)]
    out: dict[str, Any] = {
        "mAP": float(defined.mean()) if defined.size else None,
        "ap_variant": ap_variant,
    }
    out.update({f"ap/{slug}": _json_float(v) for slug, v in zip(slugs, ap)})
    out["num_categories_evaluated"] = int(defined.size)
    out["undefined_ap"] = [n for n, v in zip(names, ap) if np.isnan(v)]
    return out


# ---------------------------------------------------------------------------------------------- V/A/D
def concordance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient with population (1/n) moments, as Lin (1989) defines it.

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)``; NaN when fewer than two values or when the
    denominator is 0. Written out here because torchmetrics' ``concordance_corrcoef`` mixes 1/(n-1)
    variances with the mean-difference term, which is not Lin's estimator.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    den = x.var() + y.var() + (mx - my) ** 2
    return float(2.0 * cov / den) if den > 0 else math.nan


def pearson_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (scipy); NaN when fewer than two values or either side is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.pearsonr(x, y).statistic)


def sign_agreement(pred: np.ndarray, true: np.ndarray, mid: float = VAD_MID) -> float:
    """SAGR: fraction of values with ``sign(pred - mid) == sign(true - mid)``; NaN when empty.

    A value exactly at the midpoint has sign 0 and agrees only with another value at the midpoint.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.size == 0:
        return math.nan
    return float(np.mean(np.sign(pred - mid) == np.sign(true - mid)))


def vad_metrics(
    pred: Any,
    true: Any,
    mask: Any | None = None,
    mid: float = VAD_MID,
    names: Sequence[str] = VAD_NAMES,
) -> dict[str, Any]:
    """MAE, RMSE, PCC, CCC and SAGR per V/A/D dimension and their mean over the dimensions.

    Values are on the 1-10 scale. A target that is NaN, or whose ``mask`` entry is False, is missing and
    left out of that dimension.

    Args:
        pred: (N, D) predictions (must be finite wherever the target is present).
        true: (N, D) targets, NaN where missing.
        mask: optional (N, D) or (N,) booleans, True where the target is valid.
        mid: scale midpoint for SAGR (default :data:`emoctx.labels.VAD_MID`).
        names: dimension names (default :data:`emoctx.labels.VAD_NAMES`).

    Returns:
        Flat dict: ``vad_<metric>`` (mean over the dimensions where it is defined), ``vad_<metric>/<dim>``
        for each metric of :data:`VAD_METRICS`, and ``vad_n/<dim>`` (number of values used). Undefined
        figures (no value, constant series for PCC) are ``None``.
    """
    names = tuple(names)
    p = _array(pred, "vad_pred")
    t = _array(true, "vad_true")
    if p.ndim == 1 and len(names) == 1:
        p, t = p[:, None], t[:, None]
    if p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"vad_pred: expected shape (N, {len(names)}), got {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"vad_true: expected the shape of vad_pred {p.shape}, got {t.shape}")
    valid = np.isfinite(t)
    if mask is not None:
        m = _array(mask, "vad_mask", dtype=bool)
        if m.ndim == 1:
            m = m[:, None]
        valid &= np.broadcast_to(m, t.shape)
    bad = valid & ~np.isfinite(p)
    if bad.any():
        raise ValueError(
            f"vad_pred: {int(bad.sum())} prediction(s) are NaN or infinite where a target exists"
        )

    per: dict[str, dict[str, float]] = {m: {} for m in VAD_METRICS}
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for d, dim in enumerate(names):
        x, y = p[valid[:, d], d], t[valid[:, d], d]
        err = x - y
        counts[dim] = int(x.size)
        per["mae"][dim] = float(np.mean(np.abs(err))) if x.size else math.nan
        per["rmse"][dim] = float(np.sqrt(np.mean(err**2))) if x.size else math.nan
        per["pcc"][dim] = pearson_correlation(x, y)
        per["ccc"][dim] = concordance_correlation(x, y)
        per["sagr"][dim] = sign_agreement(x, y, mid)
    for metric in VAD_METRICS:
        out[f"vad_{metric}"] = _mean_defined(list(per[metric].values()))
        for dim in names:
            out[f"vad_{metric}/{dim}"] = _json_float(per[metric][dim])
    for dim in names:
        out[f"vad_n/{dim}"] = counts[dim]
    return out


# ------------------------------------------------------------------------------------------- expressions
def expression_metrics(pred: Any, true: Any, names: Sequence[str] = EXPRESSIONS) -> dict[str, Any]:
    """Accuracy and macro-F1 of discrete expressions, as EmoNet reports them.

    Written with numpy (scikit-learn is only a development dependency); the macro-F1 is scikit-learn's
    ``f1_score(average="macro")``: the mean F1 over the classes that occur in the labels or the predictions,
    a class never predicted counting 0.

    Args:
        pred: ``(N, E)`` scores or logits (the highest is the prediction) or ``(N,)`` predicted class indices.
        true: ``(N,)`` class indices; ``-1`` marks a person without a label (left out).
        names: the class names (default :data:`emoctx.labels.EXPRESSIONS`).

    Returns:
        ``expression_accuracy``, ``expression_f1_macro``, ``expression_f1/<name>`` (None for a class that
        occurs in neither) and ``expression_n`` (persons scored); None figures when nobody is labelled.
    """
    names = tuple(names)
    p = _array(pred, "expression_pred")
    t = _array(true, "expression_true")
    if p.ndim == 2:
        if p.shape[1] != len(names):
            raise ValueError(f"expression_pred: expected shape (N, {len(names)}), got {p.shape}")
        p = p.argmax(axis=1)
    if p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"expression_pred/true: expected (N,) classes each, got {p.shape} and {t.shape}")
    labelled = t != -1
    p, t = p[labelled].astype(np.int64), t[labelled].astype(np.int64)
    if ((t < 0) | (t >= len(names))).any() or ((p < 0) | (p >= len(names))).any():
        raise ValueError(f"expression classes must be in 0..{len(names) - 1} (or -1 for none)")
    out: dict[str, Any] = {"expression_n": int(t.size)}
    if t.size == 0:
        out.update(expression_accuracy=None, expression_f1_macro=None)
        out.update({f"expression_f1/{slugify(n)}": None for n in names})
        return out
    per: list[float] = []
    for k, name in enumerate(names):
        tp = int(((p == k) & (t == k)).sum())
        predicted, actual = int((p == k).sum()), int((t == k).sum())
        if predicted + actual == 0:
            out[f"expression_f1/{slugify(name)}"] = None
            continue
        f1 = 2.0 * tp / (predicted + actual)
        out[f"expression_f1/{slugify(name)}"] = f1
        per.append(f1)
    out["expression_accuracy"] = float(np.mean(p == t))
    out["expression_f1_macro"] = float(np.mean(per))
    return out


# ------------------------------------------------------------------------------------------- thresholds
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
    s, t, names, _ = _category_inputs(scores, targets, names)
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
    s, t, names, slugs = _category_inputs(scores, targets, names)
    th = np.broadcast_to(_array(thresholds, "thresholds"), (s.shape[1],))
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
        out[f"precision/{slug}"] = _json_float(precision[c])
        out[f"recall/{slug}"] = _json_float(recall[c])
        out[f"f1/{slug}"] = _json_float(f1[c])
        out[f"support/{slug}"] = int(support[c])
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    out["precision_micro"] = float(TP / (TP + FP)) if TP + FP > 0 else (0.0 if TP + FN > 0 else None)
    out["recall_micro"] = float(TP / (TP + FN)) if TP + FN > 0 else None
    out["f1_micro"] = float(2 * TP / (2 * TP + FP + FN)) if 2 * TP + FP + FN > 0 else None
    has_pos = support > 0
    out["precision_macro"] = _mean_defined(precision[has_pos].tolist())
    out["recall_macro"] = _mean_defined(recall[has_pos].tolist())
    out["f1_macro"] = _mean_defined(f1[has_pos].tolist())
    return out


# --------------------------------------------------------------------------------------- all the figures
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
    s, t, names, _ = _category_inputs(scores, targets, names)
    r = s if ranking is None else _category_inputs(ranking, targets, names)[0]
    out: dict[str, Any] = {"num_persons": int(s.shape[0])}
    out.update(mean_average_precision(r, t, ap_variant, names, context))
    if vad_pred is not None and vad_true is not None:
        vp, vt = _array(vad_pred, "vad_pred"), _array(vad_true, "vad_true")
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
    s, t, names, _ = _category_inputs(scores, targets, names)
    groups = pd.Series(df_groups).reset_index(drop=True)
    if len(groups) != len(s):
        raise ValueError(f"groups: {len(groups)} values, expected one per person ({len(s)})")
    keys = np.array([missing_label if pd.isna(g) else str(g) for g in groups], dtype=object)
    vp = None if vad_pred is None else _array(vad_pred, "vad_pred")
    vt = None if vad_true is None else _array(vad_true, "vad_true")
    r = None if ranking is None else _category_inputs(ranking, targets, names)[0]
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


# ----------------------------------------------------------------------------------- annotator agreement
def _annotator_matrix(
    person: int, sets: Sequence[Sequence[str]], index: Mapping[str, int], num: int
) -> np.ndarray:
    m = np.zeros((len(sets), num), dtype=bool)
    for a, cats in enumerate(sets):
        for c in cats:
            if c not in index:
                raise ValueError(
                    f"annotator_categories: person {person}, annotator {a}: unknown category {c!r}"
                )
            m[a, index[c]] = True
    return m


def _annotator_vad(person: int, triples: Sequence[Sequence[float | None]], dims: int) -> np.ndarray:
    rows = [[math.nan if v is None else float(v) for v in tri] for tri in triples]
    if any(len(r) != dims for r in rows):
        raise ValueError(f"annotator_vad: person {person}: each entry must have {dims} values, got {triples}")
    return np.array(rows, dtype=np.float64).reshape(len(rows), dims)


def _category_figures(pred: np.ndarray, ref: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """Precision/recall/F1 (micro, macro) and the mean per-person Jaccard of binary labels."""
    prf = precision_recall_f1_at(pred.astype(np.float64), ref.astype(np.float64), 0.5, names)
    inter = (pred & ref).sum(1)
    union = (pred | ref).sum(1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # both empty: full agreement
    out = {f"category_{k}": prf[k] for k in ("precision_micro", "recall_micro", "f1_micro")}
    out.update({f"category_{k}": prf[k] for k in ("precision_macro", "recall_macro", "f1_macro")})
    out["category_jaccard"] = float(jaccard.mean()) if len(jaccard) else None
    return out


def _weighted_mean(per_k: list[dict[str, Any]], who: str) -> dict[str, Any]:
    """Average the figures of ``who`` over k, weighting each k by its number of persons."""
    keys = [k for k in per_k[0][who] if not k.startswith("vad_n/")]
    out: dict[str, Any] = {}
    for key in keys:
        pairs = [(e[who][key], e["num_persons"]) for e in per_k if e[who][key] is not None]
        w = sum(n for _, n in pairs)
        out[key] = float(sum(v * n for v, n in pairs) / w) if w else None
    return out


def annotator_agreement(
    annotator_categories: Sequence[Sequence[Sequence[str]]],
    annotator_vad: Sequence[Sequence[Sequence[float | None]]] | None = None,
    model_scores: Any | None = None,
    model_vad: Any | None = None,
    thresholds: Any | None = None,
    min_annotators: int = 3,
    min_share: float = 0.5,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Leave-one-out agreement of the annotators with each other, and of the model with the same references.

    For each annotator index k, on every person with at least ``min_annotators`` annotators and an annotator
    k, the reference is built from the *other* annotators of that person:

    * categories: a category is in the reference when at least ``min_share`` of the other annotators chose
      it (default 0.5: at least half, so with two others either one suffices, with four others two);
    * V/A/D: the mean of the other annotators' values (NaN values ignored; missing when all are NaN).

    Annotator k's labels are scored against the reference: categories with micro/macro precision, recall
    and F1 and the mean per-person Jaccard index (AP is meaningless for binary labels); V/A/D with
    :func:`vad_metrics` on the values present in both. The model (categories thresholded with
    ``score >= threshold``; V/A/D as predicted) is scored against the same references on the same persons
    and the same V/A/D values. Figures are averaged over k, each k weighted by its number of persons.
    Categories and V/A/D are counted separately (a person may have a different number of each).

    Args:
        annotator_categories: per person, one list of category names per annotator (the records column
            ``annotator_categories``).
        annotator_vad: per person, one [valence, arousal, dominance] per annotator on 1-10, NaN/None where
            missing (the records column ``annotator_vad``); None to skip V/A/D.
        model_scores: optional (N, C) model category scores, one row per person.
        model_vad: optional (N, 3) model V/A/D on the 1-10 scale.
        thresholds: (C,) thresholds or one number; required with ``model_scores``.
        min_annotators: persons with fewer annotators are not counted (at least 2).
        min_share: share of the other annotators needed for a category to be in the reference, in (0, 1].
        names: category names; default :data:`emoctx.labels.CATEGORIES`.

    Returns:
        A JSON-serialisable dict with ``reference_rule``, ``min_annotators`` and, for ``categories`` and
        ``vad``: ``num_persons`` (counted), ``num_persons_skipped`` (too few annotators), ``annotators``
        and ``model`` figures averaged over k, and ``per_k`` (figures for each k with its person count).
    """
    if min_annotators < 2:
        raise ValueError(
            f"min_annotators must be at least 2 for a leave-one-out reference, got {min_annotators}"
        )
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    names, _ = _names_and_slugs(names)
    index = {n: i for i, n in enumerate(names)}
    n_persons = len(annotator_categories)
    model_pred = None
    if model_scores is not None:
        if thresholds is None:
            raise ValueError("thresholds: required to turn model_scores into category predictions")
        ms = _array(model_scores, "model_scores")
        if ms.shape != (n_persons, len(names)):
            raise ValueError(f"model_scores: expected shape ({n_persons}, {len(names)}), got {ms.shape}")
        model_pred = ms >= np.broadcast_to(_array(thresholds, "thresholds"), (len(names),))[None, :]
    mv = None
    if model_vad is not None:
        mv = _array(model_vad, "model_vad")
        if mv.shape != (n_persons, len(VAD_NAMES)):
            raise ValueError(f"model_vad: expected shape ({n_persons}, {len(VAD_NAMES)}), got {mv.shape}")

    result: dict[str, Any] = {
        "reference_rule": (
            f"leave-one-out: a category is in the reference when at least {min_share:.0%} of the other "
            "annotators chose it; V/A/D reference = mean of the other annotators"
        ),
        "min_annotators": int(min_annotators),
    }

    # Categories.
    mats = [_annotator_matrix(p, sets, index, len(names)) for p, sets in enumerate(annotator_categories)]
    counted = [p for p, m in enumerate(mats) if len(m) >= min_annotators]
    per_k: list[dict[str, Any]] = []
    for k in range(max((len(mats[p]) for p in counted), default=0)):
        persons = [p for p in counted if len(mats[p]) > k]
        ann = np.stack([mats[p][k] for p in persons])
        ref = np.stack(
            [np.delete(mats[p], k, axis=0).sum(0) >= min_share * (len(mats[p]) - 1) for p in persons]
        )
        entry: dict[str, Any] = {"k": k, "num_persons": len(persons)}
        entry["annotators"] = _category_figures(ann, ref, names)
        if model_pred is not None:
            entry["model"] = _category_figures(model_pred[persons], ref, names)
        per_k.append(entry)
    result["categories"] = _agreement_summary(per_k, len(counted), n_persons)

    # V/A/D.
    if annotator_vad is not None:
        if len(annotator_vad) != n_persons:
            raise ValueError(
                f"annotator_vad: {len(annotator_vad)} persons, annotator_categories has {n_persons}"
            )
        vads = [_annotator_vad(p, tri, len(VAD_NAMES)) for p, tri in enumerate(annotator_vad)]
        counted = [p for p, v in enumerate(vads) if len(v) >= min_annotators]
        per_k = []
        for k in range(max((len(vads[p]) for p in counted), default=0)):
            persons = [p for p in counted if len(vads[p]) > k]
            ann = np.stack([vads[p][k] for p in persons])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all others NaN: reference missing
                ref = np.stack([np.nanmean(np.delete(vads[p], k, axis=0), axis=0) for p in persons])
            both = np.isfinite(ann) & np.isfinite(ref)
            entry = {"k": k, "num_persons": len(persons)}
            entry["annotators"] = vad_metrics(np.where(both, ann, 0.0), ref, both)
            if mv is not None:
                entry["model"] = vad_metrics(mv[persons], ref, both)
            per_k.append(entry)
        result["vad"] = _agreement_summary(per_k, len(counted), n_persons)
    log.info(
        "annotator agreement on %d persons (categories) / %s (V/A/D) with >= %d annotators",
        result["categories"]["num_persons"],
        result.get("vad", {}).get("num_persons", "-"),
        min_annotators,
    )
    return result


def _agreement_summary(per_k: list[dict[str, Any]], counted: int, total: int) -> dict[str, Any]:
    out: dict[str, Any] = {"num_persons": counted, "num_persons_skipped": total - counted}
    if per_k:
        out["annotators"] = _weighted_mean(per_k, "annotators")
        if "model" in per_k[0]:
            out["model"] = _weighted_mean(per_k, "model")
    out["per_k"] = per_k
    return out


def agreement_from_records(
    df: pd.DataFrame,
    model_scores: Any | None = None,
    model_vad: Any | None = None,
    thresholds: Any | None = None,
    min_annotators: int = 3,
    min_share: float = 0.5,
) -> dict[str, Any]:
    """:func:`annotator_agreement` on the ``annotator_categories`` / ``annotator_vad`` columns of records.

    ``model_scores`` and ``model_vad`` have one row per record, in the order of ``df``.
    """
    if "annotator_categories" not in df.columns:
        raise ValueError(
            "records: no 'annotator_categories' column (the source has one annotator per person)"
        )
    vad = list(df["annotator_vad"]) if "annotator_vad" in df.columns else None
    return annotator_agreement(
        list(df["annotator_categories"]),
        vad,
        model_scores=model_scores,
        model_vad=model_vad,
        thresholds=thresholds,
        min_annotators=min_annotators,
        min_share=min_share,
    )


# ------------------------------------------------------------------------------------- torchmetrics class
class EmotionMetrics(torchmetrics.Metric):
    """mAP, per-category AP and V/A/D errors accumulated over the steps of one stage (one instance per stage).

    States are concatenated across processes (``dist_reduce_fx="cat"``), so the figures are those of the
    whole validation/test set under DDP. :meth:`compute` runs :func:`evaluate_arrays` on CPU in float64 on
    the raw outputs it is given (the training module passes the network's raw category outputs), so the
    numbers equal those of ``emoctx evaluate`` on the same model and split when the network ran in the same
    arithmetic (``emoctx evaluate`` runs fp32: a run trained with ``bf16-mixed`` computes its validation and
    test figures in bf16, a little apart). ``num_persons`` counts the persons scored.

    Example:
        >>> m = EmotionMetrics()
        >>> m.update(scores, targets, vad_pred, vad_true)   # doctest: +SKIP
        >>> m.compute()["mAP"]                              # doctest: +SKIP
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self, ap_variant: str = "sklearn", names: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        """Create the metric.

        Args:
            ap_variant: ``"sklearn"`` or ``"voc"``.
            names: category names of the score columns; default :data:`emoctx.labels.CATEGORIES`.
            **kwargs: passed to :class:`torchmetrics.Metric`.
        """
        super().__init__(**kwargs)
        if ap_variant not in AP_VARIANTS:
            raise ValueError(f"unknown AP variant {ap_variant!r}; choose one of {AP_VARIANTS}")
        self.ap_variant = ap_variant
        self.names, self.slugs = _names_and_slugs(names)
        for state in ("scores", "targets", "vad_pred", "vad_true", "expression_pred", "expression_true"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        vad_pred: torch.Tensor | None = None,
        vad_true: torch.Tensor | None = None,
        vad_mask: torch.Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            scores: (B, C) category scores (logits or probabilities: AP only uses their order).
            targets: (B, C) 0/1 labels.
            vad_pred: optional (B, 3) predictions on the 1-10 scale (use :func:`emoctx.labels.vad_from_model`).
            vad_true: optional (B, 3) targets on the 1-10 scale, NaN where missing.
            vad_mask: optional (B, 3) or (B,) booleans, False where the target is missing.
        """
        if scores.ndim != 2 or scores.shape[1] != len(self.names) or targets.shape != scores.shape:
            raise ValueError(
                f"scores/targets: expected two (B, {len(self.names)}) tensors, got "
                f"{tuple(scores.shape)} and {tuple(targets.shape)}"
            )
        self.scores.append(scores.detach().float())
        self.targets.append(targets.detach().float())
        if vad_pred is not None and vad_true is not None:
            vt = vad_true.detach().float()
            if vad_mask is not None:
                m = vad_mask.detach().bool()
                vt = vt.masked_fill(~(m[:, None] if m.ndim == 1 else m), math.nan)
            self.vad_pred.append(vad_pred.detach().float())
            self.vad_true.append(vt)

    def update_expressions(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of expression outputs ``(B, E)`` and class indices ``(B,)`` (``-1``: none)."""
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"expressions: expected (B, E) logits and (B,) targets, got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}"
            )
        self.expression_pred.append(logits.detach().argmax(dim=1))
        self.expression_true.append(target.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        """Flat dict: ``mAP``, ``num_persons``, ``ap/<slug>``, ``vad_<metric>`` and ``vad_<metric>/<dim>``.

        With expressions (:meth:`update_expressions`), also ``expression_accuracy`` and ``expression_f1_macro``.

        Categories without positives are left out of the dict and of ``mAP`` (with a warning); so are
        undefined V/A/D figures. Empty when nothing was accumulated.
        """
        if isinstance(self.scores, list) and not self.scores:
            return {}
        s, t = dim_zero_cat(self.scores), dim_zero_cat(self.targets)
        has_vad = isinstance(self.vad_pred, torch.Tensor) or len(self.vad_pred) > 0
        vp = dim_zero_cat(self.vad_pred) if has_vad else None
        vt = dim_zero_cat(self.vad_true) if has_vad else None
        figures = mean_average_precision(s, t, self.ap_variant, self.names)
        figures["num_persons"] = int(s.shape[0])
        if has_vad:
            figures.update(vad_metrics(vp, vt))
        keys = ["mAP", "num_persons", *(f"ap/{slug}" for slug in self.slugs)]
        if has_vad:
            keys += [
                f"vad_{m}{suffix}" for m in VAD_METRICS for suffix in ("", *(f"/{d}" for d in VAD_NAMES))
            ]
        has_expressions = isinstance(self.expression_pred, torch.Tensor) or len(self.expression_pred) > 0
        if has_expressions:
            ep, et = dim_zero_cat(self.expression_pred), dim_zero_cat(self.expression_true)
            classes = int(torch.cat([ep, et]).max()) + 1 if ep.numel() else 1  # F1 only counts classes seen
            figures.update(expression_metrics(ep, et, names=[str(k) for k in range(max(classes, 1))]))
            keys += ["expression_accuracy", "expression_f1_macro"]
        return {
            k: torch.tensor(figures[k], dtype=torch.float32, device=self.device)
            for k in keys
            if figures.get(k) is not None
        }
