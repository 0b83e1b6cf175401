"""Person detection behind a small interface: ultralytics YOLO, or boxes the user already has.

* :class:`PersonDetector` is the interface: ``detect(images)`` takes a list of RGB ``uint8`` arrays and returns,
  per image, a list of :class:`Detection` (``x1 y1 x2 y2`` pixel box of that image, a score, and a track id
  where there is one). It is batched: the pipeline hands over several images at once.
* :class:`UltralyticsDetector` runs an ultralytics YOLO model of any task that finds persons (detection, pose,
  segmentation), keeps persons only (COCO class 0), and for videos tracks them with ultralytics' ByteTrack
  (:meth:`UltralyticsDetector.track`). With a pose model each person also carries the 17 COCO keypoints and,
  where the keypoints show one, a face (:func:`emoctx.faces.face_from_keypoints`); a segmentation model gives
  the persons' boxes (its masks are not used); a detection model gives no faces.
* :class:`BoxSource` is the interface of boxes known in advance, looked up by source path and frame, in pixels
  of the original image (:class:`emoctx.inference.box_file.BoxFileDetector` reads them from a file).

Weights for YOLO come from :mod:`emoctx.inference.yolo_weights` (where they are found, and loading them
without running code from the file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from emoctx import defaults
from emoctx.deprecation import moved
from emoctx.errors import EmoctxError
from emoctx.faces import DEFAULT_KEYPOINT_CONF, DEFAULT_MIN_FACE, Face, face_from_keypoints
from emoctx.inference.yolo_weights import (
    DEFAULT_WEIGHTS,
    describe_weights,
    load_yolo,
    resolve_weights,
    restricted_loading,
)

log = logging.getLogger(__name__)

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


class UltralyticsDetector:
    """Persons (and, with a pose model, their keypoints and faces) from an ultralytics YOLO model.

    The model's task is one of :data:`PERSON_TASKS`: ``detect``, ``pose`` (persons with the 17 COCO keypoints,
    and a face where they show one) or ``segment`` (persons; the masks are not used). Its format is any that
    ultralytics reads (``.pt``, ONNX, TorchScript, an OpenVINO or NCNN export folder, ...; see
    :func:`~emoctx.inference.yolo_weights.load_yolo` for what is refused).

    Args:
        weights: weights file, export folder or ultralytics model name (see :func:`~emoctx.inference.yolo_weights.resolve_weights`).
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
        conf: float = defaults.DETECTOR_CONF,
        min_box: float = 0.0,
        imgsz: int = defaults.DETECTOR_IMGSZ,
        device: str | None = "cpu",
        tracker: str = "bytetrack.yaml",
        batch_size: int = defaults.DETECTOR_BATCH,
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

    from emoctx.data.boxes import box_iou

    out: list[Detection | None] = [None] * len(boxes)
    if not len(boxes) or not detections:
        return out
    iou = box_iou(np.asarray(boxes, dtype=np.float64), np.array([d.box for d in detections]))
    for row, col in zip(*linear_sum_assignment(iou, maximize=True)):
        if iou[row, col] >= min_iou:
            out[row] = detections[col]
    return out


_TO_YOLO_WEIGHTS = (
    "WEIGHTS_SOURCE",
    "detector_error",
    "import_ultralytics",
    "restore_pil_open",
    "ultralytics_config_dir",
)
__getattr__ = moved(
    __name__,
    {
        "BoxFileDetector": ("emoctx.inference.box_file", "BoxFileDetector"),
        **{name: ("emoctx.inference.yolo_weights", name) for name in _TO_YOLO_WEIGHTS},
    },
)
