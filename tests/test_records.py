import json
import math

import numpy as np
import pytest

from emoctx import labels
from emoctx.data.records import (
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
    df["face_x1"] = [1.0, 2.0]  # extra columns (future streams) are preserved
    path = write_records(df, tmp_path / f"val{suffix}")
    back = read_records(path)
    assert list(back.columns[: len(df.columns)]) == list(df.columns)
    r = back.iloc[0]
    assert r["categories"] == ["Happiness", "Doubt/Confusion"]
    assert math.isnan(r["arousal"]) and r["valence"] == 7.0
    assert r["annotator_categories"][1] == ["Happiness", "Doubt/Confusion"]
    assert math.isnan(r["annotator_vad"][1][1]) and r["annotator_vad"][2] == [8.0, 3.0, 5.0]
    assert back["face_x1"].tolist() == [1.0, 2.0]
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
