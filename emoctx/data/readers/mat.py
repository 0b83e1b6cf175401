"""Reader for the official EMOTIC ``Annotations.mat`` (MATLAB v5).

The file holds one struct array per split (``train``, ``val``, ``test``), one entry per image. It is read
with ``scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)`` and every field is looked up by
name, never by position. ``squeeze_me`` collapses a one-element struct array to a single struct and a
one-element cell array of names to a plain string, and leaves an empty cell array as an empty array, so
every value may be one item, many items or none: :func:`_items` and :func:`_names` accept all three.

Per image: ``filename``, ``folder``, ``image_size`` (``n_col`` = width, ``n_row`` = height),
``original_database.name`` and ``person`` (the people in the image). Per person: ``body_bbox``
(x1 y1 x2 y2), ``gender``, ``age``, and

* train: ``annotations_categories.categories`` and ``annotations_continuous`` (one annotator);
* val/test: ``combined_categories`` / ``combined_continuous`` (the ground truth) plus one struct per
  annotator in ``annotations_categories`` / ``annotations_continuous`` (kept as ``annotator_categories`` /
  ``annotator_vad``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx.data.readers.cleaning import RecordBuilder, printable_path, relative_image_path, show
from emoctx.data.readers.report import ConversionReport, ReportEntry
from emoctx.data.records import read_records, records_frame
from emoctx.errors import EmoctxError
from emoctx.labels import CATEGORY_INDEX, SPLITS, VAD_NAMES

logger = logging.getLogger(__name__)

_HINT = "is it the official EMOTIC Annotations.mat, and complete?"


def find_mat_file(path: str | os.PathLike) -> Path:
    """The annotation file for ``path``: the file itself, or ``Annotations.mat`` inside a folder.

    A folder is searched directly and in its ``Annotations/`` sub-folder; a single ``.mat`` file found there
    is taken whatever its name.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise EmoctxError(f"{path}: no such file or folder")
    for folder in (path, path / "Annotations"):
        if (folder / "Annotations.mat").is_file():
            return folder / "Annotations.mat"
    candidates = sorted(path.glob("*.mat")) + sorted(path.glob("Annotations/*.mat"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise EmoctxError(
            f"{path}: no Annotations.mat found (looked in the folder and its Annotations/ sub-folder)"
        )
    raise EmoctxError(
        f"{path}: several .mat files found ({[str(c) for c in candidates]}); pass the one to convert"
    )


def load_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Load a MATLAB v5 file with attribute access to structs; a clear error naming the file if it fails.

    This runs scipy's reader in the calling process: a damaged file can crash it (see :func:`read_mat`,
    which calls it in a child process).
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise EmoctxError(f"{path}: no such annotation file")
    try:
        return loadmat(path, struct_as_record=False, squeeze_me=True)
    except NotImplementedError as e:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise EmoctxError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported ({e}); save it in MATLAB with "
            f"save(..., '-v7') or use the official Annotations.mat"
        ) from e
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for damaged files
        raise EmoctxError(
            f"{path}: cannot read as a MATLAB .mat file ({type(e).__name__}: {e}); {_HINT}"
        ) from e


def read_mat(
    path: str | os.PathLike,
    splits: Iterable[str] | None = None,
    report: ConversionReport | None = None,
    *,
    isolate: bool = True,
) -> dict[str, pd.DataFrame]:
    """Read the official ``Annotations.mat`` into canonical records, one frame per split.

    scipy's MATLAB reader is compiled code that can crash the whole process on a damaged file (a
    segmentation fault, not an exception). The file is therefore read and converted in a child process
    (:func:`parse_mat`); only the records (one Parquet file per split) and the report come back, through
    a private temporary folder, so this process never holds the MATLAB objects (the official file is
    about 100 MB). A crash of the child is reported as an error naming the file. The child adds about a
    second of start-up (a fresh interpreter importing numpy, pandas and scipy) plus the hand-over of the
    records (see annotations/README.md for measured figures).

    Args:
        path: the ``.mat`` file, or a folder holding it (see :func:`find_mat_file`).
        splits: the splits to read; None reads every split the file has.
        report: collects every repaired, dropped or noted record (a fresh one when None).
        isolate: read in a child process (default); False reads in this process.

    Returns:
        ``{split: records frame}`` in the order of ``splits`` (or train, val, test).

    Raises:
        EmoctxError: the file cannot be read (or crashed the reader), is not an EMOTIC annotation file, or
            lacks a requested split.
    """
    path = find_mat_file(path)
    report = report if report is not None else ConversionReport()
    wanted = list(splits) if splits is not None else None
    if isolate and sys.executable:  # (an embedded interpreter may have no executable to start: read here)
        out, entries = _read_in_child(path, wanted)
    else:
        out, entries = _read_here(path, wanted)
    report.entries.extend(entries)
    for split, df in out.items():
        logger.info("%s: %s: %d persons", path, split, len(df))
    return out


