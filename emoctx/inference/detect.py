"""Person detection behind a small interface: ultralytics YOLO, or boxes the user already has.

* :class:`PersonDetector` is the interface: ``detect(images)`` takes a list of RGB ``uint8`` arrays and returns,
  per image, a list of :class:`Detection` (``x1 y1 x2 y2`` pixel box of that image, a score, and a track id
  where there is one). It is batched: the pipeline hands over several images at once.
* :class:`UltralyticsDetector` runs an ultralytics YOLO model, keeps persons only (COCO class 0), and for
  videos tracks them with ultralytics' ByteTrack (:meth:`UltralyticsDetector.track`).
* :class:`BoxSource` is the interface of boxes known in advance, looked up by source path and frame, in pixels
  of the original image (:class:`emoctx.inference.box_file.BoxFileDetector` reads them from a file).

Weights for YOLO (:func:`resolve_weights`): an existing file path; else a name ultralytics knows (such as
``yolo11n.pt``), looked up in the working folder and ultralytics' weights folder, then downloaded by
ultralytics where the network allows. Offline with no such file is an :class:`~emoctx.errors.EmoctxError`
saying what to pass. A ``.yaml`` model name builds the architecture with random weights (tests only).

Loading weights runs no code from the file (:func:`load_yolo`). A ``.pt`` file is a pickle, which can call any
Python function when it is read: it is read with ultralytics' restricted loading (``torch.load(weights_only=True)``
with an allow-list of ultralytics' and torch's model classes, the mode ``ULTRALYTICS_SAFE_LOAD=1`` turns on),
and so is a model YAML (its ``activation`` is parsed, not ``eval``-ed). Anything else in the file is refused
with a clear error. Exported formats (ONNX, TorchScript, OpenVINO, TensorRT, ...) are read by their own
runtimes, which run computation graphs, not Python; TensorFlow (SavedModel, GraphDef) and PaddlePaddle
graphs are refused, as they can hold operations that read and write files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from emoctx import defaults
from emoctx.deprecation import moved
from emoctx.errors import EmoctxError
from emoctx.io import file_sha256

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = defaults.DETECTOR_WEIGHTS
"""The YOLO weights used when none are named (downloaded by ultralytics on first use where possible)."""

PERSON_CLASS = 0  # "person" in the COCO classes every ultralytics detection model is trained on

FrameKey = tuple[str, int]
"""``(source path, frame index)`` identifying an image (frame ``-1``) or a video frame."""


@dataclass(frozen=True)
class Detection:
    """One detected (or given) person.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels.
        score: detector confidence in 0-1 (``1.0`` for given boxes).
        track_id: the track id when the detection comes from a tracker or a box file with ``track_id``.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    track_id: int | None = None


