"""The predictions table evaluation scores: written for a model, read from any system, paired with records.

The predictions table (:data:`PREDICTION_COLUMNS`) has one row per person:

* ``image``: the image path relative to the dataset root, as in the records (``source``, the column name
  of ``emoctx predict``, is accepted instead);
* ``person`` (optional): the person's index in the image;
* ``x1``, ``y1``, ``x2``, ``y2``: the person's box in pixels (a JSONL/Parquet file may instead hold one
  ``box`` column with ``[x1, y1, x2, y2]``);
* ``p_<slug>``: one score column per category (:data:`emoctx.labels.SLUGS`), any monotone scale (models
  of emoctx write 0-1 probabilities); decision thresholds apply to them;
* ``raw_<slug>`` (optional, all or none): the system's raw category outputs, before any squashing (an emoctx
  model's outputs before its sigmoid or clamp). When given, average precision and the precision-recall curves
  rank these: a clamp to 0-1, or a sigmoid that rounds to exactly 1.0 in float32, ties persons the model
  ranks apart and so changes the AP. ``emoctx evaluate --model`` writes them;
* ``valence``, ``arousal``, ``dominance``: V/A/D on the 1-10 scale (optional as a group: without them only
  the category figures are computed).

:func:`predictions_frame` writes an emoctx model's outputs on records (:func:`emoctx.evaluation.scoring.score_records`)
in this form; :func:`read_scored_predictions` reads the same form from ``.parquet``, ``.jsonl`` or ``.csv`` files
written by any system, and :func:`match_predictions` pairs their rows with records (see there for the rule).
Other columns are ignored, except ``error``: a row with an error (a person ``emoctx predict`` could not
process) has no prediction and is left out.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx import labels
from emoctx.data.records import BOX_COLUMNS
from emoctx.errors import EmoctxError

log = logging.getLogger(__name__)


SCORE_PREFIX = "p_"


SCORE_COLUMNS: tuple[str, ...] = tuple(f"{SCORE_PREFIX}{s}" for s in labels.SLUGS)


RAW_PREFIX = "raw_"


RAW_COLUMNS: tuple[str, ...] = tuple(f"{RAW_PREFIX}{s}" for s in labels.SLUGS)


PREDICTION_COLUMNS: tuple[str, ...] = ("image", "person", *BOX_COLUMNS, *SCORE_COLUMNS, *labels.VAD_NAMES)


PREDICTION_SUFFIXES: tuple[str, ...] = (".parquet", ".jsonl", ".csv")


_LIST_MAX = 10  # rows named in an error message


_CLOSE_MATCH = 0.8  # difflib similarity from which a column is suggested for a missing one


def predictions_frame(
    records: pd.DataFrame,
    scores: np.ndarray,
    vad: np.ndarray | None,
    valid: np.ndarray | None = None,
    raw: np.ndarray | None = None,
) -> pd.DataFrame:
    """The predictions table of records (one row per valid person) in the form :func:`read_scored_predictions` reads.

    ``raw`` (optional) gives the ``raw_<slug>`` columns.
    """
    records = records.reset_index(drop=True)
    keep = np.ones(len(records), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    out = pd.DataFrame(
        {
            "image": records["image"].astype(str),
            "person": records["person"].astype("int64"),
            **{c: records[c].astype("float64") for c in BOX_COLUMNS},
        }
    )
    for c, col in enumerate(SCORE_COLUMNS):
        out[col] = np.asarray(scores, dtype=np.float64)[:, c]
    if raw is not None:
        for c, col in enumerate(RAW_COLUMNS):
            out[col] = np.asarray(raw, dtype=np.float64)[:, c]
    if vad is not None:
        for d, name in enumerate(labels.VAD_NAMES):
            out[name] = np.asarray(vad, dtype=np.float64)[:, d]
    return out[keep].reset_index(drop=True)


def read_scored_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a predictions file (``.parquet``, ``.jsonl`` or ``.csv``; see the module docstring).

    Returns:
        A frame with ``image``, ``x1..y2``, every ``p_<slug>`` column (float64), ``valence``/``arousal``/
        ``dominance`` when the file has them, ``person`` when it has it, and ``row`` (the row's number in
        the file, from 0).

    Raises:
        EmoctxError: unknown suffix, unreadable file, missing columns (with close matches), or invalid
            values (naming the first rows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such predictions file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".jsonl":
            df = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".csv":
            df = pd.read_csv(path)
        else:
            raise EmoctxError(
                f"{path}: predictions are read from {', '.join(PREDICTION_SUFFIXES)} files, not {suffix!r}"
            )
    except EmoctxError:
        raise
    except (ValueError, OSError) as e:  # pandas/pyarrow parse errors
        raise EmoctxError(f"{path}: cannot be read as {suffix[1:]} ({e})") from e
    return _check_predictions(df.reset_index(drop=True), path)


def _rows(rows: np.ndarray) -> str:
    """Name the first of some file rows in a message."""
    more = f" and {len(rows) - _LIST_MAX} more" if len(rows) > _LIST_MAX else ""
    return f"row(s) {', '.join(str(r) for r in rows[:_LIST_MAX])}{more} (data rows counted from 0)"


def _check_predictions(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Validate and normalise the columns of a predictions frame (see :func:`read_scored_predictions`)."""
    df = df.assign(row=np.arange(len(df)))  # the file's own row numbers, kept through the filtering below
    if "image" not in df.columns and "source" in df.columns:
        df = df.rename(columns={"source": "image"})
    if "error" in df.columns:
        failed = df["error"].notna().to_numpy() & (df["error"].astype(str).str.len() > 0).to_numpy()
        if failed.any():
            log.warning("%s: %d row(s) carry an error and no prediction; left out", path, int(failed.sum()))
            df = df[~failed].reset_index(drop=True)
        df.attrs["error_rows"] = int(failed.sum())
    if "box" in df.columns and not set(BOX_COLUMNS) <= set(df.columns):
        try:
            boxes = np.array([np.asarray(b, dtype=np.float64).reshape(4) for b in df["box"]]).reshape(-1, 4)
        except (TypeError, ValueError) as e:
            raise EmoctxError(f"{path}: column 'box' must hold [x1, y1, x2, y2] in every row ({e})") from e
        for c, name in enumerate(BOX_COLUMNS):
            df[name] = boxes[:, c]
    required = ["image", *BOX_COLUMNS, *SCORE_COLUMNS]
    missing = [c for c in required if c not in df.columns]
    known = {*required, *RAW_COLUMNS, *labels.VAD_NAMES, "person", "box", "row", "error", "source"}
    unknown = [str(c) for c in df.columns if str(c) not in known]
    if missing:
        hints = []
        for c in missing[:_LIST_MAX]:
            # Only columns the file has and nothing else reads are candidates: another category's column is
            # never "a close match" of a missing one.
            close = difflib.get_close_matches(c, unknown, n=1, cutoff=_CLOSE_MATCH)
            if close:
                hints.append(f"{c!r} (found {close[0]!r})")
        hint = f"; close matches: {', '.join(hints)}" if hints else ""
        raise EmoctxError(
            f"{path}: missing column(s) {missing}{hint}. A predictions file has one row per person with "
            f"'image', the box 'x1','y1','x2','y2' (or 'box'), one score column '{SCORE_PREFIX}<slug>' per "
            f"category ({SCORE_COLUMNS[0]!r} ... {SCORE_COLUMNS[-1]!r}) and optionally "
            f"{list(labels.VAD_NAMES)} on the 1-10 scale"
        )
    for prefix in (SCORE_PREFIX, RAW_PREFIX):
        stray = [c for c in unknown if c.startswith(prefix)]
        if stray:
            log.warning(
                "%s: column(s) %s name no category and are ignored; score columns are '%s<slug>' with the "
                "slugs %s",
                path,
                stray[:_LIST_MAX],
                prefix,
                ", ".join(labels.SLUGS),
            )
    raw_present = [c for c in RAW_COLUMNS if c in df.columns]
    if raw_present and len(raw_present) != len(RAW_COLUMNS):
        raise EmoctxError(
            f"{path}: has {len(raw_present)} of the {len(RAW_COLUMNS)} raw score columns "
            f"'{RAW_PREFIX}<slug>' (missing {[c for c in RAW_COLUMNS if c not in raw_present][:_LIST_MAX]}); "
            "give all of them or none"
        )
    vad_present = [v for v in labels.VAD_NAMES if v in df.columns]
    if vad_present and len(vad_present) != labels.NUM_VAD:
        raise EmoctxError(
            f"{path}: has {vad_present} but not {[v for v in labels.VAD_NAMES if v not in vad_present]}; "
            "give all three V/A/D columns or none"
        )
    file_rows = df["row"].to_numpy()
    out = pd.DataFrame({"row": file_rows, "image": df["image"]})
    bad_image = np.array([not isinstance(v, str) or not v.strip() for v in df["image"]], dtype=bool)
    if bad_image.any():
        raise EmoctxError(f"{path}: column 'image' is empty or not text in {_rows(file_rows[bad_image])}")
    out["image"] = [_norm_image(v) for v in df["image"]]
    if "person" in df.columns:
        out["person"] = df["person"]
    for col in (*BOX_COLUMNS, *SCORE_COLUMNS, *raw_present, *vad_present):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise EmoctxError(
                f"{path}: column {col!r} is missing, not a number or infinite in {_rows(file_rows[bad])}"
            )
        out[col] = values
    box = out[list(BOX_COLUMNS)].to_numpy()
    inverted = (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])
    if inverted.any():
        raise EmoctxError(
            f"{path}: empty or inverted box (need x2 > x1 and y2 > y1) in {_rows(file_rows[inverted])}"
        )
    if vad_present:
        v = out[list(labels.VAD_NAMES)].to_numpy()
        outside = ((v < labels.VAD_MIN) | (v > labels.VAD_MAX)).any(axis=1)
        if outside.any():
            hint = " (all values are within 0-1: was the 0-1 model scale written?)" if v.max() <= 1.0 else ""
            log.warning(
                "%s: V/A/D outside %g-%g in %s%s; evaluated as given",
                path,
                labels.VAD_MIN,
                labels.VAD_MAX,
                _rows(file_rows[outside]),
                hint,
            )
    out.attrs["error_rows"] = df.attrs.get("error_rows", 0)
    return out


