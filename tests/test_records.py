import json
import math

import numpy as np
import pytest

from emoctx import labels
from emoctx.data.records import (
    COLUMNS,
    RecordError,
    category_matrix,
    read_records,
    records_frame,
    vad_matrix,
    validate_records,
    write_records,
)
from emoctx.io import jsonable


def _row(**kw):
    row = dict(
        image="mscoco/images/a.jpg",
        width=640,
        height=480,
        split="val",
        person=0,
        x1=10,
        y1=20,
        x2=200,
        y2=400,
        categories=["Happiness", "Doubt/Confusion"],
        valence=7.0,
        arousal=float("nan"),
        dominance=5.0,
        annotator_categories=[["Happiness"], ["Happiness", "Doubt/Confusion"], ["Doubt/Confusion"]],
        annotator_vad=[[7.0, 4.0, 5.0], [6.0, float("nan"), 5.0], [8.0, 3.0, 5.0]],
        gender="Female",
        age="Adult",
        source="mscoco",
    )
    row.update(kw)
    return row


def test_labels_are_consistent():
    assert len(labels.CATEGORIES) == labels.NUM_CATEGORIES == len(set(labels.SLUGS))
    assert labels.slugify("Doubt/Confusion") == "doubt_confusion"
    assert labels.canonical_category("doubt_confusion") == "Doubt/Confusion"
    assert labels.canonical_category("HAPPINESS") == "Happiness"
    assert labels.canonical_category("joy") is None
    for v in (1.0, 5.5, 10.0):
        assert labels.vad_from_model(labels.vad_to_model(v)) == pytest.approx(v)
    assert labels.vad_to_model(1.0) == 0.0 and labels.vad_to_model(10.0) == 1.0
    assert labels.vad_points_to_model(1.0) == pytest.approx(1 / 9)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip_keeps_every_field(tmp_path, suffix):
    df = records_frame([_row(), _row(person=1, split="train", annotator_categories=[], annotator_vad=[])])
    df["det_score"] = [0.5, 0.75]  # extra columns are preserved
    path = write_records(df, tmp_path / f"val{suffix}")
    back = read_records(path)
    assert list(back.columns[: len(df.columns)]) == list(df.columns)
    r = back.iloc[0]
    assert r["categories"] == ["Happiness", "Doubt/Confusion"]
    assert math.isnan(r["arousal"]) and r["valence"] == 7.0
    assert r["annotator_categories"][1] == ["Happiness", "Doubt/Confusion"]
    assert math.isnan(r["annotator_vad"][1][1]) and r["annotator_vad"][2] == [8.0, 3.0, 5.0]
    assert back["det_score"].tolist() == [0.5, 0.75]
    assert back.iloc[1]["annotator_categories"] == []
    m = category_matrix(back)
    assert m.shape == (2, labels.NUM_CATEGORIES)
    assert m[0, labels.CATEGORY_INDEX["Happiness"]] == 1 and m[0].sum() == 2
    assert np.isnan(vad_matrix(back)[0, 1])


def test_validation_names_file_entry_and_field(tmp_path):
    df = records_frame([_row(), _row(person=1, x2=700, categories=["Joy"], valence=11.0, split="dev")])
    with pytest.raises(RecordError) as e:
        write_records(df, tmp_path / "bad.parquet")
    msg = str(e.value)
    assert "bad.parquet" in msg and "entry 1" in msg
    for field in ("'x1..y2'", "'categories'", "'valence'", "'split'"):
        assert field in msg
    assert "Joy" in msg
    assert not (tmp_path / "bad.parquet").exists()


def test_image_paths_that_leave_the_root_are_refused_as_the_readers_refuse_them(tmp_path):
    """Records edited by hand are checked like converted ones: no '..', drive letter or control character."""
    bad = ["../outside.jpg", "mscoco/../../etc/passwd", "C:/Windows/win.ini", "images/a\nb.jpg"]
    df = records_frame(
        [_row(person=i, image=path) for i, path in enumerate(bad)] + [_row(image="a..b/c..d.jpg")]
    )
    with pytest.raises(RecordError) as e:
        validate_records(df, source="edited.jsonl")
    msg = str(e.value)
    for i in range(3):
        assert f"entry {i} " in msg
    assert msg.count("field 'image': the image path leaves the images root") == 3
    assert "entry 3 " in msg and "control characters" in msg
    assert "entry 4 " not in msg  # '..' inside a name is not a parent folder
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps(jsonable(_row(image="../outside.jpg"))) + "\n")  # edited by hand
    with pytest.raises(RecordError, match="edited.jsonl: entry 0 .*leaves the images root"):
        read_records(path)


def test_missing_column_is_reported():
    df = records_frame([_row()]).drop(columns=["x2"])
    with pytest.raises(RecordError, match="missing required column"):
        validate_records(df, source="x.parquet")


def test_bad_jsonl_line_names_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"image": "a.jpg"}\nnot json\n')
    with pytest.raises(RecordError, match="line 2"):
        read_records(p)


