"""Faces for annotated persons: a pose model over the records' images, its faces given to the matching persons.

:func:`add_faces` is what ``emoctx faces`` runs. Each image of the records is decoded once and given to a pose
model (:class:`~emoctx.inference.detect.UltralyticsDetector` with a pose model such as ``yolo11n-pose.pt``); the
persons it finds are paired one to one with the image's annotated person boxes by IoU
(:func:`~emoctx.inference.detect.match_detections`), and each annotated person takes the face its detection
shows (:func:`emoctx.faces.face_from_keypoints`): the face box, the face score and the five facial keypoints
(``coco5``) in the records' pixels. Persons without a matching detection, or whose detection shows no face (a
back view, a tiny person), get no face (empty face columns). The records' earlier face columns, if any, are
replaced. An image that cannot be read is reported by name and its persons get no face; the others go on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx.data.images import ImageError, read_image
from emoctx.data.records import BOX_COLUMNS, FACE_BOX_COLUMNS
from emoctx.errors import EmoctxError
from emoctx.faces import Face
from emoctx.inference.detect import PersonDetector, match_detections

log = logging.getLogger(__name__)


@dataclass
class FacesReport:
    """What :func:`add_faces` did.

    Attributes:
        images: images in the records.
        persons: persons in the records.
        with_face: persons matched to a detection that shows a face (they have a face now).
        without_face: persons matched to a detection that shows no face (a back view, a tiny or cut face).
        unmatched: persons no detection overlaps enough (``min_iou``).
        had_faces: persons that had a face box before (replaced where their image was read).
        unreadable_persons: persons of images that could not be read (their face columns are kept as they were).
        unreadable: ``(image, reason)`` for each image that could not be read.
        unmatched_examples: a few ``(image, person)`` without a matching detection.
    """

    images: int = 0
    persons: int = 0
    with_face: int = 0
    without_face: int = 0
    unmatched: int = 0
    had_faces: int = 0
    unreadable_persons: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    unmatched_examples: list[tuple[str, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain values (JSON)."""
        return {
            "images": self.images,
            "persons": self.persons,
            "with_face": self.with_face,
            "without_face": self.without_face,
            "unmatched": self.unmatched,
            "had_faces": self.had_faces,
            "unreadable_persons": self.unreadable_persons,
            "unreadable": [{"image": i, "reason": r} for i, r in self.unreadable],
            "unmatched_examples": [{"image": i, "person": p} for i, p in self.unmatched_examples],
        }

    def lines(self) -> list[str]:
        """The report as text lines."""
        pct = 100.0 / max(self.persons, 1)
        out = [
            f"{self.images} image(s), {self.persons} person(s)",
            f"  matched, with a face:    {self.with_face} ({self.with_face * pct:.1f}%)",
            f"  matched, without a face: {self.without_face} ({self.without_face * pct:.1f}%) (back views, "
            "tiny or cut faces)",
            f"  unmatched:               {self.unmatched} ({self.unmatched * pct:.1f}%) (no detected person "
            "overlaps the annotated box enough)",
        ]
        if self.unreadable_persons:
            out.append(
                f"  in unreadable images:    {self.unreadable_persons} ({self.unreadable_persons * pct:.1f}%) "
                "(their face columns kept as they were)"
            )
        if self.had_faces:
            out.append(f"  {self.had_faces} person(s) had a face before: replaced where their image was read")
        for image, reason in self.unreadable[:10]:
            out.append(f"  unreadable: {image}: {reason}")
        if len(self.unreadable) > 10:
            out.append(f"  ... {len(self.unreadable) - 10} more unreadable image(s)")
        return out


