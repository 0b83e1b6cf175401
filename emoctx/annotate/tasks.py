"""Label Studio tasks: one per photo, its persons' boxes (and optionally suggested labels) as pre-annotations.

A task is the JSON object Label Studio imports::

    {"data": {"image": "/data/local-files/?d=photos/a.jpg",   # how the labelling page loads the photo
              "emoctx_image": "a.jpg",                           # the path relative to the photo folder
              "emoctx_width": 640, "emoctx_height": 480,         # the photo's size (EXIF orientation applied)
              "emoctx_regions": {"p0": 0, "p1": 1},              # box id -> person index
              "emoctx_split": "val"},                            # only for tasks made from records
     "predictions": [{"model_version": "...", "score": 0.8, "result": [...]}]}

Boxes come from a person detector (:class:`~emoctx.inference.detect.UltralyticsDetector`) or a box file
(:class:`~emoctx.inference.box_file.BoxFileDetector`) for photos, from the records for a records file (the
persons keep their index, so relabelling maps back onto the same records), or from a prediction table
(``emoctx predict``'s output). Each box has the stable id ``p<person>``: every per-box answer Label Studio
stores carries it. Suggestions (categories above the model's thresholds, V/A/D rounded to whole points,
gender, age) are added to the box so annotators correct them rather than start empty; boxes of existing
persons can be locked (``readonly``) so that relabelling cannot move them.

Percent coordinates: Label Studio stores a box as ``x``, ``y``, ``width``, ``height`` in percent of the
image's width and height; :func:`box_to_percent` and :func:`box_from_percent` convert.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from emoctx.annotate.config import AGE, CATEGORIES_CONTROL, GENDER, IMAGE, PERSON, PERSON_LABEL, VAD_CONTROLS
from emoctx.errors import EmoctxError
from emoctx.labels import AGES, CATEGORY_INDEX, GENDERS, SLUGS, SPLITS, VAD_MAX, VAD_MIN, VAD_NAMES

log = logging.getLogger(__name__)

LOCAL_FILES_URL = "/data/local-files/?d="
"""Label Studio's address of a file under its local-files document root."""


def region_id(person: int) -> str:
    """The stable id of a person's box in a task (``p0``, ``p1`` ...)."""
    return f"p{int(person)}"


@dataclass
class Person:
    """One person of a photo, as a task shows it.

    Attributes:
        person: index of the person in the photo (its box id is ``p<person>``).
        box: ``(x1, y1, x2, y2)`` in pixels.
        score: detector score (None when the box was given).
        categories: suggested categories (None: no suggestion).
        category_scores: the model's probability of each suggested category (for the suggestion's score).
        vad: suggested valence, arousal, dominance on 1-10 (None or NaN: no suggestion).
        gender: suggested gender or None.
        age: suggested age group or None.
    """

    person: int
    box: tuple[float, float, float, float]
    score: float | None = None
    categories: list[str] | None = None
    category_scores: list[float] | None = None
    vad: Sequence[float] | None = None
    gender: str | None = None
    age: str | None = None


@dataclass
class Photo:
    """One photo and its persons.

    Attributes:
        image: path relative to the photo folder (POSIX separators).
        width: width in pixels (EXIF orientation applied).
        height: height in pixels.
        persons: its persons.
        split: the split the photo belongs to, when known (tasks made from records).
        source: the source database of records, when known.
    """

    image: str
    width: int
    height: int
    persons: list[Person] = field(default_factory=list)
    split: str | None = None
    source: str | None = None


# ------------------------------------------------------------------------------------------------ geometry
def box_to_percent(box: Sequence[float], width: int, height: int) -> dict[str, float]:
    """A pixel box as Label Studio's ``x``, ``y``, ``width``, ``height`` in percent of the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "x": 100.0 * x1 / width,
        "y": 100.0 * y1 / height,
        "width": 100.0 * (x2 - x1) / width,
        "height": 100.0 * (y2 - y1) / height,
        "rotation": 0,
    }


def box_from_percent(value: dict[str, Any], width: int, height: int) -> tuple[float, float, float, float]:
    """Label Studio's percent box (``x``, ``y``, ``width``, ``height``) in pixels ``(x1, y1, x2, y2)``."""
    x, y = float(value["x"]) * width / 100.0, float(value["y"]) * height / 100.0
    return x, y, x + float(value["width"]) * width / 100.0, y + float(value["height"]) * height / 100.0


def image_url(image: str, folder_name: str) -> str:
    """The labelling page's address of a photo: ``<folder name>/<image>`` under the local-files root."""
    return LOCAL_FILES_URL + quote(f"{folder_name}/{image}", safe="/")


