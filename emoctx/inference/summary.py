"""Summaries of a prediction table that people can look at: tables (CSV + Markdown) and plots (PNG).

The input is the table ``emoctx predict`` writes (one row per person; JSONL, CSV or Parquet; see
:func:`read_predictions`). Rows with an ``error`` describe files that could not be processed: they are left out
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

Every file is written atomically.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
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
from emoctx.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("source", "frame", "person", *PROB_COLUMNS, *labels.VAD_NAMES)
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
MAX_LISTED_ERRORS = 50
_VAD_COLOURS = {"valence": "tab:green", "arousal": "tab:red", "dominance": "tab:blue"}


# --------------------------------------------------------------------------------------------------- reading
def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prediction table (``.jsonl``, ``.csv`` or ``.parquet``) into the form the summaries use.

    ``categories`` becomes a list of names in every format (CSV stores it ``;``-joined), and empty ``error``
    cells become ``None``.

    Raises:
        FileNotFoundError: no such file.
        EmoctxError: an unreadable file or missing columns.
    """
    from emoctx.inference.writers import SUFFIXES
    from emoctx.inference.writers import read_predictions as read_table

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise EmoctxError(
            f"{path}: '{suffix or 'no suffix'}' is not a prediction table type; give the table 'emoctx predict' "
            f"wrote ({', '.join(sorted(SUFFIXES))})"
        )
    try:
        df = read_table(path)
    except (EmoctxError, FileNotFoundError):
        raise
    except Exception as e:  # pandas/pyarrow raise many parser error types
        raise EmoctxError(f"{path}: cannot read the prediction table ({type(e).__name__}: {e})") from e
    return normalise_predictions(df, source=str(path))


def normalise_predictions(df: pd.DataFrame, source: str = "<predictions>") -> pd.DataFrame:
    """Check the columns the summaries need and normalise ``categories``, ``error`` and ``frame``.

    Raises:
        EmoctxError: columns are missing.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise EmoctxError(
            f"{source}: not an emoctx prediction table: missing column(s) {missing[:8]}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        )
    df = df.copy()
    if "error" not in df.columns:
        df["error"] = None
    df["error"] = [None if _blank(e) else str(e) for e in df["error"]]
    df["categories"] = (
        _category_lists(df["categories"]) if "categories" in df.columns else [[] for _ in range(len(df))]
    )
    df["frame"] = pd.to_numeric(df["frame"], errors="coerce").fillna(-1).astype(np.int64)
    probs = df[list(PROB_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    hollow = df["error"].isna() & df["person"].notna() & probs.isna().all(axis=1)
    if hollow.any():
        first = df.loc[hollow, "source"].iloc[0]
        raise EmoctxError(
            f"{source}: {int(hollow.sum())} person row(s) have neither probabilities nor an error (first: "
            f"{first}); is this an emoctx prediction table (from 'emoctx predict')?"
        )
    if "track_id" not in df.columns:
        df["track_id"] = None
    if "time_s" not in df.columns:  # tables written before the column existed
        df["time_s"] = None
    return df


def _blank(v: Any) -> bool:
    """True for a missing value: None, NaN, pandas' NA, or an empty string."""
    if isinstance(v, str):
        return not v.strip()
    if isinstance(v, (list, tuple, np.ndarray)):
        return False
    return bool(pd.isna(v))


def _category_lists(values: Iterable[Any]) -> list[list[str]]:
    out = []
    for v in values:
        if isinstance(v, str):
            out.append([c.strip() for c in v.split(";") if c.strip()])
        elif isinstance(v, (list, tuple, np.ndarray)):
            out.append([str(c) for c in v])
        else:  # None / NaN: no category above its threshold (or an error row)
            out.append([])
    return out


