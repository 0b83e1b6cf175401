"""Prediction results: one object per person and per image (or video frame); every output is a view of them.

:class:`ImageResult` holds the persons found in one image or one video frame; :class:`PersonResult` one
person's box, detector score, category probabilities, the categories above the model's decision thresholds,
and valence/arousal/dominance on the 1-10 scale. ``to_dict()`` gives nested plain Python values,
``to_rows()`` / ``to_frame()`` the flat output table that ``emoctx predict`` writes.

Output table: one row per person, these columns in this order (:data:`COLUMNS`):

==================  ==========================================================================================
``source``          the image or video path as given on the command line or found in a given folder/glob
``frame``           video frame index (0-based, in the file's frame numbering); ``-1`` for still images
``time_s``          a video frame's time in seconds from the start (``frame`` / the video's frame rate); null
                    for still images, and where the frame rate is unknown
``person``          index of the person in the image/frame (detector or box-file order); in a tracked video
                    the track id
``track_id``        the track id in a tracked video (the same person keeps it across frames); null otherwise
``x1 y1 x2 y2``     the person box in pixels of the original image (EXIF orientation applied)
``det_score``       detector confidence; ``1.0`` for boxes given by the user (unless the box file has a score)
``p_<slug>``        probability (0-1) of each category, one column per :data:`emoctx.labels.SLUGS` entry,
                    in canonical order (``p_affection`` ... ``p_yearning``)
``categories``      the category names whose probability reaches the model's threshold (a list; in CSV a
                    ``;``-joined string)
``dominant_category``  the most probable of ``categories``; null when no category reaches its threshold (the
                    most probable category overall is then the largest ``p_<slug>``, but the model does not
                    predict it)
``valence``         1-10
``arousal``         1-10
``dominance``       1-10
``model``           model file name and the first 12 hex digits of its SHA-256 (``model.safetensors@1a2b...``)
``error``           null, or why this row has no prediction (the message names the file and the reason)
``width height``    size of the original image in pixels
==================  ==========================================================================================

An image in which no person was found has no row. A file that cannot be read gives one error row: ``source``
and ``error`` set, every other field null. A video frame that cannot be decoded gives an error row with its
``frame`` set too; frames missing at the end of a video (fewer than its header announces) give one error row
whose ``frame`` is the first missing one. A person whose box cannot be used (outside the image) gives a row
with its box and ``error`` set and null predictions. In tracked videos with smoothing on, the probabilities,
categories and V/A/D of a row are the track's smoothed values (see :mod:`emoctx.inference.video`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emoctx import labels

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{s}" for s in labels.SLUGS)
"""The probability columns, in canonical category order."""

BOX_COLUMNS: tuple[str, ...] = ("x1", "y1", "x2", "y2")

COLUMNS: tuple[str, ...] = (
    "source",
    "frame",
    "time_s",
    "person",
    "track_id",
    *BOX_COLUMNS,
    "det_score",
    *PROB_COLUMNS,
    "categories",
    "dominant_category",
    *labels.VAD_NAMES,
    "model",
    "error",
    "width",
    "height",
)
"""Columns of the output table, in order (see the module docstring)."""

INT_COLUMNS: tuple[str, ...] = ("frame", "person", "track_id", "width", "height")
FLOAT_COLUMNS: tuple[str, ...] = ("time_s", *BOX_COLUMNS, "det_score", *PROB_COLUMNS, *labels.VAD_NAMES)
STRING_COLUMNS: tuple[str, ...] = ("source", "dominant_category", "model", "error")


def _round(value: float | None, decimals: int | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if decimals is None else round(value, decimals)


@dataclass
class PersonResult:
    """The prediction for one person.

    Attributes:
        person: index within the image (or the track id in a tracked video).
        box: ``(x1, y1, x2, y2)`` in pixels of the original image.
        det_score: detector confidence (``1.0`` for given boxes).
        probabilities: ``[NUM_CATEGORIES]`` probabilities in canonical order; ``None`` on error.
        vad: ``[valence, arousal, dominance]`` on 1-10; ``None`` on error.
        categories: names of the categories whose probability reaches their threshold.
        track_id: the track id in a tracked video, else ``None``.
        error: why there is no prediction for this person, else ``None``.
    """

    person: int
    box: tuple[float, float, float, float]
    det_score: float = 1.0
    probabilities: np.ndarray | None = None
    vad: np.ndarray | None = None
    categories: list[str] = field(default_factory=list)
    track_id: int | None = None
    error: str | None = None

    @property
    def scores(self) -> dict[str, float]:
        """``{category name: probability}`` in canonical order (empty on error)."""
        if self.probabilities is None:
            return {}
        return {c: float(p) for c, p in zip(labels.CATEGORIES, self.probabilities, strict=True)}

    @property
    def dominant(self) -> str | None:
        """The most probable of :attr:`categories` (those at or above their threshold); ``None`` without any."""
        if self.probabilities is None or not self.categories:
            return None
        return max(self.categories, key=lambda c: float(self.probabilities[labels.CATEGORY_INDEX[c]]))

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable categories as ``(name, probability)``, most probable first."""
        if self.probabilities is None:
            return []
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(labels.CATEGORIES[i], float(self.probabilities[i])) for i in order]

    @property
    def valence(self) -> float | None:
        """Valence on 1-10."""
        return None if self.vad is None else float(self.vad[0])

    @property
    def arousal(self) -> float | None:
        """Arousal on 1-10."""
        return None if self.vad is None else float(self.vad[1])

    @property
    def dominance(self) -> float | None:
        """Dominance on 1-10."""
        return None if self.vad is None else float(self.vad[2])

    def to_dict(self, decimals: int | None = None) -> dict[str, Any]:
        """The person's columns of the output table (``person`` ... ``dominance`` and ``error``).

        Args:
            decimals: round floats to this many decimals (``None``: full precision).
        """
        out: dict[str, Any] = {"person": int(self.person), "track_id": self.track_id}
        for name, value in zip(BOX_COLUMNS, self.box, strict=True):
            out[name] = _round(value, decimals)
        out["det_score"] = _round(self.det_score, decimals)
        probs = self.probabilities
        for i, name in enumerate(PROB_COLUMNS):
            out[name] = None if probs is None else _round(probs[i], decimals)
        out["categories"] = None if probs is None else list(self.categories)
        out["dominant_category"] = self.dominant
        for i, name in enumerate(labels.VAD_NAMES):
            out[name] = None if self.vad is None else _round(self.vad[i], decimals)
        out["error"] = self.error
        return out


