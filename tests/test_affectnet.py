"""The AffectNet reader: its CSV layout to canonical records with faces, expressions and V/A on 1-10."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emoctx.cli import main
from emoctx.data.readers import detect_format, read_affectnet, read_annotations
from emoctx.data.readers.affectnet import COLUMNS, in_val_share
from emoctx.data.records import read_records, validate_records
from emoctx.errors import EmoctxError

HEADER = list(COLUMNS)


def landmarks(x0=40.0, y0=30.0, n=68):
    """68 points ``x;y;...`` inside a face at (x0, y0): point k at (x0 + k % 10, y0 + k // 10)."""
    return ";".join(f"{x0 + k % 10:.2f};{y0 + k // 10:.2f}" for k in range(n))


def row(path, x=30, y=20, w=60, h=70, marks=None, expression=1, valence=0.5, arousal=-0.25):
    return [path, x, y, w, h, landmarks() if marks is None else marks, expression, valence, arousal]


@pytest.fixture
def affectnet(tmp_path):
    """AffectNet's own layout: the two file lists beside the images folder."""
    images = tmp_path / "Manually_Annotated_Images"
    for name, size in {
        "1/a.jpg": (160, 120),
        "1/b.png": (100, 100),
        "2/c.jpg": (200, 150),
        "3/v.jpg": (90, 90),
    }.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, "gray").save(images / name)
    (images / "2" / "text.jpg").write_text("not an image")
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    training = [
        row("1/a.jpg"),  # 0: a happy face
        row(
            "1/b.png", x=70, y=-5, w=50, h=40, expression=8, valence=0.1, arousal=0.0
        ),  # 1: past the border; None
        row("2/c.jpg", expression=9, valence=-2, arousal=-2),  # 2: Uncertain, not rated
        row("2/c.jpg", expression=10, valence=-2, arousal=-2),  # 3: No-Face: dropped
        row(
            "1/a.jpg", x=10, marks="1;2;3;4;5", expression=0, valence=1.7, arousal=1
        ),  # 4: bad marks, valence
        row("9/missing.jpg"),  # 5: no such image: dropped
        row("../escape.jpg"),  # 6: leaves the images folder: dropped
        row("1/a.jpg", x=5, expression="x", valence=-1, arousal=0.75),  # 7: not an expression code
        row("2/c.jpg", w="abc"),  # 8: the box is not numbers: dropped
        row("2/text.jpg"),  # 9: not an image: dropped
        row("1/b.png", marks=""),  # 10: no landmarks
    ]
    pd.DataFrame(training, columns=HEADER).to_csv(lists / "training.csv", index=False)
    pd.DataFrame([row("3/v.jpg", x=10, y=10, w=50, h=50, expression=7)], columns=HEADER).to_csv(
        lists / "validation.csv", index=False
    )
    return tmp_path


def by_person(df, image, person):
    return df[(df["image"] == image) & (df["person"] == person)].iloc[0]


def test_affectnet_rows_become_face_records(affectnet):
    ann = read_annotations(affectnet / "Manually_Annotated_file_lists", val_share=0.0)
    assert ann.format == "affectnet" and set(ann.splits) == {"train", "test"}
    train, test = ann.splits["train"], ann.splits["test"]
    for df in (train, test):
        validate_records(df)
    assert (
        len(train) == 6 and len(test) == 1
    )  # 11 rows: No-Face, missing, escaping, not numbers, not an image
    happy = by_person(train, "1/a.jpg", 0)
    assert (happy["x1"], happy["y1"], happy["x2"], happy["y2"]) == (30, 20, 90, 90)
    assert (happy["face_x1"], happy["face_y1"], happy["face_x2"], happy["face_y2"]) == (30, 20, 90, 90)
    assert happy["face_score"] == 1.0 and (happy["width"], happy["height"]) == (160, 120)
    assert happy["expression"] == "Happy" and happy["categories"] == []
    assert happy["valence"] == pytest.approx(5.5 + 4.5 * 0.5) and happy["arousal"] == pytest.approx(
        5.5 - 4.5 / 4
    )
    assert math.isnan(happy["dominance"]) and happy["source"] == "affectnet"
    assert happy["face_landmark_convention"] == "ibug68" and len(happy["face_landmarks"]) == 68
    assert happy["face_landmarks"][13] == pytest.approx([43.0, 31.0, 1.0])
    clipped = by_person(train, "1/b.png", 0)
    assert (clipped["y1"], clipped["face_y1"], clipped["expression"]) == (
        0,
        0,
        None,
    )  # None class: no expression
    assert clipped["valence"] == pytest.approx(5.95)
    unrated = by_person(train, "2/c.jpg", 0)
    assert math.isnan(unrated["valence"]) and math.isnan(unrated["arousal"]) and unrated["expression"] is None
    odd = by_person(train, "1/a.jpg", 1)
    assert odd["face_landmarks"] == [] and odd["face_landmark_convention"] is None
    assert math.isnan(odd["valence"]) and odd["arousal"] == 10.0 and odd["expression"] == "Neutral"
    assert by_person(train, "1/a.jpg", 2)["expression"] is None
    assert by_person(train, "1/a.jpg", 2)["valence"] == 1.0
    assert by_person(train, "1/b.png", 1)["face_landmarks"] == []
    assert test.iloc[0]["expression"] == "Contempt" and test.iloc[0]["split"] == "test"

    entries = {(e.image, e.person, e.action, e.field): e.reason for e in ann.report}
    assert "No-Face" in entries["2/c.jpg", 1, "dropped", "expression"]
    assert "not found under" in entries["9/missing.jpg", 0, "dropped", "image"]
    assert "cannot be opened" in entries["2/text.jpg", 0, "dropped", "image"]
    assert "leaves the images root" in entries["../escape.jpg", 0, "dropped", "file_name"]
    assert "not four finite numbers" in entries["2/c.jpg", 2, "dropped", "box"]
    assert "clipped" in entries["1/b.png", 0, "repaired", "box"]
    assert "not 68 points" in entries["1/a.jpg", 1, "repaired", "face_landmarks"]
    assert "1.7 is outside -1..1" in entries["1/a.jpg", 1, "repaired", "valence"]
    assert "not an AffectNet expression code" in entries["1/a.jpg", 2, "repaired", "expression"]
    assert "missing in the source" in entries["2/c.jpg", 0, "kept", "valence/arousal"]
    # no note on every face for what AffectNet never has
    assert not [e for e in ann.report if e.field in ("categories", "dominance")]


