"""Reader for the Kaggle re-packaging of EMOTIC: ``annots_arrs/annot_arrs_{train,val,test}.csv``.

One CSV row per person. Columns are matched by name (case, spaces and underscores ignored), never by
position; the category columns come in their own order (Peace, Affection, Esteem, ...) and are matched
through :func:`emoctx.labels.canonical_category`. Used columns: ``Folder``, ``Filename``, ``Image Size``,
``BBox``, one 0/1 column per category, ``Valence``, ``Arousal``, ``Dominance``, ``Gender``, ``Age``.
``Arr_name`` / ``Crop_name`` point at pre-resized ``.npy`` arrays and are not needed: records point at the
original images.

Cell formats (not documented by the package; established from public code that writes and reads these
files): the CSVs come from a variant of the widely used ``mat2py.py`` conversion, which writes Python lists
with ``csv.writer``, so a cell reads ``[640, 480]``. ``BBox`` is ``[x1, y1, x2, y2]`` in pixels, already
clipped to the image and truncated to integers. ``Image Size`` is ``[width, height]``: the script clips the
box's x by its first element and y by its second, and readers of these files unpack it as ``w, h``. Cells
are parsed with a regular expression that accepts any bracket or separator style (never evaluated as code).
Some variants carry the box as four columns ``X_min, Y_min, X_max, Y_max``; those are used when ``BBox`` is
absent.

The layout has no original-database field: ``source`` is the first component of ``Folder``
(``mscoco/images`` -> ``mscoco``). Val/test rows carry the combined labels; per-annotator labels are not in
this layout. The conversion that made these files left out persons without categories or with missing
V/A/D, so person indices count the rows of one image in file order and can differ from the index of the
same person in ``Annotations.mat`` when one was left out.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from emoctx.data.readers.cleaning import (
    RecordBuilder,
    relative_image_path,
    show,
    source_from_folder,
    to_number,
)
from emoctx.data.readers.files import read_csv_text, split_of_file
from emoctx.data.readers.report import ConversionReport
from emoctx.data.records import records_frame
from emoctx.errors import EmoctxError
from emoctx.labels import CATEGORIES, SPLITS, canonical_category

logger = logging.getLogger(__name__)

#: File name of one split's annotations in the Kaggle layout.
FILE_PATTERN = "annot_arrs_{split}.csv"
_FIELDS = ("Folder", "Filename", "Image Size", "Valence", "Arousal", "Dominance", "Gender", "Age")
_BOX_COLUMNS = ("X_min", "Y_min", "X_max", "Y_max")
_NUMBER = re.compile(r"nan|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def find_kaggle_files(path: str | os.PathLike, splits: Iterable[str] | None = None) -> dict[str, Path]:
    """Map each split to its CSV: ``path`` itself, or ``annot_arrs_<split>.csv`` in a folder or its ``annots_arrs/``."""
    path = Path(path)
    splits = list(splits) if splits is not None else None
    if path.is_file():
        return split_of_file(path, splits)
    if not path.is_dir():
        raise EmoctxError(f"{path}: no such file or folder")
    folder = path if any(path.glob("annot_arrs_*.csv")) else path / "annots_arrs"
    found = {
        s: folder / FILE_PATTERN.format(split=s)
        for s in SPLITS
        if (folder / FILE_PATTERN.format(split=s)).is_file()
    }
    wanted = [s for s in SPLITS if s in found] if splits is None else splits
    if not wanted:
        raise EmoctxError(
            f"{path}: no annot_arrs_train/val/test.csv found (looked in the folder and in annots_arrs/)"
        )
    missing = [s for s in wanted if s not in found]
    if missing:
        names = [FILE_PATTERN.format(split=s) for s in missing]
        raise EmoctxError(f"{folder}: missing {names}")
    return {s: found[s] for s in wanted}


def read_kaggle(
    path: str | os.PathLike,
    splits: Iterable[str] | None = None,
    report: ConversionReport | None = None,
) -> dict[str, pd.DataFrame]:
    """Read Kaggle-layout EMOTIC CSVs into canonical records, one frame per split.

    Args:
        path: one ``annot_arrs_<split>.csv``, or the folder holding them (or its parent).
        splits: the splits to read; None reads every split found.
        report: collects every repaired, dropped or noted record (a fresh one when None).

    Returns:
        ``{split: records frame}``.

    Raises:
        EmoctxError: a file is missing, unreadable, or lacks a needed column (the message names the
            column(s) and the file).
    """
    report = report if report is not None else ConversionReport()
    out: dict[str, pd.DataFrame] = {}
    for split, file in find_kaggle_files(path, splits).items():
        out[split] = records_frame(_read_file(file, split, report))
        logger.info("%s: %s: %d persons", file, split, len(out[split]))
    return out


def _columns(df: pd.DataFrame, file: Path) -> tuple[dict[str, str], dict[str, str], list[str] | None]:
    """Resolve the needed columns by name: (field -> column, category -> column, box columns or None)."""
    by_key = {_key(c): c for c in df.columns}
    fields = {f: by_key[_key(f)] for f in _FIELDS if _key(f) in by_key}
    cats: dict[str, str] = {}
    for c in df.columns:
        name = canonical_category(str(c))
        if name is not None and name not in cats:
            cats[name] = c
    box: list[str] | None = None
    if _key("BBox") in by_key:
        box = [by_key[_key("BBox")]]
    elif all(_key(c) in by_key for c in _BOX_COLUMNS):
        box = [by_key[_key(c)] for c in _BOX_COLUMNS]
    missing = [f for f in _FIELDS if f not in fields]
    missing += [] if box else ["BBox"]
    missing += [c for c in CATEGORIES if c not in cats]
    if missing:
        raise EmoctxError(
            f"{file}: missing column(s) {missing}; a Kaggle-layout EMOTIC file needs "
            f"{list(_FIELDS[:3])} + ['BBox'] + one 0/1 column per category + {list(_FIELDS[3:])} "
            f"(found {list(df.columns)})"
        )
    return fields, cats, box


def parse_numbers(cell: str) -> list[float]:
    """The numbers written in a cell such as ``[640, 480]``, ``(1, 2, 3, 4)`` or ``640x480`` (``nan`` -> NaN)."""
    return [math.nan if t.lower() == "nan" else float(t) for t in _NUMBER.findall(str(cell))]


def _read_file(file: Path, split: str, report: ConversionReport) -> list[dict]:
    df = read_csv_text(file)
    fields, cats, box_cols = _columns(df, file)
    builder = RecordBuilder(file, split, report)
    seen: dict[str, int] = {}
    rows: list[dict] = []
    for n, row in enumerate(df.to_dict("records")):
        folder, filename = row[fields["Folder"]], row[fields["Filename"]]
        key = relative_image_path(folder, filename) if filename.strip() else f"row {n + 2}"
        person = seen.get(key, 0)
        seen[key] = person + 1
        image = builder.image_path(folder or None, filename, f"row {n + 2}", [person])
        if image is None:
            continue
        size = parse_numbers(row[fields["Image Size"]])
        if len(size) != 2:
            builder.note(
                image,
                person,
                "dropped",
                "image_size",
                f"Image Size {show(row[fields['Image Size']])} is not [width, height]",
            )
            continue
        wh = builder.image_size(image, size[0], size[1], [person])
        if wh is None:
            continue
        box = parse_numbers(row[box_cols[0]]) if len(box_cols) == 1 else [row[c] for c in box_cols]
        positives = []
        for name, col in cats.items():
            value = to_number(row[col])
            if value == 1:
                positives.append(name)
            elif value != 0:
                builder.note(
                    image,
                    person,
                    "repaired",
                    "categories",
                    f"{col} = {show(row[col])} is not 0 or 1; left out",
                )
        record = builder.person(
            image=image,
            width=wh[0],
            height=wh[1],
            person=person,
            box=box,
            categories=[c for c in CATEGORIES if c in positives],
            vad=[row[fields[f]] for f in ("Valence", "Arousal", "Dominance")],
            gender=row[fields["Gender"]],
            age=row[fields["Age"]],
            source=source_from_folder(folder),
        )
        if record is not None:
            rows.append(record)
    builder.note_duplicates(rows)
    return rows
