"""Evaluation: run a model on annotated records or read another system's predictions, score them, report.

* :func:`predict_records`: an emoctx model's scores and V/A/D for every person of records (ground-truth boxes).
* :func:`calibrate_model`: per-category decision thresholds fitted on validation records, stored in the model.
* :func:`evaluate_model` / :func:`evaluate_predictions`: every figure (:mod:`emoctx.metrics`), the agreement
  with human annotators and breakdowns per group, written as ``metrics.json``, ``report.md`` and PNG plots.
"""

from emoctx.evaluation.calibrate import Calibration, calibrate_model, fit_threshold_dict
from emoctx.evaluation.document import evaluation_document
from emoctx.evaluation.evaluate import (
    Evaluation,
    evaluate_model,
    evaluate_predictions,
    load_thresholds,
    write_outputs,
)
from emoctx.evaluation.inference import (
    match_predictions,
    predict_records,
    predictions_frame,
    read_predictions,
)

__all__ = [
    "Calibration",
    "Evaluation",
    "calibrate_model",
    "evaluate_model",
    "evaluate_predictions",
    "evaluation_document",
    "fit_threshold_dict",
    "load_thresholds",
    "match_predictions",
    "predict_records",
    "predictions_frame",
    "read_predictions",
    "write_outputs",
]
