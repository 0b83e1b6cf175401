"""Faces of persons: a face box from a person's pose keypoints, and the facial landmark conventions.

This module is plain geometry (numpy only): the detector (:mod:`emoctx.inference.detect`) finds faces with it,
the records (:mod:`emoctx.data.records`) store what it gives, and the network's landmark attention
(:mod:`emoctx.models.face`) reads landmarks in the :data:`NETWORK_LANDMARKS` convention it defines.

**Keypoints.** A pose model (ultralytics ``yolo11n-pose`` and the like) gives the 17 COCO keypoints of each
person, each with ``x, y`` in pixels and a confidence in 0-1 (:data:`COCO_KEYPOINTS`). The first five are the
face: nose, left eye, right eye, left ear, right ear ("left" is the person's own left, which is on the right of
the image in a frontal view).

**The face box** (:func:`face_from_keypoints`), in five steps:

1. *Visible points.* A facial keypoint is visible when its confidence is at least ``keypoint_conf`` (default
   0.5) and its coordinates are finite.
2. *Is there a face?* Only when the nose or an eye is visible, and at least two facial keypoints are. A back
   view (at most the ears visible) has no face, and neither has a head of which one point alone is seen.
3. *Size.* Each pair of visible facial keypoints gives an estimate of the head's size from the distance
   between them, by the ratio of average adult head measures: the box side is 3.5 x the distance between
   the eyes (about 63 mm between pupils, for a side of about 220 mm, the height of a head), 1.5 x the
   distance between the ears (about 145 mm), 4.4 x the distance from the nose tip to an eye (about 50 mm in a
   frontal view), 2.8 x the distance from an eye to the ear on the same side (about 78 mm) and 2.1 x the
   distance from the nose tip to an ear (about 105 mm). A head turned away from the camera shortens every
   projected distance, never lengthens it, so the largest estimate is taken: in a profile the eyes come
   close together but the eye-ear distance stays.
4. *Centre and square.* The box is a square of that side, centred on the mean of the visible facial
   keypoints, moved down by a tenth of its side (the keypoints lie at eye and nose level, above the middle
   of the face): it holds the whole face with a margin, a loose crop like those face data sets use. It is
   axis-aligned whatever the head's tilt.
5. *Clamped.* The square is cut to the person's box (and to the image, when its size is given), so it may
   end up non-square where it meets them; a face box whose side (before or after the cut) is under
   ``min_size`` pixels (default 12) is no face: tiny people have none.

**Face score**: the mean confidence of the nose and the two eyes (the ears are seen from behind too, so
they do not count): about 0.9 for a confident frontal face, lower for a profile, whose far eye is hidden.

**Landmark conventions** (:data:`LANDMARK_CONVENTIONS`): ``coco5`` (the five facial COCO keypoints above),
``coco17`` (all 17 COCO keypoints), ``ibug68`` (the 68-point iBUG 300-W markup of AffectNet and most face
data sets). Landmarks are lists of ``[x, y, confidence]``; :func:`to_network_landmarks` maps any of them to
``coco5``, the convention the network's landmark attention reads (for ``ibug68``: the nose tip, each eye's
centre, and the two ends of the jaw line, beside the ears, as stand-ins for the ears).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
"""The 17 COCO person keypoints, in the order pose models give them."""

FACE_KEYPOINTS: tuple[str, ...] = COCO_KEYPOINTS[:5]
"""The facial COCO keypoints (indices 0-4): nose, left eye, right eye, left ear, right ear."""

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = range(5)

LANDMARK_CONVENTIONS: dict[str, int] = {"coco5": 5, "coco17": 17, "ibug68": 68}
"""Known landmark conventions and their number of points."""

NETWORK_LANDMARKS = "coco5"
"""The convention the network's landmark attention reads (:func:`to_network_landmarks` converts to it)."""

DEFAULT_KEYPOINT_CONF = 0.5
"""Confidence from which a keypoint counts as visible."""

DEFAULT_MIN_FACE = 12.0
"""Smallest face box side, in pixels; smaller faces are no faces."""