@dataclass
class ImageResult:
    """The persons found in one image or one video frame.

    Attributes:
        source: the image or video path (``None`` for an in-memory image without a name).
        frame: video frame index; ``-1`` for a still image.
        time_s: a video frame's time in seconds (``frame`` / frame rate); ``None`` for a still image, or where
            the frame rate is not known.
        width: original image width in pixels (``None`` when the file could not be read).
        height: original image height in pixels.
        persons: one :class:`PersonResult` per person, in detector order.
        model: the model identity (file name and short SHA-256).
        error: why this image could not be processed, else ``None``.
        image: the decoded RGB pixels, kept only when the predictor was asked to (for drawing); they may
            be smaller than ``width`` x ``height`` (reduced-size decoding).
        source_done: ``True`` on the last result of its source (always for still images; for a video, its
            last processed frame).
    """

    source: str | None
    frame: int = -1
    time_s: float | None = None
    width: int | None = None
    height: int | None = None
    persons: list[PersonResult] = field(default_factory=list)
    model: str | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    source_done: bool = True

    def to_rows(self, decimals: int | None = None) -> list[dict[str, Any]]:
        """Rows of the output table (:data:`COLUMNS`): one per person, one error row, or none.

        Args:
            decimals: round floats to this many decimals (``None``: full precision).
        """
        if self.error is not None:
            row: dict[str, Any] = dict.fromkeys(COLUMNS)
            row.update(
                source=self.source,
                error=self.error,
                frame=int(self.frame) if self.frame >= 0 else None,
                time_s=self._time(decimals) if self.frame >= 0 else None,
            )
            return [row]
        rows = []
        for p in self.persons:
            row = dict.fromkeys(COLUMNS)
            row.update(p.to_dict(decimals))
            row.update(
                source=self.source,
                frame=int(self.frame),
                time_s=self._time(decimals),
                model=self.model,
                width=self.width,
                height=self.height,
            )
            rows.append({c: row[c] for c in COLUMNS})
        return rows

    def _time(self, decimals: int | None) -> float | None:
        return None if self.frame < 0 or self.time_s is None else _round(self.time_s, decimals)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values: the image fields and a ``persons`` list of :meth:`PersonResult.to_dict`."""
        return {
            "source": self.source,
            "frame": int(self.frame),
            "time_s": self._time(None),
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "error": self.error,
            "persons": [p.to_dict() for p in self.persons],
        }

    def to_frame(self) -> pd.DataFrame:
        """The output table for this image (:func:`results_frame` of one result)."""
        return rows_frame(self.to_rows())


def rows_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Build the output table from row dicts: the :data:`COLUMNS` in order, with nullable integer columns."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for c in INT_COLUMNS:
        df[c] = pd.array(df[c].tolist(), dtype="Int64")
    for c in FLOAT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in STRING_COLUMNS:
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def results_frame(
    results: Sequence[ImageResult] | Iterable[ImageResult], decimals: int | None = None
) -> pd.DataFrame:
    """The output table of many results (rows in result order)."""
    return rows_frame(row for r in results for row in r.to_rows(decimals))
