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
