"""Canonical annotation records: one row per annotated person, the format every other part of emoctx reads.

The schema is documented for users in ``annotations/README.md``; this module is its implementation.
Records live in a :class:`pandas.DataFrame` with the columns of :data:`COLUMNS`, the optional typed columns of
:data:`OPTIONAL_COLUMNS` where a source has them (the face: box, score, landmarks; a facial expression), and
any extra columns (allowed and preserved). Datasets are stored as Parquet; JSONL is offered for files people
read.

Conventions:

* ``image`` is a POSIX path relative to the dataset root (for EMOTIC: ``<root>/emotic``).
* boxes are ``x1 y1 x2 y2`` in pixels of the stored image, inside ``[0, width] x [0, height]``.
* ``valence``/``arousal``/``dominance`` are on the 1-10 scale; NaN means missing.
* ``categories`` holds the ground truth (for EMOTIC val/test: the combined labels); the per-annotator
  labels, where the source has them, are in ``annotator_categories`` and ``annotator_vad``.
* the face box ``face_x1 .. face_y2`` is in the same pixels as the body box; NaN when the person shows no
  face. Its landmarks are ``[x, y, confidence]`` in pixels, in a named convention
  (:data:`emoctx.faces.LANDMARK_CONVENTIONS`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emoctx.errors import EmoctxError
from emoctx.faces import LANDMARK_CONVENTIONS
from emoctx.io import atomic_path, jsonable, read_jsonl
from emoctx.labels import AGES, CATEGORY_INDEX, EXPRESSIONS, GENDERS, SPLITS, VAD_MAX, VAD_MIN, VAD_NAMES

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
"""Characters never part of a real file name (NUL, newline, terminal escapes)."""
_DRIVE = re.compile(r"^[A-Za-z]:")

SCHEMA_VERSION = 1

# name -> (arrow type, required, description). Order is the column order of written files.
COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "image": (pa.string(), True, "image path relative to the dataset root (POSIX separators)"),
    "width": (pa.int32(), True, "image width in pixels"),
    "height": (pa.int32(), True, "image height in pixels"),
    "split": (pa.string(), True, "train, val or test"),
    "person": (pa.int32(), True, "index of the person within the image (0-based, in source order)"),
    "x1": (pa.float32(), True, "body box left edge, pixels"),
    "y1": (pa.float32(), True, "body box top edge, pixels"),
    "x2": (pa.float32(), True, "body box right edge, pixels"),
    "y2": (pa.float32(), True, "body box bottom edge, pixels"),
    "categories": (pa.list_(pa.string()), True, "ground-truth category names (combined labels for val/test)"),
    "valence": (pa.float32(), True, "valence on 1-10, NaN when missing"),
    "arousal": (pa.float32(), True, "arousal on 1-10, NaN when missing"),
    "dominance": (pa.float32(), True, "dominance on 1-10, NaN when missing"),
    "annotator_categories": (
        pa.list_(pa.list_(pa.string())),
        False,
        "per-annotator category lists (empty when the source has one annotator only)",
    ),
    "annotator_vad": (
        pa.list_(pa.list_(pa.float32())),
        False,
        "per-annotator [valence, arousal, dominance] on 1-10, NaN when missing",
    ),
    "gender": (pa.string(), False, "Male, Female, or null"),
    "age": (pa.string(), False, "Kid, Teenager, Adult, or null"),
    "source": (pa.string(), False, "original database (mscoco, ade20k, emodb_small, framesdb, synth...)"),
}
BOX_COLUMNS = ("x1", "y1", "x2", "y2")

# name -> (arrow type, description): typed and validated where present, never added to records without them
# (records of a source without faces keep exactly the columns above).
OPTIONAL_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "face_x1": (pa.float32(), "face box left edge, pixels; NaN when the person shows no face"),
    "face_y1": (pa.float32(), "face box top edge, pixels; NaN when the person shows no face"),
    "face_x2": (pa.float32(), "face box right edge, pixels; NaN when the person shows no face"),
    "face_y2": (pa.float32(), "face box bottom edge, pixels; NaN when the person shows no face"),
    "face_score": (
        pa.float32(),
        "confidence in 0-1 that the face box is the person's face (1 for annotated faces); NaN without a face",
    ),
    "face_landmarks": (
        pa.list_(pa.list_(pa.float32())),
        "facial landmarks, one [x, y, confidence] per point in pixels, in face_landmark_convention; empty when none",
    ),
    "face_landmark_convention": (
        pa.string(),
        "the landmarks' convention (coco5, coco17, ibug68); null when there are none",
    ),
    "expression": (pa.string(), "facial expression (Neutral, Happy, ... Contempt), or null"),
}
FACE_BOX_COLUMNS = ("face_x1", "face_y1", "face_x2", "face_y2")
_DEFAULTS: dict[str, Any] = {
    "annotator_categories": [],
    "annotator_vad": [],
    "gender": None,
    "age": None,
    "source": None,
}


class RecordError(EmoctxError, ValueError):
    """Raised when records do not follow the canonical schema. The message names file, entry and field."""


def records_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a canonical records frame from dicts (missing optional fields get their defaults).

    Columns are put in schema order; unknown keys are kept after the schema columns.
    """
    rows = [dict(r) for r in rows]
    for r in rows:
        for k, v in _DEFAULTS.items():
            if k not in r:
                r[k] = list(v) if isinstance(v, list) else v
    if not rows:
        return _empty_frame()
    return _normalise_dtypes(pd.DataFrame(rows, columns=_column_order(rows)))


