r"""Write and read the prediction table (JSONL, CSV, Parquet), and the progress sidecar that ``--resume`` reads.

The table has the columns of :data:`emoctx.inference.results.COLUMNS`, one row per person. Formats:

* **JSONL** (default): one JSON object per line, keys in column order; ``categories`` is a list, missing
  values are ``null``.
* **CSV**: a header line and one line per row; ``categories`` is a ``;``-joined string (empty when no
  category passes its threshold, and on error rows), ``face_landmarks`` JSON text, missing values are empty
  fields.
* **Parquet**: typed columns (``categories`` is a list of strings; integer columns are nullable int64).

**Metadata** (what made the rows: the engine, its precision and how closely it reproduced the network in PyTorch
fp32, the run's settings; :meth:`emoctx.inference.predictor.Predictor.metadata`): in a Parquet table, the file's
key-value metadata under the key ``emoctx`` (JSON); JSONL and CSV have no place for it inside the file (a header
line would break every reader of one row per line), so it is written beside the table, in
``<table>.meta.json``. :func:`read_table_metadata` reads either.

Every output appears whole or not at all: :func:`write_predictions` writes a temporary file and renames it.
During a run, finished sources are appended to a sidecar ``<output>.partial`` (:class:`PartialLog`); the
final table is built from it in source order, then the sidecar is removed. An interrupted run leaves the
sidecar behind and a re-run with ``--resume`` skips the sources it lists as done.

Text is written as UTF-8. A file name holding bytes that are not UTF-8 (possible on POSIX systems) is written
with each such byte as ``\xNN`` (:func:`emoctx.io.printable`), in the ``source`` column and in messages.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emoctx.deprecation import moved
from emoctx.errors import EmoctxError
from emoctx.inference.results import (
    COLUMNS,
    FACE_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    STRING_COLUMNS,
    rows_frame,
)
from emoctx.io import atomic_path, jsonable, printable, read_jsonl

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File suffixes of prediction tables and their formats."""
METADATA_KEY = "emoctx"
"""The key of the table's metadata in a Parquet file's key-value metadata."""
METADATA_MARK = "emoctx_table_metadata"
"""The first key of a ``<table>.meta.json`` file (a file without it is not emoctx's, and never written over)."""
CATEGORY_SEPARATOR = ";"
"""Joins the ``categories`` list in CSV files."""

DECIMALS = 6
"""Floats in written tables are rounded to this many decimals."""


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The table format: ``fmt`` when given, else from the file suffix (``.csv``, ``.parquet``), else JSONL."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise EmoctxError(f"unknown output format '{fmt}'; choose one of {', '.join(FORMATS)}")
        return fmt
    return SUFFIXES.get(Path(path).suffix.lower(), "jsonl")


def output_format(out: str | os.PathLike, fmt: str | None = None, option: str = "--out") -> str:
    """The format of an output table, with its name and ``fmt`` checked against each other (before any work).

    The suffix says the format (:data:`SUFFIXES`); ``fmt``, when given too, must agree with it. A name without
    a suffix is written in ``fmt`` when it is given. A name ending in a path separator names a folder.

    Raises:
        EmoctxError: a folder name, an unknown suffix, a suffix and ``fmt`` that disagree, or no suffix and no
            ``fmt``; naming ``option`` and what to write instead.
    """
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)):
        raise EmoctxError(
            f"{option} {text} names a folder (it ends in '/'); give the table's file name, e.g. "
            f"{path / 'predictions.jsonl'}"
        )
    if fmt is not None and fmt not in FORMATS:
        raise EmoctxError(f"unknown output format '{fmt}'; choose one of {', '.join(FORMATS)}")
    suffix = path.suffix.lower()
    known = ", ".join(dict.fromkeys(s for s in (".jsonl", ".csv", ".parquet")))
    if not suffix:
        if fmt is not None:
            return fmt
        raise EmoctxError(
            f"{option} {text}: the file name says no table type; name it {path.name}.jsonl, {path.name}.csv or "
            f"{path.name}.parquet (or give --format)"
        )
    by_suffix = SUFFIXES.get(suffix)
    if by_suffix is None:
        raise EmoctxError(
            f"{option} {text}: '{path.suffix}' is not a table type emoctx writes ({known}); name it "
            f"{path.with_suffix('.csv').name}, for example (CSV opens in spreadsheets)"
        )
    if fmt is not None and fmt != by_suffix:
        raise EmoctxError(
            f"{option} {text} is {by_suffix.upper()} by its name but --format is {fmt}: give one of them, or "
            f"name the file {path.with_suffix('.' + fmt).name}"
        )
    return by_suffix


