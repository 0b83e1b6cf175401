"""Calibration data for int8: preprocessed images of each stream, and the identity of the set they come from.

The int8 graphs are stored with the identity of their calibration set (a digest of the inputs' identities and
their count), so a later run that names the same set finds them in the cache without preprocessing a single
image, and a run that names another set builds its own.

:func:`records_calibration` makes a set from annotated records (persons with their boxes), as the model's
preprocessing contract prepares them; :func:`default_calibration_records` finds the validation split the model
was trained with, where its model file records it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emoctx import defaults
from emoctx.errors import EmoctxError

if TYPE_CHECKING:
    from emoctx.checkpoint import ModelInfo

log = logging.getLogger(__name__)

Batch = Mapping[str, "np.ndarray | torch.Tensor"]
"""``{stream: [B, 3, H, W]}`` float images, normalised as the model expects (as the predictor feeds them)."""


@dataclass(frozen=True)
class CalibrationSet:
    """Images to calibrate int8 on (see the module docstring).

    Build one with :meth:`from_items` or :meth:`from_batches`.

    Attributes:
        batches: returns the batches (called only when a graph must be calibrated, not when the cache has it).
        digest: SHA-256 (hex) of the set's identity.
        count: persons (items) in the set.
        name: a description for logs (e.g. the records file).
    """

    batches: Callable[[], Iterable[Batch]]
    digest: str
    count: int
    name: str = ""

    @classmethod
    def from_items(
        cls,
        items: Sequence[str],
        batches: Callable[[], Iterable[Batch]],
        name: str = "",
        context: Mapping[str, Any] | None = None,
    ) -> CalibrationSet:
        """A set identified by its items' identities, in order, and by how they are prepared.

        E.g. ``"<image path>#<x1>,<y1>,<x2>,<y2>"`` per person: known before a single image is decoded.

        Args:
            items: one identity per person.
            batches: returns the batches (see :attr:`batches`).
            name: a description for logs.
            context: what else decides the inputs (e.g. whether the subject is masked), part of the digest.
        """
        items = [str(i) for i in items]
        if not items:
            raise EmoctxError("int8 calibration needs at least one image; the calibration set is empty")
        identity: dict[str, Any] = {"count": len(items), "items": items}
        if context:
            identity["context"] = dict(context)
        text = json.dumps(identity, sort_keys=True)
        return cls(batches, hashlib.sha256(text.encode()).hexdigest(), len(items), name)

    @classmethod
    def from_batches(cls, batches: Iterable[Batch], name: str = "") -> CalibrationSet:
        """A set of batches already in memory, identified by their content (shapes and values)."""
        kept = [dict(b) for b in batches]
        digest = hashlib.sha256()
        count = 0
        for batch in kept:
            for stream in sorted(batch):
                a = _array(batch[stream], stream)
                digest.update(f"{stream}:{a.shape}".encode())
                digest.update(a.tobytes())
            count += len(next(iter(batch.values()))) if batch else 0
        if count == 0:
            raise EmoctxError("int8 calibration needs at least one image; the calibration set is empty")
        digest.update(f"count:{count}".encode())
        return cls(lambda: iter(kept), digest.hexdigest(), count, name)

    def describe(self) -> dict[str, Any]:
        """Its identity, for the cache manifest and the run's log."""
        return {"name": self.name, "count": self.count, "digest": self.digest}


def _array(x: Any, stream: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().contiguous().numpy()
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] != 3:
        raise EmoctxError(
            f"int8 calibration: stream '{stream}' batch has shape {list(a.shape)}, expected [B, 3, H, W]"
        )
    return a


def collect(calibration: CalibrationSet, shapes: Mapping[str, Sequence[int]]) -> dict[str, list[np.ndarray]]:
    """The calibration batches as float32 arrays per stream, checked against the streams' input shapes.

    Args:
        calibration: the set.
        shapes: ``{stream: [3, H, W]}``.

    Raises:
        EmoctxError: a stream is missing from a batch, or its images have another size.
    """
    out: dict[str, list[np.ndarray]] = {s: [] for s in shapes}
    for n, batch in enumerate(calibration.batches()):
        for stream, shape in shapes.items():
            if stream not in batch:
                raise EmoctxError(f"int8 calibration: batch {n} lacks the stream '{stream}'")
            a = _array(batch[stream], stream)
            if list(a.shape[1:]) != list(shape):
                raise EmoctxError(
                    f"int8 calibration: stream '{stream}' images are {list(a.shape[1:])}, the model takes "
                    f"{list(shape)}"
                )
            out[stream].append(a)
    if not any(out.values()):
        raise EmoctxError(f"int8 calibration: the calibration set {calibration.name!r} gave no images")
    return out


