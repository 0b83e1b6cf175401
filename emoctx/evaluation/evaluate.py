"""Evaluation runs: a model or a predictions file on annotated records, into ``metrics.json``, ``report.md``, plots.

Two entry points, one result:

* :func:`evaluate_model`: run an emoctx model on records with their ground-truth boxes
  (:mod:`emoctx.evaluation.scoring`), and also write its predictions as ``predictions.parquet`` (the form
  :func:`evaluate_predictions` reads);
* :func:`evaluate_predictions`: score a predictions file from any system (:mod:`emoctx.evaluation.predictions`
  describes the form) against records.

Both build one metrics document (:func:`emoctx.evaluation.document.evaluation_document`) and write every view of
it (:func:`write_outputs`), atomically:

* ``metrics.json``: every figure (fractions, not percent; ``null`` where undefined), the AP variant, the
  identity of the model (file hash, network, streams, training config) or of the predictions file, the
  records file and the counts; agreement with the human annotators; breakdowns per gender, age group and
  source database;
* ``report.md``: the same as tables (AP, precision, recall, F1, SAGR and Jaccard in percent;
  :mod:`emoctx.evaluation.report`);
* ``ap_per_category.png``, ``pr_curves.png``, ``vad_scatter.png`` (:mod:`emoctx.evaluation.plots`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoctx import defaults
from emoctx.errors import EmoctxError
from emoctx.evaluation.document import DEFAULT_MIN_ANNOTATORS, evaluation_document
from emoctx.evaluation.plots import plot_ap_bars, plot_pr_curves, plot_vad_scatter
from emoctx.evaluation.report import markdown_report
from emoctx.io import atomic_path, atomic_write_text, file_sha256, jsonable

log = logging.getLogger(__name__)


METRICS_FILE = "metrics.json"


REPORT_FILE = "report.md"


PREDICTIONS_FILE = "predictions.parquet"


AP_PLOT = "ap_per_category.png"


PR_PLOT = "pr_curves.png"


VAD_PLOT = "vad_scatter.png"


@dataclass
class Evaluation:
    """The result of an evaluation run.

    Attributes:
        metrics: the metrics document (the content of ``metrics.json``).
        files: ``{kind: path}`` of every file written (``metrics``, ``report``, plots, ``predictions``).
    """

    metrics: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def write_outputs(
    out_dir: str | os.PathLike,
    doc: Mapping[str, Any],
    records: pd.DataFrame,
    scores: np.ndarray,
    vad: np.ndarray | None,
    thresholds: np.ndarray | None = None,
    plots: bool = True,
    ranking: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and the PNG plots of one evaluation into ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        doc: the metrics document (:func:`evaluation_document`).
        records: the evaluated records, aligned with ``scores``.
        scores: (N, C) category scores.
        vad: (N, 3) V/A/D predictions, or None.
        thresholds: (C,) decision thresholds, marked on the precision-recall curves.
        plots: write the PNG plots (False: only the JSON and the Markdown).
        ranking: (N, C) raw outputs the precision-recall curves rank (as the AP did), or None.

    Returns:
        ``{"metrics", "report", "ap_plot", "pr_plot", "vad_plot"}`` paths (no plots when ``plots`` is
        false, no ``vad_plot`` without V/A/D).
    """
    from emoctx.data.records import category_matrix, vad_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = records.reset_index(drop=True)
    files: dict[str, Path] = {}
    targets = category_matrix(records)
    if plots:
        files["ap_plot"] = plot_ap_bars(out / AP_PLOT, doc)
        ranked = scores if ranking is None else ranking
        files["pr_plot"] = plot_pr_curves(out / PR_PLOT, ranked, targets, doc, thresholds)
    if plots and vad is not None:
        files["vad_plot"] = plot_vad_scatter(out / VAD_PLOT, vad, vad_matrix(records), doc)
    files["report"] = out / REPORT_FILE
    atomic_write_text(files["report"], markdown_report(doc, {k: p.name for k, p in files.items()}))
    files["metrics"] = out / METRICS_FILE
    atomic_write_text(files["metrics"], json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return files


def _records_info(path: Path, num_records: int, evaluated: int, skipped: int, reason: str) -> dict[str, Any]:
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "num_records": num_records,
        "num_evaluated": evaluated,
        "num_skipped": skipped,
        "skipped_reason": reason if skipped else None,
    }