def table_schema() -> pa.Schema:
    """The Arrow schema of the prediction table (Parquet output)."""
    fields = []
    for c in COLUMNS:
        if c in INT_COLUMNS:
            fields.append(pa.field(c, pa.int64()))
        elif c in FLOAT_COLUMNS:
            fields.append(pa.field(c, pa.float64()))
        elif c == "categories":
            fields.append(pa.field(c, pa.list_(pa.string())))
        elif c == "face_landmarks":
            fields.append(pa.field(c, pa.list_(pa.list_(pa.float64()))))
        else:
            fields.append(pa.field(c, pa.string()))
    return pa.schema(fields)


def metadata_path(path: str | os.PathLike) -> Path:
    """Where the metadata of a JSONL or CSV table is kept: ``<table>.meta.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def is_metadata_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a metadata file :func:`write_predictions` wrote (its first key says so)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.loads(f.read(1 << 22))
    except (OSError, ValueError):
        return False
    return isinstance(value, dict) and METADATA_MARK in value


def write_predictions(
    rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
    path: str | os.PathLike,
    fmt: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the prediction table atomically, with its metadata (see the module docstring).

    Args:
        rows: row dicts with the :data:`~emoctx.inference.results.COLUMNS` keys, or a table of them.
        path: output file.
        fmt: ``jsonl``, ``csv`` or ``parquet``; ``None`` picks it from the suffix (JSONL otherwise).
        metadata: what made the rows (JSON-ready); Parquet: in the file, JSONL/CSV: in
            :func:`metadata_path`. A JSONL/CSV table written without metadata leaves no metadata file (one an
            earlier run wrote is removed).

    Returns:
        The path written.
    """
    path = Path(path)
    fmt = format_for(path, fmt)
    side = metadata_path(path)
    if fmt != "parquet" and side.exists() and is_metadata_file(side):
        side.unlink()  # an earlier table's: never left beside this one
    if isinstance(rows, pd.DataFrame):
        records = rows.to_dict(orient="records")
    else:
        records = [dict(r) for r in rows]
    records = [{c: jsonable(r.get(c), printable) for c in COLUMNS} for r in records]
    with atomic_path(path) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            df = rows_frame(records)
            df["categories"] = [None if c is None else CATEGORY_SEPARATOR.join(c) for c in df["categories"]]
            df["face_landmarks"] = [None if v is None else json.dumps(v) for v in df["face_landmarks"]]
            df.to_csv(tmp, index=False, na_rep="")
        else:
            table = pa.Table.from_pylist(records, schema=table_schema())
            if metadata is not None:
                table = table.replace_schema_metadata({METADATA_KEY: json.dumps(jsonable(dict(metadata)))})
            pq.write_table(table, tmp)
    if fmt != "parquet" and metadata is not None:
        text = json.dumps({METADATA_MARK: 1, "table": path.name, **jsonable(dict(metadata))}, indent=2)
        with atomic_path(side) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_table_metadata(path: str | os.PathLike, fmt: str | None = None) -> dict[str, Any] | None:
    """The metadata :func:`write_predictions` stored with a table (``None`` when it has none).

    Parquet: the file's ``emoctx`` key-value metadata; JSONL and CSV: :func:`metadata_path`.
    """
    path = Path(path)
    if format_for(path, fmt) == "parquet":
        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(METADATA_KEY.encode())
        return None if raw is None else json.loads(raw)
    side = metadata_path(path)
    if not is_metadata_file(side):
        return None
    value = json.loads(side.read_text(encoding="utf-8"))
    value.pop(METADATA_MARK, None)
    return value