@runtime_checkable
class PersonDetector(Protocol):
    """Finds persons in a batch of images."""

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Person boxes for each image.

        Args:
            images: RGB ``uint8`` arrays ``(H, W, 3)``.

        Returns:
            One list per image of :class:`Detection`, boxes in pixels of that image.
        """
        ...


@runtime_checkable
class BoxSource(Protocol):
    """Gives the person boxes of an image by its path (and video frame), in pixels of the original image."""

    def boxes_for(self, source: str, frame: int = -1) -> list[Detection] | None:
        """The boxes of ``source`` (frame ``-1`` for a still image), or ``None`` when it has no entry."""
        ...


# ------------------------------------------------------------------------------------------- ultralytics
def restore_pil_open() -> None:
    """Undo ultralytics' replacement of ``PIL.Image.open`` if ultralytics has been imported (else do nothing).

    On import, ultralytics wraps ``PIL.Image.open`` so that a file Pillow cannot identify makes it install a
    package (``pi-heif``) with pip and retry. emoctx decodes user files with Pillow: a text file named ``.jpg``
    must give an error row, not a package installation.
    """
    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def import_ultralytics() -> Any:
    """Import ultralytics and undo its ``PIL.Image.open`` replacement (:func:`restore_pil_open`)."""
    import ultralytics

    restore_pil_open()
    return ultralytics


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """Where YOLO weights come from: a path, a known name, or a clear error (see the module docstring).

    Returns:
        A path or a name to pass to ``ultralytics.YOLO``.

    Raises:
        EmoctxError: a named path does not exist, or the weights are not on this machine and it is offline.
    """
    name = os.fspath(weights) if weights is not None else DEFAULT_WEIGHTS
    path = Path(name).expanduser()
    if path.is_file():
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        return name  # an architecture: built with random weights (no download)
    if path.parent != Path("."):
        raise EmoctxError(
            f"{path}: no such detector weights file; pass an existing file with --detector-weights PATH, "
            "or give the person boxes with --boxes FILE"
        )
    import_ultralytics()
    from ultralytics.utils import SETTINGS, is_online

    local = Path(SETTINGS.get("weights_dir", "weights")) / name
    if local.is_file():
        return str(local)
    if not is_online():
        raise EmoctxError(
            f"no detector weights: '{name}' is not on this machine (looked in the working folder and {local.parent}) "
            "and there is no network to download it. Pass a YOLO weights file with --detector-weights PATH, "
            "or give the person boxes yourself with --boxes FILE (CSV/JSONL/Parquet: source, x1, y1, x2, y2)"
        )
    return name


# Formats whose graphs can hold operations that read or write files (ultralytics' format names).
_REFUSED_FORMATS = {
    "saved_model": "TensorFlow SavedModel",
    "pb": "TensorFlow GraphDef",
    "paddle": "PaddlePaddle",
}
# Messages of ultralytics' restricted loading when it refuses something in a file.
_REFUSALS = ("outside the supported", "restricted", "not a permitted", "blocked")


@contextlib.contextmanager
def restricted_loading() -> Iterator[None]:
    """Turn on ultralytics' restricted loading (``ULTRALYTICS_SAFE_LOAD``) for what is loaded inside.

    ultralytics reads its switch once, at import; this sets it for the duration of the block (model
    construction, and each prediction, which may load an exported file lazily) and restores it after.

    Raises:
        EmoctxError: the installed ultralytics or torch cannot load restrictedly (too old).
    """
    import_ultralytics()
    from ultralytics.nn import tasks

    safe = getattr(tasks, "_SafeLoad", None)
    if safe is None or not getattr(safe, "SUPPORTED", False) or not hasattr(tasks, "SAFE_LOAD"):
        raise EmoctxError(
            "this ultralytics/torch cannot load detector weights without running code from them "
            "(restricted loading needs a recent ultralytics with torch >= 2.6): upgrade them, or give the "
            "person boxes with --boxes FILE"
        )
    previous = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = True
    try:
        yield
    finally:
        tasks.SAFE_LOAD = previous


def _weights_format(weights: str) -> str | None:
    """The ultralytics name for the format of ``weights`` (``pt``, ``onnx``, ``saved_model``, ...), as it decides."""
    if Path(weights).suffix.lower() in (".yaml", ".yml"):
        return "yaml"
    from ultralytics.nn.autobackend import AutoBackend

    try:
        return AutoBackend._model_type(weights)
    except Exception:  # noqa: BLE001 - an unknown format: ultralytics reports it when loading
        return None


def _clean(message: str) -> str:
    """The ultralytics message without its decoration, on one line."""
    text = message.replace("ERROR ❌️", "").replace("ERROR ❌", "").strip()
    return " ".join(text.split())


def load_yolo(weights: str) -> Any:
    """An ``ultralytics.YOLO`` from weights, a model name or an architecture YAML, running no code from the file.

    See the module docstring for what is read and what is refused.

    Raises:
        EmoctxError: the file is refused (it holds more than a model), is of a refused format, cannot be read,
            or could not be downloaded.
    """
    import_ultralytics()
    from ultralytics import YOLO

    fmt = _weights_format(weights)
    if fmt in _REFUSED_FORMATS:
        raise EmoctxError(
            f"{weights}: {_REFUSED_FORMATS[fmt]} detectors are refused: their graphs can hold operations that "
            "read and write files. Use the .pt weights or an ONNX / TorchScript / OpenVINO export"
        )
    with restricted_loading():
        try:
            return YOLO(weights)
        except (ConnectionError, TimeoutError) as e:  # ultralytics reports download failures as these
            raise EmoctxError(
                f"could not obtain detector weights '{weights}' ({e}). Download them where the network allows and "
                "pass --detector-weights PATH, or give the person boxes with --boxes FILE"
            ) from e
        except Exception as e:  # noqa: BLE001 - whatever a damaged or hostile file raises: one clear message
            text = _clean(str(e))
            if any(word in text for word in _REFUSALS):
                raise EmoctxError(
                    f"{weights}: refused: the file holds something other than an ultralytics model (loading it "
                    f"could run code), so it is not read ({text})"
                ) from e
            if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
                raise EmoctxError(
                    f"could not obtain detector weights '{weights}' ({e}). Download them where the network allows "
                    "and pass --detector-weights PATH, or give the person boxes with --boxes FILE"
                ) from e
            raise EmoctxError(
                f"{weights}: cannot load as YOLO detector weights ({type(e).__name__}: {text[:500]})"
            ) from e


def describe_weights(weights: str | os.PathLike) -> str:
    """``yolo:<name>``, with ``@<first 12 hex digits of its SHA-256>`` for a file (the resume settings)."""
    path = Path(os.fspath(weights))
    if not path.is_file():
        return f"yolo:{path.name}"
    return f"yolo:{path.name}@{file_sha256(path)[:12]}"


class UltralyticsDetector:
    """Persons from an ultralytics YOLO detection model.

    Args:
        weights: weights file or ultralytics model name (see :func:`resolve_weights`).
        conf: minimum detection confidence.
        min_box: drop boxes narrower or lower than this many pixels (of the image given to :meth:`detect`).
        imgsz: the detector's input size (longest side, pixels).
        device: an ultralytics device: ``"cpu"``, ``"0"`` (first GPU), ``"mps"``, ... (``None``: its choice).
        tracker: ultralytics tracker configuration for :meth:`track` (``bytetrack.yaml``, ``botsort.yaml``).
        batch_size: images per detector forward in :meth:`detect`.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
        conf: float = defaults.DETECTOR_CONF,
        min_box: float = 0.0,
        imgsz: int = defaults.DETECTOR_IMGSZ,
        device: str | None = "cpu",
        tracker: str = "bytetrack.yaml",
        batch_size: int = defaults.DETECTOR_BATCH,
    ):
        if not 0.0 <= conf <= 1.0:
            raise EmoctxError(f"detector confidence must be within 0-1, got {conf}")
        self.weights = resolve_weights(weights)
        self.conf = float(conf)
        self.min_box = float(min_box)
        self.imgsz = int(imgsz)
        self.device = device
        self.tracker = tracker
        self.batch_size = max(1, int(batch_size))
        self.model = load_yolo(self.weights)
        if getattr(self.model, "task", "detect") != "detect":
            raise EmoctxError(
                f"{self.weights}: a '{self.model.task}' model; person detection needs a detection model"
            )

    def describe(self) -> str:
        """A short description for logs and the resume settings (with the weights file's digest)."""
        return describe_weights(self.weights)

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "classes": [PERSON_CLASS],
            "conf": self.conf,
            "imgsz": self.imgsz,
            "verbose": False,
        }
        if self.device is not None:
            kw["device"] = self.device
        return kw

    def _detections(self, result: Any, with_ids: bool) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = boxes.conf.cpu().numpy().astype(np.float64)
        classes = boxes.cls.cpu().numpy().astype(int)
        ids = boxes.id.cpu().numpy().astype(int) if (with_ids and boxes.id is not None) else None
        out = []
        for k in range(len(xyxy)):
            if classes[k] != PERSON_CLASS:
                continue
            x1, y1, x2, y2 = (float(v) for v in xyxy[k])
            if min(x2 - x1, y2 - y1) < self.min_box:
                continue
            if with_ids and ids is None:
                continue  # tracking: only confirmed tracks carry an id
            out.append(Detection((x1, y1, x2, y2), float(scores[k]), None if ids is None else int(ids[k])))
        return out

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Person boxes for each RGB image (see :class:`PersonDetector`)."""
        out: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [
                np.ascontiguousarray(im[..., ::-1]) for im in images[start : start + self.batch_size]
            ]  # RGB -> BGR
            with restricted_loading():  # an exported model is loaded on its first call
                results = self.model.predict(chunk, save=False, stream=False, **self._kwargs())
            out.extend(self._detections(r, with_ids=False) for r in results)
        return out

    def track(self, frame: np.ndarray) -> list[Detection]:
        """Persons in the next frame of a video, with track ids that persist across frames.

        Call :meth:`reset_tracks` before the first frame of each video.
        """
        bgr = np.ascontiguousarray(frame[..., ::-1])
        with restricted_loading():
            results = self.model.track(bgr, persist=True, tracker=self.tracker, save=False, **self._kwargs())
        return self._detections(results[0], with_ids=True)

    def reset_tracks(self) -> None:
        """Forget all tracks (a new video starts; ids restart at 1)."""
        predictor = getattr(self.model, "predictor", None)
        for tracker in getattr(predictor, "trackers", None) or []:
            tracker.reset()


__getattr__ = moved(__name__, {"BoxFileDetector": ("emoctx.inference.box_file", "BoxFileDetector")})