def evaluate_model(
    model_path: str | os.PathLike,
    records_path: str | os.PathLike,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    ap_variant: str = "sklearn",
    batch_size: int = defaults.RECORDS_BATCH_SIZE,
    num_workers: int = defaults.RECORDS_WORKERS,
    device: str | None = None,
    min_annotators: int = DEFAULT_MIN_ANNOTATORS,
    progress: bool = True,
    thresholds: str | os.PathLike | None = None,
    plots: bool = True,
    engine: str = "torch",
    precision: str = "fp32",
    calibration_records: str | os.PathLike | None = None,
    calibration_root: str | os.PathLike | None = None,
    engine_cache: str | os.PathLike | None = None,
) -> Evaluation:
    """Run a model on records (ground-truth boxes), score it and write every output into ``out_dir``.

    Persons whose image cannot be read are left out (counted in ``metrics.json``). Average precision ranks
    the model's raw category outputs, as training's validation and test figures do (not the 0-1 scores,
    which a clamp ties); the model's calibrated thresholds, if it has any, apply to its 0-1 scores and give
    the precision/recall/F1 figures. Also writes ``predictions.parquet`` (one row per evaluated person, with
    the 0-1 scores and the raw outputs), which :func:`evaluate_predictions` scores to the same figures.

    By default the network as loaded (PyTorch fp32, the reference): the figures are the model's. Another
    ``engine`` or ``precision`` (:mod:`emoctx.engines`) measures what it changes; ``metrics.json`` records it
    (``source.engine``, with its largest probability difference from PyTorch fp32 on the check batch).

    Args:
        model_path: an emoctx model file.
        records_path: canonical records of the evaluated split.
        root: dataset root the records' image paths are relative to.
        out_dir: output folder.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        batch_size: persons per forward pass.
        num_workers: data-loading processes.
        device: where to run the model (default GPU when available).
        min_annotators: persons with fewer annotators are not used for the agreement figures.
        progress: show a progress bar.
        thresholds: a model or JSON file whose thresholds replace the model's own (see
            :func:`load_thresholds`).
        plots: write the PNG plots.
        engine: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (:func:`emoctx.engines.build_engine`).
        precision: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"auto"``.
        calibration_records: int8: records to calibrate on (default: the model's validation split).
        calibration_root: the folder their image paths are relative to.
        engine_cache: keep exported graphs there instead of beside the model.

    Raises:
        EmoctxError: unusable model or records, images mostly not under ``root`` (checked before the model is
            loaded, :func:`emoctx.data.dataset.check_images`), or no readable image.
    """
    from emoctx.checkpoint import load_model
    from emoctx.data.dataset import check_images
    from emoctx.data.records import read_records
    from emoctx.evaluation.predictions import predictions_frame, thresholds_from_dict
    from emoctx.evaluation.scoring import score_records, scores_from_raw

    model_path, records_path = Path(model_path), Path(records_path)
    records = read_records(records_path)
    check_images(records, root, "--root", records_path)  # a wrong root fails here, before the model is loaded
    net, info = load_model(model_path)
    face_outputs: dict[str, np.ndarray] = {}
    built = None
    if (engine, precision) != ("torch", "fp32"):  # another engine or precision: what it changes
        from emoctx.engines import build_engine
        from emoctx.engines.calibration import calibration_from_records

        calibration = None
        if precision == "int8" and engine != "torch":
            calibration = calibration_from_records(info, model_path, calibration_records, calibration_root)
        # The torch engine prepares net in place (build_engine keeps its own fp32 copy for the check); from here
        # on net is only asked its streams and expressions, which that leaves as they are.
        how = {"info": info, "calibration": calibration, "cache_dir": engine_cache}
        built = build_engine(model_path, engine, precision, device or "auto", net=net, **how)
    raw, vad, valid = score_records(
        net,
        info,
        records,
        root,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        raw=True,
        outputs=face_outputs,
        engine=built,
    )
    scores = scores_from_raw(raw, info.score_activation)
    if not valid.any():
        raise EmoctxError(
            f"{records_path}: no person with a readable image under {root}; nothing to evaluate"
        )
    calibration = (info.training or {}).get("threshold_calibration")
    if thresholds is not None:
        th, th_from = load_thresholds(thresholds)
    else:
        th = thresholds_from_dict(info.thresholds, str(model_path))
        th_from = "stored in the model file" if th is not None else None
    if thresholds is None and th is not None and calibration:
        th_from += (
            f" (rule {calibration.get('rule')}, fitted on {calibration.get('num_persons')} persons of "
            f"{calibration.get('records')})"
        )
    source = {
        "kind": "model",
        "path": str(model_path),
        "sha256": file_sha256(model_path),
        "emoctx_version": info.emoctx_version,
        "torch_version": info.torch_version,
        "timm_version": info.timm_version,
        "format_version": info.format_version,
        "score_activation": info.score_activation,
        "network": info.network,
        "streams": info.streams,
        "training": _settings(info.training),
        "engine": (
            built.describe()
            if built is not None
            else {"engine": "torch", "precision": "fp32", "note": "the network as loaded (the reference)"}
        ),
    }
    kept = records[valid].reset_index(drop=True)
    doc = evaluation_document(
        kept,
        scores[valid],
        vad[valid],
        ap_variant=ap_variant,
        thresholds=th,
        thresholds_from=th_from,
        source=source,
        records_info=_records_info(
            records_path, len(records), int(valid.sum()), int((~valid).sum()), "unreadable image"
        ),
        min_annotators=min_annotators,
        ranking=raw[valid],
    )
    if face_outputs or net.stream_names == ("face",):
        doc["faces"] = jsonable(
            face_document(kept, vad[valid], {k: v[valid] for k, v in face_outputs.items()}, net.expressions)
        )
    files = write_outputs(out_dir, doc, kept, scores[valid], vad[valid], th, plots=plots, ranking=raw[valid])
    files["predictions"] = Path(out_dir) / PREDICTIONS_FILE
    with atomic_path(files["predictions"]) as tmp:
        predictions_frame(records, scores, vad, valid, raw=raw).to_parquet(tmp, index=False)
    log.info("evaluation written to %s", out_dir)
    return Evaluation(doc, files)