COLUMNS_BEFORE_FACES: tuple[str, ...] = tuple(c for c in COLUMNS if c not in FACE_COLUMNS)
"""The columns of tables written before the face columns existed."""
EARLIER_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS_BEFORE_FACES if c not in ("time_s", "dominant_category")
)
"""The columns of tables written before ``time_s`` and ``dominant_category`` existed."""


def is_prediction_table(path: str | os.PathLike, fmt: str | None = None) -> bool:
    """Whether ``path`` is an empty file or a table :func:`write_predictions` wrote (its columns, in order).

    Tables of earlier emoctx versions (:data:`EARLIER_COLUMNS`) count too. Only the start of the file is read
    (the first line; for Parquet, the schema).
    """
    path = Path(path)
    fmt = format_for(path, fmt)
    known = (list(COLUMNS), list(COLUMNS_BEFORE_FACES), list(EARLIER_COLUMNS))
    try:
        if path.stat().st_size == 0:
            return True
        if fmt == "parquet":
            return pq.read_schema(path).names in known
        with open(path, "rb") as f:
            first = f.readline(1 << 20).decode("utf-8").strip()
        if fmt == "csv":
            return first.split(",") in known
        row = json.loads(first)
        return isinstance(row, dict) and list(row) in known
    except (OSError, ValueError, pa.ArrowException):
        return False


