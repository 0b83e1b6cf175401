"""Label Studio's full JSON export to canonical records: every value checked, every change reported.

Only the full ``JSON`` export keeps the link between a box and its per-box answers (``JSON_MIN`` and
``CSV`` lose it): each answer carries the ``id`` of its box. Per task, :func:`convert_export` reads each
submitted annotation (one per annotator), puts each person together from its box and answers, matches
the persons of different annotators, and combines them (:func:`combine`).

Label Studio stores values its labelling config forbids (a valence of 42, an unknown category name), so
nothing is taken on trust. Each problem becomes one line of the conversion report that ``emoctx convert``
writes (:class:`~emoctx.data.readers.report.ConversionReport`), naming the task, the annotation (and its
annotator) and the region:

==============================================  ===============================================================
problem                                         action
==============================================  ===============================================================
task without an image path, or an absolute /    **dropped** (the task)
``..`` path
task without a submitted annotation; skipped    **dropped** (nothing to convert); an annotator's unsubmitted
(cancelled) annotation; draft                   draft is ignored; of one annotator's several annotations of a
                                                task the latest is kept
answer whose region has no box                  **dropped** (the answer)
box that is not four numbers, or empty after    **dropped** (the region)
clipping
box past the image border; rotated box          **repaired**: clipped; the rotated box's bounding box
unknown control or answer type                  **repaired**: the answer is ignored
unknown or repeated category                    **repaired**: removed
V/A/D not a whole number 1-10                   **repaired**: set to missing (NaN)
gender / age not one of EMOTIC's values         **repaired**: set to null
no category, a missing V/A/D, gender or age     **kept**, noted
annotators' boxes of one person differ          **kept**, noted (the mean box is the person's box)
image size differs from the task's              **kept**, noted (the task's size, measured by emoctx, is used)
==============================================  ===============================================================

Persons: a box id that emoctx gave (``p<person>``, listed in the task's ``emoctx_regions``) keeps its
person index, so relabelled records map back onto the same persons. Boxes with other ids (drawn by an
annotator) are matched across annotators by overlap (IoU >= 0.5, Hungarian assignment); a box nobody
else drew is a person of its own. New persons get the next free indices.

**Combining annotators** (:func:`combine`): emoctx's rule, the same as EMOTIC-synth's
(:func:`emoctx.data.synth.combine_annotations`). A category is kept when more than half of the person's
annotators chose it (with two annotators: both); each of valence, arousal and dominance is the mean of
the annotators who rated it, rounded half up to a whole point; gender and age are the answer given by
more annotators than any other (a tie leaves them null). EMOTIC's own val/test files give "combined"
labels without saying how they were combined, so this is a documented choice, not a copy. With two or
more annotators, every annotator's labels are kept in ``annotator_categories`` / ``annotator_vad`` (and
the extra columns ``annotator_gender`` / ``annotator_age``), in the order of ``annotators``, so
``emoctx evaluate`` and ``emoctx annotate agreement`` can measure agreement; with one annotator those
lists stay empty, as for EMOTIC's train split.

Extra columns (kept by every records reader and writer): ``annotators`` (who labelled the person: the
account's email when the server was asked, else ``user <id>``), ``ls_task`` (the task id) and
``ls_region`` (the box id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from emoctx.annotate.config import AGE, CATEGORIES_CONTROL, GENDER, PERSON, PERSON_LABEL, VAD_CONTROLS
from emoctx.annotate.tasks import LOCAL_FILES_URL, box_from_percent
from emoctx.data.boxes import box_iou
from emoctx.data.readers import Annotations
from emoctx.data.readers.report import ConversionReport
from emoctx.data.records import records_frame, validate_records
from emoctx.errors import EmoctxError
from emoctx.labels import (
    AGES,
    CATEGORIES,
    CATEGORY_INDEX,
    GENDERS,
    SPLITS,
    VAD_MAX,
    VAD_MIN,
    canonical_category,
)

log = logging.getLogger(__name__)

FORMAT = "label-studio"
MATCH_IOU = 0.5
"""Boxes of two annotators with at least this overlap (and no emoctx id) are the same person."""
BOX_TOLERANCE = 0.5
"""Pixels a box may pass the image border by before clipping it is reported (rounding of percentages)."""
BOXES_DIFFER_IOU = 0.95
"""Annotators' boxes of a person that overlap their mean box less than this are noted in the report."""