# Box side per distance between two facial keypoints: a head's height (about 220 mm) over the average adult
# distance between the two points (see the module docstring).
_SIDE_PER_DISTANCE: dict[frozenset[int], float] = {
    frozenset((LEFT_EYE, RIGHT_EYE)): 3.5,
    frozenset((LEFT_EAR, RIGHT_EAR)): 1.5,
    frozenset((NOSE, LEFT_EYE)): 4.4,
    frozenset((NOSE, RIGHT_EYE)): 4.4,
    frozenset((LEFT_EYE, LEFT_EAR)): 2.8,
    frozenset((RIGHT_EYE, RIGHT_EAR)): 2.8,
    frozenset((NOSE, LEFT_EAR)): 2.1,
    frozenset((NOSE, RIGHT_EAR)): 2.1,
}
_DOWN_SHIFT = 0.1  # the centre moves down by this share of the side (keypoints lie above the face's middle)

# iBUG 68-point markup (0-based): 30 is the nose tip, 36-41 the person's right eye (left in the image), 42-47
# the left eye, 0 and 16 the ends of the jaw line beside the right and left ears.
_IBUG_NOSE_TIP = 30
_IBUG_RIGHT_EYE = range(36, 42)
_IBUG_LEFT_EYE = range(42, 48)
_IBUG_RIGHT_JAW, _IBUG_LEFT_JAW = 0, 16