def split_errors(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a normalised table into ``(people, errors)``.

    ``people`` holds the rows of detected persons; ``errors`` one row per failed file (``source``, ``error``).
    Rows without error and without a person (an image in which nobody was detected) are in neither.
    """
    is_error = df["error"].notna()
    errors = df.loc[is_error, ["source", "error"]].drop_duplicates().reset_index(drop=True)
    people = df.loc[~is_error & df["person"].notna()].reset_index(drop=True)
    return people, errors


# ------------------------------------------------------------------------------------------------- folders
@dataclass
class FolderSummary:
    """The tables of a folder summary and the files written.

    Attributes:
        overview: ``metric``, ``value`` rows (files, images, people, people per image, errors). Images are
            those with a row in the table (a row without a person counts as an image without people).
        categories: per category (canonical order): ``category``, ``people`` (predicted to show it),
            ``share`` (of all people), ``mean_probability``.
        vad: per dimension: ``dimension``, ``count``, ``mean``, ``std``, ``min``, ``q05`` ... ``q95``, ``max``.
        people_per_image: ``people``, ``images`` (how many images have that many people).
        errors: ``source``, ``error`` of each failed file.
        files: name -> path of every file written.
    """

    overview: pd.DataFrame
    categories: pd.DataFrame
    vad: pd.DataFrame
    people_per_image: pd.DataFrame
    errors: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def summarize_folder(
    df: pd.DataFrame, out_dir: str | os.PathLike, threshold: float | None = None
) -> FolderSummary:
    """Summarise the people of a prediction table across all its images; write tables and plots.

    Args:
        df: a prediction table (as read by :func:`read_predictions`, or straight from the predictor).
        out_dir: folder for ``summary.md``, the CSV tables, ``categories.png`` and ``vad.png``.
        threshold: count a category for a person when its probability is at least this; ``None`` (default)
            uses the table's ``categories`` column, i.e. the model's own per-category thresholds.

    Returns:
        The summary tables and the paths written.
    """
    df = normalise_predictions(df)
    out_dir = Path(out_dir)
    people, errors = split_errors(df)
    ok = df.loc[df["error"].isna()]
    n = len(people)

    # People per image: an image is a (source, frame) pair; an image without detections may appear as a
    # row without a person.
    per_image = ok.groupby(["source", "frame"], sort=False)["person"].count()
    people_per_image = (
        per_image.value_counts().sort_index().rename_axis("people").reset_index(name="images")
        if len(per_image)
        else pd.DataFrame({"people": pd.Series(dtype=int), "images": pd.Series(dtype=int)})
    )
    overview = pd.DataFrame(
        [
            ("files", int(df["source"].nunique())),
            ("images", int(len(per_image))),
            ("images with people", int((per_image > 0).sum())),
            ("people", n),
            ("people per image (mean)", _round(per_image.mean()) if len(per_image) else math.nan),
            ("people per image (max)", int(per_image.max()) if len(per_image) else 0),
            ("files with errors", int(errors["source"].nunique())),
            ("error rows", int(df["error"].notna().sum())),
        ],
        columns=["metric", "value"],
        dtype=object,  # counts stay integers beside the mean
    )
    categories = _category_table(people, threshold)
    vad = _vad_table(people)

    files: dict[str, Path] = {}
    for name, table in (
        ("overview", overview),
        ("categories", categories),
        ("vad", vad),
        ("people_per_image", people_per_image),
        ("errors", errors),
    ):
        files[name] = _write_csv(table, out_dir / f"{name}.csv")
    files["categories_plot"] = _save(_categories_figure(categories, n, threshold), out_dir / "categories.png")
    files["vad_plot"] = _save(_vad_figure(people), out_dir / "vad.png")
    summary = FolderSummary(overview, categories, vad, people_per_image, errors, files)
    files["markdown"] = out_dir / "summary.md"
    atomic_write_text(files["markdown"], _folder_markdown(summary, threshold))
    log.info("summary of %d people in %d images written to %s", n, len(per_image), out_dir)
    return summary


def _round(v: float, digits: int = 3) -> float:
    return float(round(float(v), digits))


def _category_table(people: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    n = len(people)
    probs = people[list(PROB_COLUMNS)].to_numpy(dtype=np.float64) if n else np.zeros((0, len(PROB_COLUMNS)))
    if threshold is None:
        present = np.zeros((n, labels.NUM_CATEGORIES), dtype=bool)
        for row, cats in enumerate(people["categories"]):
            for c in cats:
                name = labels.canonical_category(c)
                if name is not None:
                    present[row, labels.CATEGORY_INDEX[name]] = True
    else:
        present = probs >= threshold
    counts = present.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean_prob = np.nanmean(probs, axis=0) if n else np.full(labels.NUM_CATEGORIES, np.nan)
    return pd.DataFrame(
        {
            "category": list(labels.CATEGORIES),
            "people": counts.astype(int),
            "share": np.round(counts / n, 4) if n else np.zeros(labels.NUM_CATEGORIES),
            "mean_probability": np.round(mean_prob, 4),
        }
    )


def _vad_table(people: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for dim in labels.VAD_NAMES:
        v = pd.to_numeric(people[dim], errors="coerce").dropna() if len(people) else pd.Series(dtype=float)
        row: dict[str, Any] = {"dimension": dim, "count": len(v)}
        row["mean"] = _round(v.mean()) if len(v) else math.nan
        row["std"] = _round(v.std(ddof=0)) if len(v) else math.nan
        row["min"] = _round(v.min()) if len(v) else math.nan
        for q in QUANTILES:
            row[f"q{round(q * 100):02d}"] = _round(v.quantile(q)) if len(v) else math.nan
        row["max"] = _round(v.max()) if len(v) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _folder_markdown(s: FolderSummary, threshold: float | None) -> str:
    rule = (
        "the model's per-category thresholds"
        if threshold is None
        else f"probability >= {threshold:g} for every category"
    )
    cats = s.categories.sort_values(["people", "mean_probability"], ascending=False)
    cats = cats.assign(share=[f"{100 * v:.1f}%" for v in cats["share"]])
    parts = [
        "# Prediction summary",
        "",
        _markdown_table(s.overview),
        "",
        "Images are those with a row in the table: 'emoctx predict' writes no row for an image in which "
        "nobody was detected.",
        "",
        "## Categories",
        "",
        f"People predicted to show each category ({rule}), and the mean probability over all people.",
        "",
        _markdown_table(cats),
        "",
        f"![category frequencies]({s.files['categories_plot'].name})",
        "",
        f"## Valence, arousal, dominance ({labels.VAD_MIN:g}-{labels.VAD_MAX:g})",
        "",
        _markdown_table(s.vad),
        "",
        f"![V/A/D distributions]({s.files['vad_plot'].name})",
        "",
        "## People per image",
        "",
        _markdown_table(s.people_per_image) if len(s.people_per_image) else "No images.",
        "",
        "## Errors",
        "",
    ]
    if len(s.errors):
        shown = s.errors.head(MAX_LISTED_ERRORS)
        parts.append(_markdown_table(shown))
        if len(s.errors) > len(shown):
            parts.append(f"\n... and {len(s.errors) - len(shown)} more in errors.csv")
    else:
        parts.append("None.")
    return "\n".join(parts) + "\n"


def _categories_figure(categories: pd.DataFrame, n: int, threshold: float | None) -> Figure:
    order = categories.sort_values(["people", "mean_probability"], ascending=True)
    k = len(order)
    fig = Figure(figsize=(9, 0.3 * k + 1.6), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(k)
    share = order["share"].to_numpy(dtype=float) * 100
    ax.barh(y, share, color="tab:blue", label="people predicted (%)")
    ax.scatter(
        order["mean_probability"].to_numpy(dtype=float) * 100,
        y,
        color="tab:orange",
        marker="D",
        s=18,
        zorder=3,
        label="mean probability (%)",
    )
    for yi, s, c in zip(y, share, order["people"]):
        if c:
            ax.text(s + 0.5, yi, str(int(c)), va="center", fontsize=8)
    ax.set_yticks(y, order["category"], fontsize=9)
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_xlim(0, 105)
    ax.set_xlabel("% of people")
    rule = "model thresholds" if threshold is None else f"probability >= {threshold:g}"
    ax.set_title(f"Emotion categories across {n} people ({rule})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if n == 0:
        ax.text(50, k / 2, "no people detected", ha="center", fontsize=14, color="gray")
    return fig


def _vad_figure(people: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, len(labels.VAD_NAMES), sharey=True)
    bins = np.arange(labels.VAD_MIN, labels.VAD_MAX + 0.25, 0.5)
    for ax, dim in zip(axes, labels.VAD_NAMES):
        v = pd.to_numeric(people[dim], errors="coerce").dropna() if len(people) else pd.Series(dtype=float)
        ax.hist(v, bins=bins, color=_VAD_COLOURS[dim], alpha=0.8, edgecolor="white")
        if len(v):
            ax.axvline(v.mean(), color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{dim}: mean {v.mean():.2f}, std {v.std(ddof=0):.2f} (n={len(v)})")
        else:
            ax.set_title(f"{dim}: no people")
        ax.set_xlim(labels.VAD_MIN, labels.VAD_MAX)
        ax.set_xticks(np.arange(labels.VAD_MIN, labels.VAD_MAX + 1))
        ax.set_xlabel(f"{dim} ({labels.VAD_MIN:g}-{labels.VAD_MAX:g})")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("people")
    return fig


# -------------------------------------------------------------------------------------------------- videos
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
        name = _unique_name(f"timeline_{_safe_stem(str(source))}", used_names)
        timelines[str(source)] = _save(
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
    files["tracks"] = _write_csv(tracks, out_dir / "tracks.csv")
    files["errors"] = _write_csv(errors, out_dir / "errors.csv")
    files["markdown"] = out_dir / "video_summary.md"
    atomic_write_text(files["markdown"], _video_markdown(tracks, timelines, errors))
    log.info("timelines of %d video(s), %d track(s) written to %s", len(timelines), len(tracks), out_dir)
    return VideoSummary(tracks=tracks, errors=errors, timelines=timelines, files=files)


def _track_ids(people: pd.DataFrame) -> tuple[list[int], list[bool]]:
    """Each row's track: its ``track_id``, else its per-frame ``person`` index; and which of the two it is."""
    ids, tracked = [], []
    for tid, person in zip(people["track_id"], people["person"]):
        if _blank(tid) or not _is_number(tid):
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
                "first_s": _round(first / rate) if rate else math.nan,
                "last_s": _round(last / rate) if rate else math.nan,
                **{d: _round(pd.to_numeric(t[d], errors="coerce").mean()) for d in labels.VAD_NAMES},
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
        parts += [f"## {source}", "", _markdown_table(t), "", f"![timeline]({png.name})", ""]
    parts += ["## Errors", ""]
    parts.append(_markdown_table(errors.head(MAX_LISTED_ERRORS)) if len(errors) else "None.")
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"\n... and {len(errors) - MAX_LISTED_ERRORS} more in errors.csv")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------ dispatch
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


# ----------------------------------------------------------------------------------------------- utilities
def _markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (hand-written: pandas' ``to_markdown`` needs the optional ``tabulate``)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    atomic_write_text(path, df.to_csv(index=False))
    return path


def _save(fig: Figure, path: Path, dpi: int = 120) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _safe_stem(source: str) -> str:
    stem = Path(source).stem or "video"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"


def _unique_name(name: str, used: set[str]) -> str:
    candidate, i = name, 2
    while candidate in used:
        candidate, i = f"{name}-{i}", i + 1
    used.add(candidate)
    return candidate