def read_prediction_table(path: str | os.PathLike, fmt: str | None = None) -> pd.DataFrame:
    """Read a table written by :func:`write_predictions` (any format) into the same typed columns.

    ``categories`` comes back as a list of names (``None`` on error rows and rows without a person) in every
    format.
    """
    path = Path(path)
    fmt = format_for(path, fmt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction table")
    if fmt == "jsonl":
        return rows_frame(read_jsonl(path, EmoctxError))
    if fmt == "csv":
        df = pd.read_csv(
            path,
            dtype={c: "string" for c in (*STRING_COLUMNS, "categories", "face_landmarks")},
            keep_default_na=False,
            na_values=[""],
        )
        rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
        for r in rows:
            cats = r.get("categories")
            if r.get("error") is not None or r.get("person") is None:  # an error, or a photo without a person
                r["categories"] = None
            else:
                r["categories"] = [c for c in (cats or "").split(CATEGORY_SEPARATOR) if c]
            if r.get("face_landmarks") is not None:
                r["face_landmarks"] = json.loads(r["face_landmarks"])
        return rows_frame(rows)
    df = pq.read_table(path).to_pandas()
    rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    for r in rows:
        if r.get("categories") is not None:
            r["categories"] = [str(c) for c in r["categories"]]
        if r.get("face_landmarks") is not None:
            r["face_landmarks"] = [
                [None if v is None or v != v else float(v) for v in p] for p in r["face_landmarks"]
            ]
    return rows_frame(rows)


class PartialLog:
    """The progress sidecar of one output file: finished sources and their rows, one JSON line each.

    Line 1 records the settings of the run (model, options); a resumed run must use the same. Each later line
    is ``{"source": ..., "done": bool, "rows": [...]}``: a still image writes one line with ``done: true``;
    a video writes its frames in several lines and a final ``done: true`` line. A source counts as finished
    only once its ``done`` line is there; a half-written last line (the process was killed) is ignored.

    Args:
        output: the output table path; the sidecar is ``<output>.partial`` beside it.
    """

    def __init__(self, output: str | os.PathLike):
        output = Path(output)
        self.path = output.with_name(output.name + ".partial")
        self._file: Any = None

    def is_sidecar(self) -> bool:
        """Whether the file at :attr:`path` is a progress sidecar (its first line says so)."""
        try:
            with open(self.path, "rb") as f:
                first = json.loads(f.readline(1 << 20).decode("utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(first, dict) and "emoctx_partial" in first

    def start(
        self,
        settings: Mapping[str, Any],
        resume: bool,
        keep: Callable[[set[str]], set[str]] | None = None,
        overwrite: bool = False,
    ) -> set[str]:
        """Open the sidecar for appending; with ``resume``, keep what an earlier run finished.

        Args:
            settings: what shapes the rows (a resumed run must have the same).
            resume: keep the finished sources of the sidecar an earlier run left.
            keep: of the finished sources, those to keep (default: all); the others are done again.
            overwrite: replace a file at :attr:`path` that is not a sidecar.

        Returns:
            The sources kept as finished (empty unless resuming).

        Raises:
            EmoctxError: resuming a sidecar written with other settings, or a file that is not a sidecar is
                in the way (without ``overwrite``).
        """
        settings = json.loads(json.dumps(dict(settings)))
        kept: list[dict[str, Any]] = []
        if self.path.exists() and not overwrite and not self.is_sidecar():
            raise EmoctxError(
                f"{self.path}: exists and is not a progress file of emoctx predict; it is not replaced. Move it "
                "away, choose another output, or pass --overwrite"
            )
        if resume and self.path.exists():
            header, entries = self._load()
            if header is not None and header != settings:
                diff = sorted(k for k in set(header) | set(settings) if header.get(k) != settings.get(k))
                raise EmoctxError(
                    f"{self.path}: the interrupted run used other settings ({', '.join(diff)} differ: "
                    f"{ {k: header.get(k) for k in diff} } then, { {k: settings.get(k) for k in diff} } now); "
                    "re-run with the same model and options, or without --resume to start afresh"
                )
            done = {e["source"] for e in entries if e.get("done")}
            if keep is not None:
                done = set(keep(done))
            kept = [e for e in entries if e["source"] in done]
            log.info("resuming: %d source(s) already done according to %s", len(done), self.path)
        elif resume:
            log.info("nothing to resume (%s does not exist): starting from the beginning", self.path)
        elif self.path.exists():
            log.info(
                "%s is left from an interrupted run: starting afresh (--resume would continue it)", self.path
            )
        # Rewrite the sidecar with only complete entries, so later appends start on a fresh line.
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"emoctx_partial": 1, "settings": settings}) + "\n")
            for e in kept:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        return {e["source"] for e in kept}

    def append(self, source: str, rows: list[dict[str, Any]], done: bool) -> None:
        """Record rows of ``source``; ``done`` marks the source finished."""
        entry = {
            "source": printable(source),
            "done": bool(done),
            "rows": [{c: jsonable(r.get(c), printable) for c in COLUMNS} for r in rows],
        }
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the sidecar file (it stays on disk); a failure to flush (a full disk) is not raised again."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                log.debug("%s: closing after a failed write: %s", self.path, e)
            finally:
                self._file = None

    def finished(self) -> set[str]:
        """The sources whose ``done`` line is in the sidecar (as written: :func:`emoctx.io.printable`)."""
        _, entries = self._load()
        return {e["source"] for e in entries if e.get("done")}

    def rows(self, order: Mapping[str, int]) -> list[dict[str, Any]]:
        """Rows of the finished sources listed in ``order`` (source -> position), sorted by that position.

        Rows of one source keep the order in which they were appended.
        """
        _, entries = self._load()
        done = {e["source"] for e in entries if e.get("done")}
        by_source: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            if e["source"] in done and e["source"] in order:
                by_source.setdefault(e["source"], []).extend(e["rows"])
        return [r for s in sorted(by_source, key=order.__getitem__) for r in by_source[s]]

    def remove(self) -> None:
        """Delete the sidecar (after the final table is written)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def _load(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        header = None
        entries = []
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s: line %d is incomplete (interrupted write); ignored", self.path, n + 1)
                    continue
                if n == 0 and isinstance(obj, dict) and "emoctx_partial" in obj:
                    header = obj.get("settings")
                elif isinstance(obj, dict) and "source" in obj and isinstance(obj.get("rows"), list):
                    entries.append(obj)
        return header, entries


__getattr__ = moved(__name__, {"read_predictions": (__name__, "read_prediction_table")})
