"""Calibration data for int8: preprocessed images of each stream, and the identity of the set they come from.

The int8 graphs are stored with the identity of their calibration set (a digest of the inputs' identities and
their count), so a later run that names the same set finds them in the cache without preprocessing a single
image, and a run that names another set builds its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoctx.errors import EmoctxError

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
        cls, items: Sequence[str], batches: Callable[[], Iterable[Batch]], name: str = ""
    ) -> CalibrationSet:
        """A set identified by its items' identities, in order.

        E.g. ``"<image path>#<x1>,<y1>,<x2>,<y2>"`` per person, with the records file's digest: known before a
        single image is decoded.
        """
        items = [str(i) for i in items]
        if not items:
            raise EmoctxError("int8 calibration needs at least one image; the calibration set is empty")
        text = json.dumps({"count": len(items), "items": items})
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