def _empty_frame() -> pd.DataFrame:
    """A frame with the schema's columns and no rows (Arrow-writable)."""
    return pa.schema([pa.field(c, t) for c, (t, _, _) in COLUMNS.items()]).empty_table().to_pandas()


def _column_order(rows: list[dict]) -> list[str]:
    seen: set[str] = set()
    extra: list[str] = []
    for r in rows:
        for k in r:
            if k not in COLUMNS and k not in seen:
                seen.add(k)
                extra.append(k)
    optional = [c for c in OPTIONAL_COLUMNS if c in seen]
    return list(COLUMNS) + optional + [k for k in extra if k not in OPTIONAL_COLUMNS]


def _normalise_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in ("width", "height", "person"):
        if c in df and len(df):
            df[c] = df[c].astype("int64")
    for c in (*BOX_COLUMNS, *VAD_NAMES, *FACE_BOX_COLUMNS, "face_score"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in ("categories", "annotator_categories", "annotator_vad", "face_landmarks"):
        if c in df:
            df[c] = pd.Series([[] if _isnan(v) else _plain(v) for v in df[c]], index=df.index, dtype=object)
    for c in ("gender", "age", "source", "face_landmark_convention", "expression"):
        if c in df:  # one spelling of "missing" for optional text fields: None
            df[c] = pd.Series([None if _isnan(v) else v for v in df[c]], index=df.index, dtype=object)
    return df.reset_index(drop=True)


def _plain(v: Any) -> Any:
    """Turn numpy arrays (as pyarrow returns list columns) into nested Python lists."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()] if v.dtype == object else v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None:
        return []
    return v


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def image_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be an image under the dataset root, or None (readers and :func:`validate_records`).

    A path with a ``..`` component or a drive letter would point outside the root it is joined to, and
    control characters (NUL, newline, terminal escapes) are never part of a real EMOTIC file name.
    """
    if not path:
        return "the image path is empty"
    if CONTROL_CHARACTERS.search(path):
        return "the image path holds control characters"
    if ".." in path.split("/") or _DRIVE.match(path):
        return "the image path leaves the images root"
    return None


def validate_records(df: pd.DataFrame, source: str | os.PathLike = "<records>", max_errors: int = 20) -> None:
    """Check a records frame against the schema; raise :class:`RecordError` listing every problem found.

    Each problem names the file (``source``), the entry (row number, image and person) and the field.
    """
    source = str(source)
    missing = [c for c, (_, required, _) in COLUMNS.items() if required and c not in df.columns]
    if missing:
        raise RecordError(f"{source}: missing required column(s) {missing}; expected {list(COLUMNS)}")
    problems: list[str] = []

    def bad(i: int, row: Mapping, field: str, msg: str) -> None:
        problems.append(
            f"{source}: entry {i} (image {row.get('image')!r}, person {row.get('person')}): field '{field}': {msg}"
        )

    for i, row in enumerate(df.to_dict("records")):
        if len(problems) >= max_errors:
            break
        if not isinstance(row["image"], str) or not row["image"]:
            bad(i, row, "image", "must be a non-empty relative path")
        elif row["image"].startswith("/") or "\\" in row["image"]:
            bad(i, row, "image", "must be relative to the dataset root with '/' separators")
        elif (problem := image_path_problem(row["image"])) is not None:  # what the readers refuse, too
            bad(i, row, "image", problem)
        w, h = row["width"], row["height"]
        if not (isinstance(w, (int, np.integer)) and w > 0):
            bad(i, row, "width", f"must be a positive integer, got {w!r}")
        if not (isinstance(h, (int, np.integer)) and h > 0):
            bad(i, row, "height", f"must be a positive integer, got {h!r}")
        if row["split"] not in SPLITS:
            bad(i, row, "split", f"must be one of {SPLITS}, got {row['split']!r}")
        box = [row[c] for c in BOX_COLUMNS]
        if any(_isnan(v) for v in box):
            bad(i, row, "x1..y2", f"box has missing values: {box}")
        else:
            x1, y1, x2, y2 = box
            if not (x2 > x1 and y2 > y1):
                bad(i, row, "x1..y2", f"box is empty or inverted: {box}")
            sized = isinstance(w, (int, np.integer)) and isinstance(h, (int, np.integer))
            if sized and (x1 < 0 or y1 < 0 or x2 > w or y2 > h):
                bad(i, row, "x1..y2", f"box {box} extends outside the {w}x{h} image")
        cats = row["categories"]
        if not isinstance(cats, list):
            bad(i, row, "categories", f"must be a list of names, got {type(cats).__name__}")
        else:
            unknown = [c for c in cats if c not in CATEGORY_INDEX]
            if unknown:
                bad(i, row, "categories", f"unknown category name(s) {unknown}")
            if len(set(cats)) != len(cats):
                bad(i, row, "categories", f"duplicate names in {cats}")
        for name in VAD_NAMES:
            v = row[name]
            if not _isnan(v) and not (VAD_MIN <= v <= VAD_MAX):
                bad(i, row, name, f"{v} is outside the {VAD_MIN:g}-{VAD_MAX:g} scale")
        for ann in row.get("annotator_categories") or []:
            unknown = [c for c in ann if c not in CATEGORY_INDEX]
            if unknown:
                bad(i, row, "annotator_categories", f"unknown category name(s) {unknown}")
        for ann in row.get("annotator_vad") or []:
            if len(ann) != len(VAD_NAMES):
                bad(i, row, "annotator_vad", f"each entry must be [valence, arousal, dominance], got {ann}")
            elif any(not _isnan(v) and not (VAD_MIN <= v <= VAD_MAX) for v in ann):
                bad(i, row, "annotator_vad", f"{ann} has values outside {VAD_MIN:g}-{VAD_MAX:g}")
        if row.get("gender") not in (None, *GENDERS) and not _isnan(row.get("gender")):
            bad(i, row, "gender", f"must be one of {GENDERS} or null, got {row['gender']!r}")
        if row.get("age") not in (None, *AGES) and not _isnan(row.get("age")):
            bad(i, row, "age", f"must be one of {AGES} or null, got {row['age']!r}")
        _check_face(row, lambda field, msg, i=i, row=row: bad(i, row, field, msg))
    if problems:
        more = " (first problems only)" if len(problems) >= max_errors else ""
        raise RecordError(f"{len(problems)} invalid record field(s){more}:\n" + "\n".join(problems))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_face(row: Mapping[str, Any], bad: Any) -> None:
    """The face columns of one record, where present (see :data:`OPTIONAL_COLUMNS`)."""
    box = [row[c] for c in FACE_BOX_COLUMNS if c in row]
    has_box = False
    if box:
        if len(box) != len(FACE_BOX_COLUMNS):
            bad("face_x1..face_y2", f"all four of {list(FACE_BOX_COLUMNS)} are needed, found {len(box)}")
        elif not all(_isnan(v) for v in box):
            if any(_isnan(v) for v in box):
                bad("face_x1..face_y2", f"face box has missing values: {box} (all four, or none)")
            else:
                has_box = True
                x1, y1, x2, y2 = box
                w, h = row["width"], row["height"]
                if not (x2 > x1 and y2 > y1):
                    bad("face_x1..face_y2", f"face box is empty or inverted: {box}")
                elif (
                    isinstance(w, (int, np.integer))
                    and isinstance(h, (int, np.integer))
                    and (x1 < 0 or y1 < 0 or x2 > w or y2 > h)
                ):
                    bad("face_x1..face_y2", f"face box {box} extends outside the {w}x{h} image")
    score = row.get("face_score")
    if not _isnan(score):
        if not has_box:
            bad("face_score", f"a face score ({score}) without a face box")
        elif not 0.0 <= score <= 1.0:
            bad("face_score", f"{score} is outside 0-1")
    landmarks = row.get("face_landmarks") or []
    convention = row.get("face_landmark_convention")
    convention = None if _isnan(convention) else convention
    if not isinstance(landmarks, list):
        bad("face_landmarks", f"must be a list of [x, y, confidence], got {type(landmarks).__name__}")
        return
    if convention is not None and convention not in LANDMARK_CONVENTIONS:
        bad(
            "face_landmark_convention",
            f"must be one of {list(LANDMARK_CONVENTIONS)} or null, got {convention!r}",
        )
        return
    if landmarks:
        if not has_box:
            bad("face_landmarks", "landmarks without a face box")
        if convention is None:
            bad("face_landmark_convention", f"{len(landmarks)} landmarks without their convention")
        elif len(landmarks) != LANDMARK_CONVENTIONS[convention]:
            bad(
                "face_landmarks",
                f"{convention} has {LANDMARK_CONVENTIONS[convention]} points, found {len(landmarks)}",
            )
        for k, point in enumerate(landmarks):
            ok = isinstance(point, list) and len(point) == 3 and all(_number(v) for v in point)
            if ok:
                x, y, c = (float(v) for v in point)
                ok = 0.0 <= c <= 1.0 and (
                    (math.isfinite(x) and math.isfinite(y)) or (c == 0.0 and math.isnan(x) and math.isnan(y))
                )
            if not ok:
                bad(
                    "face_landmarks",
                    f"point {k} {point!r} is not [x, y, confidence] with finite x, y and a confidence in 0-1 "
                    "(NaN x, y only with confidence 0)",
                )
                break
    elif convention is not None:
        bad("face_landmark_convention", f"{convention!r} given without landmarks")
    expression = row.get("expression")
    if not _isnan(expression) and expression not in EXPRESSIONS:
        bad("expression", f"must be one of {EXPRESSIONS} or null, got {expression!r}")


def arrow_schema(df: pd.DataFrame) -> pa.Schema:
    """The Arrow schema for writing ``df``: schema columns typed, extra columns inferred."""
    fields = []
    for c in df.columns:
        if c in COLUMNS:
            fields.append(pa.field(c, COLUMNS[c][0]))
        elif c in OPTIONAL_COLUMNS:
            fields.append(pa.field(c, OPTIONAL_COLUMNS[c][0]))
        else:
            fields.append(
                pa.field(c, pa.Table.from_pandas(df[[c]], preserve_index=False).schema.field(c).type)
            )
    return pa.schema(fields, metadata={"emoctx_schema_version": str(SCHEMA_VERSION)})


def write_records(df: pd.DataFrame, path: str | os.PathLike, validate: bool = True) -> Path:
    """Validate and write records atomically; ``.parquet`` or ``.jsonl`` chosen by suffix."""
    path = Path(path)
    df = _normalise_dtypes(df)
    if validate:
        validate_records(df, source=path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            table = pa.Table.from_pandas(df, schema=arrow_schema(df), preserve_index=False)
            pq.write_table(table, tmp)
        elif path.suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in df.to_dict("records"):
                    f.write(json.dumps(jsonable(row), ensure_ascii=False, allow_nan=False) + "\n")
        else:
            raise ValueError(f"{path}: records are written as .parquet or .jsonl, not {path.suffix!r}")
    return path


def read_records(path: str | os.PathLike, validate: bool = True) -> pd.DataFrame:
    """Read records from ``.parquet`` or ``.jsonl`` (``null`` VAD read back as NaN) and validate them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such records file")
    if path.suffix == ".parquet":
        df = pq.read_table(path).to_pandas()
    elif path.suffix == ".jsonl":
        rows = read_jsonl(path, RecordError)
        for r in rows:
            for k in ("annotator_vad", "face_landmarks"):
                if r.get(k):
                    r[k] = [[float("nan") if x is None else x for x in ann] for ann in r[k]]
        df = records_frame(rows)
    else:
        raise ValueError(f"{path}: records are read from .parquet or .jsonl, not {path.suffix!r}")
    df = _normalise_dtypes(df)
    if validate:
        validate_records(df, source=path)
    return df


def category_matrix(df: pd.DataFrame) -> np.ndarray:
    """The (N, number of categories) float32 multi-hot matrix of the ``categories`` column."""
    out = np.zeros((len(df), len(CATEGORY_INDEX)), dtype=np.float32)
    for i, cats in enumerate(df["categories"]):
        for c in cats:
            out[i, CATEGORY_INDEX[c]] = 1.0
    return out


def vad_matrix(df: pd.DataFrame) -> np.ndarray:
    """The (N, 3) float32 V/A/D matrix on the 1-10 scale, NaN where missing."""
    return df[list(VAD_NAMES)].to_numpy(dtype=np.float32)