def face_document(
    records: pd.DataFrame,
    vad: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    expressions: tuple[str, ...] | list[str],
) -> dict[str, Any]:
    """EmoNet's figures of a model with a face stream (``metrics.json``'s ``faces``).

    * ``valence_arousal``: CCC, PCC, RMSE and SAGR (and MAE) of the model's valence and arousal, with the number
      of persons, over every person and over those who show a face;
    * ``face_valence_arousal``: the same for the face-derived valence/arousal (the face head, or a face-only
      model's own), over the persons who show a face;
    * ``expressions``: accuracy and macro-F1 of the expression head against the records' ``expression``;
    * ``face_present``: how many persons showed a face.
    """
    from emoctx.data.records import vad_matrix
    from emoctx.labels import EXPRESSION_INDEX
    from emoctx.metrics import vad_metrics
    from emoctx.metrics.expressions import expression_metrics

    true = vad_matrix(records).astype(np.float64)[:, :2]
    names = ("valence", "arousal")
    out: dict[str, Any] = {"num_persons": int(len(records))}
    present = outputs.get("face_present")
    out["valence_arousal"] = {"all": vad_metrics(vad[:, :2], true, names=names)}
    if present is not None:
        out["face_present"] = int(present.sum())
        if present.any():
            out["valence_arousal"]["with_face"] = vad_metrics(vad[present, :2], true[present], names=names)
        face_va = outputs.get("face_va")
        if face_va is not None and present.any() and np.isfinite(face_va[present]).all():
            out["face_valence_arousal"] = vad_metrics(face_va[present], true[present], names=names)
    probs = outputs.get("expression")
    if probs is not None and "expression" in records.columns:
        target = np.array(
            [EXPRESSION_INDEX.get(e, -1) if isinstance(e, str) else -1 for e in records["expression"]]
        )
        if list(expressions) == list(EXPRESSION_INDEX):
            out["expressions"] = expression_metrics(probs, target, expressions)
        else:
            out["expressions"] = {
                "skipped": "the model's expression classes are not the records' (EXPRESSIONS)"
            }
    return out


