"""Videos: frame reading, identity across frames, temporal smoothing, and annotated video output.

* :func:`decode_frames` decodes a video with OpenCV, every ``stride``-th frame (the skipped ones are grabbed,
  not decoded), as RGB arrays; frame indices are those of the file, and each frame's time in seconds comes from
  the header's frame rate (read once per video). A frame that cannot be decoded is reported
  (:class:`VideoFrame` with ``error``) and decoding goes on with the next one; fewer frames than the header
  announces (a truncated file) is reported once at the end (some containers only estimate their frame count;
  for them the note can name a frame or two that never existed). :func:`read_frames` gives the good frames
  only.
* Tracking: with a YOLO detector, ultralytics' ByteTrack gives each person a track id
  (:meth:`emoctx.inference.detect.UltralyticsDetector.track`). With boxes from a file, the file's
  ``track_id`` column is used when present, else :class:`IoUTracker` links boxes of consecutive processed frames
  by overlap.
* :class:`TrackSmoother`: exponential moving average of each track's category probabilities and V/A/D,
  ``s_t = alpha * x_t + (1 - alpha) * s_(t-1)`` over the processed frames in which the track appears
  (``alpha = 1`` turns smoothing off: per-frame values). The categories of a smoothed row are those whose
  smoothed probability reaches the threshold.
* :class:`VideoWriter`: an annotated copy of a video (``.mp4``), written beside its final name and renamed when
  complete. It is H.264 (``avc1``), which browsers play, where the installed OpenCV can encode it
  (:func:`mp4_fourcc` tries, and checks that the result decodes); else MPEG-4 Part 2 (``mp4v``), which most
  browsers do not play, and a warning says so. The opencv-python wheels from PyPI have no H.264 encoder.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emoctx.data.boxes import box_iou

log = logging.getLogger(__name__)


class VideoError(Exception):
    """A video file could not be opened or has no decodable frame (the message names the file)."""


def video_info(path: str | os.PathLike) -> dict[str, float]:
    """``{"fps", "frames", "width", "height"}`` from the container header (``frames`` may be an estimate).

    Raises:
        VideoError: the file cannot be opened as a video.
    """
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: cannot open as a video (unsupported codec, corrupt or not a video)")
        return {
            "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            "frames": float(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0.0)),
            "width": float(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": float(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
    finally:
        cap.release()


MAX_FAILED_RUN = 32
"""Consecutive frames that fail to decode before the rest of a video is taken as missing."""


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a video, or why it could not be decoded.

    Attributes:
        index: the frame's index in the file (for a shortfall: the first missing frame).
        pixels: RGB ``uint8`` array, or ``None`` when the frame could not be decoded.
        error: why there are no pixels (names the file, the frame and the reason), else ``None``.
        time_s: ``index`` / the frame rate in the container header; ``None`` where the header gives no rate.
    """

    index: int
    pixels: np.ndarray | None = None
    error: str | None = None
    time_s: float | None = None


