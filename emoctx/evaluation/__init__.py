"""Evaluation: run a model on annotated records or read another system's predictions, score them, report.

* :mod:`~emoctx.evaluation.scoring`: :func:`score_records`, an emoctx model's scores and V/A/D for every person of
  records (ground-truth boxes, the model's own preprocessing);
* :mod:`~emoctx.evaluation.predictions`: the predictions table: written for a model, read from any system
  (:func:`read_scored_predictions`), paired with records (:func:`match_predictions`);
* :mod:`~emoctx.evaluation.calibrate`: :func:`calibrate_model`, per-category decision thresholds fitted on
  validation records, stored in the model;
* :mod:`~emoctx.evaluation.evaluate`: :func:`evaluate_model` / :func:`evaluate_predictions`, every figure
  (:mod:`emoctx.metrics`), the agreement with human annotators and breakdowns per group
  (:mod:`~emoctx.evaluation.document`), written as ``metrics.json``, ``report.md``
  (:mod:`~emoctx.evaluation.report`) and PNG plots (:mod:`~emoctx.evaluation.plots`).

``predict_records`` and ``read_predictions`` are deprecated names of :func:`score_records` and
:func:`read_scored_predictions`.
"""

from emoctx.deprecation import moved
from emoctx.evaluation.calibrate import Calibration, calibrate_model, fit_threshold_dict
from emoctx.evaluation.document import evaluation_document
from emoctx.evaluation.evaluate import (
    Evaluation,
    evaluate_model,
    evaluate_predictions,
    load_thresholds,
    write_outputs,
)
from emoctx.evaluation.predictions import match_predictions, predictions_frame, read_scored_predictions
from emoctx.evaluation.scoring import score_records

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
    "predictions_frame",
    "read_scored_predictions",
    "score_records",
    "write_outputs",
]

__getattr__ = moved(
    __name__,
    {
        "predict_records": ("emoctx.evaluation.scoring", "score_records"),
        "read_predictions": ("emoctx.evaluation.predictions", "read_scored_predictions"),
    },
)
