"""Whole-scene inference: find the persons in photos and videos and predict each one's emotions.

* :mod:`~emoctx.inference.detect`: the person-detector interface, the ultralytics YOLO detector, boxes from a file;
* :mod:`~emoctx.inference.sources`: files, folders, globs and videos to predict on;
* :mod:`~emoctx.inference.pipeline`: :class:`Predictor`, the batched pipeline (the Python API of ``emoctx predict``);
* :mod:`~emoctx.inference.results`: :class:`ImageResult` / :class:`PersonResult` and the output columns;
* :mod:`~emoctx.inference.writers`: JSONL / CSV / Parquet tables and the ``--resume`` sidecar;
* :mod:`~emoctx.inference.video`: frame reading, tracking, smoothing, annotated videos;
* :mod:`~emoctx.inference.draw`: annotated images (:mod:`~emoctx.inference.colours`: one colour per track, shared
  with the summaries);
* :mod:`~emoctx.inference.summary`: summary tables, plots and video timelines of a prediction table.
"""

from emoctx.inference.detect import BoxFileDetector, Detection, PersonDetector, UltralyticsDetector
from emoctx.inference.pipeline import Predictor
from emoctx.inference.results import COLUMNS, ImageResult, PersonResult, results_frame
from emoctx.inference.writers import read_predictions, write_predictions

__all__ = [
    "COLUMNS",
    "BoxFileDetector",
    "Detection",
    "ImageResult",
    "PersonDetector",
    "PersonResult",
    "Predictor",
    "UltralyticsDetector",
    "read_predictions",
    "results_frame",
    "write_predictions",
]
