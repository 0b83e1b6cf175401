"""Running an emoctx model on annotated records with their ground-truth boxes: scores and V/A/D per person.

:func:`score_records` is what ``emoctx evaluate --model`` and ``emoctx calibrate`` run: the model's own
preprocessing (:func:`records_transform`, no augmentation), the records' boxes, and the model's outputs as 0-1
scores (or raw outputs) and 1-10 V/A/D arrays in records order. (``emoctx predict-records``, which writes a
prediction table at scale, is :func:`emoctx.inference.distributed.predict_records`.)
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emoctx import defaults, labels
from emoctx.errors import EmoctxError

if TYPE_CHECKING:
    import torch

    from emoctx.checkpoint import ModelInfo
    from emoctx.data.transforms import StreamTransform
    from emoctx.engines import Engine
    from emoctx.models.network import EmotionNet

log = logging.getLogger(__name__)


FROM_MODEL = "model"
"""The ``max_side`` that means: what the model was trained with (its ``preprocessing.max_side``)."""


def records_transform(info: ModelInfo, mask_subject: bool | None = None) -> StreamTransform:
    """The evaluation transform of a model: its own preprocessing, no augmentation.

    Args:
        info: the model's description.
        mask_subject: mask the person out of the whole-image streams; default what the model was trained with.
    """
    from emoctx.data.transforms import build_transform

    prep = info.preprocessing
    assert prep is not None
    if mask_subject is not None and mask_subject != prep.mask_subject:
        prep = prep.with_mask(mask_subject)
    return build_transform(prep)


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score_records(
    net: EmotionNet,
    info: ModelInfo,
    records: pd.DataFrame,
    root: str | os.PathLike,
    batch_size: int = defaults.RECORDS_BATCH_SIZE,
    num_workers: int = defaults.RECORDS_WORKERS,
    device: str | torch.device | None = None,
    mask_subject: bool | None = None,
    max_side: int | str | None = FROM_MODEL,
    progress: bool = True,
    raw: bool = False,
    outputs: dict[str, np.ndarray] | None = None,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a model on every person of ``records`` with its ground-truth box.

    Inputs are built exactly as the model expects them (its stored preprocessing, :func:`records_transform`,
    no augmentation); an unreadable image does not stop the run: its persons are marked invalid (the dataset
    logs a warning naming the file).

    Args:
        net: the network (e.g. from :func:`emoctx.checkpoint.load_model`).
        info: its description (stream specs, score activation, training config).
        records: canonical records; row ``i`` of the outputs is row ``i`` of ``records``.
        root: dataset root the records' image paths are relative to.
        batch_size: persons per forward pass.
        num_workers: data-loading processes (0: in this process).
        device: where to run (:func:`emoctx.hardware.resolve_device`); default the GPU when available, else
            the CPU.
        mask_subject: mask the person out of the scene; default what the model was trained with
            (``info.preprocessing``).
        max_side: decode images with their longest side at most this many pixels (``None``: full size);
            default what the model was trained with.
        progress: show a progress bar (log lines away from a terminal, :mod:`emoctx.progress`).
        raw: return the model's raw category outputs (before its sigmoid or clamp; what average precision
            ranks, see :func:`scores_from_raw`) instead of the 0-1 scores.
        outputs: a dict to fill with the face outputs, in records order (NaN where not computed):
            ``face_present`` (N,) bool for a face stream, ``expression`` (N, E) probabilities for a model with
            expressions, ``face_va`` (N, 2) on 1-10 for a model with the face-derived head (a face-only model:
            its own V/A).
        engine: run this engine (:mod:`emoctx.engines`, built for ``net``) instead of ``net`` itself (every
            person with its own scene: its ``forward``, which for a face model reads who shows a face).

    Returns:
        ``(scores, vad, valid)``: ``scores`` (N, C) float64 in 0-1 (the model's score activation; with
        ``raw``, the raw outputs),
        ``vad`` (N, 3) float64 on the 1-10 scale, ``valid`` (N,) bool, False where the image could not be
        used (those rows of ``scores`` and ``vad`` are NaN).
    """
    import torch
    from torch.utils.data import DataLoader

    from emoctx.data.dataset import EmotionDataset, collate
    from emoctx.hardware import resolve_device
    from emoctx.models.outputs import face_outputs, scores_from_logits, vad_ratings
    from emoctx.progress import progress as progress_bar

    if batch_size < 1:
        raise EmoctxError(f"batch size must be at least 1, got {batch_size}")
    records = records.reset_index(drop=True)
    n = len(records)
    scores = np.full((n, labels.NUM_CATEGORIES), np.nan)
    vad = np.full((n, labels.NUM_VAD), np.nan)
    valid = np.zeros(n, dtype=bool)
    if n == 0:
        return scores, vad, valid
    assert info.preprocessing is not None
    if max_side == FROM_MODEL:
        max_side = info.preprocessing.max_side
    transform = records_transform(info, mask_subject)
    dataset = EmotionDataset(records, root, transform=transform, max_side=max_side)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate
    )
    if engine is not None:
        device = engine.device
    else:
        device = resolve_device(device)
        net = net.to(device).eval()
    has_face = "face" in net.stream_names
    extra: dict[str, np.ndarray] = {}
    if outputs is not None and has_face:
        extra["face_present"] = np.zeros(n, dtype=bool)
        extra["face_va"] = np.full((n, 2), np.nan)
    if outputs is not None and net.expressions:
        extra["expression"] = np.full((n, len(net.expressions)), np.nan)
    log.info("predicting %d persons on %s (streams %s)", n, device, list(net.stream_names))
    with torch.inference_mode():
        for batch in progress_bar(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            if "index" not in batch:  # every image of the batch was unreadable
                continue
            rows = batch["index"].numpy()
            out = (engine.forward if engine is not None else net)(network_inputs(net, batch, device))
            logits = out["logits"].float()
            scores[rows] = (
                (logits if raw else scores_from_logits(logits, info.score_activation)).cpu().numpy()
            )
            vad[rows] = vad_ratings(out["vad"].float()).cpu().numpy()
            valid[rows] = True
            faces = face_outputs(out, net.stream_names)
            if "expression" in extra:
                extra["expression"][rows] = faces["expression"].cpu().numpy()
            if "face_present" in extra:
                present = out["face_present"].cpu().numpy()
                extra["face_present"][rows] = present
                if "face_va" in faces:
                    values = faces["face_va"].cpu().numpy()
                    extra["face_va"][rows] = np.where(present[:, None], values, np.nan)
    if not valid.all():
        log.warning("%d of %d persons skipped: their images could not be used", int((~valid).sum()), n)
    if outputs is not None:
        outputs.update(extra)
    return scores, vad, valid


def network_inputs(net: EmotionNet, batch: dict, device: torch.device | str) -> dict[str, torch.Tensor]:
    """The network's inputs from a data-set batch (:mod:`emoctx.data.dataset`).

    Its streams, and for a face stream who shows a face and the landmarks.
    """
    inputs = {s: batch[s].to(device, non_blocking=True) for s in net.stream_names}
    for key in ("face_present", "face_landmarks"):
        if key in batch:
            inputs[key] = batch[key].to(device, non_blocking=True)
    return inputs


def scores_from_raw(raw: np.ndarray, activation: str) -> np.ndarray:
    """0-1 scores of raw category outputs, in float64 (``activation``: the model's ``score_activation``)."""
    import torch

    from emoctx.models.outputs import scores_from_logits

    return scores_from_logits(torch.as_tensor(raw, dtype=torch.float64), activation).numpy()
