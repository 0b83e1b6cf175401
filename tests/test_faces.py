"""Face boxes from pose keypoints, and the landmark conventions (emoctx.faces)."""

import math

import numpy as np
import pytest

from emoctx.faces import (
    COCO_KEYPOINTS,
    Face,
    face_from_keypoints,
    landmarks_in_box,
    to_network_landmarks,
)

PERSON = (100.0, 50.0, 300.0, 600.0)


def keypoints(face: dict[str, tuple[float, float, float]]) -> np.ndarray:
    """17 COCO keypoints: the given facial ones, the body ones below them, invisible unless given."""
    pts = np.zeros((17, 3))
    pts[:, :2] = (200.0, 400.0)
    for name, value in face.items():
        pts[COCO_KEYPOINTS.index(name)] = value
    return pts


FRONTAL = keypoints(
    {
        "nose": (200, 120, 0.95),
        "left_eye": (215, 105, 0.9),  # the person's left eye: on the right of the image
        "right_eye": (185, 105, 0.9),
        "left_ear": (235, 112, 0.8),
        "right_ear": (165, 112, 0.8),
    }
)


def _contains(box, points):
    x1, y1, x2, y2 = box
    return all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in points)


def test_frontal_face_is_a_loose_square_around_the_face():
    face = face_from_keypoints(FRONTAL, PERSON, (640, 640))
    assert isinstance(face, Face) and face.convention == "coco5" and len(face.landmarks) == 5
    x1, y1, x2, y2 = face.box
    # side: 3.5 x the 30 px between the eyes = 1.5 x the 70 px between the ears = 105 px (the largest estimate)
    assert x2 - x1 == pytest.approx(105.0) and y2 - y1 == pytest.approx(105.0)
    assert (x1 + x2) / 2 == pytest.approx(200.0)  # centred on the facial keypoints' mean x
    # ... and on their mean y (110.8) moved down by a tenth of the side
    assert (y1 + y2) / 2 == pytest.approx(110.8 + 10.5)
    assert _contains(face.box, FRONTAL[:5, :2])
    assert face.score == pytest.approx((0.95 + 0.9 + 0.9) / 3)  # nose and eyes; the ears do not count
    assert face.landmarks[1] == pytest.approx((215.0, 105.0, 0.9))  # left eye, in pixels


def test_profile_has_a_face_sized_by_the_visible_side():
    profile = keypoints(
        {
            "nose": (180, 120, 0.9),  # looking to the left of the image
            "right_eye": (195, 106, 0.85),
            "right_ear": (240, 110, 0.85),
            "left_eye": (190, 106, 0.2),  # hidden behind the nose
            "left_ear": (200, 110, 0.05),
        }
    )
    face = face_from_keypoints(profile, PERSON)
    assert face is not None
    x1, y1, x2, y2 = face.box
    # the eyes are not both seen: the eye-ear and nose-ear distances give the size (and agree); the
    # nose-eye distance, foreshortened in a profile, gives less
    nose_eye, eye_ear, nose_ear = 4.4 * math.hypot(15, 14), 2.8 * math.hypot(45, 4), 2.1 * math.hypot(60, 10)
    assert abs(eye_ear - nose_ear) < 2 and nose_eye < 0.75 * eye_ear
    assert x2 - x1 == pytest.approx(max(nose_eye, eye_ear, nose_ear))
    assert _contains(face.box, [(180, 120), (195, 106), (240, 110)])
    frontal = face_from_keypoints(FRONTAL, PERSON)
    assert face.score < frontal.score  # the far eye is hidden
    assert face.landmarks[3][2] == pytest.approx(0.05)  # invisible points keep their confidence


@pytest.mark.parametrize(
    "facial",
    [
        # a back view: the ears are seen, the nose and eyes are not
        {"nose": (200, 120, 0.1), "left_eye": (215, 105, 0.2), "right_eye": (185, 105, 0.2),
         "left_ear": (165, 112, 0.9), "right_ear": (235, 112, 0.9)},
        # one point alone says nothing of the face's size
        {"nose": (200, 120, 0.9)},
        # no facial keypoint at all
        {},
    ],
)  # fmt: skip
def test_no_face_for_back_views_and_single_points(facial):
    assert face_from_keypoints(keypoints(facial), PERSON) is None


