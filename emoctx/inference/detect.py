"""Person detection behind a small interface: ultralytics YOLO, or boxes the user already has.

* :class:`PersonDetector` is the interface: ``detect(images)`` takes a list of RGB ``uint8`` arrays and returns,
  per image, a list of :class:`Detection` (``x1 y1 x2 y2`` pixel box of that image, a score, and a track id
  where there is one). It is batched: the pipeline hands over several images at once.
* :class:`UltralyticsDetector` runs an ultralytics YOLO model of any task that finds persons (detection, pose,
  segmentation), keeps persons only (COCO class 0), and for videos tracks them with ultralytics' ByteTrack
  (:meth:`UltralyticsDetector.track`). With a pose model each person also carries the 17 COCO keypoints and,
  where the keypoints show one, a face (:func:`emoctx.faces.face_from_keypoints`); a segmentation model gives
  the persons' boxes (its masks are not used); a detection model gives no faces.
* :class:`BoxFileDetector` reads boxes from a CSV, JSONL or Parquet file (:class:`BoxSource` interface: boxes
  looked up by source path and frame, in pixels of the original image).

Weights for YOLO (:func:`resolve_weights`): an existing file path or export folder (OpenVINO, NCNN, ... as
ultralytics exports them); else a name ultralytics knows (such as ``yolo11n.pt``), looked up in the working
folder and ultralytics' weights folder, then downloaded by ultralytics where the network allows. Offline with no such file is an :class:`~emoctx.errors.EmoctxError`
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
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from emoctx.errors import EmoctxError
from emoctx.faces import DEFAULT_KEYPOINT_CONF, DEFAULT_MIN_FACE, Face, face_from_keypoints

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "yolo11n.pt"
"""The YOLO weights used when none are named (downloaded by ultralytics on first use where possible)."""

PERSON_CLASS = 0  # "person" in the COCO classes every ultralytics detection model is trained on

PERSON_TASKS: tuple[str, ...] = ("detect", "pose", "segment")
"""ultralytics tasks whose models give person boxes."""

_COCO_POSE_POINTS = 17  # the keypoints of ultralytics' COCO pose models

FrameKey = tuple[str, int]
"""``(source path, frame index)`` identifying an image (frame ``-1``) or a video frame."""


@dataclass(frozen=True)
class Detection:
    """One detected (or given) person.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels.
        score: detector confidence in 0-1 (``1.0`` for given boxes).
        track_id: the track id when the detection comes from a tracker or a box file with ``track_id``.
        keypoints: from a pose model, the 17 COCO keypoints ``((x, y, confidence), ...)`` in pixels
            (:data:`emoctx.faces.COCO_KEYPOINTS`); None otherwise.
        face: the person's face (box, score and the five facial keypoints) where the keypoints show one;
            None for a back view, a tiny person, or a detector without keypoints.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    track_id: int | None = None
    keypoints: tuple[tuple[float, float, float], ...] | None = None
    face: Face | None = None

    def scaled(self, fx: float, fy: float) -> Detection:
        """The same detection in another pixel grid: every x multiplied by ``fx``, every y by ``fy``.

        Boxes, keypoints and the face move together (e.g. from a reduced decoded image to the original).
        """
        x1, y1, x2, y2 = self.box
        return Detection(
            (x1 * fx, y1 * fy, x2 * fx, y2 * fy),
            self.score,
            self.track_id,
            None if self.keypoints is None else tuple((x * fx, y * fy, c) for x, y, c in self.keypoints),
            None if self.face is None else self.face.scaled(fx, fy),
        )


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


def ultralytics_config_dir() -> Path:
    """The folder ultralytics keeps its settings in when emoctx imports it.

    ``YOLO_CONFIG_DIR`` when the user set it, else emoctx's own configuration folder (``~/.config/emoctx`` on
    Linux; ultralytics adds ``Ultralytics/settings.json``), never ultralytics' own ``~/.config/Ultralytics``.
    """
    given = os.environ.get("YOLO_CONFIG_DIR")
    if given:
        return Path(given).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("emoctx"))


