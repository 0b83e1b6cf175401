"""The prediction pipeline: decode, find persons, run the emotion model batched across images, build results.

:class:`Predictor` is the Python API behind ``emoctx predict``::

    from emoctx.inference import Predictor

    predictor = Predictor("model.safetensors")            # YOLO finds the persons
    for result in predictor.predict_sources(["photos/"]):  # files, folders, globs, videos
        print(result.source, [p.top(2) for p in result.persons])

    results = predictor.predict_images([rgb_array], boxes=[[[10, 20, 200, 400]]])  # in memory, given boxes
    table = results[0].to_frame()

How it runs, and why it is fast:

* **Decode once.** Each image is decoded once, in worker processes (a torch ``DataLoader`` over the file list)
  where cores are free for them, JPEGs larger than ``max_side`` at reduced size inside the decoder; the scene
  input is resized there too. Boxes are mapped between decoded and original pixels, so outputs are always in
  original pixels. When the model runs on the CPU with a thread on every core, decoding processes can only
  take turns with those threads, and each turn stalls them at their next synchronisation: there
  ``num_workers=None`` (default) decodes in this process, between forwards (see
  :func:`emoctx.hardware.default_workers`).
* **Batch across images.** Persons from many images share one forward of ``batch_size`` persons.
* **Share the scene.** ``scene_mode="shared"`` encodes the scene stream once per image and gives its features
  to every person in it (three quarters of the compute of a two-stream model). ``"masked"`` fills each
  person's box in the scene with the mean colour, as training with ``mask_subject`` did, and so encodes one
  scene per person. ``"auto"`` (default) picks ``masked`` when the model's preprocessing masks the subject,
  else ``shared``: each model sees what it saw in training.
* **Fast arithmetic.** The network runs in an inference engine (:mod:`emoctx.engines`): PyTorch, ONNX Runtime or
  OpenVINO, in fp32, bf16 or int8, each checked against the network in PyTorch fp32 when it is built (the
  largest probability difference goes to the log and to :meth:`Predictor.metadata`). ``engine="auto"`` (default)
  takes the fastest measured for the machine's class (:func:`emoctx.engines.default_engine`), ``precision="auto"``
  bfloat16 where the hardware computes it natively. PyTorch runs as :mod:`emoctx.inference.optimize` prepares it
  (batch norms folded, convolution + ReLU as one oneDNN call, channels-last, bfloat16 backbone weights on CPUs
  with native bfloat16, autocast on GPUs); the exported engines run graphs cached beside the model file. int8 is
  calibrated on annotated persons (``calibration``; default the model's validation split where its model file
  records it).
* **Detector engine.** The default YOLO detector runs exported to ONNX Runtime or OpenVINO where that serves it
  best (``detector_engine="auto"``, :func:`emoctx.engines.default_detector_engine`), or in PyTorch.

Inputs are made as the model's preprocessing says (``ModelInfo.preprocessing``), with the steps of the training
transform built from it without augmentation (:func:`emoctx.data.transforms.build_transform`): each stream's
region (the person's box rounded outwards, or the whole image) resized by its rule and normalised with its
mean/std, its mask filled with zeros. The tests check that the pipeline's inputs equal the transform's.

**Faces.** A model with a face stream reads each person's face: from a pose model, the face its keypoints show
(:func:`emoctx.faces.face_from_keypoints`, with ``keypoint_conf`` and ``min_face``); from given boxes, the face
boxes given with them (a box file's or records' face columns, or :class:`~emoctx.inference.detect.Detection`
objects with a ``face``). The face crop is the square of the preprocessing's face region around the face box,
with the face's landmarks in its frame; only the faces present go through the face backbone, and a person
without a face takes the network's no-face path (its learned no-face embedding, the fusion gating over the
streams present). Detection models give no faces. A model without a face stream ignores faces but the table
still shows those the detector found.

Videos are read frame by frame (every ``video_stride``-th frame) in a background thread; persons are tracked
(``track=True``) and each track's values smoothed (``smoothing``; see :mod:`emoctx.inference.video`).

**Reproducible batches.** A person's values can differ in the last bits with the batch it is computed in (the
matrix products of the heads, and of some backbones, pick their kernels by the batch's size). So that a run
resumed after an interruption computes every batch exactly as an uninterrupted run, batches are formed within
*groups* of sources (:meth:`Predictor.groups`): consecutive images, :attr:`Predictor.group_size` at a time, and
each video alone. Batches never span two groups, and a group is processed the same way whatever came before it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from emoctx import defaults, labels
from emoctx.checkpoint import load_model, model_identity
from emoctx.data.boxes import clip_box
from emoctx.data.images import DecodedImage, ImageError
from emoctx.data.transforms import build_transform
from emoctx.engines import build_engine
from emoctx.errors import EmoctxError
from emoctx.faces import DEFAULT_KEYPOINT_CONF, DEFAULT_MIN_FACE, Face, to_network_landmarks
from emoctx.hardware import default_workers, resolve_device
from emoctx.inference.decode import (
    DecodeDataset,
    decode_image,
    identity,
    opencv_fork_safe,
    prefetch,
    worker_init,
)
from emoctx.inference.detect import BoxSource, Detection, PersonDetector, UltralyticsDetector
from emoctx.inference.results import ImageResult, PersonResult
from emoctx.inference.sources import Source, expand_sources
from emoctx.inference.video import IoUTracker, TrackSmoother, VideoError, decode_frames
from emoctx.inference.yolo_weights import DEFAULT_WEIGHTS, describe_weights, resolve_weights, restore_pil_open
from emoctx.models.outputs import face_outputs, scores_from_logits, vad_ratings

log = logging.getLogger(__name__)

SCENE_MODES: tuple[str, ...] = ("auto", "shared", "masked")
DEFAULT_MAX_SIDE = defaults.MAX_SIDE
"""Images whose longest side exceeds this are decoded at reduced size (the model inputs are far smaller), for a
model that does not record the size it was trained at."""


@dataclass
class _Frame:
    """One image or video frame on its way through the pipeline."""

    order: int
    source: str | None
    frame: int = -1
    time_s: float | None = None  # a video frame's time (its index / the header's frame rate)
    kind: str = "image"
    decoded: DecodedImage | None = None
    views: dict[str, np.ndarray] = field(default_factory=dict)  # whole-image streams' views
    error: str | None = None
    last: bool = True
    given: list[Detection] | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # original pixels
    scores: list[float] = field(default_factory=list)
    track_ids: list[int | None] = field(default_factory=list)
    faces: list[Face | None] = field(default_factory=list)  # per person, in original pixels
    crops: dict[str, list[np.ndarray | None]] = field(default_factory=dict)  # per person, box streams' views
    face_points: dict[str, list[np.ndarray | None]] = field(default_factory=dict)  # per person, in the crop
    masks: dict[str, list[tuple[int, int, int, int] | None]] = field(default_factory=dict)  # per person
    person_errors: list[str | None] = field(default_factory=list)
    probs: np.ndarray | None = None
    vad: np.ndarray | None = None
    face_va: np.ndarray | None = None  # per person, NaN where none
    expressions: np.ndarray | None = None  # per person, expression probabilities (NaN where none)
    remaining: int = 0
    shared: dict[str, torch.Tensor] = field(default_factory=dict)  # features of unmasked whole-image streams
    group: int = 0


class Predictor:
    """Predict the emotions of every person in images and videos (see the module docstring).

    Args:
        model: an emoctx model file (``.safetensors`` or a training ``.ckpt``).
        detector: finds the persons: a :class:`~emoctx.inference.detect.PersonDetector`, or a
            :class:`~emoctx.inference.detect.BoxSource` such as
            :class:`~emoctx.inference.box_file.BoxFileDetector`. ``None``: an
            :class:`~emoctx.inference.detect.UltralyticsDetector` with ``detector_weights``, built on first use.
        batch_size: persons per emotion-model forward.
        precision: ``"auto"`` (bf16 where the hardware computes it natively, else fp32), ``"bf16"``, ``"fp32"`` or
            ``"int8"`` (an exported engine, calibrated on ``calibration``).
        engine: ``"auto"`` (the fastest measured for the machine's class), ``"torch"``, ``"onnxruntime"`` or
            ``"openvino"`` (see :mod:`emoctx.engines`).
        calibration: what int8 is calibrated on: a :class:`~emoctx.engines.CalibrationSet`, or a records file
            (a deterministic sample of :data:`~emoctx.defaults.CALIBRATION_PERSONS` persons, with
            ``calibration_root``); default the model's validation split where its model file records it.
        calibration_root: the folder the calibration records' image paths are relative to (default: see
            :func:`~emoctx.engines.calibration.default_calibration_root`).
        engine_cache: keep exported graphs (emotion model and detector) in this folder instead of beside the
            model and weights files.
        detector_engine: the default detector's engine: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or
            ``"openvino"`` (exported once, cached beside its weights file).
        scene_mode: ``"shared"``, ``"masked"`` or ``"auto"`` (see the module docstring).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        num_workers: processes decoding image files (0: decode in this process; ``None``: see
            :func:`default_workers`).
        max_side: decode images whose longest side is larger at this size (JPEG: reduced inside the decoder);
            ``None`` decodes at full size; ``"model"`` (default): the size the model was trained at
            (``preprocessing.max_side``) when it records one, else :data:`DEFAULT_MAX_SIDE`.
        conf: detection confidence of the default detector.
        min_box: drop detected persons whose box is narrower or lower than this (original pixels; given boxes
            are always kept).
        detector_weights: weights of the default detector (see :func:`~emoctx.inference.yolo_weights.resolve_weights`).
        detector_batch: images per detector call.
        imgsz: input size of the default detector.
        track: link persons across video frames (track ids); ``False`` gives per-frame person indices.
        smoothing: EMA weight of the current frame for tracked persons' values, in (0, 1]; 1 turns smoothing off.
        video_stride: process every n-th video frame.
        keep_images: keep the decoded pixels in each :class:`ImageResult` (``.image``), for drawing.
        keypoint_conf: with a pose model, the confidence from which a facial keypoint counts as seen.
        min_face: with a pose model, the smallest face box side in pixels (of the image the detector sees).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        detector: PersonDetector | BoxSource | None = None,
        *,
        batch_size: int = defaults.PREDICT_BATCH_SIZE,
        precision: str = "auto",
        engine: str = defaults.ENGINE,
        calibration: Any = None,
        calibration_root: str | os.PathLike | None = None,
        engine_cache: str | os.PathLike | None = None,
        detector_engine: str = defaults.DETECTOR_ENGINE,
        scene_mode: str = "auto",
        device: str | torch.device | None = "auto",
        num_workers: int | None = None,
        max_side: int | str | None = "model",
        conf: float = defaults.DETECTOR_CONF,
        min_box: float = defaults.MIN_BOX,
        detector_weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
        detector_batch: int = defaults.DETECTOR_BATCH,
        imgsz: int = defaults.DETECTOR_IMGSZ,
        track: bool = True,
        smoothing: float = defaults.SMOOTHING,
        video_stride: int = defaults.VIDEO_STRIDE,
        keep_images: bool = False,
        keypoint_conf: float = DEFAULT_KEYPOINT_CONF,
        min_face: float = DEFAULT_MIN_FACE,
    ):
        if batch_size < 1:
            raise EmoctxError(f"batch size must be at least 1, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise EmoctxError(f"workers must be 0 or more, got {num_workers}")
        if video_stride < 1:
            raise EmoctxError(f"video stride must be at least 1, got {video_stride}")
        if not 0.0 < smoothing <= 1.0:
            raise EmoctxError(
                f"smoothing must be in (0, 1] (the weight of the current frame; 1 = off), got {smoothing}"
            )
        if not 0.0 <= conf <= 1.0:
            raise EmoctxError(f"detection confidence must be within 0-1, got {conf}")
        if min_box < 0:
            raise EmoctxError(f"minimum box size must be 0 or more pixels, got {min_box}")
        if not 0.0 <= keypoint_conf <= 1.0:
            raise EmoctxError(f"keypoint confidence must be within 0-1, got {keypoint_conf}")
        if min_face < 0:
            raise EmoctxError(f"minimum face size must be 0 or more pixels, got {min_face}")
        if max_side != "model" and max_side is not None and (not isinstance(max_side, int) or max_side < 1):
            raise EmoctxError(f"max side must be a positive number of pixels (or None), got {max_side}")
        if scene_mode not in SCENE_MODES:
            raise EmoctxError(f"unknown scene mode '{scene_mode}'; choose one of {', '.join(SCENE_MODES)}")
        self.model_path = Path(model)
        self.device = resolve_device(device)
        net, self.info = load_model(self.model_path, map_location=self.device)
        assert self.info.preprocessing is not None
        if scene_mode == "auto":
            scene_mode = "masked" if self.info.trained_with_mask else "shared"
        self.scene_mode = scene_mode
        self.model_id = model_identity(self.model_path)
        self.engine_cache = engine_cache
        self._detector = detector
        self.detector_weights = detector_weights
        self.detector_engine = self._detector_engine(detector_engine)
        self.engine = build_engine(
            self.model_path,
            engine,
            precision,
            self.device,
            net=net,
            info=self.info,
            calibration=self._calibration(engine, precision, calibration, calibration_root),
            cache_dir=engine_cache,
        )
        self.precision = self.engine.precision
        self.batch_size = int(batch_size)
        self.num_workers = default_workers(self.device) if num_workers is None else int(num_workers)
        if max_side == "model":
            assert self.info.preprocessing is not None
            max_side = self.info.preprocessing.max_side or DEFAULT_MAX_SIDE
        self.max_side: int | None = max_side  # type: ignore[assignment]
        self.conf = float(conf)
        self.min_box = float(min_box)
        self.detector_batch = max(1, int(detector_batch))
        self.imgsz = int(imgsz)
        self.track = bool(track)
        self.smoothing = float(smoothing)
        self.video_stride = int(video_stride)
        self.keep_images = bool(keep_images)
        self.keypoint_conf = float(keypoint_conf)
        self.min_face = float(min_face)
        self.thresholds = np.nan_to_num(self.info.threshold_vector().numpy().astype(np.float64), nan=0.5)

        self.streams = tuple(net.stream_names)
        # The model's own preprocessing (emoctx.data.preprocess), the subject masked or not as the scene mode
        # says; the same transform training and evaluation build, without augmentation.
        prep = self.info.preprocessing
        assert prep is not None
        if prep.mask_subject != (self.scene_mode == "masked"):
            prep = prep.with_mask(self.scene_mode == "masked")
        self.preprocess = prep
        self.transform = build_transform(prep)
        self._image_streams = tuple(n for n in self.streams if prep.streams[n].region == "image")
        self._face_streams = tuple(n for n in self.streams if prep.streams[n].region == "face")
        self._box_streams = tuple(n for n in self.streams if prep.streams[n].region == "person")
        self.expressions = tuple(net.expressions) if self._face_streams else ()
        self._masked_streams = tuple(n for n in self._image_streams if prep.streams[n].mask is not None)
        self._mean: dict[str, torch.Tensor] = {}
        self._scale: dict[str, torch.Tensor] = {}
        for name in self.streams:
            spec = prep.streams[name]
            mean = torch.tensor(spec.mean, dtype=torch.float32) * 255.0
            std = torch.tensor(spec.std, dtype=torch.float32) * 255.0
            self._mean[name] = mean.view(1, 3, 1, 1).to(self.device)
            self._scale[name] = (1.0 / std).view(1, 3, 1, 1).to(self.device)
        self._iou_tracker = IoUTracker()
        self._smoother = TrackSmoother(self.smoothing)
        self._track_source: Any = object()
        self._smooth_source: Any = object()
        log.info(
            "model %s on %s: engine %s, precision %s, scene mode %s, batch %d",
            self.model_id,
            self.device,
            self.engine.name,
            self.precision,
            self.scene_mode,
            self.batch_size,
        )

    def _calibration(self, engine: str, precision: str, given: Any, root: str | os.PathLike | None) -> Any:
        """The int8 calibration set (``None`` unless int8 is asked for), prepared as this predictor's inputs."""
        from emoctx.engines import CalibrationSet
        from emoctx.engines.calibration import calibration_from_records

        if precision != "int8" or engine == "torch":  # torch has no int8: build_engine says so
            if given is not None and precision != "int8":
                log.warning("calibration records are used by --precision int8 only; ignored in %s", precision)
            return given if isinstance(given, CalibrationSet) else None
        if isinstance(given, CalibrationSet):
            return given
        return calibration_from_records(
            self.info, self.model_path, given, root, mask_subject=self.scene_mode == "masked"
        )

    def _detector_engine(self, engine: str) -> str:
        """The engine of the default detector (``"auto"`` resolved; PyTorch for an architecture without weights)."""
        from emoctx.engines import default_detector_engine
        from emoctx.engines.detector import DETECTOR_ENGINES

        if engine != "auto" and engine not in DETECTOR_ENGINES:
            raise EmoctxError(
                f"unknown detector engine '{engine}'; choose one of auto, {', '.join(DETECTOR_ENGINES)}"
            )
        if engine != "auto" or self._detector is not None:
            return engine if self._detector is None else "given"
        weights = str(self.detector_weights or DEFAULT_WEIGHTS)
        if weights.lower().endswith((".yaml", ".yml")) or Path(weights).is_dir():
            return "torch"  # an architecture (no weights file to key an export by) or an export already
        return default_detector_engine(self.device)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def detector(self) -> PersonDetector | BoxSource:
        """The person detector (the default YOLO detector is built on first use)."""
        if self._detector is None:
            weights = self.detector_weights
            if self.detector_engine not in ("torch", "given"):
                from emoctx.engines.detector import export_detector

                weights = export_detector(
                    resolve_weights(weights), self.detector_engine, self.imgsz, cache_dir=self.engine_cache
                )
            self._detector = UltralyticsDetector(
                weights=weights,
                conf=self.conf,
                min_box=0.0,
                imgsz=self.imgsz,
                device=str(self.device.index or 0) if self.device.type == "cuda" else self.device.type,
                batch_size=self.detector_batch,
                keypoint_conf=self.keypoint_conf,
                min_face=self.min_face,
            )
        return self._detector

    @property
    def built_detector(self) -> PersonDetector | BoxSource | None:
        """The detector if it was given or has been built, else ``None`` (builds nothing)."""
        return self._detector

    def settings(self) -> dict[str, Any]:
        """Everything that shapes the output rows (a resumed run must match these)."""
        det = self._detector
        if det is None:
            described = describe_weights(self.detector_weights or DEFAULT_WEIGHTS)
        else:
            described = det.describe() if hasattr(det, "describe") else type(det).__name__
        calibration = self.engine.info.get("calibration") or {}
        return {
            "model": self.model_id,
            "engine": self.engine.name,
            "precision": self.precision,
            "calibration": calibration.get("digest"),
            "device": self.device.type,
            # fp32 results on the CPU depend on the number of threads in the last bits; bf16 ones did not here
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "batch_size": self.batch_size,
            "detector_batch": self.detector_batch,
            "scene_mode": self.scene_mode,
            "detector": described,
            "detector_engine": self.detector_engine,
            "conf": self.conf,
            "min_box": self.min_box,
            "keypoint_conf": self.keypoint_conf,
            "min_face": self.min_face,
            "max_side": self.max_side,
            "imgsz": self.imgsz,
            "track": self.track,
            "smoothing": self.smoothing,
            "video_stride": self.video_stride,
        }

    def metadata(self) -> dict[str, Any]:
        """What made a table's rows (:func:`emoctx.inference.writers.write_predictions` stores it with the table).

        ``engine`` says which engine computed the model, in which precision, and how closely it reproduced the
        network in PyTorch fp32 when it was built (``engine.check.max_prob_diff``: the largest probability
        difference on the check batch); ``settings`` are :meth:`settings`.
        """
        from emoctx import __version__

        return {"emoctx_version": __version__, "engine": self.engine.describe(), "settings": self.settings()}

    # ----------------------------------------------------------------------------------------- public API
    def predict_images(
        self,
        images: Sequence[np.ndarray | Image.Image | str | os.PathLike],
        boxes: Sequence[Sequence[Sequence[float]] | Sequence[Detection] | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> list[ImageResult]:
        """Predict on images in memory (RGB ``uint8`` arrays, PIL images) or image files.

        Args:
            images: the images. Arrays are ``(H, W, 3)`` RGB ``uint8`` (``(H, W)`` grey and ``(H, W, 4)`` RGBA are
                accepted).
            boxes: per image, its person boxes ``[[x1, y1, x2, y2], ...]`` in pixels (or
                :class:`~emoctx.inference.detect.Detection` objects); ``None`` (for all, or for one image) runs
                the detector.
            names: the ``source`` of each result (default: the file path, or ``None`` for in-memory images).

        Returns:
            One :class:`ImageResult` per image, in order. An unreadable image gives a result with ``error`` set.
        """
        if boxes is not None and len(boxes) != len(images):
            raise EmoctxError(f"boxes: expected one entry per image ({len(images)}), got {len(boxes)}")
        if names is not None and len(names) != len(images):
            raise EmoctxError(f"names: expected one per image ({len(images)}), got {len(names)}")
        restore_pil_open()
        frames = []
        for i, image in enumerate(images):
            is_path = isinstance(image, (str, os.PathLike))
            name = names[i] if names is not None else (os.fspath(image) if is_path else None)
            fr = _Frame(order=i, source=name)
            try:
                fr.decoded = decode_image(image, self.max_side)
                fr.views = self._views(fr.decoded.pixels)
            except ImageError as e:
                fr.error = str(e)
            if boxes is not None and boxes[i] is not None:
                fr.given = [
                    d if isinstance(d, Detection) else Detection(tuple(float(v) for v in d)) for d in boxes[i]
                ]  # type: ignore[arg-type]
            frames.append(fr)
        return list(self._run(iter(frames)))

    def predict_sources(
        self, sources: Sequence[str | os.PathLike | Source], skip: Iterable[str] = ()
    ) -> Iterator[ImageResult]:
        """Predict on files, folders, globs and videos, yielding results in source order.

        Args:
            sources: paths, folders, glob patterns, or already expanded :class:`Source` entries.
            skip: source paths not to process (already done).

        Yields:
            One :class:`ImageResult` per image, per processed video frame, and per unusable input (with
            ``error``); ``source_done`` marks the last result of each source.
        """
        if all(isinstance(s, Source) for s in sources):
            specs = list(sources)  # type: ignore[arg-type]
        else:
            specs = expand_sources([s.path if isinstance(s, Source) else s for s in sources])
        groups = self.groups(specs)  # of the whole list, so that skipping does not move the batches
        skipped = set(skip)
        kept = [(s, g) for s, g in zip(specs, groups, strict=True) if s.path not in skipped]
        yield from self._run(self._frames_from([s for s, _ in kept], [g for _, g in kept]))

    @property
    def group_size(self) -> int:
        """Images per group (see the module docstring).

        Four model batches' worth of images (at least one person each), rounded up to whole detector batches:
        each group ends in at most one part-filled batch, and a resumed run redoes at most one group.
        """
        return -(-max(4 * self.batch_size, self.detector_batch) // self.detector_batch) * self.detector_batch

    def groups(self, specs: Sequence[Source]) -> list[int]:
        """The group of each source: consecutive images :attr:`group_size` at a time, each video alone.

        Unreadable sources join the group of the images around them (they are not counted). The grouping
        depends on the list alone, so a resumed run, which skips the groups already done, forms the same
        batches as an uninterrupted one.
        """
        out: list[int] = []
        group, images, open_group = -1, 0, False
        for spec in specs:
            if spec.kind == "video":
                group, open_group = group + 1, False
            else:
                if not open_group or (spec.kind == "image" and images == self.group_size):
                    group, images, open_group = group + 1, 0, True
                images += spec.kind == "image"
            out.append(group)
        return out

    # ----------------------------------------------------------------------------------------- decoding
    def _frames_from(self, specs: list[Source], groups: list[int] | None = None) -> Iterator[_Frame]:
        groups = groups if groups is not None else [0] * len(specs)
        image_paths = [s.path for s in specs if s.kind == "image"]
        loader_iter: Iterator[Any] | None = None
        if image_paths:
            loader = torch.utils.data.DataLoader(
                DecodeDataset(image_paths, self.max_side, self.transform, self._image_streams),
                batch_size=None,
                shuffle=False,
                num_workers=min(self.num_workers, len(image_paths)),
                collate_fn=identity,
                worker_init_fn=worker_init,
                prefetch_factor=8 if self.num_workers > 0 else None,
            )
            with opencv_fork_safe():
                loader_iter = iter(loader)
        try:
            for order, (spec, group) in enumerate(zip(specs, groups, strict=True)):
                if spec.kind == "error":
                    error = spec.error or f"{spec.path}: cannot be read"
                    yield _Frame(order, spec.path, error=error, group=group)
                elif spec.kind == "image":
                    assert loader_iter is not None
                    _, pixels, size, views, error = next(loader_iter)
                    fr = _Frame(order, spec.path, error=error, group=group)
                    if error is None:
                        fr.decoded = DecodedImage(pixels=pixels.numpy(), original_size=tuple(size))
                        fr.views = {name: v.numpy() for name, v in views.items()}
                    yield fr
                else:
                    for fr in self._video_frames(order, spec.path):
                        fr.group = group
                        yield fr
        finally:
            del loader_iter  # shuts the worker processes down

    def _video_frames(self, order: int, path: str) -> Iterator[_Frame]:
        def frames() -> Iterator[_Frame]:
            for decoded in decode_frames(path, self.video_stride):
                if decoded.pixels is None:  # a damaged frame, or frames missing at the end: an error row
                    yield _Frame(
                        order,
                        path,
                        frame=decoded.index,
                        time_s=decoded.time_s,
                        kind="video",
                        error=decoded.error,
                        last=False,
                    )
                    continue
                index, rgb = decoded.index, decoded.pixels
                h, w = rgb.shape[:2]
                pixels = rgb
                if self.max_side is not None and max(h, w) > self.max_side:
                    f = self.max_side / max(h, w)
                    pixels = cv2.resize(
                        rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
                    )
                fr = _Frame(order, path, frame=index, time_s=decoded.time_s, kind="video", last=False)
                fr.decoded = DecodedImage(pixels=pixels, original_size=(w, h))
                fr.views = self._views(pixels)
                yield fr

        previous: _Frame | None = None
        try:
            for fr in prefetch(frames(), size=16):
                if previous is not None:
                    yield previous
                previous = fr
        except VideoError as e:
            if previous is None:
                yield _Frame(order, path, kind="video", error=str(e))
                return
            log.warning("%s", e)
        if previous is not None:
            previous.last = True
            yield previous

    # ---------------------------------------------------------------------------------------- detection
    def _run(self, frames: Iterator[_Frame]) -> Iterator[ImageResult]:
        restore_pil_open()  # before any decoding (and before worker processes are forked)
        self._track_source = self._smooth_source = object()  # every call starts its videos afresh
        with torch.inference_mode():
            for fr in self._infer(self._detect(frames)):
                yield self._result(fr)

    def _detect(self, frames: Iterator[_Frame]) -> Iterator[_Frame]:
        buffer: list[_Frame] = []
        for fr in frames:
            if buffer and fr.group != buffer[-1].group:  # batches never span two groups
                yield from self._detect_batch(buffer)
                buffer = []
            if fr.kind == "video" and self.track and fr.error is None:
                yield from self._detect_batch(buffer)
                buffer = []
                self._track(fr)
                self._prepare(fr)
                yield fr
                continue
            buffer.append(fr)
            if len(buffer) >= self.detector_batch:
                yield from self._detect_batch(buffer)
                buffer = []
        yield from self._detect_batch(buffer)

    def _set_boxes(
        self, fr: _Frame, dets: list[Detection], original: bool, track_ids: list[int | None] | None = None
    ) -> None:
        """Store boxes (and faces) in original pixels; detector boxes (decoded pixels) are converted and size-filtered."""
        assert fr.decoded is not None
        boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        if not original:
            boxes = fr.decoded.to_original(boxes)
            keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_box
            boxes = boxes[keep]
            dets = [d for d, k in zip(dets, keep, strict=True) if k]
            sx, sy = fr.decoded.scale
            fr.faces = [None if d.face is None else d.face.scaled(1.0 / sx, 1.0 / sy) for d in dets]
        else:
            fr.faces = [d.face for d in dets]
        fr.boxes = boxes
        fr.scores = [float(d.score) for d in dets]
        fr.track_ids = list(track_ids) if track_ids is not None else [d.track_id for d in dets]

    def _detect_batch(self, frames: list[_Frame]) -> Iterator[_Frame]:
        if not frames:
            return
        det = self._detector
        pending = [fr for fr in frames if fr.error is None and fr.given is None]
        if pending and det is None:
            det = self.detector
        if pending and isinstance(det, BoxSource):
            for fr in pending:
                dets = self._lookup(det, fr)
                self._set_boxes(fr, dets, original=True, track_ids=[None] * len(dets))
        elif pending:
            found = det.detect([fr.decoded.pixels for fr in pending])  # type: ignore[union-attr]
            if len(found) != len(pending):
                raise EmoctxError(f"the detector returned {len(found)} results for {len(pending)} images")
            for fr, dets in zip(pending, found, strict=True):
                self._set_boxes(fr, list(dets), original=False)
        for fr in frames:
            if fr.error is None and fr.given is not None:
                self._set_boxes(fr, fr.given, original=True, track_ids=[None] * len(fr.given))
            self._prepare(fr)
            yield fr

    def _lookup(self, det: BoxSource, fr: _Frame) -> list[Detection]:
        if fr.source is None:
            raise EmoctxError("boxes from a box file need image names: pass names=... for in-memory images")
        return det.boxes_for(fr.source, fr.frame) or []

    def _track(self, fr: _Frame) -> None:
        det = self.detector
        new_video = fr.source != self._track_source
        self._track_source = fr.source
        if isinstance(det, BoxSource):
            if new_video:
                self._iou_tracker.reset()
            dets = self._lookup(det, fr)
            ids = [d.track_id for d in dets]
            if not dets or any(i is None for i in ids):  # an empty frame still ages the open tracks
                ids = self._iou_tracker.assign(np.array([d.box for d in dets]).reshape(-1, 4))  # type: ignore[assignment]
            self._set_boxes(fr, dets, original=True, track_ids=ids)
        elif hasattr(det, "track"):
            if new_video:
                det.reset_tracks()  # type: ignore[union-attr]
            self._set_boxes(fr, det.track(fr.decoded.pixels), original=False)  # type: ignore[union-attr]
        else:  # a detector without its own tracker: link its boxes by overlap
            if new_video:
                self._iou_tracker.reset()
            dets = det.detect([fr.decoded.pixels])[0]  # type: ignore[union-attr]
            self._set_boxes(fr, dets, original=False)
            fr.track_ids = self._iou_tracker.assign(fr.boxes)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------- inputs
    def _views(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The views of the whole-image streams (one per image, shared by its persons)."""
        return {name: self.transform.view(name, pixels, {}) for name in self._image_streams}

    def _prepare(self, fr: _Frame) -> None:
        """Make each person's views of the box streams, and find its mask in the masked streams' views."""
        n = len(fr.boxes)
        fr.crops = {name: [None] * n for name in (*self._box_streams, *self._face_streams)}
        fr.face_points = {name: [None] * n for name in self._face_streams}
        fr.masks = {name: [None] * n for name in self._masked_streams}
        fr.person_errors = [None] * n
        if len(fr.faces) != n:
            fr.faces = [None] * n
        if fr.error is not None or n == 0:
            fr.remaining = 0
            return
        assert fr.decoded is not None
        pixels = fr.decoded.pixels
        h, w = pixels.shape[:2]
        ow, oh = fr.decoded.original_size
        decoded_boxes = fr.decoded.from_original(fr.boxes)
        for k in range(n):
            try:
                boxes = {"person": clip_box(decoded_boxes[k], w, h)}
            except ValueError:
                box = ", ".join(f"{v:g}" for v in fr.boxes[k])
                fr.person_errors[k] = f"{fr.source}: person {k}: box [{box}] lies outside the {ow}x{oh} image"
                continue
            for name in self._box_streams:
                fr.crops[name][k] = self.transform.view(name, pixels, boxes)
            for name in self._masked_streams:
                fr.masks[name][k] = self.transform.mask_rect(name, (w, h), boxes)
            face = fr.faces[k]
            if self._face_streams and face is not None:
                try:
                    boxes["face"] = clip_box(fr.decoded.from_original(np.asarray(face.box)), w, h)
                except ValueError:  # a face box outside the image: no face
                    continue
                points = to_network_landmarks(list(face.landmarks), face.convention).astype(np.float64)
                points[:, :2] *= np.asarray(fr.decoded.scale)
                for name in self._face_streams:
                    fr.crops[name][k] = self.transform.view(name, pixels, boxes)
                    fr.face_points[name][k] = self.transform.face_landmarks(name, (w, h), boxes, points)
        fr.remaining = sum(e is None for e in fr.person_errors)
        fr.probs = np.full((n, labels.NUM_CATEGORIES), np.nan)
        fr.vad = np.full((n, labels.NUM_VAD), np.nan)
        fr.face_va = np.full((n, 2), np.nan)
        fr.expressions = np.full((n, max(len(self.expressions), 1)), np.nan)

    def _normalise(self, name: str, batch: np.ndarray) -> torch.Tensor:
        """``[B, H, W, 3]`` uint8 -> normalised ``[B, 3, H, W]`` as the engine takes it.

        In the engine's input dtype; channels-last memory layout (the pixels' own) where the engine takes it
        (PyTorch), else contiguous NCHW (what the exported engines read without a copy).
        """
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = x.sub_(self._mean[name]).mul_(self._scale[name])
        if not self.engine.channels_last:
            x = x.contiguous()
        return x.to(self.engine.input_dtype)

    # -------------------------------------------------------------------------------------------- model
    def _infer(self, frames: Iterator[_Frame]) -> Iterator[_Frame]:
        waiting: deque[_Frame] = deque()
        persons: list[tuple[_Frame, int]] = []
        for fr in frames:
            if persons and fr.group != persons[-1][0].group:  # batches never span two groups
                self._forward(persons)
                persons = []
            waiting.append(fr)
            persons.extend((fr, k) for k in range(len(fr.boxes)) if fr.person_errors[k] is None)
            while len(persons) >= self.batch_size:
                self._forward(persons[: self.batch_size])
                del persons[: self.batch_size]
            while waiting and waiting[0].remaining == 0:
                yield waiting.popleft()
        if persons:
            self._forward(persons)
        while waiting:
            yield waiting.popleft()

    def _forward(self, persons: list[tuple[_Frame, int]]) -> None:
        """One batched forward for ``persons`` (frame, person index); stores their outputs in the frames.

        The one place the pipeline calls the network, through its engine: ``encode(stream, images)`` per
        stream, then ``head(features)``. A box stream is encoded per person; an unmasked whole-image stream once per image,
        its features shared by the image's persons; a masked one per person, its view with that person masked.
        """
        features: dict[str, torch.Tensor] = {}
        present: dict[str, torch.Tensor] = {}
        engine = self.engine
        for name in self.streams:
            if name in self._face_streams:
                features[name], present[name] = self._encode_faces(name, persons)
            elif name in self._box_streams:
                batch = np.stack([fr.crops[name][k] for fr, k in persons])  # type: ignore[misc]
                features[name] = engine.encode(name, self._normalise(name, batch))
            elif name in self._masked_streams:
                x = self._normalise(name, np.stack([fr.views[name] for fr, _ in persons]))
                for j, (fr, k) in enumerate(persons):
                    x1, y1, x2, y2 = fr.masks[name][k]  # type: ignore[misc]
                    x[j, :, y1:y2, x1:x2] = 0.0  # the mean colour, as the transform masks it
                features[name] = engine.encode(name, x)
            else:
                new = list({id(fr): fr for fr, _ in persons if name not in fr.shared}.values())
                if new:
                    views = np.stack([fr.views[name] for fr in new])
                    encoded = engine.encode(name, self._normalise(name, views))
                    for j, fr in enumerate(new):
                        fr.shared[name] = encoded[j]
                features[name] = torch.stack([fr.shared[name] for fr, _ in persons])
        # A face stream runs in the torch engine only (build_engine), whose head takes who shows a face.
        out = engine.head(features, present) if present else engine.head(features)
        probs = scores_from_logits(out["logits"].float(), self.info.score_activation).cpu().numpy()
        vad = vad_ratings(out["vad"].float()).cpu().numpy()
        if present:  # whose face the face stream read
            seen = next(iter(present.values())).cpu().numpy()
        else:
            seen = np.array([fr.faces[k] is not None for fr, k in persons])
        faces = {k: v.cpu().numpy() for k, v in face_outputs(out, self.streams).items()}
        face_va = faces.get("face_va")
        expressions = faces.get("expression") if self._face_streams else None
        for j, (fr, k) in enumerate(persons):
            fr.probs[k] = probs[j]  # type: ignore[index]
            fr.vad[k] = vad[j]  # type: ignore[index]
            if seen[j] and face_va is not None:
                fr.face_va[k] = face_va[j]  # type: ignore[index]
            if seen[j] and expressions is not None:
                fr.expressions[k] = expressions[j]  # type: ignore[index]
            fr.remaining -= 1

    def _encode_faces(
        self, name: str, persons: list[tuple[_Frame, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, F]`` of face stream ``name`` (zeros where no face) and who shows a face ``[B]``.

        Only the faces present go through the backbone; the others get the network's no-face path in
        :meth:`EmotionNet.head`.
        """
        crops = [fr.crops[name][k] for fr, k in persons]
        present = torch.tensor([c is not None for c in crops], dtype=torch.bool, device=self.device)
        width = int(self.engine.net.missing[name].shape[0])
        features = torch.zeros((len(persons), width), dtype=torch.float32, device=self.device)
        index = [j for j, c in enumerate(crops) if c is not None]
        if index:
            x = self._normalise(name, np.stack([crops[j] for j in index]))
            points = torch.from_numpy(
                np.stack([persons[j][0].face_points[name][persons[j][1]] for j in index]).astype(np.float32)
            ).to(self.device)
            encoded = self.engine.encode(name, x, points)
            features[torch.tensor(index, device=self.device)] = encoded
        return features, present

    # ------------------------------------------------------------------------------------------ results
    def _result(self, fr: _Frame) -> ImageResult:
        width, height = fr.decoded.original_size if fr.decoded is not None else (None, None)
        result = ImageResult(
            source=fr.source,
            frame=fr.frame,
            time_s=fr.time_s,
            width=width,
            height=height,
            model=self.model_id if fr.error is None else None,
            error=fr.error,
            source_done=fr.last,
        )
        tracked = fr.kind == "video" and self.track
        if tracked and fr.source != self._smooth_source:
            self._smoother.reset()
            self._smooth_source = fr.source
        for k in range(len(fr.boxes)):
            track_id = fr.track_ids[k] if tracked else None
            person = PersonResult(
                person=int(track_id) if track_id is not None else k,
                box=tuple(float(v) for v in fr.boxes[k]),  # type: ignore[arg-type]
                det_score=fr.scores[k],
                track_id=None if track_id is None else int(track_id),
                error=fr.person_errors[k],
            )
            person.face = fr.faces[k] if k < len(fr.faces) else None
            if person.error is None:
                probs, vad = fr.probs[k], fr.vad[k]  # type: ignore[index]
                face_va = fr.face_va[k] if fr.face_va is not None else None  # type: ignore[index]
                if track_id is not None:
                    probs, vad, face_va = self._smoother.update(int(track_id), probs, vad, face_va)
                person.probabilities = np.asarray(probs, dtype=np.float64)
                person.vad = np.asarray(vad, dtype=np.float64)
                if face_va is not None and np.isfinite(face_va).all():
                    person.face_va = np.asarray(face_va, dtype=np.float64)
                scores = fr.expressions[k] if fr.expressions is not None else None  # type: ignore[index]
                if self.expressions and scores is not None and np.isfinite(scores).all():
                    best = int(np.argmax(scores))
                    person.expression, person.expression_score = self.expressions[best], float(scores[best])
                person.categories = [
                    labels.CATEGORIES[i] for i in np.flatnonzero(person.probabilities >= self.thresholds)
                ]
            result.persons.append(person)
        if self.keep_images and fr.decoded is not None:
            result.image = fr.decoded.pixels
        return result
