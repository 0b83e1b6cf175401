"""Whole-scene inference: find the persons in photos and videos and predict each one's emotions.

* :mod:`~emoctx.inference.predictor`: :class:`Predictor`, the batched pipeline (the Python API of ``emoctx predict``),
  with :mod:`~emoctx.inference.decode` (decoding) and :mod:`~emoctx.inference.optimize` (a fast network);
* :mod:`~emoctx.inference.detect`: the person-detector interface and the ultralytics YOLO detector, whose
  weights :mod:`~emoctx.inference.yolo_weights` finds and loads safely;
* :mod:`~emoctx.inference.box_file`: person boxes from a CSV, JSONL or Parquet file;
* :mod:`~emoctx.inference.sources`: files, folders, globs and videos to predict on;
* :mod:`~emoctx.inference.results`: :class:`ImageResult` / :class:`PersonResult` and the output columns;
* :mod:`~emoctx.inference.writers`: JSONL / CSV / Parquet tables and the ``--resume`` sidecar;
  :mod:`~emoctx.inference.runner`: a predictor's results into one table (``emoctx predict``);
* :mod:`~emoctx.inference.video`: frame reading, tracking, smoothing, annotated videos;
* :mod:`~emoctx.inference.draw`: annotated images (:mod:`~emoctx.inference.colours`: one colour per track, shared
  with the summaries);
* :mod:`~emoctx.inference.summary`: summary tables, plots and video timelines of a prediction table
  (``emoctx summarize``);
* :mod:`~emoctx.inference.distributed`: prediction over records at scale (``emoctx predict-records``);
* :mod:`~emoctx.inference.export`: ONNX export (``emoctx export``).
"""

from emoctx.deprecation import moved
from emoctx.inference.box_file import BoxFileDetector
from emoctx.inference.detect import Detection, PersonDetector, UltralyticsDetector
from emoctx.inference.predictor import Predictor
from emoctx.inference.results import COLUMNS, ImageResult, PersonResult, results_frame
from emoctx.inference.writers import read_prediction_table, write_predictions

__all__ = [
    "COLUMNS",
    "BoxFileDetector",
    "Detection",
    "ImageResult",
    "PersonDetector",
    "PersonResult",
    "Predictor",
    "UltralyticsDetector",
    "read_prediction_table",
    "results_frame",
    "write_predictions",
]

__getattr__ = moved(__name__, {"read_predictions": ("emoctx.inference.writers", "read_prediction_table")})