def test_empty_records_round_trip(tmp_path):
    path = write_records(records_frame([]), tmp_path / "empty.parquet")
    back = read_records(path)
    assert len(back) == 0 and list(back.columns) == list(records_frame([_row()]).columns)


def test_missing_optional_text_is_none(tmp_path):
    df = records_frame([_row(gender=None, age=float("nan"), source=None)])
    back = read_records(write_records(df, tmp_path / "r.parquet"))
    assert back.loc[0, "gender"] is None and back.loc[0, "age"] is None and back.loc[0, "source"] is None


def _face(**kw):
    """A record with a face: its box, score, five landmarks (the fourth unseen) and an expression."""
    nan = float("nan")
    face = dict(
        face_x1=60.0, face_y1=20.0, face_x2=140.0, face_y2=100.0, face_score=0.9,
        face_landmarks=[[100, 60, 0.9], [115, 50, 0.9], [85, 50, 0.9], [nan, nan, 0.0], [70, 55, 0.6]],
        face_landmark_convention="coco5", expression="Happy",
    )  # fmt: skip
    face.update(kw)
    return _row(**face)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_face_columns_round_trip(tmp_path, suffix):
    nan = float("nan")
    no_face = dict(face_x1=nan, face_y1=nan, face_x2=nan, face_y2=nan, face_score=nan, face_landmarks=[],
                   face_landmark_convention=None, expression=None)  # fmt: skip
    df = records_frame([_face(extra_note="x"), _row(person=1, **no_face)])
    face_columns = ["face_x1", "face_y1", "face_x2", "face_y2", "face_score", "face_landmarks"]
    face_columns += ["face_landmark_convention", "expression"]
    assert list(df.columns) == [*COLUMNS, *face_columns, "extra_note"]  # typed columns first, in schema order
    back = read_records(write_records(df, tmp_path / f"val{suffix}"))
    assert list(back.columns) == list(df.columns)
    first, second = back.iloc[0], back.iloc[1]
    assert (first["face_x1"], first["face_y2"], first["face_score"]) == (60.0, 100.0, pytest.approx(0.9))
    assert first["face_landmarks"][0] == pytest.approx([100, 60, 0.9])
    assert np.isnan(first["face_landmarks"][3][:2]).all() and first["face_landmarks"][3][2] == 0.0
    assert first["face_landmark_convention"] == "coco5" and first["expression"] == "Happy"
    assert math.isnan(second["face_x1"]) and second["face_landmarks"] == [] and second["expression"] is None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(tmp_path / "val.parquet")
        assert str(schema.field("face_landmarks").type) == "list<element: list<element: float>>"
        assert str(schema.field("face_x1").type) == "float"
    # records without faces get no face columns
    assert not any(c.startswith("face") for c in records_frame([_row()]).columns)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (dict(face_x2=float("nan")), "face_x1..face_y2", "face box has missing values"),
        (dict(face_x2=50.0), "face_x1..face_y2", "face box is empty or inverted"),
        (dict(face_y2=500.0), "face_x1..face_y2", "extends outside the 640x480 image"),
        (dict(face_score=1.5), "face_score", "outside 0-1"),
        (dict(face_landmarks=[[1, 2, 1.0]] * 4), "face_landmarks", "coco5 has 5 points, found 4"),
        (dict(face_landmarks=[[1, 2, 2.0]] * 5), "face_landmarks", "point 0"),
        (
            dict(face_landmarks=[[float("nan"), 2, 0.5]] * 5),
            "face_landmarks",
            "NaN x, y only with confidence 0",
        ),
        (dict(face_landmark_convention="dlib"), "face_landmark_convention", "must be one of"),
        (
            dict(face_landmark_convention=None),
            "face_landmark_convention",
            "landmarks without their convention",
        ),
        (dict(face_landmarks=[]), "face_landmark_convention", "given without landmarks"),
        (dict(expression="Joy"), "expression", "must be one of"),
    ],
)
def test_face_columns_are_validated(tmp_path, change, field, message):
    df = records_frame([_face(), _face(person=1, **change)])
    with pytest.raises(RecordError) as err:
        write_records(df, tmp_path / "faces.parquet")
    text = str(err.value)
    assert "entry 1 " in text and f"field '{field}'" in text and message in text and "entry 0 " not in text
    assert not (tmp_path / "faces.parquet").exists()


def test_face_parts_need_the_face_box(tmp_path):
    nan = float("nan")
    no_box = dict(face_x1=nan, face_y1=nan, face_x2=nan, face_y2=nan)
    for extra, message in ((dict(face_landmarks=[], face_landmark_convention=None), r"a face score \(0.9\) without"),
                           (dict(face_score=nan), "landmarks without a face box")):  # fmt: skip
        with pytest.raises(RecordError, match=message):
            validate_records(records_frame([_face(**no_box, **extra)]))
    # a face box without landmarks or score, and an expression without any face, are fine
    validate_records(records_frame([_face(face_score=nan, face_landmarks=[], face_landmark_convention=None)]))
    validate_records(records_frame([_row(expression="Contempt")]))
    with pytest.raises(RecordError, match=r"all four of \['face_x1'"):
        validate_records(records_frame([_row(face_x1=1.0, face_y1=1.0)]))
