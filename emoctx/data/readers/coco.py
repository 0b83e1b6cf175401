"""Reader for the COCO-style EMOTIC JSON conversion (one file per split).

Each file is ``{"images": [...], "annotations": [...], "categories": [...]}``:

* image: ``id``, ``file_name``, ``folder`` (``mscoco/images``), ``name`` (the source database), ``width``,
  ``height``;
* annotation (one per person): ``image_id``, ``bbox`` as ``[x1, y1, x2, y2]`` in pixels (not COCO's
  ``x, y, w, h``), ``annotations_categories`` (names), ``annotations_continuous`` (``valence``, ``arousal``,
  ``dominance``; the string ``"None"`` where the source had NaN), ``gender``, ``age``. Val/test files carry
  the combined labels in these fields; per-annotator labels are not in this layout.

The common conversion script also offers an ``xywh`` box variant and names its files
``EMOTIC_<split>_<format>.json``: a file whose name contains the word ``xywh`` is read as ``x, y, w, h``.
The split of a file is the word train, val or test in its name. The person index is the annotation's
position among the annotations of its image, in file order.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from emoctx.data.readers.cleaning import RecordBuilder, show, to_number
from emoctx.data.readers.files import split_files, split_of_file
from emoctx.data.readers.report import ConversionReport
from emoctx.data.records import records_frame
from emoctx.errors import EmoctxError
from emoctx.labels import VAD_NAMES

logger = logging.getLogger(__name__)


def find_coco_files(path: str | os.PathLike, splits: Iterable[str] | None = None) -> dict[str, Path]:
    """Map each split to its JSON file: ``path`` itself, or the ``*.json`` files of a folder, by name."""
    path = Path(path)
    splits = list(splits) if splits is not None else None
    if path.is_file():
        return split_of_file(path, splits)
    if not path.is_dir():
        raise EmoctxError(f"{path}: no such file or folder")
    return split_files(sorted(path.glob("*.json")), "COCO-style JSON", splits, path)


def read_coco(
    path: str | os.PathLike,
    splits: Iterable[str] | None = None,
    report: ConversionReport | None = None,
) -> dict[str, pd.DataFrame]:
    """Read COCO-style EMOTIC JSON into canonical records, one frame per split.

    Args:
        path: one split's ``.json`` file, or a folder of them (the split is the word train/val/test in the name).
        splits: the splits to read; None reads every split found.
        report: collects every repaired, dropped or noted record (a fresh one when None).

    Returns:
        ``{split: records frame}``.

    Raises:
        EmoctxError: a file is missing, not valid JSON or not in this layout.
    """
    report = report if report is not None else ConversionReport()
    out: dict[str, pd.DataFrame] = {}
    for split, file in find_coco_files(path, splits).items():
        out[split] = records_frame(_read_file(file, split, report))
        logger.info("%s: %s: %d persons", file, split, len(out[split]))
    return out


def _load(file: Path) -> dict[str, Any]:
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise EmoctxError(f"{file}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise EmoctxError(f"{file}: not a UTF-8 text file ({e})") from e
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise EmoctxError(f"{file}: not valid JSON ({e})") from e
    except RecursionError as e:
        raise EmoctxError(f"{file}: not a COCO-style EMOTIC file (its JSON is nested too deeply)") from e
    except OSError as e:
        raise EmoctxError(f"{file}: cannot read ({e.strerror or e})") from e
    if not isinstance(data, dict):
        raise EmoctxError(
            f"{file}: expected a JSON object with 'images' and 'annotations', got {type(data).__name__}"
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise EmoctxError(f"{file}: missing or invalid '{key}' list; not a COCO-style EMOTIC file")
    return data


def _is_id(value: Any) -> bool:
    """An image id is an integer or a string (``true`` would equal 1 and ``1.0`` too: both are refused)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _index_images(file: Path, images: list[Any]) -> dict[Any, tuple[int, dict]]:
    """``{id: (position, image entry)}``; an entry without a usable id, or an id used twice, is an error.

    Both are errors rather than report entries: the persons of such an image cannot be told apart from
    those of another image, and attaching them to the wrong one would corrupt both silently.
    """
    out: dict[Any, tuple[int, dict]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise EmoctxError(f"{file}: images[{i}] is not an object with an 'id'")
        key = img["id"]
        if not _is_id(key):
            raise EmoctxError(f"{file}: images[{i}]: 'id' {show(key)} is not an integer or a string")
        if key in out:
            j, other = out[key]
            raise EmoctxError(
                f"{file}: images[{j}] ({show(other.get('file_name'))}) and images[{i}] "
                f"({show(img.get('file_name'))}) have the same 'id' {show(key)}; image ids must be unique"
            )
        out[key] = (i, img)
    return out


def _read_file(file: Path, split: str, report: ConversionReport) -> list[dict]:
    data = _load(file)
    xywh = "xywh" in re.findall(r"[a-z0-9]+", file.stem.lower())
    builder = RecordBuilder(file, split, report)
    images = _index_images(file, data["images"])
    persons: dict[Any, list[tuple[int, dict]]] = {key: [] for key in images}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise EmoctxError(f"{file}: annotations[{k}] is not an object")
        image_id = ann.get("image_id")
        label = f"annotation {show(ann.get('id', k))}"
        if not _is_id(image_id):
            builder.note(
                label, None, "dropped", "image_id", f"image_id {show(image_id)} is not an integer or a string"
            )
            continue
        if image_id not in images:
            builder.note(label, None, "dropped", "image_id", f"no image with id {show(image_id)}")
            continue
        persons[image_id].append((k, ann))
    rows: list[dict] = []
    for image_id, (i, img) in images.items():
        anns = persons[image_id]
        if not anns:
            continue
        image = builder.image_path(img.get("folder"), img.get("file_name"), f"images[{i}]", range(len(anns)))
        if image is None:
            continue
        wh = builder.image_size(image, img.get("width"), img.get("height"), range(len(anns)))
        if wh is None:
            continue
        for p, (_, ann) in enumerate(anns):
            box = ann.get("bbox")
            if xywh and isinstance(box, (list, tuple)) and len(box) == 4:
                x, y, w, h = (to_number(v) for v in box)
                if None not in (x, y, w, h):  # otherwise left as is: the builder reports it
                    box = [x, y, x + w, y + h]
            cont = ann.get("annotations_continuous")
            if cont is not None and not isinstance(cont, dict):
                builder.note(
                    image,
                    p,
                    "repaired",
                    "annotations_continuous",
                    f"{show(cont)} is not an object with valence, arousal and dominance; set to missing",
                )
            cont = cont if isinstance(cont, dict) else {}
            cats = ann.get("annotations_categories")
            cats = [cats] if isinstance(cats, str) else ([] if cats is None else cats)
            row = builder.person(
                image=image,
                width=wh[0],
                height=wh[1],
                person=p,
                box=box,
                categories=cats,
                vad=[cont.get(n) for n in VAD_NAMES],
                gender=ann.get("gender"),
                age=ann.get("age"),
                source=img.get("name"),
            )
            if row is not None:
                rows.append(row)
    builder.note_duplicates(rows)
    return rows