def _settings(training: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model's training settings without the keys Lightning's tools add for themselves.

    ``_instantiator`` is in model files written before emoctx left it out: dropped from the settings and from
    their ``data`` part.
    """
    out = {k: v for k, v in (training or {}).items() if not str(k).startswith("_")}
    if isinstance(out.get("data"), Mapping):
        out["data"] = {k: v for k, v in out["data"].items() if not str(k).startswith("_")}
    return out


def load_thresholds(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Thresholds from a model file (its calibrated ones) or a JSON file ``{slug: number or null}``.

    Returns:
        ``(thresholds, description)``.
    """
    from emoctx.evaluation.predictions import thresholds_from_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such thresholds file")
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EmoctxError(f"{path}: not valid JSON ({e})") from e
        if isinstance(values, dict) and isinstance(values.get("thresholds"), dict):
            values = values["thresholds"]  # e.g. {"thresholds": {...}, ...}
        if isinstance(values, dict) and isinstance(values.get("values"), dict):
            values = values["values"]  # the "thresholds" block of a metrics.json
        if not isinstance(values, dict):
            raise EmoctxError(f"{path}: expected an object {{slug: threshold or null}}")
        th = thresholds_from_dict(values, str(path))
    else:
        from emoctx.checkpoint import load_model

        _, info = load_model(path)
        th = thresholds_from_dict(info.thresholds, str(path))
    if th is None:
        raise EmoctxError(f"{path}: holds no thresholds (calibrate the model first: emoctx calibrate)")
    return th, f"from {path}"


def evaluate_predictions(
    predictions_path: str | os.PathLike,
    records_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    ap_variant: str = "sklearn",
    thresholds: np.ndarray | str | os.PathLike | None = None,
    min_annotators: int = DEFAULT_MIN_ANNOTATORS,
    allow_missing: bool = False,
    min_iou: float = 0.5,
    pixel_tolerance: float = 1.0,
    plots: bool = True,
    root: str | os.PathLike | None = None,
) -> Evaluation:
    """Score a predictions file of any system against records and write every output into ``out_dir``.

    Args:
        predictions_path: ``.parquet``, ``.jsonl`` or ``.csv`` (the form of
            :mod:`emoctx.evaluation.predictions`).
        records_path: canonical records of the evaluated split.
        out_dir: output folder.
        ap_variant: ``"sklearn"`` or ``"voc"``.
        thresholds: optional decision thresholds: an array in canonical order, a model file (its calibrated
            thresholds) or a JSON file ``{slug: number or null}``.
        min_annotators: persons with fewer annotators are not used for the agreement figures.
        allow_missing: evaluate only the records that have a prediction (default: an error).
        min_iou: matching rule, see :func:`emoctx.evaluation.predictions.match_predictions`.
        pixel_tolerance: matching rule, see :func:`emoctx.evaluation.predictions.match_predictions`.
        plots: write the PNG plots.
        root: the dataset root: image paths of the predictions under it are compared relative to it (as
            ``emoctx predict`` writes them: ``runs/demo/synth/images/a.jpg`` for the records' ``images/a.jpg``).

    Raises:
        EmoctxError: unreadable or invalid files, or rows that match no record.
    """
    from emoctx.data.records import read_records
    from emoctx.evaluation.predictions import (
        match_predictions,
        predicted_arrays,
        raw_arrays,
        read_scored_predictions,
    )

    predictions_path, records_path = Path(predictions_path), Path(records_path)
    records = read_records(records_path)
    preds = read_scored_predictions(predictions_path)
    match = match_predictions(
        preds,
        records,
        min_iou=min_iou,
        pixel_tolerance=pixel_tolerance,
        source=str(predictions_path),
        allow_missing=allow_missing,
        root=root,
    )
    th_from = None
    if thresholds is not None and not isinstance(thresholds, np.ndarray):
        thresholds, th_from = load_thresholds(thresholds)
    elif thresholds is not None:
        thresholds, th_from = np.asarray(thresholds, dtype=np.float64), "given"
    valid = match >= 0
    scores, vad = predicted_arrays(preds, match[valid])
    raw = raw_arrays(preds, match[valid])  # what AP ranks when the file gives it
    kept = records[valid].reset_index(drop=True)
    source = {
        "kind": "predictions",
        "path": str(predictions_path),
        "sha256": file_sha256(predictions_path),
        "num_rows": len(preds) + preds.attrs.get("error_rows", 0),
        "num_error_rows": preds.attrs.get("error_rows", 0),
        "has_vad": vad is not None,
        "has_raw": raw is not None,
        "matching": f"same image; box within {pixel_tolerance:g} px or IoU >= {min_iou:g} (one-to-one)"
        + (f"; image paths relative to {root}" if root is not None else ""),
    }
    doc = evaluation_document(
        kept,
        scores,
        vad,
        ap_variant=ap_variant,
        thresholds=thresholds,
        thresholds_from=th_from,
        source=source,
        records_info=_records_info(
            records_path, len(records), int(valid.sum()), int((~valid).sum()), "no prediction"
        ),
        min_annotators=min_annotators,
        ranking=raw,
    )
    files = write_outputs(out_dir, doc, kept, scores, vad, thresholds, plots=plots, ranking=raw)
    log.info("evaluation written to %s", out_dir)
    return Evaluation(doc, files)
