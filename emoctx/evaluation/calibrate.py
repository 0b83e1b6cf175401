"""Per-category decision thresholds fitted on the validation split and stored in the model file.

A threshold applies to the model's 0-1 category scores: a person is predicted to show a category when
``score >= threshold``. Rules (:data:`emoctx.metrics.THRESHOLD_RULES`): ``f1`` maximises each category's F1 on
the validation persons; ``pr_equal`` takes the point of the precision-recall curve where precision and
recall are closest.

In the model file the thresholds are ``{slug: number}`` (``ModelInfo.thresholds``). A category without any
positive validation example cannot be calibrated: it is stored as ``null``, meaning "never predicted"
(``ModelInfo.threshold_vector`` reads it as ``+inf``). How the thresholds were fitted (rule, records file,
number of persons) is stored in ``ModelInfo.training["threshold_calibration"]``.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx import defaults, labels
from emoctx.errors import EmoctxError
from emoctx.io import jsonable

log = logging.getLogger(__name__)

CALIBRATION_KEY = "threshold_calibration"


@dataclass
class Calibration:
    """The outcome of :func:`calibrate_model`.

    Attributes:
        thresholds: ``{slug: threshold or None}`` as stored (None: no positives, never predicted).
        rule: the fitting rule.
        num_persons: validation persons used (readable images).
        num_skipped: persons whose image could not be used.
        path: the model file written.
        validation: precision/recall/F1 on the validation persons at the fitted thresholds.
    """

    thresholds: dict[str, float | None]
    rule: str
    num_persons: int
    num_skipped: int
    path: Path
    validation: dict[str, Any] = field(default_factory=dict)


def fit_threshold_dict(scores: Any, targets: Any, rule: str = "f1") -> dict[str, float | None]:
    """Fit thresholds (:func:`emoctx.metrics.fit_thresholds`) as ``{slug: float or None}``.

    A category without positive examples gets ``None`` (never predicted) instead of ``+inf``, so the
    result is valid JSON.
    """
    from emoctx.metrics import THRESHOLD_RULES, fit_thresholds

    if rule not in THRESHOLD_RULES:
        raise EmoctxError(f"unknown threshold rule {rule!r}; choose one of {list(THRESHOLD_RULES)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        values = fit_thresholds(scores, targets, rule=rule)
    for w in caught:
        log.warning("%s", w.message)
    return jsonable(dict(zip(labels.SLUGS, values)))  # +inf (no positives) -> None


def calibrate_model(
    model_path: str | os.PathLike,
    records: str | os.PathLike | pd.DataFrame,
    root: str | os.PathLike,
    rule: str = "f1",
    out: str | os.PathLike | None = None,
    batch_size: int = defaults.RECORDS_BATCH_SIZE,
    num_workers: int = defaults.RECORDS_WORKERS,
    device: str | None = None,
    progress: bool = True,
    records_name: str | None = None,
    mask_subject: bool | None = None,
    max_side: int | str | None = "model",
) -> Calibration:
    """Fit thresholds on validation records and store them in a model file.

    Args:
        model_path: an emoctx model file (``.safetensors``; a Lightning ``.ckpt`` is read too, but the
            result is always written as ``.safetensors``).
        records: validation records (a ``.parquet``/``.jsonl`` path or a records frame).
        root: dataset root the records' image paths are relative to.
        rule: ``"f1"`` or ``"pr_equal"``.
        out: where to write the calibrated model; default ``model_path`` itself, rewritten atomically
            (for a ``.ckpt``: the same name with ``.safetensors``).
        batch_size: persons per forward pass.
        num_workers: data-loading processes.
        device: where to run the model (default GPU when available).
        progress: show a progress bar.
        records_name: how to name the records in the stored calibration info (default: their path).
        mask_subject: mask the person out of the scene; default what the model was trained with.
        max_side: decode images with their longest side at most this many pixels (``None``: full size);
            default (``"model"``) what the model was trained with.

    Returns:
        A :class:`Calibration`.

    Raises:
        EmoctxError: unknown rule, no readable validation person, or an unusable model/records file.
    """
    from emoctx.checkpoint import load_model, save_model
    from emoctx.data.records import category_matrix, read_records
    from emoctx.evaluation.scoring import score_records
    from emoctx.metrics import THRESHOLD_RULES, precision_recall_f1_at

    if rule not in THRESHOLD_RULES:
        raise EmoctxError(f"unknown threshold rule {rule!r}; choose one of {list(THRESHOLD_RULES)}")
    model_path = Path(model_path)
    if isinstance(records, pd.DataFrame):
        df, records_name = records.reset_index(drop=True), records_name or "<records>"
    else:
        df, records_name = read_records(records), records_name or str(records)
    net, info = load_model(model_path)
    scores, _, valid = score_records(
        net,
        info,
        df,
        root,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        mask_subject=mask_subject,
        max_side=max_side,
        progress=progress,
    )
    if not valid.any():
        raise EmoctxError(
            f"{records_name}: no person with a readable image under {root}; nothing to calibrate"
        )
    targets = category_matrix(df)[valid]
    thresholds = fit_threshold_dict(scores[valid], targets, rule)
    vector = np.array([math.inf if v is None else v for v in thresholds.values()])
    validation = precision_recall_f1_at(scores[valid], targets, vector)

    info.thresholds = thresholds
    info.training = dict(info.training or {})
    info.training[CALIBRATION_KEY] = {
        "rule": rule,
        "records": records_name,
        "num_persons": int(valid.sum()),
        "f1_macro": validation["f1_macro"],
        "f1_micro": validation["f1_micro"],
        "never_predicted": [s for s, v in thresholds.items() if v is None],
    }
    target = Path(out) if out is not None else model_path
    if target.suffix != ".safetensors":
        target = target.with_suffix(".safetensors")
    save_model(target, net.cpu(), info)
    log.info(
        "thresholds (%s) fitted on %d persons of %s written to %s",
        rule,
        int(valid.sum()),
        records_name,
        target,
    )
    return Calibration(
        thresholds=thresholds,
        rule=rule,
        num_persons=int(valid.sum()),
        num_skipped=int((~valid).sum()),
        path=target,
        validation=validation,
    )