# --------------------------------------------------------------------------------------- from records
def records_calibration(
    info: ModelInfo,
    records: str | os.PathLike,
    root: str | os.PathLike,
    persons: int = defaults.CALIBRATION_PERSONS,
    mask_subject: bool | None = None,
    batch_size: int = 32,
) -> CalibrationSet:
    """A calibration set of persons from annotated records, prepared as the model's preprocessing says.

    A deterministic sample of ``persons`` persons (the same for the same records file: a seeded sample, in
    records order), each as the model takes it: its stream regions, sizes, resize rules and normalisation
    (:func:`emoctx.evaluation.scoring.records_transform`, no augmentation) and its decoding size limit, the
    subject masked out of the scene when ``mask_subject`` says so (default: as the model was trained). The
    images are decoded only when a graph must be calibrated (never when the cache has it); persons whose image
    cannot be read are left out (the dataset logs each one).

    The set's identity is its persons (image path and box, in order) and whether the subject is masked.

    Args:
        info: the model's description.
        records: a records file (``.parquet`` or ``.jsonl``, :mod:`emoctx.data.records`).
        root: the folder its image paths are relative to.
        persons: how many persons to sample (all when the file has fewer).
        mask_subject: mask the person out of the whole-image streams (default: the model's preprocessing).
        batch_size: persons per calibration batch.

    Raises:
        EmoctxError: the records file cannot be read or holds no person.
    """
    from emoctx.data.records import read_records

    records, root = Path(records), Path(root)
    if persons < 1:
        raise EmoctxError(f"int8 calibration needs at least 1 person, got {persons}")
    df = read_records(records)
    if len(df) > persons:
        df = df.sample(n=persons, random_state=0).sort_index()
    df = df.reset_index(drop=True)
    assert info.preprocessing is not None
    masked = info.preprocessing.mask_subject if mask_subject is None else bool(mask_subject)
    items = [f"{r.image}#{r.x1:g},{r.y1:g},{r.x2:g},{r.y2:g}" for r in df.itertuples()]

    def batches() -> Iterable[Batch]:
        from torch.utils.data import DataLoader

        from emoctx.data.dataset import EmotionDataset, collate
        from emoctx.evaluation.scoring import records_transform

        assert info.preprocessing is not None
        dataset = EmotionDataset(
            df, root, transform=records_transform(info, masked), max_side=info.preprocessing.max_side
        )
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=collate)
        for batch in loader:
            if "index" in batch:  # else every image of the batch was unreadable (each one logged)
                yield {s: batch[s] for s in info.preprocessing.streams}

    return CalibrationSet.from_items(
        items,
        batches,
        name=f"{len(df)} persons of {records}",
        context={"mask_subject": masked},
    )


def calibration_from_records(
    info: ModelInfo,
    model: str | os.PathLike,
    records: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    mask_subject: bool | None = None,
) -> CalibrationSet:
    """The int8 calibration set the commands use, a sample as :func:`records_calibration` makes it.

    ``records`` (``--calibration-records``), by default the model's validation split
    (:func:`default_calibration_records`); ``root`` by default :func:`default_calibration_root` (or the
    split's own root).

    Raises:
        EmoctxError: a named records file that does not exist, or no validation split to fall back on.
    """
    if records is None:
        records, split_root = default_calibration_records(info, model)
        root = split_root if root is None else root
    elif not Path(records).is_file():
        raise EmoctxError(f"{records}: no such calibration records file (--calibration-records)")
    root = default_calibration_root(records) if root is None else root
    return records_calibration(info, records, root, mask_subject=mask_subject)


def default_calibration_records(info: ModelInfo, model: str | os.PathLike = "model") -> tuple[Path, Path]:
    """The validation split the model was trained with, where its model file records it: ``(records, root)``.

    Training records its data module's settings in ``training["data"]``: ``root`` and ``val_records`` (when not
    given, the data module used ``<root>/annotations/val.parquet``). Relative paths are taken as they were
    written (relative to the folder training ran in).

    Raises:
        EmoctxError: the model file records no validation split, or it is not found here; the message says
            to name the records with ``--calibration-records``.
    """
    data = (info.training or {}).get("data")
    data = data if isinstance(data, Mapping) else {}
    root = data.get("root")
    val = data.get("val_records")
    how = (
        "--calibration-records FILE (and --calibration-root DIR, the folder its image paths are relative to)"
    )
    if not root:
        raise EmoctxError(
            f"{model}: int8 needs calibration records, and the model file does not record the data it was "
            f"trained on; name them with {how}"
        )
    path = Path(val) if val else Path(root) / "annotations" / "val.parquet"
    if not path.is_file() or not Path(root).is_dir():
        raise EmoctxError(
            f"{model}: int8 is calibrated on the model's validation split by default, which its model file "
            f"records as {path} (images under {root}), not found here; name the records with {how}"
        )
    return path, Path(root)


def default_calibration_root(records: str | os.PathLike) -> Path:
    """The folder a records file's image paths are relative to when none is named.

    ``emoctx convert`` and ``emoctx synth`` write records into ``<root>/annotations/``: for a records file in a
    folder named ``annotations``, its parent; else the records file's own folder.
    """
    folder = Path(records).resolve().parent
    return folder.parent if folder.name == "annotations" else folder