# ----------------------------------------------------------------------------------------------- one task
def make_task(
    photo: Photo,
    folder_name: str,
    model_version: str | None = None,
    suggestions: bool = True,
    lock_boxes: bool = False,
) -> dict[str, Any]:
    """The Label Studio task of one photo.

    Args:
        photo: the photo and its persons.
        folder_name: name of the photo folder (the image URL is ``<folder name>/<image>``; ``emoctx annotate
            serve`` rewrites it for the folder it serves).
        model_version: names where the pre-annotations come from (shown to annotators); None: no
            pre-annotation at all.
        suggestions: add the persons' suggested labels to their boxes.
        lock_boxes: make the boxes read-only (relabelling existing persons).
    """
    data: dict[str, Any] = {
        IMAGE: image_url(photo.image, folder_name),
        "emoctx_image": photo.image,
        "emoctx_width": int(photo.width),
        "emoctx_height": int(photo.height),
        "emoctx_regions": {region_id(p.person): int(p.person) for p in photo.persons},
    }
    if photo.split is not None:
        data["emoctx_split"] = photo.split
    if photo.source is not None:
        data["emoctx_source"] = photo.source
    task: dict[str, Any] = {"data": data}
    if model_version is not None and photo.persons:
        result: list[dict[str, Any]] = []
        for p in photo.persons:
            result.extend(_person_results(p, photo.width, photo.height, suggestions, lock_boxes))
        scores = [p.score for p in photo.persons if p.score is not None]
        prediction: dict[str, Any] = {"model_version": model_version, "result": result}
        if scores:
            prediction["score"] = round(float(np.mean(scores)), 4)
        task["predictions"] = [prediction]
    return task


def _person_results(
    p: Person, width: int, height: int, suggestions: bool, lock: bool
) -> list[dict[str, Any]]:
    rid = region_id(p.person)
    geometry = box_to_percent(p.box, width, height)
    box: dict[str, Any] = {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": PERSON,
        "to_name": IMAGE,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {**geometry, "rectanglelabels": [PERSON_LABEL]},
    }
    if lock:
        box["readonly"] = True
    if p.score is not None:
        box["score"] = round(float(p.score), 4)
    out = [box]
    if not suggestions:
        return out

    def answer(name: str, kind: str, value: Any, score: float | None = None) -> None:
        item: dict[str, Any] = {
            "id": rid,
            "type": kind,
            "from_name": name,
            "to_name": IMAGE,
            "value": {**geometry, kind: value},
        }
        if score is not None:
            item["score"] = round(float(score), 4)
        out.append(item)

    if p.categories:
        score = float(np.mean(p.category_scores)) if p.category_scores else None
        known = sorted((c for c in p.categories if c in CATEGORY_INDEX), key=CATEGORY_INDEX.__getitem__)
        answer(CATEGORIES_CONTROL, "choices", known, score)
    for name, v in zip(VAD_CONTROLS, p.vad if p.vad is not None else ()):
        if v is not None and math.isfinite(float(v)):  # a whole point, as the number field takes
            answer(name, "number", int(min(VAD_MAX, max(VAD_MIN, math.floor(float(v) + 0.5)))))
    if p.gender in GENDERS:
        answer(GENDER, "choices", [p.gender])
    if p.age in AGES:
        answer(AGE, "choices", [p.age])
    return out


# ------------------------------------------------------------------------------------------- from records
def photos_from_records(df: pd.DataFrame, with_labels: bool = False) -> list[Photo]:
    """One photo per distinct image of canonical records (in first-seen order), persons with their index.

    Args:
        df: canonical records.
        with_labels: suggest the records' own labels (to correct them); by default boxes only, so that a
            new annotator labels without seeing an earlier answer.
    """
    photos: dict[str, Photo] = {}
    for row in df.to_dict("records"):
        photo = photos.get(row["image"])
        if photo is None:
            photo = photos[row["image"]] = Photo(
                row["image"],
                int(row["width"]),
                int(row["height"]),
                split=row["split"],
                source=row.get("source"),
            )
        person = Person(int(row["person"]), tuple(float(row[c]) for c in ("x1", "y1", "x2", "y2")))  # type: ignore[arg-type]
        if with_labels:
            person.categories = list(row["categories"])
            person.vad = [row[c] for c in VAD_NAMES]
            person.gender, person.age = row.get("gender"), row.get("age")
        photo.persons.append(person)
    for photo in photos.values():
        photo.persons.sort(key=lambda p: p.person)
    return list(photos.values())


# ---------------------------------------------------------------------------------- from a prediction table
@dataclass
class Skipped:
    """An input that gave no task (or a person that gave no box), and why."""

    source: str
    reason: str


