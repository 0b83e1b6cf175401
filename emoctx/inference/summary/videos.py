"""The summary of videos: per track its frames, seconds, mean V/A/D and top categories; a timeline per video.

Each track has the colour it has in the annotated video (:mod:`emoctx.inference.colours`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from emoctx import labels
from emoctx.errors import EmoctxError
from emoctx.inference.colours import track_colour_float
from emoctx.inference.results import PROB_COLUMNS
from emoctx.inference.summary.table import (
    MAX_LISTED_ERRORS,
    blank,
    markdown_table,
    normalise_predictions,
    rounded,
    safe_stem,
    save_figure,
    split_errors,
    unique_name,
    write_csv,
)
from emoctx.io import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class VideoSummary:
    """The tables of a video summary and the files written.

    Attributes:
        tracks: one row per (source, track): ``source``, ``track`` (the track id; the per-frame person index
            where the video was not tracked), ``tracked`` (which of the two), ``frames``, ``first_frame``,
            ``last_frame``, ``first_s``, ``last_s`` (seconds; empty where the frame rate is unknown), mean
            ``valence``/``arousal``/``dominance``, ``top_categories``.
        errors: ``source``, ``error`` of each failed file.
        timelines: video source -> its timeline PNG.
        files: name -> path of every file written.
    """

    tracks: pd.DataFrame
    errors: pd.DataFrame
    timelines: dict[str, Path] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def summarize_video(
    df: pd.DataFrame,
    out_dir: str | os.PathLike,
    top_k: int = 5,
    max_tracks: int = 6,
) -> VideoSummary:
    """Per video source, plot each track's V/A/D and top categories over frames; write a track table.

    A person's identity is its ``track_id``; where the table has none (tracking off) the per-frame ``person``
    index stands in for it. Times in seconds come from the table's ``time_s`` column, else from the frame rate
    in the video file's header when the file is found at its ``source`` path; without either, frames only.

    Args:
        df: a prediction table; only rows with ``frame >= 0`` are used (error rows are counted).
        out_dir: folder for ``timeline_<name>.png``, ``tracks.csv``, ``errors.csv`` and ``video_summary.md``.
        top_k: categories per track in the heatmap (the track's highest mean probabilities).
        max_tracks: tracks drawn per video (the longest ones); every track is in ``tracks.csv``.

    Returns:
        The track table, the errors and the paths written.
    """
    if top_k < 1 or max_tracks < 1:
        raise EmoctxError(f"top_k and max_tracks must be at least 1, got {top_k} and {max_tracks}")
    df = normalise_predictions(df)
    out_dir = Path(out_dir)
    people, errors = split_errors(df)
    people = people.loc[people["frame"] >= 0].copy()
    people["track"], people["tracked"] = _track_ids(people)

    track_rows = []
    timelines: dict[str, Path] = {}
    used_names: set[str] = set()
    for source, rows in people.groupby("source", sort=True):
        rate = frame_rate(str(source), rows)
        tracks = _track_stats(rows, top_k=3, rate=rate)
        tracks.insert(0, "source", source)
        track_rows.append(tracks)
        name = unique_name(f"timeline_{safe_stem(str(source))}", used_names)
        timelines[str(source)] = save_figure(
            _timeline_figure(str(source), rows, tracks, top_k, max_tracks, rate), out_dir / f"{name}.png"
        )
    columns = [
        "source",
        "track",
        "tracked",
        "frames",
        "first_frame",
        "last_frame",
        "first_s",
        "last_s",
        *labels.VAD_NAMES,
        "top_categories",
    ]
    tracks = pd.concat(track_rows, ignore_index=True) if track_rows else pd.DataFrame(columns=columns)
    files = dict(timelines)
    files["tracks"] = write_csv(tracks, out_dir / "tracks.csv")
    files["errors"] = write_csv(errors, out_dir / "errors.csv")
    files["markdown"] = out_dir / "video_summary.md"
    atomic_write_text(files["markdown"], _video_markdown(tracks, timelines, errors))
    log.info("timelines of %d video(s), %d track(s) written to %s", len(timelines), len(tracks), out_dir)
    return VideoSummary(tracks=tracks, errors=errors, timelines=timelines, files=files)


def _track_ids(people: pd.DataFrame) -> tuple[list[int], list[bool]]:
    """Each row's track: its ``track_id``, else its per-frame ``person`` index; and which of the two it is."""
    ids, tracked = [], []
    for tid, person in zip(people["track_id"], people["person"]):
        if blank(tid) or not _is_number(tid):
            ids.append(int(person))
            tracked.append(False)
        else:
            ids.append(int(float(tid)))
            tracked.append(True)
    return ids, tracked


def _track_label(track: int, tracked: bool) -> str:
    return f"track {track}" if tracked else f"person {track}"


def frame_rate(source: str, rows: pd.DataFrame) -> float | None:
    """Frames per second of a video: from the rows' ``time_s`` where present, else from the video file.

    Returns:
        The frame rate, or ``None`` when neither the table nor a readable file at ``source`` gives one.
    """
    times = pd.to_numeric(rows["time_s"], errors="coerce") if "time_s" in rows else pd.Series(dtype=float)
    frames = pd.to_numeric(rows["frame"], errors="coerce")
    usable = times.notna() & (times > 0) & (frames > 0)
    if usable.any():
        return float(np.median(frames[usable] / times[usable]))
    if os.path.isfile(source):
        from emoctx.inference.video import VideoError, video_info

        try:
            fps = video_info(source)["fps"]
        except VideoError:
            return None
        return fps if fps > 0 else None
    return None


def _is_number(v: Any) -> bool:
    try:
        return float(v) == int(float(v))
    except (TypeError, ValueError):
        return False


def _track_stats(rows: pd.DataFrame, top_k: int, rate: float | None = None) -> pd.DataFrame:
    out = []
    for (tracked, track), t in rows.groupby(["tracked", "track"], sort=False):
        means = t[list(PROB_COLUMNS)].astype(float).mean()
        top = means.sort_values(ascending=False).head(top_k)
        first, last = int(t["frame"].min()), int(t["frame"].max())
        out.append(
            {
                "track": int(track),
                "tracked": bool(tracked),
                "frames": int(t["frame"].nunique()),
                "first_frame": first,
                "last_frame": last,
                "first_s": rounded(first / rate) if rate else math.nan,
                "last_s": rounded(last / rate) if rate else math.nan,
                **{d: rounded(pd.to_numeric(t[d], errors="coerce").mean()) for d in labels.VAD_NAMES},
                "top_categories": "; ".join(
                    f"{labels.CATEGORIES[PROB_COLUMNS.index(c)]} {v:.2f}" for c, v in top.items()
                ),
            }
        )
    stats = pd.DataFrame(out)
    # Longest tracks first, then by first appearance.
    return stats.sort_values(["frames", "first_frame"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def _timeline_figure(
    source: str,
    rows: pd.DataFrame,
    tracks: pd.DataFrame,
    top_k: int,
    max_tracks: int,
    rate: float | None = None,
) -> Figure:
    shown = list(zip(tracks["tracked"].head(max_tracks), tracks["track"].head(max_tracks)))
    k = min(top_k, labels.NUM_CATEGORIES)
    heights = [1.6] * len(labels.VAD_NAMES) + [0.28 * k + 0.5] * len(shown)
    fig = Figure(figsize=(12, sum(heights) + 1.2), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    colours = {t: track_colour_float(t[1]) for t in shown}  # as in the annotated video
    track_names = {t: _track_label(t[1], t[0]) for t in shown}
    first, last = int(rows["frame"].min()), int(rows["frame"].max())
    # Every track on the video's frame grid, NaN where the track is absent: lines and heatmaps show the gaps.
    grid = np.sort(rows["frame"].unique())
    per_track = {
        t: rows.loc[(rows["tracked"] == t[0]) & (rows["track"] == t[1])]
        .drop_duplicates("frame")
        .set_index("frame")
        .reindex(grid)
        for t in shown
    }
    for ax, dim in zip(axes, labels.VAD_NAMES):
        for t in shown:
            values = pd.to_numeric(per_track[t][dim], errors="coerce")
            ax.plot(grid, values, color=colours[t], label=track_names[t], marker=".", markersize=3)
        ax.set_ylim(labels.VAD_MIN - 0.3, labels.VAD_MAX + 0.3)
        ax.set_yticks([1, 4, 7, 10])
        ax.set_ylabel(dim)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="tracks")
    mesh = None
    for ax, t in zip(axes[len(labels.VAD_NAMES) :], shown):
        tr = per_track[t]
        means = tr[list(PROB_COLUMNS)].astype(float).mean().sort_values(ascending=False).head(k)
        names = [labels.CATEGORIES[PROB_COLUMNS.index(c)] for c in means.index]
        values = np.ma.masked_invalid(tr[list(means.index)].to_numpy(dtype=float).T)  # categories x frames
        mesh = ax.pcolormesh(
            _cell_edges(grid), np.arange(len(names) + 1) - 0.5, values, cmap="magma", vmin=0, vmax=1
        )
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_ylabel(
            track_names[t], color=colours[t], rotation=0, ha="right", va="center", fontweight="bold"
        )
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes[len(labels.VAD_NAMES) :]), label="probability", shrink=0.9)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("frame")
    axes[-1].set_xlim(first - 0.5, last + 0.5)
    if rate:  # the same axis in seconds, above the first panel
        seconds = axes[0].secondary_xaxis("top", functions=(lambda f: f / rate, lambda t: t * rate))
        seconds.set_xlabel(f"seconds ({rate:.4g} frames per second)")
    note = (
        f"{len(shown)} of {len(tracks)} tracks (the longest)"
        if len(tracks) > len(shown)
        else f"{len(shown)} tracks"
    )
    fig.suptitle(f"{Path(source).name}: valence, arousal, dominance and top categories over time ({note})")
    return fig


def _cell_edges(frames: np.ndarray) -> np.ndarray:
    """Cell boundaries around sorted frame numbers: half-way between neighbours, half a step at the ends."""
    frames = frames.astype(float)
    if len(frames) == 1:
        return np.array([frames[0] - 0.5, frames[0] + 0.5])
    mid = (frames[1:] + frames[:-1]) / 2
    return np.concatenate([[2 * frames[0] - mid[0]], mid, [2 * frames[-1] - mid[-1]]])


def _video_markdown(tracks: pd.DataFrame, timelines: dict[str, Path], errors: pd.DataFrame) -> str:
    parts = ["# Video summary", ""]
    if not timelines:
        parts += ["No video frames with people.", ""]
    for source, png in timelines.items():
        t = tracks.loc[tracks["source"] == source].drop(columns="source")
        parts += [f"## {source}", "", markdown_table(t), "", f"![timeline]({png.name})", ""]
    parts += ["## Errors", ""]
    parts.append(markdown_table(errors.head(MAX_LISTED_ERRORS)) if len(errors) else "None.")
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"\n... and {len(errors) - MAX_LISTED_ERRORS} more in errors.csv")
    return "\n".join(parts) + "\n"