_CONTROLS = {PERSON, CATEGORIES_CONTROL, *VAD_CONTROLS, GENDER, AGE}
_CHOICES = {GENDER: GENDERS, AGE: AGES}


@dataclass
class Answer:
    """One annotator's labels of one person.

    Attributes:
        annotation: the annotation's id.
        annotator: who made it.
        region: the box id.
        box: ``(x1, y1, x2, y2)`` in pixels.
        categories: canonical names, canonical order.
        vad: valence, arousal, dominance on 1-10 (NaN where missing).
        gender: or None.
        age: or None.
    """

    annotation: int | None
    annotator: str
    region: str
    box: tuple[float, float, float, float]
    categories: list[str] = field(default_factory=list)
    vad: list[float] = field(default_factory=lambda: [math.nan] * len(VAD_CONTROLS))
    gender: str | None = None
    age: str | None = None


@dataclass
class Conversion:
    """What :func:`convert_export` made: the records per split and the report, and what it read."""

    annotations: Annotations
    tasks: int
    annotations_used: int
    annotators: list[str]


# ----------------------------------------------------------------------------------------------- the rule
def combine(answers: Sequence[Answer]) -> tuple[list[str], list[float], str | None, str | None]:
    """Combine the annotators of one person (the rule in the module docstring).

    Returns:
        Categories (canonical order), ``[valence, arousal, dominance]`` (NaN where nobody rated), gender, age.
    """
    from emoctx.data.synth import combine_annotations  # the one implementation of the majority / mean rule

    cats, vad = combine_annotations([(a.categories, a.vad) for a in answers])
    return cats, vad, _plurality([a.gender for a in answers]), _plurality([a.age for a in answers])


def _plurality(values: Sequence[str | None]) -> str | None:
    counts = Counter(v for v in values if v is not None).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


