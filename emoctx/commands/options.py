"""Options several commands share, with the library's defaults (:mod:`emoctx.defaults`) in their values and help."""

from __future__ import annotations

import argparse

from emoctx import defaults


def add_detector_options(group: argparse._ActionsContainer) -> None:
    """``--conf`` and ``--imgsz`` of the YOLO person detector."""
    group.add_argument(
        "--conf",
        type=float,
        default=defaults.DETECTOR_CONF,
        help=f"minimum detection confidence (default {defaults.DETECTOR_CONF})",
    )
    group.add_argument(
        "--imgsz",
        type=int,
        default=defaults.DETECTOR_IMGSZ,
        help=f"detector input size (default {defaults.DETECTOR_IMGSZ})",
    )


def add_face_options(group: argparse._ActionsContainer) -> None:
    """``--keypoint-conf`` and ``--min-face``: how a pose model's keypoints give a face (:mod:`emoctx.faces`)."""
    from emoctx.faces import DEFAULT_KEYPOINT_CONF, DEFAULT_MIN_FACE

    group.add_argument(
        "--keypoint-conf",
        type=float,
        default=DEFAULT_KEYPOINT_CONF,
        metavar="C",
        help="with a pose model: the confidence from which a facial keypoint counts as seen "
        f"(default {DEFAULT_KEYPOINT_CONF})",
    )
    group.add_argument(
        "--min-face",
        type=float,
        default=DEFAULT_MIN_FACE,
        metavar="PX",
        help=f"with a pose model: faces smaller than this many pixels are no faces (default {DEFAULT_MIN_FACE:g})",
    )


def add_records_run_options(
    group: argparse._ActionsContainer,
    batch: str = "persons per batch",
    workers: str = "data-loading processes",
) -> None:
    """``--batch-size`` and ``--workers`` of a model run over records (``batch`` and ``workers``: their help)."""
    group.add_argument(
        "--batch-size",
        type=int,
        default=defaults.RECORDS_BATCH_SIZE,
        help=f"{batch} (default {defaults.RECORDS_BATCH_SIZE})",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=defaults.RECORDS_WORKERS,
        help=f"{workers} (default {defaults.RECORDS_WORKERS})",
    )


def add_device_option(group: argparse._ActionsContainer, applies: str = "") -> None:
    """``--device``: where the model runs, the same name and values in every command that runs a model.

    Args:
        group: the parser or argument group.
        applies: a prefix for the help, e.g. ``"--model: "`` where the option applies to one form only.
    """
    group.add_argument(
        "--device",
        default=defaults.DEVICE,
        metavar="DEVICE",
        help=f"{applies}where the model runs: {defaults.DEVICE_HELP} (default {defaults.DEVICE})",
    )


ENGINE_CHOICES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")
"""The values of ``--engine`` (:data:`emoctx.engines.ENGINES` and ``auto``; the command line reads it without
importing the engines)."""


def add_engine_options(group: argparse._ActionsContainer, default: str, what: str) -> None:
    """``--engine`` (its ``default`` and what that default does, ``what``), and the int8 and cache options."""
    group.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=default,
        help="what computes the emotion model: torch (PyTorch), onnxruntime, openvino (pip install "
        f"'emoctx[openvino]') or auto. Default {default}: {what}. "
        "Each engine is checked against PyTorch fp32 when it is built; exported graphs are cached beside the model",
    )
    add_calibration_options(group)


def add_calibration_options(group: argparse._ActionsContainer) -> None:
    """``--calibration-records``, ``--calibration-root`` (int8) and ``--engine-cache``."""
    group.add_argument(
        "--calibration-records",
        metavar="FILE",
        help="--precision int8: records (.parquet/.jsonl) to calibrate on, a deterministic sample of "
        f"{defaults.CALIBRATION_PERSONS} persons (default: the model's validation split, where its model file "
        "records it)",
    )
    group.add_argument(
        "--calibration-root",
        metavar="DIR",
        help="the folder the calibration records' image paths are relative to (default: the folder above a "
        "records file in 'annotations/', else the records file's folder)",
    )
    group.add_argument(
        "--engine-cache",
        metavar="DIR",
        help="keep exported engine graphs in DIR instead of beside the model (and detector weights) file",
    )
