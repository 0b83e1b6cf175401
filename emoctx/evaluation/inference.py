"""Deprecated: this module's two halves are :mod:`emoctx.evaluation.scoring` and :mod:`emoctx.evaluation.predictions`.

``predict_records`` (which returns arrays) is now :func:`emoctx.evaluation.scoring.score_records` (``emoctx
predict-records`` is :func:`emoctx.inference.distributed.predict_records`, which writes a table), and
``read_predictions`` (any system's predictions, for evaluation) is
:func:`emoctx.evaluation.predictions.read_scored_predictions`. Every other name kept its name. Importing any of
them from here still works and warns (``DeprecationWarning``).
"""

from __future__ import annotations

from emoctx.deprecation import moved

_SCORING = ("FROM_MODEL", "records_transform", "default_device", "scores_from_raw")
_PREDICTIONS = (
    "SCORE_PREFIX",
    "SCORE_COLUMNS",
    "RAW_PREFIX",
    "RAW_COLUMNS",
    "PREDICTION_COLUMNS",
    "PREDICTION_SUFFIXES",
    "predictions_frame",
    "match_predictions",
    "predicted_arrays",
    "raw_arrays",
    "thresholds_from_dict",
)
_MOVED: dict[str, tuple[str, str]] = {
    "predict_records": ("emoctx.evaluation.scoring", "score_records"),
    "read_predictions": ("emoctx.evaluation.predictions", "read_scored_predictions"),
    **{name: ("emoctx.evaluation.scoring", name) for name in _SCORING},
    **{name: ("emoctx.evaluation.predictions", name) for name in _PREDICTIONS},
}

__getattr__ = moved(__name__, _MOVED)


def __dir__() -> list[str]:
    return sorted(_MOVED)