def test_val_share_is_a_stable_part_of_the_training_images(affectnet):
    folder = affectnet / "Manually_Annotated_file_lists"
    whole = read_affectnet(folder, val_share=0.0)["train"]
    split = read_affectnet(folder, val_share=0.5)
    assert set(split) == {"train", "val", "test"}
    train, val = split["train"], split["val"]
    assert len(train) + len(val) == len(whole) and len(val) > 0 and len(train) > 0
    assert not set(train["image"]) & set(val["image"])  # the faces of one image stay together
    assert all(in_val_share(image, 0.5) for image in val["image"]) and set(val["split"]) == {"val"}
    again = read_affectnet(folder, val_share=0.5)
    assert again["val"]["image"].tolist() == val["image"].tolist()
    only_val = read_affectnet(folder, splits=["val"], val_share=0.5)
    assert list(only_val) == ["val"] and only_val["val"]["image"].tolist() == val["image"].tolist()
    with pytest.raises(EmoctxError, match="val share must be in"):
        read_affectnet(folder, val_share=1.0)


def test_affectnet_layout_detection(affectnet, tmp_path):
    folder = affectnet / "Manually_Annotated_file_lists"
    assert detect_format(folder) == "affectnet" and detect_format(affectnet) == "affectnet"
    assert detect_format(folder / "training.csv") == "affectnet"  # by its header, not its suffix
    kaggle = tmp_path / "annot_arrs_train.csv"
    kaggle.write_text("Folder,Filename,Image Size,BBox\n")
    assert detect_format(kaggle) == "kaggle"
    # a copy elsewhere finds no images folder: a clear error naming what to pass
    elsewhere = tmp_path / "copies" / "lists"
    elsewhere.mkdir(parents=True)
    (elsewhere / "validation.csv").write_bytes((folder / "validation.csv").read_bytes())
    with pytest.raises(EmoctxError, match="pass the folder of the images with --images-root"):
        read_affectnet(elsewhere / "validation.csv")
    test = read_affectnet(elsewhere / "validation.csv", images_root=affectnet / "Manually_Annotated_Images")[
        "test"
    ]
    assert len(test) == 1
    bad = elsewhere / "training.csv"
    pd.DataFrame([["1/a.jpg", 1, 2]], columns=["subDirectory_filePath", "face_x", "face_y"]).to_csv(
        bad, index=False
    )
    with pytest.raises(EmoctxError, match=r"missing column\(s\) \['face_width'"):
        read_affectnet(bad, images_root=affectnet / "Manually_Annotated_Images")


def test_convert_command_writes_affectnet_records(affectnet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["convert", str(affectnet / "Manually_Annotated_file_lists"), "--val-share", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "affectnet layout" in out and "Expression frequencies" in out
    happy_line = next(line for line in out.splitlines() if line.startswith("Happy"))
    assert happy_line.split()[1:3] == ["2", "0"]  # train 2 (the happy face and one more), test 0
    train = read_records(tmp_path / "annotations" / "affectnet" / "train.parquet")
    assert len(train) == 6 and np.isclose(train["face_score"], 1.0).all()
    assert (tmp_path / "annotations" / "affectnet" / "conversion_report.jsonl").is_file()
    assert not (tmp_path / "annotations" / "emotic").exists()
    status = main(["convert", str(affectnet), "--format", "kaggle", "--val-share", "0.1"])
    assert status == 2 and "a val share is for AffectNet only" in capsys.readouterr().err