# ------------------------------------------------------------------------------------------------ reading
def read_export(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The tasks of a Label Studio full JSON export file.

    Raises:
        EmoctxError: not JSON, or not a list of tasks (the message names the file and what to export).
    """
    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: no such export file")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmoctxError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise EmoctxError(
            f"{path}: expected a list of tasks: export the project as 'JSON' (the full export), not JSON_MIN or CSV"
        )
    if tasks and all("annotations" not in t and "data" not in t for t in tasks):
        raise EmoctxError(
            f"{path}: the tasks have no 'data' and no 'annotations': export the project as 'JSON' "
            "(JSON_MIN loses the link between a box and its answers)"
        )
    return tasks


def split_for(image: str, ratios: Sequence[float]) -> str:
    """The split of an image by a hash of its path: stable, and the same for every person of the image.

    ``ratios`` are the train, val and test shares (any scale, e.g. ``80 10 10``).
    """
    total = float(sum(ratios))
    if len(ratios) != len(SPLITS) or total <= 0 or any(r < 0 for r in ratios):
        raise EmoctxError(
            f"split ratios must be three non-negative numbers (train val test), got {list(ratios)}"
        )
    u = int(hashlib.sha256(image.encode("utf-8")).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for split, r in zip(SPLITS, ratios):
        edge += r / total
        if u < edge:
            return split
    return next(s for s, r in zip(reversed(SPLITS), reversed(ratios)) if r > 0)


# ---------------------------------------------------------------------------------------------- convert
def convert_export(
    tasks: Sequence[Mapping[str, Any]],
    source: str | os.PathLike = "<export>",
    split: str = "train",
    split_ratios: Sequence[float] | None = None,
    users: Mapping[int, str] | None = None,
) -> Conversion:
    """Convert exported tasks into canonical records (see the module docstring for every rule).

    Args:
        tasks: the export's tasks (:func:`read_export`, or the server's answer).
        source: names the export in the report.
        split: the split of tasks that do not carry one (tasks made from records keep theirs).
        split_ratios: instead of ``split``, spread such tasks over train/val/test by image (:func:`split_for`).
        users: user id -> name (email) to name the annotators; ``user <id>`` otherwise.

    Returns:
        The records per split, the report, and counts.
    """
    if split not in SPLITS:
        raise EmoctxError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    report = ConversionReport()
    rows: list[dict[str, Any]] = []
    used = 0
    annotators: list[str] = []
    taken: dict[str, dict[int, Any]] = {}  # image -> person index -> task that has it
    for n, task in enumerate(tasks):
        task_rows, task_used, names = _convert_task(
            task, n, str(source), split, split_ratios, users or {}, report
        )
        _unique_persons(task_rows, taken, str(source), report)
        rows.extend(task_rows)
        used += task_used
        annotators.extend(a for a in names if a not in annotators)
    frames = {}
    if rows:
        df = records_frame(rows)
        validate_records(df, source=source)  # what the checks above let through must be valid records
        for s in SPLITS:
            part = df[df["split"] == s]
            if len(part):
                frames[s] = part.sort_values(["image", "person"], kind="stable").reset_index(drop=True)
    ann = Annotations(Path(source), FORMAT, frames, report)
    return Conversion(ann, len(tasks), used, annotators)


def _unique_persons(
    rows: list[dict[str, Any]], taken: dict[str, dict[int, Any]], file: str, report: ConversionReport
) -> None:
    """Give the persons of a photo that another task already had new indices (one index, one person)."""
    if not rows:
        return
    image = rows[0]["image"]
    have = taken.setdefault(image, {})
    clash = [r for r in rows if r["person"] in have]
    if clash:
        next_index = max([*have, *(r["person"] for r in rows)]) + 1
        for r in clash:
            report.add(
                file,
                r["split"],
                image,
                next_index,
                "repaired",
                "person",
                f"task {r['ls_task']}: the photo is also in task {have[r['person']]}, which has a person "
                f"{r['person']}; this one (region {r['ls_region']}) is person {next_index}",
            )
            r["person"] = next_index
            next_index += 1
    for r in rows:
        have[r["person"]] = r["ls_task"]


class _Task:
    """Report helper: names the task (and image) in every entry."""

    def __init__(self, report: ConversionReport, file: str, tid: Any, image: str | None, split: str):
        self.report, self.file, self.tid, self.image, self.split = report, file, tid, image, split

    def add(self, action: str, fld: str, reason: str, person: int | None = None, where: str = "") -> None:
        where = f", {where}" if where else ""
        self.report.add(
            self.file,
            self.split,
            self.image or f"task {self.tid}",
            person,
            action,
            fld,
            f"task {self.tid}{where}: {reason}",
        )


def _convert_task(
    task: Mapping[str, Any],
    n: int,
    file: str,
    default_split: str,
    ratios: Sequence[float] | None,
    users: Mapping[int, str],
    report: ConversionReport,
) -> tuple[list[dict[str, Any]], int, list[str]]:
    tid = task.get("id", f"#{n}")
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    image, why = _image_path(data)
    split = data.get("emoctx_split") if data.get("emoctx_split") in SPLITS else None
    if split is None:
        split = split_for(image, ratios) if (ratios is not None and image) else default_split
    t = _Task(report, file, tid, image, split)
    if image is None:
        t.add("dropped", "image", f"{why}; the task is not converted")
        return [], 0, []
    if data.get("emoctx_split") is not None and data.get("emoctx_split") not in SPLITS:
        t.add("repaired", "split", f"unknown split {data.get('emoctx_split')!r}; '{split}' used")

    size = _task_size(data)
    regions_map = {
        str(k): int(v)
        for k, v in (data.get("emoctx_regions") or {}).items()
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }
    for draft in task.get("drafts") or []:
        who = _who(draft.get("user") or draft.get("completed_by"), users) if isinstance(draft, dict) else "?"
        t.add("dropped", "annotation", f"draft of {who} was never submitted; ignored")

    annotations = _latest_per_annotator(task.get("annotations"), users, t)
    if not annotations:
        t.add("dropped", "annotations", "no submitted annotation; no record made")
        return [], 0, []

    per_annotation: list[tuple[str, int | None, list[Answer]]] = []
    for ann in annotations:
        who = _who(ann.get("completed_by"), users)
        answers, size = _read_annotation(ann, who, size, t)
        per_annotation.append((who, ann.get("id"), answers))
    if size is None:
        t.add(
            "dropped", "image_size", "no image size in the task or its boxes; its persons are not converted"
        )
        return [], len(annotations), []
    persons = _match_persons(per_annotation, regions_map)
    rows = [
        _record(answers, index, image, size, split, data, tid, len(annotations), t)
        for index, answers in persons
    ]
    names = [who for who, _, _ in per_annotation]
    return rows, len(annotations), names


def _image_path(data: Mapping[str, Any]) -> tuple[str | None, str]:
    """The image path relative to the photo folder: ``emoctx_image``, else the local-files address."""
    image = data.get("emoctx_image")
    if not isinstance(image, str) or not image:
        url = data.get("image")
        if not isinstance(url, str) or not url.startswith(LOCAL_FILES_URL.split("?")[0]):
            return (
                None,
                f"no image path (data.emoctx_image) and no local-files address in data.image ({url!r})",
            )
        d = parse_qs(urlparse(url).query).get("d")
        if not d:
            return None, f"no path in the image address {url!r}"
        image = d[0]
    norm = posixpath.normpath(image.replace("\\", "/"))
    if image.startswith("/") or norm.startswith("..") or norm == ".":
        return None, f"image path {image!r} is not relative to the photo folder"
    return norm, ""


def _positive_int(v: Any) -> int | None:
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
        or v <= 0
        or v != int(v)
    ):
        return None
    return int(v)


def _task_size(data: Mapping[str, Any]) -> tuple[int, int] | None:
    w, h = _positive_int(data.get("emoctx_width")), _positive_int(data.get("emoctx_height"))
    return (w, h) if w and h else None


def _who(user: Any, users: Mapping[int, str]) -> str:
    if isinstance(user, dict):
        return str(user.get("email") or f"user {user.get('id')}")
    if isinstance(user, int) and not isinstance(user, bool):
        return users.get(user, f"user {user}")
    return f"user {user}" if user is not None else "unknown annotator"


def _latest_per_annotator(annotations: Any, users: Mapping[int, str], t: _Task) -> list[dict[str, Any]]:
    """Submitted annotations, one per annotator (the latest), in the order of their ids."""
    if not isinstance(annotations, list):
        if annotations is not None:
            t.add("dropped", "annotations", f"'annotations' is not a list ({type(annotations).__name__})")
        return []
    kept: dict[str, dict[str, Any]] = {}
    for ann in annotations:
        if not isinstance(ann, dict):
            t.add("dropped", "annotation", f"an annotation is not an object ({ann!r:.60})")
            continue
        who = _who(ann.get("completed_by"), users)
        where = f"annotation {ann.get('id')} ({who})"
        if ann.get("was_cancelled"):
            t.add("dropped", "annotation", "skipped by the annotator", where=where)
            continue
        if not isinstance(ann.get("result"), list):
            t.add("dropped", "annotation", "its 'result' is not a list", where=where)
            continue
        earlier = kept.get(who)
        if earlier is not None:
            old, new = sorted(
                [earlier, ann], key=lambda a: (str(a.get("updated_at") or ""), a.get("id") or 0)
            )
            t.add(
                "dropped",
                "annotation",
                f"{who} submitted annotations {old.get('id')} and {new.get('id')}; the later one is kept",
                where=f"annotation {old.get('id')} ({who})",
            )
            ann = new
        kept[who] = ann
    return sorted(kept.values(), key=lambda a: (a.get("id") is None, a.get("id") or 0))


def _read_annotation(
    ann: Mapping[str, Any], who: str, size: tuple[int, int] | None, t: _Task
) -> tuple[list[Answer], tuple[int, int] | None]:
    """The persons of one annotation (box + answers per region id); the task size (from a box if unknown)."""
    aid = ann.get("id")
    where = f"annotation {aid} ({who})"
    regions: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, item in enumerate(ann["result"]):
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            t.add(
                "repaired", "result", f"result item {k} is not an object with a 'value'; ignored", where=where
            )
            continue
        rid = item.get("id")
        name = item.get("from_name")
        if name not in _CONTROLS:
            t.add(
                "repaired",
                str(name),
                f"answer from {name!r}, which the labelling config does not have; ignored",
                where=f"{where}, region {rid}",
            )
            continue
        if not isinstance(rid, str) or not rid:
            t.add("dropped", str(name), f"result item {k} has no region id; ignored", where=where)
            continue
        regions.setdefault(rid, {}).setdefault(name, []).append(item)

    sized_notes: set[tuple[int, int]] = set()
    answers: list[Answer] = []
    for rid, items in regions.items():
        at = f"{where}, region {rid}"
        boxes = items.pop(PERSON, [])
        if not boxes:
            for name in items:
                t.add("dropped", name, "answer for a region that has no box; ignored", where=at)
            continue
        if len(boxes) > 1:
            t.add("repaired", "box", f"{len(boxes)} boxes with one id; the first is used", where=at)
        box_item = boxes[0]
        own = (_positive_int(box_item.get("original_width")), _positive_int(box_item.get("original_height")))
        if size is None and own[0] and own[1]:
            size = (own[0], own[1])  # type: ignore[assignment]
        elif size is not None and own[0] and own[1] and own != size and own not in sized_notes:
            sized_notes.add(own)  # type: ignore[arg-type]
            t.add(
                "kept",
                "image_size",
                f"the page measured the image as {own[0]}x{own[1]}, the task says {size[0]}x{size[1]}; "
                "the task's size is used",
                where=at,
            )
        if size is None:
            t.add("dropped", "box", "no image size to turn the percent box into pixels", where=at)
            continue
        box = _box(box_item, size, t, at)
        if box is None:
            continue
        answer = Answer(aid, who, rid, box)
        _answers(answer, items, t, at)
        answers.append(answer)
    if not answers and not regions:
        t.add("kept", "annotation", "no person marked in this annotation", where=where)
    return answers, size


def _box(
    item: Mapping[str, Any], size: tuple[int, int], t: _Task, at: str
) -> tuple[float, float, float, float] | None:
    value = item["value"]
    labels = value.get("rectanglelabels")
    if labels != [PERSON_LABEL]:
        t.add(
            "repaired", "box", f"box label {labels!r} is not ['{PERSON_LABEL}']; read as a person", where=at
        )
    try:
        geo = {k: float(value[k]) for k in ("x", "y", "width", "height")}
    except (KeyError, TypeError, ValueError):
        t.add("dropped", "box", f"box is not four numbers x, y, width, height: {value!r:.120}", where=at)
        return None
    if not all(math.isfinite(v) for v in geo.values()) or geo["width"] <= 0 or geo["height"] <= 0:
        t.add("dropped", "box", f"box is empty or not finite: {geo}", where=at)
        return None
    w, h = size
    x1, y1, x2, y2 = box_from_percent(geo, w, h)
    rotation = value.get("rotation") or 0
    if isinstance(rotation, (int, float)) and math.isfinite(rotation) and rotation % 360:
        # Label Studio rotates around the top-left corner; keep the rotated box's axis-aligned bounds.
        a = math.radians(rotation)
        corners = [(0.0, 0.0), (x2 - x1, 0.0), (x2 - x1, y2 - y1), (0.0, y2 - y1)]
        xs = [x1 + cx * math.cos(a) - cy * math.sin(a) for cx, cy in corners]
        ys = [y1 + cx * math.sin(a) + cy * math.cos(a) for cx, cy in corners]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        t.add("repaired", "box", f"box rotated by {rotation} degrees; its bounding box is used", where=at)
    cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    if cx2 <= cx1 or cy2 <= cy1:
        t.add(
            "dropped",
            "box",
            f"box {[round(v, 1) for v in (x1, y1, x2, y2)]} lies outside the {w}x{h} image",
            where=at,
        )
        return None
    if max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2) > BOX_TOLERANCE:
        t.add(
            "repaired",
            "box",
            f"box {[round(v, 1) for v in (x1, y1, x2, y2)]} extends past the {w}x{h} image; clipped",
            where=at,
        )
    return cx1, cy1, cx2, cy2


def _answers(answer: Answer, items: dict[str, list[dict[str, Any]]], t: _Task, at: str) -> None:
    """Fill one person's answers from its result items, checking each value."""
    missing = []
    for name in (CATEGORIES_CONTROL, *VAD_CONTROLS, GENDER, AGE):
        got = items.get(name, [])
        if not got:
            missing.append(name)
            continue
        if len(got) > 1:
            t.add("repaired", name, f"{len(got)} answers; the first is used", where=at)
        item = got[0]
        value = item["value"]
        if name == CATEGORIES_CONTROL:
            answer.categories = _categories(value.get("choices"), t, at)
        elif name in VAD_CONTROLS:
            raw = value.get("number", value.get("rating"))
            answer.vad[VAD_CONTROLS.index(name)] = _rating(name, raw, t, at)
        else:
            setattr(answer, name, _single_choice(name, value.get("choices"), t, at))
    if missing:
        what = "no category" if missing == [CATEGORIES_CONTROL] else f"no answer for {', '.join(missing)}"
        t.add("kept", missing[0], f"{what}; left empty (categories) / missing (the others)", where=at)