@dataclass(frozen=True)
class Face:
    """A person's face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels.
        score: confidence in 0-1 that this is the person's visible face (1.0 for annotated faces).
        landmarks: ``((x, y, confidence), ...)`` in pixels, in the ``convention`` (empty when none).
        convention: a key of :data:`LANDMARK_CONVENTIONS`.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    landmarks: tuple[tuple[float, float, float], ...] = ()
    convention: str = NETWORK_LANDMARKS

    def scaled(self, fx: float, fy: float) -> Face:
        """The same face in another pixel grid: every x multiplied by ``fx``, every y by ``fy``."""
        x1, y1, x2, y2 = self.box
        return Face(
            (x1 * fx, y1 * fy, x2 * fx, y2 * fy),
            self.score,
            tuple((x * fx, y * fy, c) for x, y, c in self.landmarks),
            self.convention,
        )


def _points(keypoints: Any, minimum: int, what: str) -> np.ndarray:
    """Keypoints as a float64 ``(K, 3)`` array (a missing confidence column counts as 1)."""
    pts = np.asarray(keypoints, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3) or pts.shape[0] < minimum:
        raise ValueError(
            f"{what}: expected at least {minimum} points of (x, y[, confidence]), got shape {pts.shape}"
        )
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.ones((pts.shape[0], 1))], axis=1)
    return pts


def face_from_keypoints(
    keypoints: Any,
    person_box: Sequence[float],
    image_size: tuple[int, int] | None = None,
    *,
    keypoint_conf: float = DEFAULT_KEYPOINT_CONF,
    min_size: float = DEFAULT_MIN_FACE,
) -> Face | None:
    """The face box of a person from their COCO keypoints (the rule is in the module docstring).

    Args:
        keypoints: ``(17, 3)`` (or at least the 5 facial rows) ``x, y, confidence`` in pixels; ``(K, 2)`` counts
            every point as seen.
        person_box: the person's ``(x1, y1, x2, y2)`` in the same pixels.
        image_size: ``(width, height)`` of the image, to keep the box inside it; None: the person box only.
        keypoint_conf: confidence from which a keypoint is visible.
        min_size: smallest face box side in pixels.

    Returns:
        The :class:`Face` with its five ``coco5`` landmarks, or None when the person shows no face.
    """
    pts = _points(keypoints, len(FACE_KEYPOINTS), "keypoints")[: len(FACE_KEYPOINTS)]
    finite = np.isfinite(pts).all(axis=1)
    visible = finite & (pts[:, 2] >= keypoint_conf)
    if not (visible[NOSE] or visible[LEFT_EYE] or visible[RIGHT_EYE]) or visible.sum() < 2:
        return None
    side = 0.0
    for pair, ratio in _SIDE_PER_DISTANCE.items():
        a, b = tuple(pair)
        if visible[a] and visible[b]:
            side = max(side, ratio * float(np.hypot(*(pts[a, :2] - pts[b, :2]))))
    if not side >= min_size:  # also catches NaN
        return None
    cx, cy = pts[visible, :2].mean(axis=0)
    cy += _DOWN_SHIFT * side
    px1, py1, px2, py2 = (float(v) for v in person_box)
    x1, y1 = max(cx - side / 2, px1), max(cy - side / 2, py1)
    x2, y2 = min(cx + side / 2, px2), min(cy + side / 2, py2)
    if image_size is not None:
        width, height = image_size
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if not (x2 - x1 >= min_size and y2 - y1 >= min_size):
        return None
    conf = np.where(finite, np.clip(pts[:, 2], 0.0, 1.0), 0.0)
    score = float(np.mean(conf[[NOSE, LEFT_EYE, RIGHT_EYE]]))
    landmarks = tuple(
        (float(x), float(y), float(c)) if ok else (math.nan, math.nan, 0.0)
        for (x, y, _), c, ok in zip(pts, conf, finite, strict=True)
    )
    return Face((float(x1), float(y1), float(x2), float(y2)), score, landmarks, "coco5")


def to_network_landmarks(landmarks: Any, convention: str) -> np.ndarray:
    """Landmarks of any known convention as the five ``coco5`` points ``[x, y, confidence]`` (float32).

    ``coco17`` keeps its first five points; ``ibug68`` gives the nose tip (point 30), the centre of each eye
    (mean of points 42-47 for the left eye, 36-41 for the right; its confidence the lowest of them) and the
    ends of the jaw line (16 and 0) for the left and right ear. No points give five invisible ones (NaN,
    confidence 0).

    Raises:
        ValueError: an unknown convention, or a number of points that is not the convention's.
    """
    if convention not in LANDMARK_CONVENTIONS:
        raise ValueError(
            f"unknown landmark convention {convention!r}; known: {', '.join(LANDMARK_CONVENTIONS)}"
        )
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 3) if len(landmarks) else np.zeros((0, 3))
    if len(pts) == 0:
        out = np.full((5, 3), np.nan)
        out[:, 2] = 0.0
        return out.astype(np.float32)
    if len(pts) != LANDMARK_CONVENTIONS[convention]:
        raise ValueError(
            f"{convention} landmarks have {LANDMARK_CONVENTIONS[convention]} points, got {len(pts)}"
        )
    if convention in ("coco5", "coco17"):
        return pts[:5].astype(np.float32)

    def eye(indices: range) -> list[float]:
        group = pts[list(indices)]
        return [*group[:, :2].mean(axis=0), group[:, 2].min()]

    out = np.array(
        [
            pts[_IBUG_NOSE_TIP],
            eye(_IBUG_LEFT_EYE),
            eye(_IBUG_RIGHT_EYE),
            pts[_IBUG_LEFT_JAW],
            pts[_IBUG_RIGHT_JAW],
        ]
    )
    return out.astype(np.float32)


def landmarks_in_box(landmarks: Any, box: Sequence[float]) -> np.ndarray:
    """Landmarks ``[x, y, confidence]`` in pixels as fractions of ``box`` (0 at its left/top, 1 at its right/bottom).

    This is the frame of a face crop resized to the network's square input: the landmark attention reads its
    points there. Points outside the box get values outside 0-1; confidences are kept.
    """
    pts = np.array(landmarks, dtype=np.float64).reshape(-1, 3)
    x1, y1, x2, y2 = (float(v) for v in box)
    pts[:, 0] = (pts[:, 0] - x1) / max(x2 - x1, 1e-6)
    pts[:, 1] = (pts[:, 1] - y1) / max(y2 - y1, 1e-6)
    return pts.astype(np.float32)