class _DropInfo(logging.Filter):
    """Lets warnings and errors through, drops the rest (ultralytics' banner when it creates its settings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def import_ultralytics() -> Any:
    """Import ultralytics quietly, its settings in emoctx's folder, and undo its ``PIL.Image.open`` replacement.

    On first import ultralytics writes a settings file (under ``YOLO_CONFIG_DIR``, else the user's
    ``~/.config/Ultralytics``) and prints three lines about it. emoctx points ``YOLO_CONFIG_DIR`` at
    :func:`ultralytics_config_dir` when the user has not set it, and drops ultralytics' information messages
    while it is being imported (its warnings still show; later messages, such as a download, are untouched).
    See :func:`restore_pil_open` for the rest.
    """
    if "ultralytics" not in sys.modules:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(ultralytics_config_dir()))
        quiet = _DropInfo()
        logger = logging.getLogger("ultralytics")  # ultralytics' LOGGER, configured (not replaced) on import
        logger.addFilter(quiet)
        try:
            import ultralytics
        finally:
            logger.removeFilter(quiet)
    import ultralytics

    restore_pil_open()
    return ultralytics


WEIGHTS_SOURCE = "https://github.com/ultralytics/assets/releases"
"""Where ultralytics' YOLO weights are published (ultralytics downloads them from there by itself)."""


def _how_to_give_persons(cli: bool) -> str:
    """What to pass instead: a weights file or a box file, named as the command line or the Python API names them."""
    if cli:
        return (
            "pass its path with --detector-weights PATH, or give the person boxes yourself with --boxes FILE, "
            "for photos and videos alike (CSV/JSONL/Parquet: source, x1, y1, x2, y2, and frame for videos)"
        )
    return (
        "pass its path as Predictor(..., detector_weights=PATH) or UltralyticsDetector(weights=PATH), or give "
        "the person boxes yourself, for photos and videos alike: Predictor(..., detector=BoxFileDetector(FILE)) "
        "(CSV/JSONL/Parquet: source, x1, y1, x2, y2, and frame for videos) or "
        "predictor.predict_images(images, boxes=...)"
    )