def _categories(choices: Any, t: _Task, at: str) -> list[str]:
    if not isinstance(choices, list):
        t.add(
            "repaired", CATEGORIES_CONTROL, f"categories {choices!r:.80} are not a list; none kept", where=at
        )
        return []
    seen: set[str] = set()
    for c in choices:
        name = canonical_category(c) if isinstance(c, str) else None
        if name is None:
            t.add("repaired", CATEGORIES_CONTROL, f"unknown category {c!r}; removed", where=at)
        elif name in seen:
            t.add("repaired", CATEGORIES_CONTROL, f"category {name} given twice; kept once", where=at)
        else:
            seen.add(name)
    return sorted(seen, key=CATEGORY_INDEX.__getitem__)


def _rating(name: str, raw: Any, t: _Task, at: str) -> float:
    ok = isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw)
    if ok and raw == int(raw) and VAD_MIN <= raw <= VAD_MAX:
        return float(raw)
    t.add(
        "repaired",
        name,
        f"{name} {raw!r} is not a whole number {VAD_MIN:g}-{VAD_MAX:g}; set to missing",
        where=at,
    )
    return math.nan


def _single_choice(name: str, choices: Any, t: _Task, at: str) -> str | None:
    allowed = _CHOICES[name]
    if isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], str):
        for v in allowed:
            if choices[0].strip().lower() == v.lower():
                return v
    t.add(
        "repaired", name, f"{name} {choices!r:.80} is not one of {', '.join(allowed)}; set to null", where=at
    )
    return None