def decode_frames(path: str | os.PathLike, stride: int = 1) -> Iterator[VideoFrame]:
    """Every ``stride``-th frame of a video (0, stride, 2*stride, ...), and a report of each that fails.

    OpenCV's read gives no reason when a frame fails; it fails both at the end of the file and on damaged
    data. The frame count of the container header tells them apart: a failure before it is a damaged frame
    when a later frame decodes again (one :class:`VideoFrame` with ``error`` for each wanted frame); failures
    that last to the end (or :data:`MAX_FAILED_RUN` frames in a row) mean the file holds fewer frames than its
    header announces, reported once with the range of missing frames. Without a frame count in the header,
    decoding ends at the first failure.

    Raises:
        VideoError: the file cannot be opened, is empty, or not one frame could be decoded.
    """
    if stride < 1:
        raise ValueError(f"frame stride must be at least 1, got {stride}")
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoError(f"{path}: cannot read video: the file is empty (0 bytes)")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoError(
                f"{path}: cannot read video: cannot open it (unsupported codec, corrupt or not a video)"
            )
        announced = int(max(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0.0))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

        def seconds(k: int) -> float | None:
            return k / fps if fps > 0 else None

        index = 0
        produced = 0
        failed: list[int] = []  # the current run of frames that did not decode
        while True:
            wanted = index % stride == 0
            if wanted:
                ok, bgr = cap.read()
                ok = ok and bgr is not None
            else:
                ok, bgr = cap.grab(), None
            if not ok:
                failed.append(index)
                if index + 1 >= announced or len(failed) >= MAX_FAILED_RUN:
                    break
                index += 1
                continue
            for k in failed:  # frames followed by a good one: damaged, not the end
                if k % stride == 0:
                    yield VideoFrame(
                        k,
                        error=f"{path}: frame {k}: cannot be decoded (damaged data); skipped",
                        time_s=seconds(k),
                    )
            failed = []
            if wanted:
                produced += 1
                yield VideoFrame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time_s=seconds(index))
            index += 1
        if produced == 0:
            raise VideoError(f"{path}: cannot read video: no frame could be decoded")
        first = failed[0] if failed else index
        if announced and first < announced:
            yield VideoFrame(
                first,
                error=f"{path}: frames {first}-{announced - 1} of the {announced} the header announces could not "
                "be read (the file ends early or is damaged there)",
                time_s=seconds(first),
            )
    finally:
        cap.release()


