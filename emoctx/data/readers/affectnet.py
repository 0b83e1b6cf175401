"""Reader for AffectNet's annotation CSVs (Mollahosseini et al., 2017): faces with an expression, valence and arousal.

AffectNet ships ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` beside the folder of
images ``Manually_Annotated_Images/`` (the automatically annotated part has the same columns). One row per
face, columns matched by name (case, spaces and underscores ignored):

==========================  =========================================================================
``subDirectory_filePath``   the image, relative to the images folder (``689/737db2...ca.jpg``)
``face_x``, ``face_y``      the face box's left and top edge, pixels of the image
``face_width``,             its width and height
``face_height``
``facial_landmarks``        68 points ``x;y;x;y;...`` in pixels (the iBUG 300-W markup: 136 numbers)
``expression``              0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
                            8 None (none of the eight), 9 Uncertain, 10 No-Face
``valence``, ``arousal``    in [-1, 1]; -2 means not rated (the Uncertain and No-Face rows)
==========================  =========================================================================

Mapping to canonical records (:mod:`emoctx.data.records`), one record per row:

* ``image`` is ``subDirectory_filePath`` (the records' root is the images folder); ``person`` counts the rows
  of one image (0 for nearly all); ``source`` is ``affectnet``.
* The face box is both the person box (``x1 .. y2``) and the face box (``face_x1 .. face_y2``, score 1): the
  data set shows faces, not bodies. Clipped to the image like any box (reported).
* ``facial_landmarks`` -> ``face_landmarks`` (confidence 1) with the convention ``ibug68``; a cell that is
  not 136 finite numbers leaves the landmarks out (reported); an empty cell means none.
* ``expression`` 0-7 -> its name (:data:`emoctx.labels.EXPRESSIONS`); 8 and 9 -> no expression (null), the
  face kept for its valence and arousal; 10 (No-Face) -> the row is dropped (reported); any other value ->
  null (reported).
* ``valence``, ``arousal`` -> the 1-10 scale by ``5.5 + 4.5 v`` (:func:`emoctx.labels.vad_from_signed`);
  -2 -> missing (NaN, reported as every missing rating is); other values outside [-1, 1] -> missing
  (reported). ``dominance`` is not in AffectNet: missing, without a note on every row; ``categories`` is
  empty (AffectNet has no EMOTIC categories), also without a note.

**Splits.** AffectNet's test set was never released, and papers (EmoNet among them) report their figures on
its validation set: ``validation.csv`` becomes the ``test`` split. ``training.csv`` becomes ``train``, less a
``val_share`` of its images (5% by default) moved to ``val`` for model selection, chosen by a hash of the
image path (the same images on every run and machine). Other file names give the split their name says
(``train``, ``val``, ``test``), or the one split asked for.

**Image sizes** are not in the CSV; records need them, so each image's header is read from the images folder
(``images_root``; by default ``Manually_Annotated_Images`` found beside the CSV's folder or one level up).
A row whose image is missing or unreadable is dropped (reported).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from emoctx.data.readers.cleaning import RecordBuilder, show, to_number
from emoctx.data.readers.files import read_csv_text, split_from_name
from emoctx.data.readers.kaggle import parse_numbers
from emoctx.data.readers.report import ConversionReport
from emoctx.data.records import records_frame
from emoctx.errors import EmoctxError
from emoctx.labels import EXPRESSIONS, SPLITS, vad_from_signed

logger = logging.getLogger(__name__)

SOURCE = "affectnet"
COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
"""The columns of an AffectNet annotation CSV."""
FILE_SPLITS: dict[str, str] = {"training": "train", "validation": "test"}
"""AffectNet's own file names and the split each becomes."""
IMAGES_FOLDER = "Manually_Annotated_Images"
LANDMARK_POINTS = 68
NO_FACE = 10
NO_CLASS = {8: "None", 9: "Uncertain"}  # faces kept without an expression
NOT_RATED = -2.0
DEFAULT_VAL_SHARE = 0.05
_READ_THREADS = 8  # image headers are read in parallel: the work is waiting for the disk


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def is_affectnet_csv(path: str | os.PathLike) -> bool:
    """Whether a CSV file's header names AffectNet's columns (its ``subDirectory_filePath``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline(1 << 16)
    except OSError:
        return False
    return _key("subDirectory_filePath") in {_key(c) for c in header.split(",")}


def find_affectnet_files(path: str | os.PathLike, splits: Iterable[str] | None = None) -> dict[str, Path]:
    """``{split: csv}`` for a CSV file, or a folder holding ``training.csv`` / ``validation.csv``.

    The files are looked for in the folder and in its ``Manually_Annotated_file_lists/``. ``train`` also
    stands for the ``val`` share carved from it.

    Raises:
        EmoctxError: nothing found, or a file's split cannot be told.
    """
    path = Path(path)
    wanted = list(splits) if splits is not None else None
    if path.is_file():
        split = FILE_SPLITS.get(path.stem.lower()) or split_from_name(path)
        if split is None:
            if wanted is not None and len(wanted) == 1:
                return {wanted[0]: path}
            raise EmoctxError(
                f"{path}: cannot tell which split this file holds from its name (AffectNet's are training.csv "
                "and validation.csv); rename it or pass one split (--splits train|val|test)"
            )
        return {split: path}
    if not path.is_dir():
        raise EmoctxError(f"{path}: no such file or folder")
    for folder in (path, path / "Manually_Annotated_file_lists"):
        found = {
            FILE_SPLITS[f.stem.lower()]: f for f in folder.glob("*.csv") if f.stem.lower() in FILE_SPLITS
        }
        if found:
            return found
    raise EmoctxError(
        f"{path}: no AffectNet training.csv or validation.csv found (nor in Manually_Annotated_file_lists/)"
    )


def default_images_root(csv: Path) -> Path | None:
    """``Manually_Annotated_Images`` beside the CSV's folder, one level up, or in ``Manually_Annotated/``."""
    for base in (csv.parent, csv.parent.parent):
        for candidate in (base / IMAGES_FOLDER, base / "Manually_Annotated" / IMAGES_FOLDER):
            if candidate.is_dir():
                return candidate
    return None