def detector_error(message: Callable[[str], str]) -> EmoctxError:
    """An error whose advice names the Python arguments, and the command's options on the command line.

    Args:
        message: builds the message around the advice (:func:`_how_to_give_persons`).
    """
    return EmoctxError(message(_how_to_give_persons(False)), cli_message=message(_how_to_give_persons(True)))


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """Where YOLO weights come from: a path, a known name, or a clear error (see the module docstring).

    Returns:
        A path or a name to pass to ``ultralytics.YOLO``.

    Raises:
        EmoctxError: a named path does not exist, or the weights are not on this machine and it is offline.
    """
    name = os.fspath(weights) if weights is not None else DEFAULT_WEIGHTS
    path = Path(name).expanduser()
    if path.is_file() or path.is_dir():  # a folder: an export (OpenVINO, NCNN, ...), as ultralytics reads it
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        return name  # an architecture: built with random weights (no download)
    if path.parent != Path("."):
        raise detector_error(
            lambda what: (
                f"{path}: no such detector weights file or export folder. YOLO weights (e.g. yolo11n.pt, or "
                f"yolo11n-pose.pt for faces too) are published at {WEIGHTS_SOURCE}: download one, put it "
                f"anywhere and {what}"
            )
        )
    import_ultralytics()
    from ultralytics.utils import SETTINGS, is_online

    local = Path(SETTINGS.get("weights_dir", "weights")) / name
    if local.is_file():
        return str(local)
    if not is_online():
        raise detector_error(
            lambda what: (
                f"no detector weights: '{name}' is not on this machine (looked in the working folder and "
                f"{local.parent}) and there is no network to download it. YOLO detection weights (yolo11n.pt; the "
                f"larger yolo11s/m/l/x.pt detect more) are published at {WEIGHTS_SOURCE}, from where ultralytics "
                "downloads them by itself where the network allows. Download one on a machine that can, copy it here "
                f"(anywhere; a bare name such as {name} is looked up in the working folder and {local.parent}), and "
                f"{what}"
            )
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
            "person boxes in a box file (BoxFileDetector)",
            cli_message="this ultralytics/torch cannot load detector weights without running code from them "
            "(restricted loading needs a recent ultralytics with torch >= 2.6): upgrade them, or give the "
            "person boxes with --boxes FILE",
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
            raise _download_failed(weights, e) from e
        except Exception as e:  # noqa: BLE001 - whatever a damaged or hostile file raises: one clear message
            text = _clean(str(e))
            if any(word in text for word in _REFUSALS):
                raise EmoctxError(
                    f"{weights}: refused: the file holds something other than an ultralytics model (loading it "
                    f"could run code), so it is not read ({text})"
                ) from e
            if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
                raise _download_failed(weights, e) from e
            raise EmoctxError(
                f"{weights}: cannot load as YOLO detector weights ({type(e).__name__}: {text[:500]})"
            ) from e


def _download_failed(weights: str, error: Exception) -> EmoctxError:
    return detector_error(
        lambda what: (
            f"could not obtain detector weights '{weights}' ({error}). Download them from "
            f"{WEIGHTS_SOURCE} where the network allows, copy them here and {what}"
        )
    )


def describe_weights(weights: str | os.PathLike) -> str:
    """``yolo:<name>``, with ``@<first 12 hex digits of a SHA-256>`` of a file or export folder (resume settings).

    A folder's digest covers the relative path and the content of every file in it, in sorted order.
    """
    path = Path(os.fspath(weights))
    if not (path.is_file() or path.is_dir()):
        return f"yolo:{path.name}"
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - consumed before the next file
                digest.update(chunk)
    return f"yolo:{path.name}@{digest.hexdigest()[:12]}"


class UltralyticsDetector:
    """Persons (and, with a pose model, their keypoints and faces) from an ultralytics YOLO model.

    The model's task is one of :data:`PERSON_TASKS`: ``detect``, ``pose`` (persons with the 17 COCO keypoints,
    and a face where they show one) or ``segment`` (persons; the masks are not used). Its format is any that
    ultralytics reads (``.pt``, ONNX, TorchScript, an OpenVINO or NCNN export folder, ...; see
    :func:`load_yolo` for what is refused).

    Args:
        weights: weights file, export folder or ultralytics model name (see :func:`resolve_weights`).
        conf: minimum detection confidence.
        min_box: drop boxes narrower or lower than this many pixels (of the image given to :meth:`detect`).
        imgsz: the detector's input size (longest side, pixels).
        device: an ultralytics device: ``"cpu"``, ``"0"`` (first GPU), ``"mps"``, ... (``None``: its choice).
        tracker: ultralytics tracker configuration for :meth:`track` (``bytetrack.yaml``, ``botsort.yaml``).
        batch_size: images per detector forward in :meth:`detect`.
        keypoint_conf: confidence from which a keypoint counts as visible, for the face rule.
        min_face: smallest face box side in pixels (of the image given to :meth:`detect`).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
        conf: float = 0.25,
        min_box: float = 0.0,
        imgsz: int = 640,
        device: str | None = "cpu",
        tracker: str = "bytetrack.yaml",
        batch_size: int = 8,
        keypoint_conf: float = DEFAULT_KEYPOINT_CONF,
        min_face: float = DEFAULT_MIN_FACE,
    ):
        if not 0.0 <= conf <= 1.0:
            raise EmoctxError(f"detector confidence must be within 0-1, got {conf}")
        if not 0.0 <= keypoint_conf <= 1.0:
            raise EmoctxError(f"keypoint confidence must be within 0-1, got {keypoint_conf}")
        self.keypoint_conf = float(keypoint_conf)
        self.min_face = float(min_face)
        self.weights = resolve_weights(weights)
        self.conf = float(conf)
        self.min_box = float(min_box)
        self.imgsz = int(imgsz)
        self.device = device
        self.tracker = tracker
        self.batch_size = max(1, int(batch_size))
        self.model = load_yolo(self.weights)
        self.task = str(getattr(self.model, "task", None) or "detect")
        if self.task not in PERSON_TASKS:
            raise EmoctxError(
                f"{self.weights}: a '{self.task}' model gives no person boxes; person detection needs a "
                f"detection, pose or segmentation model ({', '.join(PERSON_TASKS)})"
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

    def _keypoints(self, result: Any, count: int) -> np.ndarray | None:
        """The ``(N, 17, 3)`` keypoints of a pose result (confidence 1 where the model gives none), else None."""
        kpts = getattr(result, "keypoints", None)
        if kpts is None or kpts.data is None:
            return None
        data = kpts.data.cpu().numpy().astype(np.float64)
        if data.ndim != 3 or data.shape[0] != count or data.shape[1] != _COCO_POSE_POINTS:
            return None  # not COCO person keypoints: persons without faces
        if data.shape[2] == 2:
            data = np.concatenate([data, np.ones((*data.shape[:2], 1))], axis=2)
        return data

    def _detections(self, result: Any, with_ids: bool) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = boxes.conf.cpu().numpy().astype(np.float64)
        classes = boxes.cls.cpu().numpy().astype(int)
        ids = boxes.id.cpu().numpy().astype(int) if (with_ids and boxes.id is not None) else None
        keypoints = self._keypoints(result, len(xyxy))
        height, width = result.orig_shape[:2]
        out = []
        for k in range(len(xyxy)):
            if classes[k] != PERSON_CLASS:
                continue
            x1, y1, x2, y2 = (float(v) for v in xyxy[k])
            if min(x2 - x1, y2 - y1) < self.min_box:
                continue
            if with_ids and ids is None:
                continue  # tracking: only confirmed tracks carry an id
            points = face = None
            if keypoints is not None:
                points = tuple((float(x), float(y), float(c)) for x, y, c in keypoints[k])
                face = face_from_keypoints(
                    keypoints[k],
                    (x1, y1, x2, y2),
                    (int(width), int(height)),
                    keypoint_conf=self.keypoint_conf,
                    min_size=self.min_face,
                )
            out.append(
                Detection(
                    (x1, y1, x2, y2), float(scores[k]), None if ids is None else int(ids[k]), points, face
                )
            )
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


def match_detections(
    boxes: Sequence[Sequence[float]], detections: Sequence[Detection], min_iou: float = 0.5
) -> list[Detection | None]:
    """For each given person box, the detection that is the same person, or None.

    Boxes and detections are paired one to one, maximising the total overlap (the optimal assignment on
    IoU); a pair overlapping less than ``min_iou`` is no match. This gives annotated persons (records) the
    keypoints and face a pose model finds in their image.

    Args:
        boxes: ``(x1, y1, x2, y2)`` per person, in the detections' pixels.
        detections: what the detector found in the image.
        min_iou: smallest overlap (intersection over union) of a match.

    Returns:
        One entry per box: its detection, or None.
    """
    from scipy.optimize import linear_sum_assignment

    from emoctx.inference.video import box_iou

    out: list[Detection | None] = [None] * len(boxes)
    if not len(boxes) or not detections:
        return out
    iou = box_iou(np.asarray(boxes, dtype=np.float64), np.array([d.box for d in detections]))
    for row, col in zip(*linear_sum_assignment(iou, maximize=True)):
        if iou[row, col] >= min_iou:
            out[row] = detections[col]
    return out


# ------------------------------------------------------------------------------------------------ box file
# "image" first: canonical records carry the path there and the source database in "source".
_KEY_COLUMNS = ("image", "source", "path", "file")
_SCORE_COLUMNS = ("det_score", "score", "conf")


def _norm_parts(path: str) -> tuple[str, ...]:
    parts = Path(os.path.normpath(path.replace("\\", "/"))).parts
    return tuple(p for p in parts if p not in ("", "."))


class BoxFileDetector:
    """Person boxes read from a file, looked up by image path (and frame for videos).

    The file is CSV, JSONL or Parquet (by suffix) with one row per person:

    * the image path in a column ``image``, ``source``, ``path`` or ``file``, the first present (an
      EMOTIC-format records file works as is: its ``source`` names the database, its ``image`` the file);
    * ``x1 y1 x2 y2`` in pixels of the original image (or a ``box`` list of four numbers in JSONL);
    * optional ``frame`` (video frame index; missing or ``-1`` for still images), ``score``/``det_score``, and
      ``track_id`` (kept as the person's track in videos).

    An entry matches a source when its path equals the source path, or is the trailing part of it (whole
    folder names): an entry ``images/a.jpg`` matches the source ``data/images/a.jpg``; the longest match wins.
    Relative entries are also tried against the box file's folder.

    Args:
        path: the box file.

    Raises:
        EmoctxError: unreadable file, no path column, missing or non-numeric coordinates (naming the row).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise EmoctxError(f"{self.path}: no such box file")
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        """SHA-256 of the file's content when it was read."""
        self._index: dict[tuple[tuple[str, ...], int], list[Detection]] = {}
        self._sources: set[tuple[str, ...]] = set()
        self._missing: set[str] = set()
        for n, row in self._rows():
            key = next((row[c] for c in _KEY_COLUMNS if row.get(c) not in (None, "")), None)
            if key is None:
                raise EmoctxError(f"{self.path}, row {n}: no image path (columns {', '.join(_KEY_COLUMNS)})")
            det = self._detection(row, n)
            frame = row.get("frame")
            frame = (
                -1 if frame in (None, "") or (isinstance(frame, float) and math.isnan(frame)) else int(frame)
            )
            key = str(key)
            for parts in {_norm_parts(key), _norm_parts(str(self.path.parent.resolve() / key))}:
                self._index.setdefault((parts, frame), []).append(det)
                self._sources.add(parts)
        log.info(
            "%s: %d boxes for %d images/frames",
            self.path,
            sum(len(v) for v in self._index.values()),
            len(self._index),
        )

    def describe(self) -> str:
        """``boxes:<name>@<first 12 hex digits of the file's SHA-256>``, for the resume settings.

        A box file of the same name with other content is another setting.
        """
        return f"boxes:{self.path.name}@{self.sha256[:12]}"

    def _rows(self) -> list[tuple[int, dict[str, Any]]]:
        suffix = self.path.suffix.lower()
        try:
            if suffix in (".jsonl", ".json", ".ndjson"):
                rows = []
                with open(self.path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            try:
                                rows.append((n, json.loads(line)))
                            except json.JSONDecodeError as e:
                                raise EmoctxError(f"{self.path}, line {n}: not valid JSON ({e.msg})") from e
                return rows
            import pandas as pd

            if suffix == ".csv":
                df = pd.read_csv(self.path)
            elif suffix in (".parquet", ".pq"):
                df = pd.read_parquet(self.path)
            else:
                raise EmoctxError(
                    f"{self.path}: unsupported box file type '{suffix}'; use .csv, .jsonl or .parquet"
                )
        except (OSError, ValueError) as e:
            raise EmoctxError(f"{self.path}: cannot read the box file ({e})") from e
        df = df.astype(object).where(df.notna(), None)
        return [(n + 2 if suffix == ".csv" else n + 1, r) for n, r in enumerate(df.to_dict(orient="records"))]

    def _detection(self, row: dict[str, Any], n: int) -> Detection:
        if row.get("box") is not None and row.get("x1") is None:
            box = row["box"]
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise EmoctxError(f"{self.path}, row {n}: 'box' must be [x1, y1, x2, y2], got {box!r}")
            row = {**row, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]}
        coords = []
        for c in ("x1", "y1", "x2", "y2"):
            try:
                v = float(row[c])
            except (KeyError, TypeError, ValueError):
                raise EmoctxError(
                    f"{self.path}, row {n}: '{c}' must be a number of pixels, got {row.get(c)!r}"
                ) from None
            if not math.isfinite(v):
                raise EmoctxError(f"{self.path}, row {n}: '{c}' is not finite ({v})")
            coords.append(v)
        if coords[2] <= coords[0] or coords[3] <= coords[1]:
            raise EmoctxError(
                f"{self.path}, row {n}: empty or inverted box {coords} (need x2 > x1 and y2 > y1)"
            )
        score = next((row[c] for c in _SCORE_COLUMNS if row.get(c) is not None), 1.0)
        track = row.get("track_id")
        return Detection(tuple(coords), float(score), None if track in (None, "") else int(track))  # type: ignore[arg-type]

    def boxes_for(self, source: str, frame: int = -1) -> list[Detection] | None:
        """The boxes of ``source`` at ``frame`` (``-1``: still image), or ``None`` when the file has no entry."""
        parts = _norm_parts(os.path.abspath(source))
        for start in range(len(parts)):
            hit = self._index.get((parts[start:], frame))
            if hit is not None:
                return list(hit)
        hit = self._index.get((_norm_parts(source), frame))
        if hit is not None:
            return list(hit)
        if frame == -1 or not self._has_source(parts):
            self._missing.add(source)
        return None

    def _has_source(self, parts: tuple[str, ...]) -> bool:
        return any(parts[s:] in self._sources for s in range(len(parts)))

    def detect(
        self, images: list[np.ndarray], keys: Sequence[FrameKey] | None = None
    ) -> list[list[Detection]]:
        """The boxes of each image, looked up by ``keys`` (source, frame); images without an entry get none."""
        if keys is None or len(keys) != len(images):
            raise EmoctxError("a box file gives boxes by image path: pass one (source, frame) key per image")
        return [self.boxes_for(s, f) or [] for s, f in keys]

    @property
    def missing(self) -> set[str]:
        """Sources looked up that have no entry in the file."""
        return set(self._missing)
