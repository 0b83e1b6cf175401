"""Summaries of a prediction table that people can look at: tables (CSV + Markdown) and plots (PNG).

The input is the table ``emoctx predict`` writes (one row per person; JSONL, CSV or Parquet; see
:func:`read_summary_table`). Rows with an ``error`` describe files that could not be processed: they are left out
of every statistic and counted and listed separately.

* :func:`summarize_folder` (still images; also usable on any set of detections): ``summary.md`` with an
  overview (files, images, people, people per image, errors), per category the number and share of people
  predicted to show it (above the model's thresholds, i.e. listed in ``categories``) and its mean probability,
  and V/A/D statistics (mean, std, quantiles); the same tables as ``overview.csv``, ``categories.csv``,
  ``vad.csv``, ``people_per_image.csv`` and ``errors.csv``; plots ``categories.png`` (category frequencies)
  and ``vad.png`` (V/A/D distributions).
* :func:`summarize_video` (rows with ``frame >= 0``): per video source a timeline ``timeline_<name>.png`` with
  each track's valence, arousal and dominance over frames and a heatmap of each track's top categories over
  frames, with a second time axis in seconds where the frame rate is known (the table's ``time_s``, else the
  video file's header when the file is there); ``tracks.csv`` (one row per track: frames, first and last frame
  and second, mean V/A/D, top categories) and ``video_summary.md``. Each track has the colour it has in the
  annotated video (:func:`emoctx.inference.colours.track_colour`).
* :func:`summarize` splits a mixed table and calls both.

Every file is written atomically. The package: :mod:`~emoctx.inference.summary.table` (reading the table),
:mod:`~emoctx.inference.summary.folders` and :mod:`~emoctx.inference.summary.videos`.
"""

from __future__ import annotations

import os

import pandas as pd

from emoctx.deprecation import moved
from emoctx.inference.summary.folders import FolderSummary, summarize_folder
from emoctx.inference.summary.table import (
    MAX_LISTED_ERRORS,
    QUANTILES,
    REQUIRED_COLUMNS,
    normalise_predictions,
    read_summary_table,
    split_errors,
)
from emoctx.inference.summary.videos import VideoSummary, summarize_video

__all__ = [
    "MAX_LISTED_ERRORS",
    "QUANTILES",
    "REQUIRED_COLUMNS",
    "FolderSummary",
    "VideoSummary",
    "normalise_predictions",
    "read_summary_table",
    "split_errors",
    "summarize",
    "summarize_folder",
    "summarize_video",
]


def summarize(
    df: pd.DataFrame,
    out_dir: str | os.PathLike,
    threshold: float | None = None,
    top_k: int = 5,
    max_tracks: int = 6,
) -> dict[str, FolderSummary | VideoSummary]:
    """Summarise a table of still images, videos, or both, into ``out_dir``.

    Still-image rows (``frame < 0``) get :func:`summarize_folder` (with ``threshold``), video rows
    :func:`summarize_video` (with ``top_k`` and ``max_tracks``); error rows go with the still images, or with the
    videos when the table has no still images.

    Returns:
        ``{"folder": FolderSummary}`` and/or ``{"video": VideoSummary}``.
    """
    df = normalise_predictions(df)
    is_error = df["error"].notna()
    video = df.loc[~is_error & (df["frame"] >= 0)]
    still = df.loc[~is_error & (df["frame"] < 0)]
    errors = df.loc[is_error]
    out: dict[str, FolderSummary | VideoSummary] = {}
    if len(still) or not len(video):
        out["folder"] = summarize_folder(pd.concat([still, errors]), out_dir, threshold=threshold)
    if len(video):
        rows = video if "folder" in out else pd.concat([video, errors])
        out["video"] = summarize_video(rows, out_dir, top_k=top_k, max_tracks=max_tracks)
    return out


__getattr__ = moved(__name__, {"read_predictions": ("emoctx.inference.summary.table", "read_summary_table")})