def in_val_share(image: str, share: float) -> bool:
    """Whether ``image`` belongs to the ``val`` share of the training file (a hash of its path, stable)."""
    digest = hashlib.sha1(image.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def _image_size(root: Path, image: str) -> tuple[int, int] | str:
    """``(width, height)`` from the image's header, or why it cannot be read."""
    from PIL import Image

    file = root / image
    try:
        if not file.is_file():
            return f"not found under {root}"
        with Image.open(file) as im:
            return im.size
    except Image.DecompressionBombError as e:
        return f"image too large to decode safely ({e})"
    except Exception as e:  # Pillow's plugins raise OSError, ValueError, SyntaxError... on bad headers
        return f"cannot be opened ({type(e).__name__}: {e})"


def read_affectnet(
    path: str | os.PathLike,
    splits: Iterable[str] | None = None,
    report: ConversionReport | None = None,
    images_root: str | os.PathLike | None = None,
    val_share: float = DEFAULT_VAL_SHARE,
) -> dict[str, pd.DataFrame]:
    """Read AffectNet annotation CSVs into canonical records, one frame per split (see the module docstring).

    Args:
        path: a CSV file, or the folder holding ``training.csv`` / ``validation.csv``.
        splits: the splits to return (``train``, ``val``, ``test``); None returns every split found.
        report: collects every repaired, dropped or noted record (a fresh one when None).
        images_root: the images folder the ``subDirectory_filePath`` values are relative to (image sizes are
            read from it); None looks for ``Manually_Annotated_Images`` near the CSV.
        val_share: share of the training file's images moved to ``val`` (0 keeps them all in ``train``).

    Returns:
        ``{split: records frame}``.

    Raises:
        EmoctxError: no file, a missing column, an unreadable file, or no images folder.
    """
    if not 0.0 <= val_share < 1.0:
        raise EmoctxError(f"AffectNet: the val share must be in [0, 1), got {val_share}")
    report = report if report is not None else ConversionReport()
    wanted = list(splits) if splits is not None else None
    files = find_affectnet_files(path, wanted)
    out: dict[str, list[dict]] = {}
    for split, file in files.items():
        gives = {split, "val"} if split == "train" and val_share > 0 else {split}
        if wanted is not None and not gives & set(wanted):
            continue
        root = Path(images_root) if images_root is not None else default_images_root(file)
        if root is None or not root.is_dir():
            where = (
                f"{root} is not a folder"
                if root is not None
                else f"no {IMAGES_FOLDER} folder found near {file}"
            )
            raise EmoctxError(
                f"AffectNet: the image sizes are read from the images ({where}); pass the folder of the images "
                "with --images-root"
            )
        for target, rows in _read_file(
            file, split, root, report, val_share if split == "train" else 0.0
        ).items():
            out.setdefault(target, []).extend(rows)
    names = [s for s in SPLITS if s in out] if wanted is None else wanted
    frames = {s: records_frame(out.get(s, [])) for s in names}
    for s, df in frames.items():
        logger.info("AffectNet %s: %d faces", s, len(df))
    return frames


def _columns(df: pd.DataFrame, file: Path) -> dict[str, str]:
    by_key = {_key(c): c for c in df.columns}
    missing = [c for c in COLUMNS if _key(c) not in by_key]
    if missing:
        raise EmoctxError(
            f"{file}: missing column(s) {missing}; an AffectNet annotation file has {list(COLUMNS)} "
            f"(found {list(df.columns)})"
        )
    return {c: by_key[_key(c)] for c in COLUMNS}


def _read_file(
    file: Path, split: str, root: Path, report: ConversionReport, val_share: float
) -> dict[str, list[dict]]:
    """The records of one CSV by split: ``split``, and ``val`` for the share of images moved there."""
    df = read_csv_text(file)
    col = _columns(df, file)
    builders = {split: RecordBuilder(file, split, report)}
    if val_share > 0:
        builders["val"] = RecordBuilder(file, "val", report)
    rows = df.to_dict("records")
    images: list[str | None] = []
    persons: list[int] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows):
        raw = row[col["subDirectory_filePath"]]
        person = seen.get(raw, 0)
        seen[raw] = person + 1
        persons.append(person)
        images.append(builders[split].image_path(None, raw, f"row {n + 2}", [person]))
    unique = sorted({im for im in images if im is not None})
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        sizes = dict(zip(unique, pool.map(lambda im: _image_size(root, im), unique)))
    records: dict[str, list[dict]] = {s: [] for s in builders}
    for row, image, person in zip(rows, images, persons):
        if image is None:
            continue
        target = "val" if val_share > 0 and in_val_share(image, val_share) else split
        record = _record(row, col, image, person, sizes[image], builders[target])
        if record is not None:
            records[target].append(record)
    for target, found in records.items():
        builders[target].note_duplicates(found)
    return records


