"""The defaults the library and the command line share, in one place.

The Python API's signatures (:class:`~emoctx.inference.predictor.Predictor`, the YOLO detector, evaluation,
calibration and prediction over records) and the commands' options take their defaults from here, so
``emoctx COMMAND --help`` says what the library does (``tests/test_defaults.py`` checks every pair). This module
imports nothing: the command line reads it before any heavy library is loaded.
"""

# -- finding persons (ultralytics YOLO) -----------------------------------------------------------------------
DETECTOR_WEIGHTS = "yolo11n.pt"
"""The YOLO weights used when none are named (downloaded by ultralytics on first use where possible)."""
DETECTOR_CONF = 0.25
"""Minimum detection confidence of a person."""
DETECTOR_IMGSZ = 640
"""The detector's input size (longest side, pixels)."""
DETECTOR_BATCH = 8
"""Images per detector call."""
MIN_BOX = 32.0
"""Detected persons narrower or lower than this many pixels (of the original image) are dropped."""

# -- predicting on photos and videos (emoctx predict) -------------------------------------------------------
PREDICT_BATCH_SIZE = 64
"""Persons per emotion-model forward."""
MAX_SIDE = 1280
"""Images whose longest side exceeds this are decoded at reduced size, for a model that does not record the
size it was trained at (the model inputs are far smaller)."""
SMOOTHING = 0.5
"""Weight of the current frame in the moving average of a tracked person's values (1: no smoothing)."""
VIDEO_STRIDE = 1
"""Every n-th video frame is processed."""

# -- inference engines (emoctx.engines) ---------------------------------------------------------------------
ENGINE = "auto"
"""The engine that computes the emotion model in ``emoctx predict`` (``auto``: the fastest measured for the
machine's class, :func:`emoctx.engines.default_engine`)."""
DETECTOR_ENGINE = "auto"
"""The engine of the YOLO person detector (``auto``: :func:`emoctx.engines.default_detector_engine`)."""
CALIBRATION_PERSONS = 300
"""Persons int8 is calibrated on (a deterministic sample of the calibration records)."""

# -- ONNX export (emoctx export) -----------------------------------------------------------------------------
EXPORT_OPSET = 18
"""The ONNX opset written by default (the dynamo exporter's own default; onnxruntime >= 1.14 runs it)."""
EXPORT_TOLERANCE = 1e-4
"""Largest accepted absolute difference between onnxruntime and PyTorch, for each output."""

# -- a model over records (evaluate, calibrate, predict-records) --------------------------------------------
RECORDS_BATCH_SIZE = 64
"""Persons per batch."""
RECORDS_WORKERS = 2
"""Data-loading processes."""

# -- where a model runs (every command that runs one: --device) ----------------------------------------------
DEVICE = "auto"
"""A GPU when there is one, else the CPU."""
DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda (or gpu), cuda:1, mps"
"""The values every command's ``--device`` takes."""
