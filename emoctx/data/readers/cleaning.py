"""One set of repair rules for every source layout: a source entry in, a canonical record (or nothing) out.

The three readers only find the values in their layout; :class:`RecordBuilder` turns them into a record
and decides what to repair or drop, so the same content gives the same records whatever the layout.

Rules (each application is written to the :class:`~emoctx.data.readers.report.ConversionReport`):

* image path that leaves the images root (a ``..`` component, a drive letter) or holds control characters:
  every person of the image dropped (:func:`image_path_problem`);
* image size missing, not a number, zero/negative or above :data:`MAX_IMAGE_SIDE`: person dropped;
* box not a list of four finite numbers (a string such as ``"1234"`` is not one): dropped; box past the
  image border: clipped (repaired); empty or inverted after clipping: dropped;
* categories not a list of names: person dropped; unknown or repeated category names: removed from the
  list (repaired); no category at all: kept, noted; the names are stored in canonical order;
* V/A/D missing (NaN, ``None``, ``"None"``, empty): kept as NaN, noted; not a number (``true`` is not one)
  or outside 1-10: set to missing (repaired). Per-annotator values outside 1-10 are set to missing too
  (repaired);
* gender / age in another capitalisation: normalised silently; any other value: set to null (repaired);
* a person identical to an earlier one of the same image (box, labels, gender, age): kept, noted
  (:meth:`RecordBuilder.note_duplicates`).

Values shown in report entries are shortened (:func:`show`), so a hostile value cannot flood the report.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np

from emoctx.data.readers.report import ConversionReport
from emoctx.data.records import CONTROL_CHARACTERS, image_path_problem
from emoctx.labels import AGES, CATEGORY_INDEX, GENDERS, VAD_MAX, VAD_MIN, VAD_NAMES, canonical_category

#: Largest image side accepted, in pixels; anything larger is taken as a corrupt size.
MAX_IMAGE_SIDE = 100_000

_MISSING_STRINGS = {"", "none", "nan", "null", "na", "n/a"}
_GENDER_LOOKUP = {g.lower(): g for g in GENDERS}
_AGE_LOOKUP = {a.lower(): a for a in AGES}
# Source values quoted in report entries: nesting and length cut short (a hostile file could otherwise hold
# a value nested thousands of levels deep or megabytes long).
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 8


def show(value: Any) -> str:
    """A source value as quoted in a report entry: ``repr`` with nesting and length cut short."""
    try:
        return _REPR.repr(value)
    except Exception:  # a numpy object or a value whose repr fails: its type is enough to identify it
        return f"<{type(value).__name__}>"


def to_number(value: Any) -> float | None:
    """Read one number from a source value; NaN for a missing value, None when it is not a number.

    Accepts Python and numpy numbers, one-element arrays or lists (as MATLAB files give), and numeric strings.
    ``None``, empty arrays and the strings ``""``, ``"None"``, ``"NaN"``, ``"null"`` are missing (NaN).
    Booleans (``true`` in JSON, MATLAB ``logical``) are not numbers.
    """
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING_STRINGS:
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return math.nan
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
        if isinstance(value, (np.ndarray, list, tuple, dict)):  # a cell holding an array: not one number
            return None
        if not isinstance(value, (np.integer, np.floating)):  # an object array's item: a number or a string
            return to_number(value)
    elif isinstance(value, (list, tuple)):
        if not value:
            return math.nan
        if len(value) != 1 or isinstance(value[0], (list, tuple, dict)):
            return None  # one level of wrapping only: a value nested deeper is not a number
        return to_number(value[0])
    elif not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond the float range
        return None


def relative_image_path(folder: Any, filename: Any) -> str:
    """``<folder>/<filename>`` with POSIX separators, relative (no leading ``./`` or ``/``)."""
    parts = [str(p).strip().replace("\\", "/").strip("/") for p in (folder, filename) if p is not None]
    path = "/".join(p for p in parts if p)
    path = re.sub(r"/{2,}", "/", path)
    while path.startswith("./"):
        path = path[2:]
    return path


def printable_path(path: str) -> str:
    """``path`` with control characters escaped, to name an image in a report entry or a message."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


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

    def image_path(self, folder: Any, filename: Any, label: str, persons: Sequence[int]) -> str | None:
        """The record's ``image`` path from a source folder and file name, or None when it is unusable.

        ``folder`` may be None or text; ``filename`` must be non-empty text. When either is wrong, or the
        path is refused by :func:`image_path_problem`, every listed person is reported as dropped (under
        ``label``, or the escaped path when there is one) and None is returned.
        """
        problem, field, image = None, "file_name", label
        if not isinstance(filename, str) or not filename.strip():
            problem = f"the file name {show(filename)} is not a non-empty text"
        elif folder is not None and not isinstance(folder, str):
            problem, field = f"the folder {show(folder)} is not text", "folder"
        else:
            path = relative_image_path(folder, filename)
            image = printable_path(path) or label
            problem = image_path_problem(path)
            if problem is None:
                return path
            problem = f"{problem} ({show(path)})"
        for p in persons or [None]:
            self.note(image, p, "dropped", field, f"{problem}; person dropped")
        return None

    def image_size(
        self, image: str, width: Any, height: Any, persons: Sequence[int]
    ) -> tuple[int, int] | None:
        """Check an image size; on failure report every listed person as dropped and return None."""
        w, h = to_number(width), to_number(height)
        problem = None
        for name, v in (("width", w), ("height", h)):
            if v is None or math.isnan(v):
                problem = f"image {name} is missing or not a number ({show(width)} x {show(height)})"
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
        categories: Any,
        vad: Sequence[Any],
        annotator_categories: Iterable[Any] = (),
        annotator_vad: Iterable[Sequence[Any]] = (),
        gender: Any = None,
        age: Any = None,
        source: Any = None,
        not_in_source: Collection[str] = (),
    ) -> dict[str, Any] | None:
        """One canonical record, or None when the person is dropped (the reason is in the report).

        ``width``/``height`` must already have passed :meth:`image_size`. ``categories`` must be a list
        (tuple, array) of names; anything else drops the person. ``not_in_source`` names fields the layout
        never has (``categories``, a V/A/D name): they stay empty or missing without a note on every person.
        """
        xyxy = self._box(image, person, box, width, height)
        if xyxy is None:
            return None
        if not _is_list(categories):
            self.note(
                image,
                person,
                "dropped",
                "categories",
                f"categories {show(categories)} is not a list of category names",
            )
            return None
        cats = self._categories(image, person, categories, "categories")
        if not cats and "categories" not in not_in_source:
            self.note(image, person, "kept", "categories", "no category labels")
        v, a, d = self._vad(image, person, vad, not_in_source)
        ann_cats = [
            self._categories(image, person, c if _is_list(c) else [c], "annotator_categories")
            for c in annotator_categories
        ]
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
            "source": self._source(image, person, source),
        }

    def note_duplicates(self, rows: Sequence[dict[str, Any]]) -> None:
        """Note persons identical to an earlier one of the same image, and person indices used twice.

        Duplicates are kept (the source may mean them; the EMOTIC test set has one such pair), but each
        later copy gets a ``kept`` entry naming the person it repeats. Identical means the same image, box,
        categories, V/A/D, gender and age: the fields every layout holds, so the same source content gives
        the same entries whatever its layout (per-annotator labels, only in ``Annotations.mat``, are not
        compared). A person index used twice for one image (the image is listed in more than one source
        entry) is noted as well.
        """
        first: dict[tuple, int] = {}
        used: set[tuple[str, int]] = set()
        for row in rows:
            image, p = row["image"], row["person"]
            if (image, p) in used:
                self.note(
                    image,
                    p,
                    "kept",
                    "person",
                    "the image is listed more than once in the source: this person index is used twice",
                )
            used.add((image, p))
            key = _identity(row)
            if key in first:
                self.note(
                    image,
                    p,
                    "kept",
                    "person",
                    f"duplicate of person {first[key]} (same box, categories, V/A/D, gender and age)",
                )
            else:
                first[key] = p

    # -- the rules ------------------------------------------------------------------------------------

    def _box(self, image: str, person: int, box: Any, width: int, height: int) -> list[float] | None:
        # A box is a list of four values; a string such as "1234" is not one, although it has four characters.
        values = list(np.ravel(box)) if isinstance(box, np.ndarray) else box
        if not isinstance(values, (list, tuple)) or len(values) != 4:
            self.note(
                image,
                person,
                "dropped",
                "box",
                f"box {show(box)} is not a list of four numbers x1 y1 x2 y2",
            )
            return None
        numbers = [to_number(v) for v in values]
        if any(n is None or not math.isfinite(n) for n in numbers):
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
            name = canonical_category(raw) if isinstance(raw, str) else None
            if name is None:
                self.note(image, person, "repaired", field, f"unknown category name {show(raw)} removed")
            elif name in out:
                self.note(image, person, "repaired", field, f"repeated category {name!r} removed")
            else:
                out.append(name)
        return sorted(out, key=CATEGORY_INDEX.__getitem__)  # a set of labels: stored in canonical order

    def _vad(self, image: str, person: int, vad: Sequence[Any], absent: Collection[str] = ()) -> list[float]:
        values = list(vad) if vad is not None else []
        values += [None] * (len(VAD_NAMES) - len(values))
        out: list[float] = []
        missing: list[str] = []
        for name, raw in zip(VAD_NAMES, values):
            v = to_number(raw)
            if v is None:
                self.note(image, person, "repaired", name, f"{show(raw)} is not a number; set to missing")
                v = math.nan
            elif math.isnan(v):
                if name not in absent:
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
                    f"annotator {k} {name} {show(raw)} is not a number in {VAD_MIN:g}-{VAD_MAX:g}; "
                    f"set to missing",
                )
                v = math.nan
            out.append(v)
        return out

    def _choice(self, image: str, person: int, field: str, value: Any, lookup: dict[str, str]) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if not isinstance(value, str):
            self.note(image, person, "repaired", field, f"{show(value)} is not text; set to null")
            return None
        text = value.strip()
        if text.lower() in _MISSING_STRINGS:
            return None
        if text.lower() in lookup:
            return lookup[text.lower()]
        allowed = ", ".join(lookup.values())
        self.note(image, person, "repaired", field, f"{show(text)} is not one of {allowed}; set to null")
        return None

    def _source(self, image: str, person: int, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.note(image, person, "repaired", "source", f"{show(value)} is not text; set to null")
            return None
        return value.strip() or None


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _identity(row: dict[str, Any]) -> tuple:
    """What makes two records of one image the same person (NaN equal to NaN)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(plain(x) for x in v)
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        return v

    fields = ("image", "x1", "y1", "x2", "y2", "categories", *VAD_NAMES, "gender", "age")
    return tuple(plain(row.get(f)) for f in fields)


def _show(values: Iterable[Any]) -> str:
    """A box or value list for messages: ``[1, 2.5, 30, 40]``."""
    out = []
    for v in values:
        n = to_number(v)
        out.append(f"{n:g}" if isinstance(n, float) else show(v))
    return "[" + ", ".join(out) + "]"