def test_tiny_person_has_no_face():
    scale = 0.08  # the frontal person shrunk to 16 x 44 px: a face of 8 px
    small = FRONTAL.copy()
    small[:, :2] *= scale
    person = tuple(v * scale for v in PERSON)
    assert face_from_keypoints(small, person) is None
    face = face_from_keypoints(small, person, min_size=4)  # the minimum is a parameter
    assert face is not None and face.box[2] - face.box[0] == pytest.approx(105.0 * scale)


def test_face_is_clamped_to_the_person_and_the_image():
    # the person is cut by the left border of the image: their face reaches beyond it
    shifted = FRONTAL.copy()
    shifted[:, 0] -= 170.0  # nose at x = 30
    person = (0.0, 50.0, 130.0, 600.0)
    face = face_from_keypoints(shifted, person, (640, 480))
    assert face is not None
    x1, y1, x2, y2 = face.box
    assert x1 == 0.0 and x2 == pytest.approx(30 + 52.5)  # cut at the border; the right edge is where it was
    assert y2 - y1 == pytest.approx(105.0) and x2 - x1 < y2 - y1  # no longer square
    # the person box cuts it too (a box that starts at the chin line)
    face = face_from_keypoints(FRONTAL, (100.0, 150.0, 300.0, 600.0))
    assert face is not None and face.box[1] == 150.0
    # and a face left with a sliver inside the person box is no face
    assert face_from_keypoints(FRONTAL, (100.0, 170.0, 300.0, 600.0)) is None


def test_keypoints_without_confidence_and_with_nan():
    assert face_from_keypoints(FRONTAL[:, :2], PERSON) is not None  # (K, 2): every point seen
    broken = FRONTAL.copy()
    broken[[0, 1], 0] = np.nan  # nose and left eye unknown: right eye and the ears remain
    face = face_from_keypoints(broken, PERSON)
    assert face is not None and math.isnan(face.landmarks[0][0]) and face.landmarks[0][2] == 0.0
    with pytest.raises(ValueError, match="at least 5 points"):
        face_from_keypoints(np.zeros((3, 3)), PERSON)


def test_face_scaled_moves_every_coordinate():
    face = face_from_keypoints(FRONTAL, PERSON)
    half = face.scaled(0.5, 0.25)
    assert half.box == pytest.approx(tuple(v * f for v, f in zip(face.box, (0.5, 0.25, 0.5, 0.25))))
    assert half.landmarks[0] == pytest.approx((100.0, 30.0, 0.95)) and half.score == face.score


def test_landmark_conventions_to_the_network_points():
    coco = to_network_landmarks(FRONTAL, "coco17")
    assert coco.shape == (5, 3) and coco.dtype == np.float32 and coco[1, 0] == 215
    ibug = np.zeros((68, 3))
    ibug[:, 2] = 1.0
    ibug[30] = (100, 120, 0.9)  # nose tip
    ibug[36:42, :2] = (80, 100)  # the person's right eye: left in the image
    ibug[42:48, :2] = (120, 100)
    ibug[44, 2] = 0.5
    ibug[0, :2], ibug[16, :2] = (60, 105), (140, 105)  # ends of the jaw line
    points = to_network_landmarks(ibug, "ibug68")
    assert points.tolist() == [
        pytest.approx([100, 120, 0.9]),
        pytest.approx([120, 100, 0.5]),  # left eye: its points' mean, its lowest confidence
        pytest.approx([80, 100, 1.0]),
        pytest.approx([140, 105, 1.0]),
        pytest.approx([60, 105, 1.0]),
    ]
    none = to_network_landmarks([], "ibug68")
    assert np.isnan(none[:, 0]).all() and (none[:, 2] == 0).all()
    with pytest.raises(ValueError, match="ibug68 landmarks have 68 points, got 5"):
        to_network_landmarks(np.zeros((5, 3)), "ibug68")
    with pytest.raises(ValueError, match="unknown landmark convention"):
        to_network_landmarks(np.zeros((5, 3)), "dlib")


def test_landmarks_in_box_are_fractions_of_the_crop():
    inside = landmarks_in_box([[150, 100, 0.7], [250, 300, 1.0]], (100, 100, 300, 300))
    assert inside.tolist() == [pytest.approx([0.25, 0.0, 0.7]), pytest.approx([0.75, 1.0, 1.0])]
