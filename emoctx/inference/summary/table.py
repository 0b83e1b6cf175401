"""The prediction table as the summaries read it, and the small writers they share (CSV, Markdown, PNG)."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emoctx import labels
from emoctx.errors import EmoctxError
from emoctx.inference.results import PROB_COLUMNS
from emoctx.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


REQUIRED_COLUMNS: tuple[str, ...] = ("source", "frame", "person", *PROB_COLUMNS, *labels.VAD_NAMES)


QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


MAX_LISTED_ERRORS = 50


VAD_COLOURS = {"valence": "tab:green", "arousal": "tab:red", "dominance": "tab:blue"}


def read_summary_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a prediction table (``.jsonl``, ``.csv`` or ``.parquet``) into the form the summaries use.

    ``categories`` becomes a list of names in every format (CSV stores it ``;``-joined), and empty ``error``
    cells become ``None``.

    Raises:
        FileNotFoundError: no such file.
        EmoctxError: an unreadable file or missing columns.
    """
    from emoctx.inference.writers import SUFFIXES, read_prediction_table

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise EmoctxError(
            f"{path}: '{suffix or 'no suffix'}' is not a prediction table type; give the table 'emoctx predict' "
            f"wrote ({', '.join(sorted(SUFFIXES))})"
        )
    try:
        df = read_prediction_table(path)
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
    df["error"] = [None if blank(e) else str(e) for e in df["error"]]
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


def blank(v: Any) -> bool:
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


def rounded(v: float, digits: int = 3) -> float:
    """``v`` rounded to ``digits`` decimals, as a float."""
    return float(round(float(v), digits))


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (hand-written: pandas' ``to_markdown`` needs the optional ``tabulate``)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as CSV, atomically."""
    atomic_write_text(path, df.to_csv(index=False))
    return path


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def safe_stem(source: str) -> str:
    """A file-name stem made of ``source``'s stem (letters, digits, ``._-``)."""
    stem = Path(source).stem or "video"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... the first not in ``used`` (which it joins)."""
    candidate, i = name, 2
    while candidate in used:
        candidate, i = f"{name}-{i}", i + 1
    used.add(candidate)
    return candidate