def _norm_image(path: str) -> str:
    """An image path in the records' form: POSIX separators, no leading ``./``."""
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def match_predictions(
    predictions: pd.DataFrame,
    records: pd.DataFrame,
    min_iou: float = 0.5,
    pixel_tolerance: float = 1.0,
    source: str = "<predictions>",
    allow_missing: bool = False,
) -> np.ndarray:
    """Pair each predictions row with one record: same image, and the same box.

    Within one image, rows and records are paired one-to-one by the assignment that maximises the total
    box overlap (Hungarian algorithm on the IoU). A pair counts as a match when the boxes agree to within
    ``pixel_tolerance`` pixels in every coordinate (exact up to rounding) or their IoU is at least
    ``min_iou``; exact pairs take precedence. Image paths are compared after turning backslashes into ``/``
    and dropping a leading ``./``.

    Args:
        predictions: a frame from :func:`read_scored_predictions`.
        records: canonical records.
        min_iou: the smallest IoU that counts as the same person.
        pixel_tolerance: the largest coordinate difference, in pixels, that counts as the same box.
        source: the predictions file (named in the error message).
        allow_missing: accept records without a prediction (they are left out of the evaluation);
            by default they are an error.

    Returns:
        (len(records),) int64 array: for each record, its predictions row, or -1 when it has none.

    Raises:
        EmoctxError: some predictions rows match no record (the first rows are named), or some records
            have no prediction and ``allow_missing`` is false.
    """
    from scipy.optimize import linear_sum_assignment

    from emoctx.data.boxes import box_iou

    records = records.reset_index(drop=True)
    rec_images = [_norm_image(str(v)) for v in records["image"]]
    rec_boxes = records[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    pred_boxes = predictions[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    file_rows = predictions["row"].to_numpy() if "row" in predictions.columns else np.arange(len(predictions))
    rec_by_image: dict[str, list[int]] = {}
    for i, img in enumerate(rec_images):
        rec_by_image.setdefault(img, []).append(i)
    pred_by_image: dict[str, list[int]] = {}
    for j, img in enumerate(predictions["image"]):
        pred_by_image.setdefault(str(img), []).append(j)

    match = np.full(len(records), -1, dtype=np.int64)
    unmatched: list[tuple[int, str]] = []  # (predictions row, reason)
    for img, rows in pred_by_image.items():
        recs = rec_by_image.get(img)
        if not recs:
            unmatched.extend((j, f"image {img!r} is not in the records") for j in rows)
            continue
        pb, rb = pred_boxes[rows], rec_boxes[recs]
        iou = box_iou(pb, rb)
        exact = (np.abs(pb[:, None, :] - rb[None, :, :]) <= pixel_tolerance).all(axis=2)
        # Scipy's assignment solver rather than a greedy pass: with overlapping people a greedy choice
        # can take the box another row needed.
        r_idx, c_idx = linear_sum_assignment(iou + 2.0 * exact, maximize=True)
        paired: dict[int, int] = {}  # row in this image -> record in this image
        for r, c in zip(r_idx, c_idx):
            if exact[r, c] or iou[r, c] >= min_iou:
                match[recs[c]] = rows[r]
                paired[r] = c
        for r, j in enumerate(rows):
            if r in paired:
                continue
            same = [q for q in paired if (np.abs(pb[q] - pb[r]) <= pixel_tolerance).all()]
            if same:  # the same person twice: another row of this image with the same box was matched
                why = f"image {img!r}: duplicate of row {file_rows[rows[same[0]]]} (the same box)"
            else:
                best = float(iou[r].max()) if iou.shape[1] else 0.0
                why = f"image {img!r}: no free record box with IoU >= {min_iou} (best {best:.2f})"
            unmatched.append((j, why))

    missing = int((match < 0).sum())
    if unmatched or (missing and not allow_missing):
        lines = []
        if unmatched:
            unmatched.sort()
            lines.append(f"{len(unmatched)} predictions row(s) match no record (rows counted from 0):")
            for j, why in unmatched[:_LIST_MAX]:
                lines.append(
                    f"  row {file_rows[j]} (box {[round(float(v), 1) for v in pred_boxes[j]]}): {why}"
                )
            if len(unmatched) > _LIST_MAX:
                lines.append(f"  ... and {len(unmatched) - _LIST_MAX} more")
        if missing:
            first = ", ".join(
                f"{rec_images[i]} person {records['person'].iloc[i]}" for i in np.flatnonzero(match < 0)[:3]
            )
            lines.append(
                f"{missing} of {len(records)} record(s) have no prediction (e.g. {first})"
                + ("" if allow_missing else "; pass --allow-missing to evaluate only the matched ones")
            )
        raise EmoctxError(
            f"{source}: predictions do not match the records. Rows are matched by 'image' (relative to the "
            f"dataset root, as in the records) and box (within {pixel_tolerance:g} px, or IoU >= {min_iou:g}).\n"
            + "\n".join(lines)
        )
    if missing:
        log.warning("%d of %d records have no prediction and are left out", missing, len(records))
    return match


def predicted_arrays(
    predictions: pd.DataFrame, rows: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """The (len(rows), C) scores and (len(rows), 3) V/A/D (None without V/A/D columns) of predictions rows."""
    rows = np.asarray(rows, dtype=np.int64)
    scores = predictions[list(SCORE_COLUMNS)].to_numpy(dtype=np.float64)[rows]
    has_vad = all(v in predictions.columns for v in labels.VAD_NAMES)
    vad = predictions[list(labels.VAD_NAMES)].to_numpy(dtype=np.float64)[rows] if has_vad else None
    return scores, vad


def raw_arrays(predictions: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> np.ndarray | None:
    """The (len(rows), C) raw category outputs (``raw_<slug>``) of predictions rows, or None without them."""
    if not all(c in predictions.columns for c in RAW_COLUMNS):
        return None
    return predictions[list(RAW_COLUMNS)].to_numpy(dtype=np.float64)[np.asarray(rows, dtype=np.int64)]


def thresholds_from_dict(values: dict[str, Any] | None, source: str = "<thresholds>") -> np.ndarray | None:
    """Per-category thresholds (canonical order) from ``{slug: number or None}``; None means never predicted.

    Returns None when ``values`` is None or empty. Raises :class:`EmoctxError` for unknown or missing slugs.
    """
    if not values:
        return None
    unknown = [k for k in values if k not in labels.SLUGS]
    missing = [s for s in labels.SLUGS if s not in values]
    if unknown or missing:
        raise EmoctxError(
            f"{source}: thresholds must name every category by slug; unknown {unknown}, missing {missing}"
        )
    out = []
    for s in labels.SLUGS:
        v = values[s]
        try:
            out.append(math.inf if v is None else float(v))
        except (TypeError, ValueError) as e:
            raise EmoctxError(f"{source}: threshold of {s!r} must be a number or null, got {v!r}") from e
    return np.array(out, dtype=np.float64)