# --------------------------------------------------------------------------------------------- persons
def _mean_box(answers: Sequence[Answer]) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in np.mean([a.box for a in answers], axis=0))  # type: ignore[return-value]


def _match_persons(
    per_annotation: Sequence[tuple[str, int | None, list[Answer]]], regions_map: Mapping[str, int]
) -> list[tuple[int, list[Answer]]]:
    """Group the annotations' answers into persons (same id, else IoU matching) and index them."""
    from scipy.optimize import linear_sum_assignment

    groups: list[dict[str, Any]] = []  # {"ids": set, "answers": list}
    for _, _, answers in per_annotation:
        taken: set[int] = set()
        rest: list[Answer] = []
        for a in answers:
            g = next((i for i, g in enumerate(groups) if a.region in g["ids"] and i not in taken), None)
            if g is None:
                rest.append(a)
            else:
                groups[g]["answers"].append(a)
                taken.add(g)
        free = [i for i in range(len(groups)) if i not in taken]
        matched: set[int] = set()
        if rest and free:
            iou = box_iou([a.box for a in rest], [_mean_box(groups[g]["answers"]) for g in free])
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= MATCH_IOU:
                    g = groups[free[c]]
                    g["answers"].append(rest[r])
                    g["ids"].add(rest[r].region)
                    matched.add(r)
        for r, a in enumerate(rest):
            if r not in matched:
                groups.append({"ids": {a.region}, "answers": [a]})

    used = set(regions_map.values())
    next_index = max(used, default=-1) + 1
    out: list[tuple[int, list[Answer]]] = []
    for g in groups:
        known = sorted(regions_map[i] for i in g["ids"] if i in regions_map)
        if known:
            index = known[0]
        else:
            index = next_index
            next_index += 1
        out.append((index, g["answers"]))
    return sorted(out, key=lambda p: p[0])


