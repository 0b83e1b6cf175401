"""Run a :class:`~emoctx.inference.predictor.Predictor` over many sources into one output table (``emoctx predict``).

:func:`predict_to_file` expands the sources, skips those an interrupted run finished (``resume``), appends each
finished source to the ``<output>.partial`` sidecar as it goes, optionally writes annotated images and videos,
and at the end writes the table (rows in source order; see :mod:`emoctx.inference.results` for the columns)
atomically and removes the sidecar.

What holds:

* **One writer.** The output is locked for the whole run (``<output>.lock``, :class:`emoctx.io.OutputLock`): a
  second run on the same output is refused while the first runs.
* **Nothing written over.** The output path may not be a folder or an input (a source, the model, the box file,
  the detector weights), not even with ``overwrite``; an existing file is replaced only if it is a prediction
  table (the same columns) or an empty file, or with ``overwrite``. The same holds for the sidecar.
* **Complete tables.** The table is written only if the sidecar holds every source of the run as finished.
* **Resume.** The sidecar's first line records every setting that changes the values (model and detector
  weights with their SHA-256, box file with its SHA-256, engine, precision and int8 calibration set, detector
  engine, device, CPU threads, batch sizes, ...); a resumed run with other settings is refused.
* **Metadata.** The table carries what made it (:meth:`Predictor.metadata`: the engine, its precision and its
  largest probability difference from PyTorch fp32, the settings): in a Parquet file, else in
  ``<output>.meta.json`` (:mod:`emoctx.inference.writers`). Sources are resumed by whole groups (see
  :meth:`Predictor.groups`): an unfinished group is done again, so every batch is the one an uninterrupted run
  computes and the resumed table is byte-identical to the uninterrupted one (same sources, same machine).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoctx.errors import EmoctxError
from emoctx.inference.console import ConsoleLines
from emoctx.inference.draw import annotate, save_annotated
from emoctx.inference.predictor import Predictor
from emoctx.inference.sources import Source, expand_sources, kind_of, reaches
from emoctx.inference.video import VideoError, VideoWriter, video_info
from emoctx.inference.writers import (
    DECIMALS,
    PartialLog,
    format_for,
    is_metadata_file,
    is_prediction_table,
    metadata_path,
    output_format,
    write_predictions,
)
from emoctx.io import OutputLock, check_output_file, printable

log = logging.getLogger(__name__)

_VIDEO_FLUSH_ROWS = 512  # rows of a video gathered before they are appended to the sidecar


@dataclass
class RunSummary:
    """What a prediction run did.

    Attributes:
        output: the table written.
        sources: inputs in the table (files, plus unusable arguments).
        resumed: sources taken from the interrupted run's sidecar.
        images: still images processed in this run.
        frames: video frames processed in this run.
        persons: persons predicted in this run.
        images_without_persons: images and frames of this run in which no person was found.
        rows: rows in the table.
        error_rows: rows with an ``error``.
        errors: the first error messages of this run.
        seconds: wall time of this run's prediction.
        annotated: annotated images and videos written.
        annotated_reduced: annotated images and videos drawn smaller than the originals (at the size they
            were decoded at, ``max_side``).
    """

    output: Path
    sources: int = 0
    resumed: int = 0
    images: int = 0
    frames: int = 0
    persons: int = 0
    images_without_persons: int = 0
    rows: int = 0
    error_rows: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    annotated: int = 0
    annotated_reduced: int = 0

    @property
    def persons_per_second(self) -> float:
        """Persons predicted per second of this run."""
        return self.persons / self.seconds if self.seconds > 0 else 0.0


def _annotation_names(specs: Sequence[Source]) -> dict[str, Path]:
    """A distinct relative output path per source (``.jpg`` for images, ``.mp4`` for videos)."""
    names: dict[str, Path] = {}
    used: set[str] = set()
    for s in specs:
        if s.kind == "error":
            continue
        rel = Path(s.rel)
        name = rel.with_suffix(".mp4" if s.kind == "video" else ".jpg")
        if str(name).lower() in used:
            name = rel.with_name(rel.name + name.suffix)
        n = 2
        while str(name).lower() in used:
            name = rel.with_name(f"{rel.stem}-{n}{name.suffix}")
            n += 1
        used.add(str(name).lower())
        names[s.path] = name
    return names


def model_inputs(predictor: Predictor) -> list[Path]:
    """The files a predictor reads besides its sources (model, box file, detector weights): never outputs."""
    files = [predictor.model_path]
    det = predictor.built_detector
    for attr in ("path", "weights"):
        value = getattr(det, attr, None)
        if value is not None:
            files.append(Path(os.fspath(value)))
    if det is None and predictor.detector_weights is not None:
        files.append(Path(os.fspath(predictor.detector_weights)))
    return files


def check_output(
    out: str | os.PathLike,
    fmt: str | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
    sources: Sequence[str | os.PathLike] = (),
) -> Path:
    """Refuse an output the run may not write (see the module docstring); call before any work.

    Args:
        out: the output table.
        fmt: its format (``None``: from the suffix).
        overwrite: replace an existing file that is not a prediction table.
        inputs: files the run reads (model, box file, detector weights).
        sources: the sources as given (an image or video they name is an input).

    Raises:
        EmoctxError: ``out`` is a folder (or ends in ``/``) or one of the inputs; its suffix is not a table type
            or disagrees with ``fmt`` (:func:`~emoctx.inference.writers.output_format`); an existing file that
            is not a prediction table (without ``overwrite``).
    """
    out = check_output_file(out, [i for i in inputs if i is not None])
    if out.is_file() and kind_of(out) is not None and reaches(sources, out):
        raise EmoctxError(f"--out {out} is one of the inputs; it is never written over: choose another file")
    output_format(out, fmt)
    if out.exists() and not overwrite and not is_prediction_table(out, fmt):
        raise EmoctxError(
            f"{out}: exists and is not a prediction table; it is not replaced. Choose another --out, or pass "
            "--overwrite to replace it"
        )
    side = metadata_path(out)
    if format_for(out, fmt) != "parquet":
        check_output_file(side, [i for i in inputs if i is not None])
        if side.is_file() and kind_of(side) is not None and reaches(sources, side):
            raise EmoctxError(f"{side} (the table's metadata) is one of the inputs; choose another --out")
        if side.exists() and not overwrite and not is_metadata_file(side):
            raise EmoctxError(
                f"{side}: exists and is not the metadata of a prediction table (emoctx writes a table's metadata "
                "there); it is not replaced. Choose another --out, or pass --overwrite to replace it"
            )
    return out


def _resume_groups(specs: Sequence[Source], groups: Sequence[int]) -> Any:
    """The filter of finished sources that keeps whole groups only (see :meth:`Predictor.groups`)."""
    members: dict[int, list[str]] = {}
    for spec, group in zip(specs, groups, strict=True):
        members.setdefault(group, []).append(printable(spec.path))

    def keep(done: set[str]) -> set[str]:
        whole = [m for m in members.values() if all(name in done for name in m)]
        return {name for m in whole for name in m}

    return keep


def _check_annotation_targets(specs: Sequence[Source], names: dict[str, Path], folder: Path) -> None:
    """Refuse annotated files that would be written over one of the sources."""
    sources = {os.path.realpath(s.path) for s in specs if s.kind != "error"}
    for path, name in names.items():
        target = folder / name
        if target.exists() and os.path.realpath(target) in sources:
            raise EmoctxError(
                f"--annotate {folder}: the annotated copy of {path} would be written over the input {target}; "
                "choose another folder"
            )


def predict_to_file(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    fmt: str | None = None,
    resume: bool = False,
    annotate_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    lines: int | None = 0,
) -> RunSummary:
    """Predict on ``inputs`` and write the table to ``out`` (see the module docstring).

    Args:
        predictor: the configured predictor.
        inputs: image files, folders, glob patterns and video files.
        out: the output table (``.jsonl``, ``.csv`` or ``.parquet``).
        fmt: table format; ``None`` picks it from the suffix of ``out``.
        resume: skip the sources that ``<out>.partial`` lists as finished (by whole groups).
        annotate_dir: write annotated images (``.jpg``) and videos (``.mp4``) here, mirroring the inputs' names.
        progress: show a progress bar (images and frames, with persons per second).
        overwrite: replace an existing ``out`` (and sidecar) even if it is not a prediction table (never an input).
        lines: print one line per photo (:meth:`ImageResult.describe`: its persons and their top emotions) and
            per video (frames, persons, tracks) to standard output, beside the progress bar, for this many
            photos and videos (``None``: every one; ``0``: none), then one line saying the rest are in the table.

    Returns:
        A :class:`RunSummary`.

    Raises:
        EmoctxError: no inputs; an output that may not be written; another run writing the same output;
            resuming with other settings than the interrupted run; a sidecar that lost finished sources.
    """
    out = check_output(out, fmt, overwrite, model_inputs(predictor), inputs)
    fmt = output_format(out, fmt)
    with OutputLock(out, "emoctx predict"):
        return _predict_locked(predictor, inputs, out, fmt, resume, annotate_dir, progress, overwrite, lines)


def _predict_locked(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    out: Path,
    fmt: str,
    resume: bool,
    annotate_dir: str | os.PathLike | None,
    progress: bool,
    overwrite: bool,
    lines: int | None = 0,
) -> RunSummary:
    from emoctx.progress import progress as progress_bar

    sidecar = PartialLog(out)
    exclude: list[str | os.PathLike] = [sidecar.path, OutputLock(out).path]
    if annotate_dir is not None:
        exclude.append(annotate_dir)
        predictor.keep_images = True
    specs = expand_sources(inputs, exclude=exclude)
    if out.exists():
        here = os.path.realpath(out)
        for s in specs:
            if s.kind != "error" and os.path.realpath(s.path) == here:
                raise EmoctxError(
                    f"--out {out} is one of the inputs; it is never written over: choose another file"
                )
        specs = [s for s in specs if os.path.realpath(s.path) != here]  # an earlier table among the inputs
    if not specs:
        raise EmoctxError(
            f"nothing to predict on in {', '.join(map(str, inputs))}: no image or video file there (files of other "
            "types in folders are skipped; the log names them)"
        )
    names = _annotation_names(specs) if annotate_dir is not None else {}
    if annotate_dir is not None:
        _check_annotation_targets(specs, names, Path(annotate_dir))
    summary = RunSummary(output=out, sources=len(specs))

    groups = predictor.groups(specs)
    done = sidecar.start(
        predictor.settings(), resume, keep=_resume_groups(specs, groups), overwrite=overwrite
    )
    keys = [printable(s.path) for s in specs]
    todo = [s for s, key in zip(specs, keys, strict=True) if key not in done]
    summary.resumed = len(specs) - len(todo)

    total = 0
    for s in todo:
        if s.kind == "video":
            try:
                total += max(1, -(-int(video_info(s.path)["frames"]) // predictor.video_stride))
            except VideoError:
                total += 1
        else:
            total += 1
    bar = progress_bar(total=total, unit="img", disable=not progress, dynamic_ncols=True, desc="predict")
    writers: dict[str, VideoWriter] = {}
    pending: dict[str, list[dict[str, Any]]] = {}
    console = ConsoleLines(bar, lines)
    start = time.perf_counter()
    try:
        for result in predictor.predict_sources(
            specs, skip=[s.path for s in specs if printable(s.path) in done]
        ):
            source = result.source or ""
            rows = result.to_rows(DECIMALS)
            if result.error is not None:
                summary.error_rows += 1
                if len(summary.errors) < 20:
                    summary.errors.append(printable(result.error))
            else:
                summary.persons += sum(p.error is None for p in result.persons)
                summary.error_rows += sum(p.error is not None for p in result.persons)
                summary.frames += result.frame >= 0
                summary.images += result.frame < 0
                summary.images_without_persons += not result.persons
                if annotate_dir is not None and result.image is not None:
                    drawn = annotate(result.image, result)
                    target = Path(annotate_dir) / names[source]
                    reduced = bool(result.width) and result.image.shape[1] < result.width  # max_side decoding
                    if result.frame >= 0:
                        if source not in writers:
                            info = video_info(source)
                            writers[source] = VideoWriter(target, info["fps"] / predictor.video_stride)
                            summary.annotated_reduced += reduced
                        writers[source].write(np.asarray(drawn))
                    else:
                        save_annotated(drawn, target)
                        summary.annotated += 1
                        summary.annotated_reduced += reduced
            buffer = pending.setdefault(source, [])
            buffer.extend(rows)
            if result.source_done or len(buffer) >= _VIDEO_FLUSH_ROWS:
                sidecar.append(source, pending.pop(source), done=result.source_done)
            if result.source_done and source in writers and writers.pop(source).close() is not None:
                summary.annotated += 1
            console.result(result)
            bar.update(1)
            elapsed = time.perf_counter() - start
            bar.set_postfix(persons=summary.persons, persons_s=f"{summary.persons / max(elapsed, 1e-9):.1f}")
    except BaseException:
        for w in writers.values():
            w.abort()
        sidecar.close()
        raise
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    if summary.annotated_reduced:
        log.info(
            "%d annotated image(s)/video(s) are drawn at the size the images were decoded at, smaller than the "
            "originals (longest side %s pixels, --max-side; --max-side 0 draws them at full size); the boxes in "
            "the table are in pixels of the originals",
            summary.annotated_reduced,
            predictor.max_side,
        )
    missing = sorted(getattr(predictor.built_detector, "missing", ()) or ())
    if missing:
        log.warning(
            "%d image(s) have no entry in the box file, so no persons (one row without a person each): %s%s",
            len(missing),
            ", ".join(missing[:5]),
            " ..." if len(missing) > 5 else "",
        )
    sidecar.close()
    finished = sidecar.finished()
    lost = [key for key in keys if key not in finished]
    if lost:  # e.g. another process replaced the sidecar: never write a table that lacks finished sources
        raise EmoctxError(
            f"{sidecar.path}: {len(lost)} source(s) of this run are not recorded as finished (e.g. {lost[0]}); "
            "the file was changed by something else during the run, so the table is not written. Re-run with "
            "--resume to predict them again"
        )
    rows = sidecar.rows({key: i for i, key in enumerate(keys)})
    write_predictions(rows, out, fmt, metadata=predictor.metadata())
    sidecar.remove()
    summary.rows = len(rows)
    summary.error_rows = sum(r.get("error") is not None for r in rows)
    return summary