def read_frames(path: str | os.PathLike, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, RGB uint8 array)`` for every ``stride``-th frame that decodes.

    See :func:`decode_frames`; frames that fail are logged and skipped.

    Raises:
        VideoError: the file cannot be opened, is empty, or not one frame could be decoded.
    """
    for frame in decode_frames(path, stride):
        if frame.pixels is None:
            log.warning("%s", frame.error)
        else:
            yield frame.index, frame.pixels


class IoUTracker:
    """Links given boxes across frames by overlap (optimal one-to-one assignment on IoU).

    Used for boxes from a file without track ids. Ultralytics' ByteTrack is not used here: it withholds a new
    track's first box until the track is confirmed on the next frame, and every given box must yield a row.

    Args:
        iou_threshold: minimum IoU between a track's last box and a new box to continue the track.
        max_age: processed frames a track may go unseen before it is closed.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 30):
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks; ids restart at 1."""
        self._boxes: dict[int, np.ndarray] = {}
        self._age: dict[int, int] = {}
        self._next = 1

    def assign(self, boxes: np.ndarray) -> list[int]:
        """Track ids for the boxes ``[N, 4]`` of the next frame (new ids for unmatched boxes)."""
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids: list[int | None] = [None] * len(boxes)
        track_ids = list(self._boxes)
        if track_ids and len(boxes):
            iou = box_iou(np.stack([self._boxes[t] for t in track_ids]), boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= self.iou_threshold:
                    ids[c] = track_ids[r]
        for t in track_ids:
            self._age[t] += 1
        for k, tid in enumerate(ids):
            if tid is None:
                tid = self._next
                self._next += 1
                ids[k] = tid
            self._boxes[tid] = boxes[k]
            self._age[tid] = 0
        for t in [t for t, age in self._age.items() if age > self.max_age]:
            del self._boxes[t], self._age[t]
        return [int(i) for i in ids]  # type: ignore[arg-type]


class TrackSmoother:
    """Exponential moving average of each track's probabilities and V/A/D (see the module docstring).

    Args:
        alpha: weight of the current frame, in (0, 1]; 1 gives per-frame values.
    """

    def __init__(self, alpha: float = 0.5):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"smoothing alpha must be in (0, 1] (1 = off), got {alpha}")
        self.alpha = float(alpha)
        self._state: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def reset(self) -> None:
        """Forget all tracks (a new video starts)."""
        self._state.clear()

    def update(
        self, track_id: int, probabilities: np.ndarray, vad: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Blend this frame's values into the track's state; returns the smoothed ``(probabilities, vad)``."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        vad = np.asarray(vad, dtype=np.float64)
        prev = self._state.get(track_id)
        if prev is not None and self.alpha < 1.0:
            a = self.alpha
            probabilities = a * probabilities + (1.0 - a) * prev[0]
            vad = a * vad + (1.0 - a) * prev[1]
        self._state[track_id] = (probabilities, vad)
        return probabilities, vad


H264_FOURCCS: tuple[str, ...] = ("avc1", "H264")
"""The codes OpenCV takes for H.264 in MP4 files, tried in this order."""
FALLBACK_FOURCC = "mp4v"
"""MPEG-4 Part 2: every OpenCV build with FFmpeg writes it; most browsers do not play it."""
_H264_READ_BACK = {"avc1", "h264", "H264", "x264", "X264"}  # what a decoder may call an H.264 stream


def video_fourcc(path: str | os.PathLike) -> str:
    """The codec of a video file as OpenCV reads it back (``avc1``, ``FMP4`` for mp4v, ...; ``""`` if unknown)."""
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF if cap.isOpened() else 0
    finally:
        cap.release()
    return code.to_bytes(4, "little").decode("latin-1").strip("\x00 ") if code else ""


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to the process's stderr (FFmpeg's lines when an encoder is missing)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def writes_h264(fourcc: str) -> bool:
    """Whether OpenCV writes a small H.264 video with ``fourcc`` here that decodes again, frames and codec."""
    with tempfile.TemporaryDirectory(prefix="emoctx-codec-") as folder:
        path = os.path.join(folder, "probe.mp4")
        with _quiet_native_stderr():
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 25.0, (64, 48))
            opened = writer.isOpened()
            if opened:
                for k in range(3):
                    writer.write(np.full((48, 64, 3), 60 * k, np.uint8))
            writer.release()
            if not opened or not os.path.isfile(path):
                return False
            cap = cv2.VideoCapture(path)
            decoded = 0
            try:
                while cap.read()[0]:
                    decoded += 1
            finally:
                cap.release()
        return decoded == 3 and video_fourcc(path) in _H264_READ_BACK


def choose_fourcc(candidates: Sequence[str], works: Callable[[str], bool]) -> str:
    """The first of ``candidates`` that ``works``, else :data:`FALLBACK_FOURCC`."""
    return next((c for c in candidates if works(c)), FALLBACK_FOURCC)


@functools.lru_cache(maxsize=1)
def mp4_fourcc() -> str:
    """The codec annotated videos are written with: H.264 where this OpenCV can, else ``mp4v`` (once per process).

    A warning says so when H.264 is not available.
    """
    fourcc = choose_fourcc(H264_FOURCCS, writes_h264)
    if fourcc == FALLBACK_FOURCC:
        log.warning(
            "this OpenCV build cannot write H.264 videos: annotated videos are MPEG-4 Part 2 (mp4v), which media "
            "players play but most web browsers do not (re-encode one with e.g. 'ffmpeg -i IN.mp4 -c:v libx264 "
            "OUT.mp4')"
        )
    else:
        log.debug("annotated videos are written as H.264 (fourcc %s)", fourcc)
    return fourcc


class VideoWriter:
    """Write RGB frames to an MP4 file; the file gets its final name only when :meth:`close` succeeds.

    Args:
        path: the final ``.mp4`` path.
        fps: frames per second of the written video.
        fourcc: the codec; ``None``: :func:`mp4_fourcc` (H.264 where OpenCV can, else ``mp4v``).
    """

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None):
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.fourcc = fourcc
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB frame (later frames are resized to the first one's size)."""
        h, w = rgb.shape[:2]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (w, h)
            if self.fourcc is None:
                self.fourcc = mp4_fourcc()
            self._writer = cv2.VideoWriter(
                str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size
            )
            if not self._writer.isOpened():
                raise VideoError(
                    f"{self.path}: cannot write an MP4 video here (OpenCV has no '{self.fourcc}' encoder)"
                )
        if (w, h) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))

    def close(self) -> Path | None:
        """Finish the file and move it to its final name; returns the path, or ``None`` if no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop an unfinished file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)
