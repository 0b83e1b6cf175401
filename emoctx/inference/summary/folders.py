"""The summary of still images: overview, category frequencies, V/A/D statistics, as tables and plots."""

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

from emoctx import labels
from emoctx.inference.results import PROB_COLUMNS
from emoctx.inference.summary.table import (
    MAX_LISTED_ERRORS,
    QUANTILES,
    VAD_COLOURS,
    markdown_table,
    normalise_predictions,
    rounded,
    save_figure,
    split_errors,
    write_csv,
)
from emoctx.io import atomic_write_text

log = logging.getLogger(__name__)


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
        df: a prediction table (as read by :func:`~emoctx.inference.summary.table.read_summary_table`, or straight from the predictor).
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
            ("people per image (mean)", rounded(per_image.mean()) if len(per_image) else math.nan),
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
        files[name] = write_csv(table, out_dir / f"{name}.csv")
    files["categories_plot"] = save_figure(
        _categories_figure(categories, n, threshold), out_dir / "categories.png"
    )
    files["vad_plot"] = save_figure(_vad_figure(people), out_dir / "vad.png")
    summary = FolderSummary(overview, categories, vad, people_per_image, errors, files)
    files["markdown"] = out_dir / "summary.md"
    atomic_write_text(files["markdown"], _folder_markdown(summary, threshold))
    log.info("summary of %d people in %d images written to %s", n, len(per_image), out_dir)
    return summary


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
        row["mean"] = rounded(v.mean()) if len(v) else math.nan
        row["std"] = rounded(v.std(ddof=0)) if len(v) else math.nan
        row["min"] = rounded(v.min()) if len(v) else math.nan
        for q in QUANTILES:
            row[f"q{round(q * 100):02d}"] = rounded(v.quantile(q)) if len(v) else math.nan
        row["max"] = rounded(v.max()) if len(v) else math.nan
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
        markdown_table(s.overview),
        "",
        "Images are those with a row in the table: 'emoctx predict' writes no row for an image in which "
        "nobody was detected.",
        "",
        "## Categories",
        "",
        f"People predicted to show each category ({rule}), and the mean probability over all people.",
        "",
        markdown_table(cats),
        "",
        f"![category frequencies]({s.files['categories_plot'].name})",
        "",
        f"## Valence, arousal, dominance ({labels.VAD_MIN:g}-{labels.VAD_MAX:g})",
        "",
        markdown_table(s.vad),
        "",
        f"![V/A/D distributions]({s.files['vad_plot'].name})",
        "",
        "## People per image",
        "",
        markdown_table(s.people_per_image) if len(s.people_per_image) else "No images.",
        "",
        "## Errors",
        "",
    ]
    if len(s.errors):
        shown = s.errors.head(MAX_LISTED_ERRORS)
        parts.append(markdown_table(shown))
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
        ax.hist(v, bins=bins, color=VAD_COLOURS[dim], alpha=0.8, edgecolor="white")
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