def _read_here(path: Path, splits: list[str] | None) -> tuple[dict[str, pd.DataFrame], list[ReportEntry]]:
    rows, entries = parse_mat(path, splits)
    return {split: records_frame(split_rows) for split, split_rows in rows.items()}, entries


def parse_mat(path: Path, splits: list[str] | None) -> tuple[dict[str, list[dict]], list[ReportEntry]]:
    """Load ``path`` in this process and build the record rows of each split and the report entries."""
    data = load_mat(path)
    keys = sorted(k for k in data if not k.startswith("__"))
    present = [s for s in SPLITS if s in data]
    if splits is None:
        wanted = present
        if not wanted:
            raise EmoctxError(
                f"{path}: no train/val/test struct found (keys: {show(keys)}); not an EMOTIC Annotations.mat"
            )
    else:
        wanted = list(splits)
        missing = [s for s in wanted if s not in data]
        if missing:
            raise EmoctxError(f"{path}: no {missing} struct in the file (keys: {show(keys)})")
    report = ConversionReport()
    out: dict[str, list[dict]] = {}
    for split in wanted:
        builder = RecordBuilder(path, split, report)
        rows: list[dict] = []
        for i, entry in enumerate(_items(data[split])):
            if not hasattr(entry, "_fieldnames"):
                raise EmoctxError(
                    f"{path}: '{split}' entry {i} is a {type(entry).__name__}, not a struct; "
                    f"not an EMOTIC Annotations.mat"
                )
            rows.extend(_image_records(entry, i, builder))
        builder.note_duplicates(rows)
        out[split] = rows
    return out, report.entries


# -- the child process ----------------------------------------------------------------------------------

# What the child runs (``python -c``): a fresh interpreter, so nothing of this process (threads, CUDA, open
# files, an unguarded ``__main__`` script) is copied or re-run, whatever the calling program is.
_CHILD_CODE = "import sys; from emoctx.data.readers.mat import _child_main; _child_main(sys.argv[1:])"


def _read_in_child(path: Path, splits: list[str] | None) -> tuple[dict[str, pd.DataFrame], list[ReportEntry]]:
    """:func:`parse_mat` in a child process; a crash or an error there becomes an EmoctxError here.

    The child (a fresh interpreter) writes each split's records as Parquet (column-wise: several times
    faster to read back than the same rows as JSON) and then ``result.json``, whole, with the split names
    and the report, or the error. Everything lives in a private temporary folder.
    """
    env = dict(os.environ)
    package_root = Path(__file__).resolve().parents[3]
    if package_root.name not in ("site-packages", "dist-packages"):
        # a source tree (the child must import this very emoctx); an installed one it finds by itself
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="emoctx-mat-") as tmp:
        result = Path(tmp) / "result.json"
        args = [str(path), tmp, ",".join(splits) if splits is not None else ""]
        done = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )  # on Ctrl-C, subprocess.run kills the child before re-raising
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if not result.is_file():
            code = done.returncode
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
                why = "; out of memory?" if -code == signal.SIGKILL else ""
                raise EmoctxError(
                    f"{path}: cannot read as a MATLAB .mat file: scipy's reader crashed on it ({name}{why}); "
                    f"the file is damaged; {_HINT}"
                )
            last = stderr.splitlines()[-1][:300] if stderr else "no message"
            raise EmoctxError(
                f"{path}: the process reading this .mat file failed (exit status {code}: {last})"
            )
        with open(result, encoding="utf-8") as f:
            data = json.load(f)
        frames = {  # an empty split is built here, with the schema's column types
            split: read_records(Path(tmp) / f"{i}.parquet", validate=False) if n else records_frame([])
            for i, (split, n) in enumerate(data.get("splits", {}).items())
        }
    for line in stderr.splitlines():  # warnings scipy printed while reading
        logger.warning("%s: %s", path, line)
    if "error" in data:
        raise EmoctxError(data["error"])
    return frames, [ReportEntry(**e) for e in data["report"]]


