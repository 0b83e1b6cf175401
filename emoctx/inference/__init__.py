"""Whole-scene inference: find the persons in photos and videos and predict each one's emotions.

* :mod:`~emoctx.inference.detect`: the person-detector interface and the ultralytics YOLO detector;
* :mod:`~emoctx.inference.box_file`: person boxes from a CSV, JSONL or Parquet file;
* :mod:`~emoctx.inference.sources`: files, folders, globs and videos to predict on;
* :mod:`~emoctx.inference.predictor`: :class:`Predictor`, the batched pipeline (the Python API of ``emoctx predict``),
  with :mod:`~emoctx.inference.decode` (decoding) and :mod:`~emoctx.inference.optimize` (a fast network);
* :mod:`~emoctx.inference.results`: :class:`ImageResult` / :class:`PersonResult` and the output columns;
* :mod:`~emoctx.inference.writers`: JSONL / CSV / Parquet tables and the ``--resume`` sidecar;
* :mod:`~emoctx.inference.video`: frame reading, tracking, smoothing, annotated videos;
* :mod:`~emoctx.inference.draw`: annotated images.
"""

from emoctx.inference.box_file import BoxFileDetector
from emoctx.inference.detect import Detection, PersonDetector, UltralyticsDetector
from emoctx.inference.predictor import Predictor
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