def _record(
    row: dict[str, str],
    col: dict[str, str],
    image: str,
    person: int,
    size: tuple[int, int] | str,
    builder: RecordBuilder,
) -> dict | None:
    if isinstance(size, str):
        builder.note(image, person, "dropped", "image", f"{size}: the image size is needed; face dropped")
        return None
    expression, drop = _expression(row[col["expression"]], image, person, builder)
    if drop:
        return None
    values = [to_number(row[col[c]]) for c in ("face_x", "face_y", "face_width", "face_height")]
    box: list = [row[col[c]] for c in ("face_x", "face_y", "face_width", "face_height")]
    if all(v is not None and math.isfinite(v) for v in values):
        x, y, w, h = values
        box = [x, y, x + w, y + h]
    record = builder.person(
        image=image,
        width=size[0],
        height=size[1],
        person=person,
        box=box,
        categories=[],
        vad=[_signed(row[col[c]], c, image, person, builder) for c in ("valence", "arousal")],
        source=SOURCE,
        not_in_source=("categories", "dominance"),
    )
    if record is None:
        return None
    record.update(
        face_x1=record["x1"],
        face_y1=record["y1"],
        face_x2=record["x2"],
        face_y2=record["y2"],
        face_score=1.0,
        expression=expression,
    )
    landmarks = _landmarks(row[col["facial_landmarks"]], image, person, builder)
    record["face_landmarks"] = landmarks
    record["face_landmark_convention"] = "ibug68" if landmarks else None
    return record


def _expression(cell: str, image: str, person: int, builder: RecordBuilder) -> tuple[str | None, bool]:
    """The expression's name (or None), and whether the row is dropped (No-Face)."""
    code = to_number(cell)
    if code is not None and not math.isnan(code) and code == int(code):
        if 0 <= code < len(EXPRESSIONS):
            return EXPRESSIONS[int(code)], False
        if int(code) in NO_CLASS:
            return None, False
        if int(code) == NO_FACE:
            builder.note(
                image, person, "dropped", "expression", "expression 10 (No-Face): no face to learn from"
            )
            return None, True
    builder.note(
        image,
        person,
        "repaired",
        "expression",
        f"{show(cell)} is not an AffectNet expression code (0-10); set to null",
    )
    return None, False


def _signed(cell: str, name: str, image: str, person: int, builder: RecordBuilder) -> float:
    """A valence or arousal value in [-1, 1] on the 1-10 scale; NaN when not rated (-2) or unusable."""
    v = to_number(cell)
    if v is None:
        builder.note(image, person, "repaired", name, f"{show(cell)} is not a number; set to missing")
        return math.nan
    if math.isnan(v) or v == NOT_RATED:
        return math.nan  # the builder notes every missing rating
    if not -1.0 <= v <= 1.0:
        builder.note(image, person, "repaired", name, f"{v:g} is outside -1..1 (and not -2); set to missing")
        return math.nan
    return float(vad_from_signed(v))


def _landmarks(cell: str, image: str, person: int, builder: RecordBuilder) -> list[list[float]]:
    if not str(cell).strip():
        return []
    numbers = parse_numbers(cell)
    if len(numbers) != 2 * LANDMARK_POINTS or not all(math.isfinite(v) for v in numbers):
        builder.note(
            image,
            person,
            "repaired",
            "face_landmarks",
            f"{show(cell)} is not {LANDMARK_POINTS} points x;y of finite numbers ({len(numbers)} numbers); "
            "landmarks left out",
        )
        return []
    return [[numbers[2 * k], numbers[2 * k + 1], 1.0] for k in range(LANDMARK_POINTS)]
