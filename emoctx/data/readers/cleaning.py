"""One set of repair rules for every source layout: a source entry in, a canonical record (or nothing) out.

The three readers only find the values in their layout; :class:`RecordBuilder` turns them into a record
and decides what to repair or drop, so the same content gives the same records whatever the layout.

Rules (each application is written to the :class:`~emoctx.data.readers.report.ConversionReport`):

* image size missing, not a number, zero/negative or above :data:`MAX_IMAGE_SIDE`: person dropped;
* box not four finite numbers: dropped; box past the image border: clipped (repaired); empty or inverted
  after clipping: dropped;
* unknown or repeated category names: removed from the list (repaired); no category at all: kept, noted;
  the names are stored in canonical order;
* V/A/D missing (NaN, ``None``, ``"None"``, empty): kept as NaN, noted; not a number or outside 1-10:
  set to missing (repaired). Per-annotator values outside 1-10 are set to missing too (repaired);
* gender / age in another capitalisation: normalised silently; any other value: set to null (repaired).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from emoctx.data.readers.report import ConversionReport
from emoctx.labels import AGES, CATEGORY_INDEX, GENDERS, VAD_MAX, VAD_MIN, VAD_NAMES, canonical_category

#: Largest image side accepted, in pixels; anything larger is taken as a corrupt size.
MAX_IMAGE_SIDE = 100_000

_MISSING_STRINGS = {"", "none", "nan", "null", "na", "n/a"}
_GENDER_LOOKUP = {g.lower(): g for g in GENDERS}
_AGE_LOOKUP = {a.lower(): a for a in AGES}


def to_number(value: Any) -> float | None:
    """Read one number from a source value; NaN for a missing value, None when it is not a number.

    Accepts Python and numpy numbers, one-element arrays or lists (as MATLAB files give), and numeric strings.
    ``None``, empty arrays and the strings ``""``, ``"None"``, ``"NaN"``, ``"null"`` are missing (NaN).
    """
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING_STRINGS:
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None
    size = getattr(value, "size", None)
    if size is not None and not hasattr(value, "_fieldnames"):  # a numpy scalar or array
        if size == 0:
            return math.nan
        if size != 1:
            return None
        value = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    elif isinstance(value, (list, tuple)):
        if not value:
            return math.nan
        if len(value) != 1:
            return None
        return to_number(value[0])
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def relative_image_path(folder: Any, filename: Any) -> str:
    """``<folder>/<filename>`` with POSIX separators, relative (no leading ``./`` or ``/``)."""
    parts = [str(p).strip().replace("\\", "/").strip("/") for p in (folder, filename) if p is not None]
    path = "/".join(p for p in parts if p)
    path = re.sub(r"/{2,}", "/", path)
    while path.startswith("./"):
        path = path[2:]
    return path


def source_from_folder(folder: Any) -> str | None:
    """The source database named by the first component of an EMOTIC folder (``mscoco/images`` -> ``mscoco``)."""
    if folder is None:
        return None
    first = str(folder).strip().replace("\\", "/").strip("/").split("/")[0]
    return first or None


class RecordBuilder:
    """Build canonical records for one split of one source file, applying the repair rules.

    Args:
        file: the source file (named in every report entry).
        split: train, val or test.
        report: where repairs and drops are recorded.
    """

    def __init__(self, file: str | os.PathLike, split: str, report: ConversionReport) -> None:
        self.file = str(file)
        self.split = split
        self.report = report

    def note(self, image: str, person: int | None, action: str, field: str, reason: str) -> None:
        """Add one entry to the report."""
        self.report.add(self.file, self.split, image, person, action, field, reason)

    def image_size(
        self, image: str, width: Any, height: Any, persons: Sequence[int]
    ) -> tuple[int, int] | None:
        """Check an image size; on failure report every listed person as dropped and return None."""
        w, h = to_number(width), to_number(height)
        problem = None
        for name, v in (("width", w), ("height", h)):
            if v is None or math.isnan(v):
                problem = f"image {name} is missing or not a number ({width!r} x {height!r})"
            elif not (0 < v <= MAX_IMAGE_SIDE):
                problem = f"image {name} {v:g} is outside 1-{MAX_IMAGE_SIDE}"
            if problem:
                break
        if problem:
            for p in persons:
                self.note(image, p, "dropped", "image_size", f"{problem}; the box cannot be checked")
            return None
        return int(round(w)), int(round(h))

    def person(
        self,
        *,
        image: str,
        width: int,
        height: int,
        person: int,
        box: Any,
        categories: Iterable[Any],
        vad: Sequence[Any],
        annotator_categories: Iterable[Iterable[Any]] = (),
        annotator_vad: Iterable[Sequence[Any]] = (),
        gender: Any = None,
        age: Any = None,
        source: Any = None,
    ) -> dict[str, Any] | None:
        """One canonical record, or None when the person is dropped (the reason is in the report).

        ``width``/``height`` must already have passed :meth:`image_size`.
        """
        xyxy = self._box(image, person, box, width, height)
        if xyxy is None:
            return None
        cats = self._categories(image, person, categories, "categories")
        if not cats:
            self.note(image, person, "kept", "categories", "no category labels")
        v, a, d = self._vad(image, person, vad)
        ann_cats = [self._categories(image, person, c, "annotator_categories") for c in annotator_categories]
        ann_vad = [self._annotator_vad(image, person, k, x) for k, x in enumerate(annotator_vad)]
        return {
            "image": image,
            "width": width,
            "height": height,
            "split": self.split,
            "person": int(person),
            "x1": xyxy[0],
            "y1": xyxy[1],
            "x2": xyxy[2],
            "y2": xyxy[3],
            "categories": cats,
            "valence": v,
            "arousal": a,
            "dominance": d,
            "annotator_categories": ann_cats,
            "annotator_vad": ann_vad,
            "gender": self._choice(image, person, "gender", gender, _GENDER_LOOKUP),
            "age": self._choice(image, person, "age", age, _AGE_LOOKUP),
            "source": (str(source).strip() or None) if source is not None else None,
        }

    # -- the rules ------------------------------------------------------------------------------------

    def _box(self, image: str, person: int, box: Any, width: int, height: int) -> list[float] | None:
        values = list(getattr(box, "ravel", lambda: box)()) if box is not None else []
        numbers = [to_number(v) for v in values]
        if len(numbers) != 4 or any(n is None or not math.isfinite(n) for n in numbers):
            self.note(
                image, person, "dropped", "box", f"box {_show(values)} is not four finite numbers x1 y1 x2 y2"
            )
            return None
        x1, y1, x2, y2 = numbers
        clipped = [
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        ]
        if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
            after = (
                f" (after clipping to the {width}x{height} image: {_show(clipped)})"
                if clipped != numbers
                else ""
            )
            self.note(image, person, "dropped", "box", f"box {_show(numbers)} is empty or inverted{after}")
            return None
        if clipped != numbers:
            self.note(
                image,
                person,
                "repaired",
                "box",
                f"box {_show(numbers)} extends outside the {width}x{height} image; clipped to {_show(clipped)}",
            )
        return clipped

    def _categories(self, image: str, person: int, names: Iterable[Any], field: str) -> list[str]:
        out: list[str] = []
        for raw in names:
            name = canonical_category(str(raw))
            if name is None:
                self.note(image, person, "repaired", field, f"unknown category name {str(raw)!r} removed")
            elif name in out:
                self.note(image, person, "repaired", field, f"repeated category {name!r} removed")
            else:
                out.append(name)
        return sorted(out, key=CATEGORY_INDEX.__getitem__)  # a set of labels: stored in canonical order

    def _vad(self, image: str, person: int, vad: Sequence[Any]) -> list[float]:
        values = list(vad) if vad is not None else []
        values += [None] * (len(VAD_NAMES) - len(values))
        out: list[float] = []
        missing: list[str] = []
        for name, raw in zip(VAD_NAMES, values):
            v = to_number(raw)
            if v is None:
                self.note(image, person, "repaired", name, f"{raw!r} is not a number; set to missing")
                v = math.nan
            elif math.isnan(v):
                missing.append(name)
            elif not (VAD_MIN <= v <= VAD_MAX):
                self.note(
                    image,
                    person,
                    "repaired",
                    name,
                    f"{v:g} is outside {VAD_MIN:g}-{VAD_MAX:g}; set to missing",
                )
                v = math.nan
            out.append(v)
        if missing:
            self.note(
                image, person, "kept", "/".join(missing), "missing in the source; kept as missing (NaN)"
            )
        return out

    def _annotator_vad(self, image: str, person: int, k: int, vad: Sequence[Any]) -> list[float]:
        values = list(vad) if vad is not None else []
        values += [None] * (len(VAD_NAMES) - len(values))
        out: list[float] = []
        for name, raw in zip(VAD_NAMES, values):
            v = to_number(raw)
            if v is None or (not math.isnan(v) and not (VAD_MIN <= v <= VAD_MAX)):
                self.note(
                    image,
                    person,
                    "repaired",
                    "annotator_vad",
                    f"annotator {k} {name} {raw!r} is not a number in {VAD_MIN:g}-{VAD_MAX:g}; set to missing",
                )
                v = math.nan
            out.append(v)
        return out

    def _choice(self, image: str, person: int, field: str, value: Any, lookup: dict[str, str]) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        text = str(value).strip()
        if text.lower() in _MISSING_STRINGS:
            return None
        if text.lower() in lookup:
            return lookup[text.lower()]
        allowed = ", ".join(lookup.values())
        self.note(image, person, "repaired", field, f"{text!r} is not one of {allowed}; set to null")
        return None


def _show(values: Iterable[Any]) -> str:
    """A box or value list for messages: ``[1, 2.5, 30, 40]``."""
    out = []
    for v in values:
        n = to_number(v)
        out.append(f"{n:g}" if isinstance(n, float) else repr(v))
    return "[" + ", ".join(out) + "]"
