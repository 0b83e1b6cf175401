"""Person boxes the user already has: a CSV, JSONL or Parquet file, looked up by image path and frame.

:class:`BoxFileDetector` implements the :class:`~emoctx.inference.detect.BoxSource` interface (and
:class:`~emoctx.inference.detect.PersonDetector` for in-memory use); ``emoctx predict --boxes`` and
``emoctx annotate tasks --boxes`` read their files with it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoctx.errors import EmoctxError
from emoctx.inference.detect import Detection, FrameKey
from emoctx.io import file_sha256, read_jsonl

log = logging.getLogger(__name__)


# "image" first: canonical records carry the path there and the source database in "source".
_KEY_COLUMNS = ("image", "source", "path", "file")


_SCORE_COLUMNS = ("det_score", "score", "conf")


def _norm_parts(path: str) -> tuple[str, ...]:
    parts = Path(os.path.normpath(path.replace("\\", "/"))).parts
    return tuple(p for p in parts if p not in ("", "."))


class BoxFileDetector:
    """Person boxes read from a file, looked up by image path (and frame for videos).

    The file is CSV, JSONL or Parquet (by suffix) with one row per person:

    * the image path in a column ``image``, ``source``, ``path`` or ``file``, the first present (an
      EMOTIC-format records file works as is: its ``source`` names the database, its ``image`` the file);
    * ``x1 y1 x2 y2`` in pixels of the original image (or a ``box`` list of four numbers in JSONL);
    * optional ``frame`` (video frame index; missing or ``-1`` for still images), ``score``/``det_score``, and
      ``track_id`` (kept as the person's track in videos).

    An entry matches a source when its path equals the source path, or is the trailing part of it (whole
    folder names): an entry ``images/a.jpg`` matches the source ``data/images/a.jpg``; the longest match wins.
    Relative entries are also tried against the box file's folder.

    Args:
        path: the box file.

    Raises:
        EmoctxError: unreadable file, no path column, missing or non-numeric coordinates (naming the row).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise EmoctxError(f"{self.path}: no such box file")
        self.sha256 = file_sha256(self.path)
        """SHA-256 of the file's content when it was read."""
        self._index: dict[tuple[tuple[str, ...], int], list[Detection]] = {}
        self._sources: set[tuple[str, ...]] = set()
        self._missing: set[str] = set()
        for n, row in self._rows():
            key = next((row[c] for c in _KEY_COLUMNS if row.get(c) not in (None, "")), None)
            if key is None:
                raise EmoctxError(f"{self.path}, row {n}: no image path (columns {', '.join(_KEY_COLUMNS)})")
            det = self._detection(row, n)
            frame = row.get("frame")
            frame = (
                -1 if frame in (None, "") or (isinstance(frame, float) and math.isnan(frame)) else int(frame)
            )
            key = str(key)
            for parts in {_norm_parts(key), _norm_parts(str(self.path.parent.resolve() / key))}:
                self._index.setdefault((parts, frame), []).append(det)
                self._sources.add(parts)
        log.info(
            "%s: %d boxes for %d images/frames",
            self.path,
            sum(len(v) for v in self._index.values()),
            len(self._index),
        )

    def describe(self) -> str:
        """``boxes:<name>@<first 12 hex digits of the file's SHA-256>``, for the resume settings.

        A box file of the same name with other content is another setting.
        """
        return f"boxes:{self.path.name}@{self.sha256[:12]}"

    def _rows(self) -> list[tuple[int, dict[str, Any]]]:
        suffix = self.path.suffix.lower()
        try:
            if suffix in (".jsonl", ".json", ".ndjson"):
                return read_jsonl(self.path, EmoctxError, numbered=True)
            import pandas as pd

            if suffix == ".csv":
                df = pd.read_csv(self.path)
            elif suffix in (".parquet", ".pq"):
                df = pd.read_parquet(self.path)
            else:
                raise EmoctxError(
                    f"{self.path}: unsupported box file type '{suffix}'; use .csv, .jsonl or .parquet"
                )
        except (OSError, ValueError) as e:
            raise EmoctxError(f"{self.path}: cannot read the box file ({e})") from e
        df = df.astype(object).where(df.notna(), None)
        return [(n + 2 if suffix == ".csv" else n + 1, r) for n, r in enumerate(df.to_dict(orient="records"))]

    def _detection(self, row: dict[str, Any], n: int) -> Detection:
        if row.get("box") is not None and row.get("x1") is None:
            box = row["box"]
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise EmoctxError(f"{self.path}, row {n}: 'box' must be [x1, y1, x2, y2], got {box!r}")
            row = {**row, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]}
        coords = []
        for c in ("x1", "y1", "x2", "y2"):
            try:
                v = float(row[c])
            except (KeyError, TypeError, ValueError):
                raise EmoctxError(
                    f"{self.path}, row {n}: '{c}' must be a number of pixels, got {row.get(c)!r}"
                ) from None
            if not math.isfinite(v):
                raise EmoctxError(f"{self.path}, row {n}: '{c}' is not finite ({v})")
            coords.append(v)
        if coords[2] <= coords[0] or coords[3] <= coords[1]:
            raise EmoctxError(
                f"{self.path}, row {n}: empty or inverted box {coords} (need x2 > x1 and y2 > y1)"
            )
        score = next((row[c] for c in _SCORE_COLUMNS if row.get(c) is not None), 1.0)
        track = row.get("track_id")
        return Detection(tuple(coords), float(score), None if track in (None, "") else int(track))  # type: ignore[arg-type]

    def boxes_for(self, source: str, frame: int = -1) -> list[Detection] | None:
        """The boxes of ``source`` at ``frame`` (``-1``: still image), or ``None`` when the file has no entry."""
        parts = _norm_parts(os.path.abspath(source))
        for start in range(len(parts)):
            hit = self._index.get((parts[start:], frame))
            if hit is not None:
                return list(hit)
        hit = self._index.get((_norm_parts(source), frame))
        if hit is not None:
            return list(hit)
        if frame == -1 or not self._has_source(parts):
            self._missing.add(source)
        return None

    def _has_source(self, parts: tuple[str, ...]) -> bool:
        return any(parts[s:] in self._sources for s in range(len(parts)))

    def detect(
        self, images: list[np.ndarray], keys: Sequence[FrameKey] | None = None
    ) -> list[list[Detection]]:
        """The boxes of each image, looked up by ``keys`` (source, frame); images without an entry get none."""
        if keys is None or len(keys) != len(images):
            raise EmoctxError("a box file gives boxes by image path: pass one (source, frame) key per image")
        return [self.boxes_for(s, f) or [] for s, f in keys]

    @property
    def missing(self) -> set[str]:
        """Sources looked up that have no entry in the file."""
        return set(self._missing)