def _face_values(face: Face | None) -> dict[str, Any]:
    if face is None:
        return {c: math.nan for c in (*FACE_BOX_COLUMNS, "face_score")} | {
            "face_landmarks": [],
            "face_landmark_convention": None,
        }
    x1, y1, x2, y2 = face.box
    return {
        "face_x1": x1,
        "face_y1": y1,
        "face_x2": x2,
        "face_y2": y2,
        "face_score": float(face.score),
        "face_landmarks": [[float(x), float(y), float(c)] for x, y, c in face.landmarks],
        "face_landmark_convention": face.convention,
    }


def add_faces(
    records: pd.DataFrame,
    root: str | os.PathLike,
    detector: PersonDetector,
    min_iou: float = 0.5,
    max_side: int | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> tuple[pd.DataFrame, FacesReport]:
    """The records with the faces a pose model finds for their persons (see the module docstring).

    Args:
        records: canonical records (any split); row order is kept.
        root: the folder the records' image paths are relative to.
        detector: a person detector that gives faces (a pose model).
        min_iou: the smallest overlap of an annotated box and a detection that are the same person.
        max_side: decode images with their longest side at most this many pixels (``None``: full size); faces
            are mapped back to the records' pixels.
        progress: wraps the iteration over images (e.g. ``tqdm``).

    Returns:
        ``(records with the face columns, report)``.
    """
    root = Path(root)
    df = records.reset_index(drop=True).copy()
    report = FacesReport(images=int(df["image"].nunique()), persons=len(df))
    if set(FACE_BOX_COLUMNS) <= set(df.columns):
        report.had_faces = int(
            np.isfinite(df[list(FACE_BOX_COLUMNS)].to_numpy(dtype=np.float64)).all(1).sum()
        )
    columns = list(_face_values(None))
    if set(columns) <= set(df.columns):  # what the records hold stays where an image cannot be read
        values = [{c: df.at[i, c] for c in columns} for i in range(len(df))]
    else:
        values = [_face_values(None) for _ in range(len(df))]
    groups = list(df.groupby("image", sort=False).indices.items())
    for image, rows in progress(groups) if progress is not None else groups:
        path = root / image
        try:
            decoded = read_image(path, max_side=max_side)
        except ImageError as e:
            report.unreadable.append((str(image), e.reason))
            report.unreadable_persons += len(rows)
            log.warning("%s: %s; its persons' face columns are kept as they were", path, e.reason)
            continue
        for row in rows:  # read: its persons' faces are what the detector finds now
            values[row] = _face_values(None)
        w, h = decoded.original_size
        sizes = df.loc[rows, ["width", "height"]].to_numpy(dtype=np.float64)
        # The records' boxes in the pixels of the file as decoded (a records size that differs is scaled).
        to_file = np.tile(np.array([w, h], dtype=np.float64) / sizes, 2)
        boxes = df.loc[rows, list(BOX_COLUMNS)].to_numpy(dtype=np.float64) * to_file
        sx, sy = decoded.scale
        found = detector.detect([decoded.pixels])[0]
        found = [d.scaled(1.0 / sx, 1.0 / sy) for d in found]
        for row, back, det in zip(rows, to_file, match_detections(boxes, found, min_iou)):
            if det is None:
                report.unmatched += 1
                if len(report.unmatched_examples) < 20:
                    report.unmatched_examples.append((str(image), int(df.at[row, "person"])))
                continue
            if det.face is None:
                report.without_face += 1
                continue
            report.with_face += 1
            values[row] = _face_values(det.face.scaled(1.0 / back[0], 1.0 / back[1]))
    faces = pd.DataFrame(values, index=df.index)
    for column in faces.columns:
        df[column] = faces[column]
    return df, report


def check_pose_detector(detector: Any, weights: str | os.PathLike) -> None:
    """Refuse a detector that gives no faces (a detection or segmentation model).

    Raises:
        EmoctxError: naming the weights and what to use instead.
    """
    task = getattr(detector, "task", None)
    if task is not None and task != "pose":
        raise EmoctxError(
            f"{weights}: a '{task}' model gives no keypoints, so no faces; emoctx faces needs a pose model "
            "(e.g. yolo11n-pose.pt)"
        )
