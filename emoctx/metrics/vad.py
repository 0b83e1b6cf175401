"""V/A/D figures on the 1-10 scale (NaN targets: missing): MAE, RMSE, PCC, CCC and SAGR per dimension."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from emoctx.labels import VAD_MID, VAD_NAMES
from emoctx.metrics.inputs import as_array, json_float, mean_defined

log = logging.getLogger(__name__)


VAD_METRICS: tuple[str, ...] = ("mae", "rmse", "pcc", "ccc", "sagr")


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
    p = as_array(pred, "vad_pred")
    t = as_array(true, "vad_true")
    if p.ndim == 1 and len(names) == 1:
        p, t = p[:, None], t[:, None]
    if p.ndim != 2 or p.shape[1] != len(names):
        raise ValueError(f"vad_pred: expected shape (N, {len(names)}), got {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"vad_true: expected the shape of vad_pred {p.shape}, got {t.shape}")
    valid = np.isfinite(t)
    if mask is not None:
        m = as_array(mask, "vad_mask", dtype=bool)
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
        out[f"vad_{metric}"] = mean_defined(list(per[metric].values()))
        for dim in names:
            out[f"vad_{metric}/{dim}"] = json_float(per[metric][dim])
    for dim in names:
        out[f"vad_n/{dim}"] = counts[dim]
    return out