def _child_main(argv: list[str]) -> None:
    """Entry point of the child: ``PATH FOLDER SPLITS``; writes ``<i>.parquet`` per split and ``result.json``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which ends this process
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, folder, splits = argv
    try:
        frames, entries = _read_here(Path(path), splits.split(",") if splits else None)
        for i, df in enumerate(frames.values()):
            if df.empty:  # built by the parent (see _read_in_child)
                continue
            # Types inferred (float64, not the stored float32) and from_pandas=False (NaN stays NaN, also
            # inside the annotator lists, rather than becoming null): the values come back exactly.
            table = pa.table({c: pa.array(df[c].tolist(), from_pandas=False) for c in df.columns})
            pq.write_table(table, Path(folder) / f"{i}.parquet")
        data: dict[str, Any] = {"splits": {s: len(df) for s, df in frames.items()}}
        data["report"] = [asdict(e) for e in entries]
    except EmoctxError as e:
        data = {"error": str(e)}
    except Exception as e:  # RecursionError, MemoryError...: the file, not a bug here, is the likely cause
        data = {
            "error": f"{path}: cannot read as a MATLAB .mat file ({type(e).__name__}: {str(e)[:200]}); {_HINT}"
        }
    result = Path(folder) / "result.json"
    tmp = result.with_suffix(".tmp")  # written whole, then renamed: the parent never reads half a result
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, result)


# -- one image entry -------------------------------------------------------------------------------------


def _image_records(entry: Any, index: int, builder: RecordBuilder) -> list[dict]:
    filename, folder = _scalar(_field(entry, "filename")), _scalar(_field(entry, "folder"))
    label = f"entry {index}"
    persons = _items(_field(entry, "person"))
    missing = [f for f in ("filename", "folder", "image_size", "person") if _field(entry, f) is None]
    if missing:
        image = printable_path(relative_image_path(folder, filename)) if isinstance(filename, str) else label
        for p in range(max(len(persons), 1)):
            builder.note(
                image, p if persons else None, "dropped", missing[0], f"image entry has no {missing} field"
            )
        return []
    image = builder.image_path(folder, filename, label, range(len(persons)))
    if image is None:
        return []
    size = _field(entry, "image_size")
    wh = builder.image_size(image, _field(size, "n_col"), _field(size, "n_row"), range(len(persons)))
    if wh is None:
        return []
    source = _text(_field(_field(entry, "original_database"), "name"))
    rows = []
    for p, person in enumerate(persons):
        row = _person_record(person, p, image, wh, source, builder)
        if row is not None:
            rows.append(row)
    return rows


def _person_record(person: Any, p: int, image: str, wh: tuple[int, int], source: Any, builder: RecordBuilder):
    if not hasattr(person, "_fieldnames"):
        builder.note(
            image, p, "dropped", "person", f"person entry is a {type(person).__name__}, not a struct"
        )
        return None
    combined = _field(person, "combined_categories")
    annotators = _items(_field(person, "annotations_categories"))
    vad_annotators = _items(_field(person, "annotations_continuous"))
    if "combined_categories" in person._fieldnames:  # val / test: several annotators plus combined labels
        categories = _names(combined)
        annotator_categories = [_names(a) for a in annotators]
    elif len(annotators) <= 1:  # train: one annotator
        categories = _names(annotators[0]) if annotators else []
        annotator_categories = []
    else:  # several annotators and no combined list: their union, in canonical order
        annotator_categories = [_names(a) for a in annotators]
        union = {c for names in annotator_categories for c in names}
        categories = sorted(union, key=lambda c: CATEGORY_INDEX.get(c, len(CATEGORY_INDEX)))
    if "combined_continuous" in person._fieldnames:
        vad = _vad(_field(person, "combined_continuous"))
        annotator_vad = [_vad(a) for a in vad_annotators]
    else:
        vad = _vad(vad_annotators[0]) if vad_annotators else [None, None, None]
        annotator_vad = [_vad(a) for a in vad_annotators] if len(vad_annotators) > 1 else []
    return builder.person(
        image=image,
        width=wh[0],
        height=wh[1],
        person=p,
        box=_field(person, "body_bbox"),
        categories=categories,
        vad=vad,
        annotator_categories=annotator_categories,
        annotator_vad=annotator_vad,
        gender=_text(_field(person, "gender")),
        age=_text(_field(person, "age")),
        source=source,
    )


# -- squeeze_me helpers ----------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> Any:
    """``obj.name`` for a MATLAB struct, None when the struct or the field is absent."""
    if obj is None or not hasattr(obj, "_fieldnames"):
        return None
    return getattr(obj, name, None) if name in obj._fieldnames else None


def _items(value: Any) -> list[Any]:
    """A struct array as a list: one squeezed struct -> [struct], empty -> [], array -> its items."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _names(value: Any) -> list[str]:
    """Category names from a cell array as squeezed: a string, an array of strings, empty, or a struct."""
    if value is None:
        return []
    if hasattr(value, "_fieldnames"):  # an annotator struct: its 'categories' cell array
        return _names(_field(value, "categories"))
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (np.ndarray, list, tuple)):
        out: list[str] = []
        for item in np.asarray(value, dtype=object).ravel():
            out.extend(_names(item))
        return out
    return [str(value)]


def _vad(struct: Any) -> list[Any]:
    """[valence, arousal, dominance] from a continuous-annotation struct (None where absent)."""
    return [_field(struct, name) for name in VAD_NAMES]


def _scalar(value: Any) -> Any:
    """A squeezed MATLAB value as one item: an empty array is None, a one-element array its element."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size == 1:
            return value.ravel()[0]
    return value


def _text(value: Any) -> str | None:
    """A MATLAB string (possibly an empty array) as str or None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return None if value.size == 0 else _text(value.ravel()[0])
    text = str(value).strip()
    return text or None