def _record(
    answers: list[Answer],
    index: int,
    image: str,
    size: tuple[int, int],
    split: str,
    data: Mapping[str, Any],
    tid: Any,
    n_annotations: int,
    t: _Task,
) -> dict[str, Any]:
    box = _mean_box(answers)
    regions = sorted({a.region for a in answers})
    if len(answers) > 1:
        worst = float(box_iou([a.box for a in answers], [box]).min())
        if worst < BOXES_DIFFER_IOU:
            t.add(
                "kept",
                "box",
                f"the annotators' boxes differ (smallest overlap with their mean: IoU {worst:.2f}); "
                "the mean box is kept",
                person=index,
                where=f"region {', '.join(regions)}",
            )
    if len(answers) < n_annotations:
        t.add(
            "kept",
            "annotators",
            f"labelled by {len(answers)} of the task's {n_annotations} annotators "
            f"({', '.join(a.annotator for a in answers)})",
            person=index,
            where=f"region {', '.join(regions)}",
        )
    cats, vad, gender, age = combine(answers)
    several = len(answers) > 1
    return {
        "image": image,
        "width": size[0],
        "height": size[1],
        "split": split,
        "person": index,
        "x1": box[0],
        "y1": box[1],
        "x2": box[2],
        "y2": box[3],
        "categories": [c for c in CATEGORIES if c in cats],
        "valence": vad[0],
        "arousal": vad[1],
        "dominance": vad[2],
        "annotator_categories": [list(a.categories) for a in answers] if several else [],
        "annotator_vad": [list(a.vad) for a in answers] if several else [],
        "gender": gender,
        "age": age,
        "source": data.get("emoctx_source") if isinstance(data.get("emoctx_source"), str) else None,
        "annotators": [a.annotator for a in answers],
        "annotator_gender": [a.gender for a in answers] if several else [],
        "annotator_age": [a.age for a in answers] if several else [],
        "ls_task": int(tid) if isinstance(tid, int) else None,
        "ls_region": regions[0],
    }