def photos_from_predictions(
    table: pd.DataFrame, root: str | os.PathLike, suggestions: bool = True
) -> tuple[list[Photo], list[Skipped], str | None]:
    """Photos from ``emoctx predict``'s table: its boxes, and its categories and V/A/D as suggestions.

    Args:
        table: the prediction table (:func:`emoctx.inference.writers.read_prediction_table`).
        root: the photo folder; every ``source`` must lie inside it.
        suggestions: keep the model's categories and V/A/D as suggestions (else boxes only).

    Returns:
        The photos, the rows that gave none (error rows, video frames, photos outside the folder), and the
        model the table names (None when it names none).
    """
    root = Path(root)
    photos: dict[str, Photo] = {}
    skipped: list[Skipped] = []
    models: list[str] = []
    counts: dict[str, int] = {}
    for row in table.to_dict("records"):
        source = str(row.get("source"))
        if _present(row.get("error")):
            skipped.append(Skipped(source, f"prediction error: {row['error']}"))
            continue
        if _present(row.get("frame")) and int(row["frame"]) >= 0:
            skipped.append(Skipped(source, f"video frame {int(row['frame'])}: only photos are annotated"))
            continue
        try:
            image = relative_image(source, root)
        except EmoctxError as e:
            skipped.append(Skipped(source, str(e)))
            continue
        if not (_present(row.get("width")) and _present(row.get("height"))):
            skipped.append(Skipped(source, "the table gives no image size (width, height)"))
            continue
        photo = photos.get(image)
        if photo is None:
            photo = photos[image] = Photo(image, int(row["width"]), int(row["height"]))
        n = counts.get(image, 0)
        counts[image] = n + 1
        person = Person(
            int(row["person"]) if _present(row.get("person")) else n,
            tuple(float(row[c]) for c in ("x1", "y1", "x2", "y2")),  # type: ignore[arg-type]
            score=float(row["det_score"]) if _present(row.get("det_score")) else None,
        )
        if suggestions:
            cats = [c for c in (row.get("categories") or []) if c in CATEGORY_INDEX]
            person.categories = cats
            person.category_scores = [
                float(row[f"p_{SLUGS[CATEGORY_INDEX[c]]}"])
                for c in cats
                if _present(row.get(f"p_{SLUGS[CATEGORY_INDEX[c]]}"))
            ]
            person.vad = [float(row[c]) if _present(row.get(c)) else math.nan for c in VAD_NAMES]
        if _present(row.get("model")) and row["model"] not in models:
            models.append(str(row["model"]))
        photo.persons.append(person)
    return list(photos.values()), skipped, ", ".join(models) or None


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA


def relative_image(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the photo folder ``root`` (POSIX separators); an error when it lies outside."""
    full = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root))
    try:
        rel = full.relative_to(base)
    except ValueError:
        raise EmoctxError(f"{path}: not inside the photo folder {root} (pass --root FOLDER)") from None
    return PurePosixPath(*rel.parts).as_posix()


# ------------------------------------------------------------------------------------------- from photos
def photos_from_files(
    paths: Iterable[str],
    root: str | os.PathLike,
    detector: Any,
    batch_size: int = 8,
) -> tuple[list[Photo], list[Skipped]]:
    """Photos with the persons a detector finds (or a box file gives).

    Args:
        paths: image files (every one inside ``root``).
        root: the photo folder.
        detector: an :class:`~emoctx.inference.detect.UltralyticsDetector` (``detect(images)``) or a
            :class:`~emoctx.inference.box_file.BoxFileDetector` (looked up by path).
        batch_size: images per detector call.

    Returns:
        The photos (also those with no person: a task where annotators can draw boxes) and the files that
        could not be used, with the reason (unreadable, outside the folder).
    """
    from emoctx.data.images import load_rgb
    from emoctx.inference.box_file import BoxFileDetector

    photos: list[Photo] = []
    skipped: list[Skipped] = []
    pending: list[tuple[str, str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        if isinstance(detector, BoxFileDetector):
            found = [detector.boxes_for(path) or [] for path, _, _ in pending]
        else:
            found = detector.detect([pixels for _, _, pixels in pending])
        for (_, image, pixels), detections in zip(pending, found):
            photo = Photo(
                image, pixels.shape[1], pixels.shape[0]
            )  # full resolution, EXIF orientation applied
            for n, det in enumerate(detections):
                x1, y1, x2, y2 = det.box
                x1, x2 = max(0.0, x1), min(float(photo.width), x2)
                y1, y2 = max(0.0, y1), min(float(photo.height), y2)
                if x2 <= x1 or y2 <= y1:
                    skipped.append(Skipped(image, f"person {n}: box {det.box} lies outside the image"))
                    continue
                photo.persons.append(Person(n, (x1, y1, x2, y2), score=float(det.score)))
            photos.append(photo)
        pending.clear()

    for path in paths:
        try:
            image = relative_image(path, root)
            pixels = load_rgb(path)
        except EmoctxError as e:  # outside the folder, or unreadable (ImageError names the file and why)
            skipped.append(Skipped(str(path), str(e)))
            continue
        pending.append((str(path), image, pixels))
        if len(pending) >= batch_size:
            flush()
    flush()
    return photos, skipped


def assign_split(photo: Photo, split: str | None) -> None:
    """Set the photo's split when given (the records' own split is kept otherwise)."""
    if split is not None:
        if split not in SPLITS:
            raise EmoctxError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        photo.split = split
