"""`emoctx convert` end to end through cli.main, on annotation files written by the tests."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_readers import image, person, shared_content, write_coco, write_kaggle, write_mat

from emoctx.cli import main
from emoctx.data.records import read_records
from emoctx.labels import CATEGORIES


def _content_with_problems():
    content = shared_content()
    content["train"].append(
        image(
            "bad.jpg",
            [
                person([-20, 10, 900, 300], ["Happiness", "Glee"], [7, 4, 6]),  # clipped + unknown name
                person([50, 50, 40, 80], ["Peace"], [5, 5, 5]),  # inverted box: dropped
                person([10, 10, 60, 60], ["Peace"], [float("nan"), 3, 12]),  # NaN kept, 12 set to missing
            ],
        )
    )
    return content


def test_convert_mat_end_to_end(tmp_path, capsys):
    mat = write_mat(tmp_path / "Annotations.mat", _content_with_problems())
    out = tmp_path / "out"
    assert main(["convert", str(mat), "--out", str(out), "--jsonl"]) == 0
    text = capsys.readouterr().out

    frames = {s: read_records(out / f"{s}.parquet") for s in ("train", "val", "test")}
    assert [len(frames[s]) for s in ("train", "val", "test")] == [5, 1, 2]
    assert len(read_records(out / "train.jsonl")) == 5
    train = frames["train"]
    bad = train[train["image"] == "mscoco/images/bad.jpg"]
    assert list(bad["person"]) == [0, 2]
    assert bad.iloc[0][["x1", "x2"]].tolist() == [0, 640] and bad.iloc[0]["categories"] == ["Happiness"]
    assert (
        pd.isna(bad.iloc[1]["valence"]) and pd.isna(bad.iloc[1]["dominance"]) and bad.iloc[1]["arousal"] == 3
    )

    assert "mat layout): 5 images, 8 persons" in text
    table = {
        line.split()[0]: line.split()[1:]
        for line in text.splitlines()
        if line.split()[:1] in (["train"], ["val"], ["test"])
    }
    # images, persons, dropped, repairs, persons with a missing V/A/D value
    assert table == {
        "train": ["3", "5", "1", "3", "1"],
        "val": ["1", "1", "0", "0", "0"],
        "test": ["1", "2", "0", "0", "0"],
    }
    assert "Report: 1 dropped, 3 repaired, 1 kept with a note" in text
    assert (
        "[dropped] train mscoco/images/bad.jpg person 1: box: box [50, 50, 40, 80] is empty or inverted"
        in text
    )
    assert "clipped to [0, 10, 640, 300]" in text
    assert "unknown category name 'Glee' removed" in text
    assert "12 is outside 1-10; set to missing" in text
    happiness = next(line for line in text.splitlines() if line.startswith("Happiness "))
    assert happiness.split()[1:5] == ["2", "0", "0", "2"]  # train, val, test, total
    assert all(any(line.startswith(c + " ") for line in text.splitlines()) for c in CATEGORIES)

    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    assert len(report) == 5
    assert {r["action"] for r in report} == {"dropped", "repaired", "kept"}
    assert all(r["file"] == str(mat) for r in report)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_convert_images_root_reports_missing(tmp_path, capsys):
    from PIL import Image

    src = write_coco(tmp_path / "coco", shared_content())
    root = tmp_path / "emotic"
    (root / "mscoco" / "images").mkdir(parents=True)
    Image.new("RGB", (640, 480)).save(root / "mscoco" / "images" / "t1.jpg")
    out = tmp_path / "out"
    assert (
        main(["convert", str(src), "--out", str(out), "--images-root", str(root), "--splits", "train", "val"])
        == 0
    )
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "conversion_report.jsonl",
        "train.parquet",
        "val.parquet",
    ]
    assert "3 checked, 2 missing" in text
    assert "missing: framesdb/images/t2.jpg" in text and "missing: ade20k/images/v1.jpg" in text
    assert "missing: mscoco/images/t1.jpg" not in text
    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in report if r["field"] == "image") == [
        "ade20k/images/v1.jpg",
        "framesdb/images/t2.jpg",
    ]


def test_convert_kaggle_with_explicit_format(tmp_path, capsys):
    src = write_kaggle(tmp_path / "annots_arrs", shared_content())
    out = tmp_path / "out"
    assert main(["convert", str(src), "--format", "kaggle", "--out", str(out), "--splits", "test"]) == 0
    assert "kaggle layout): 1 images, 2 persons" in capsys.readouterr().out
    assert list(read_records(out / "test.parquet")["categories"]) == [
        ["Sadness"],
        ["Pain", "Sadness", "Suffering"],
    ]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda d: write_kaggle(d, {"val": shared_content()["val"]}, drop_columns=("BBox",)),
            "annot_arrs_val.csv",
        ),
        (
            lambda d: (
                (d / "Annotations.mat").write_bytes(b"\x00not a mat file" * 20) and d / "Annotations.mat"
            ),
            "Annotations.mat",
        ),
    ],
)
def test_convert_errors_are_clear(tmp_path, capsys, make, expected):
    src = make(tmp_path)
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emoctx convert: error:") and expected in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written when the source is bad


def test_convert_skips_a_split_left_empty(tmp_path, capsys):
    content = {
        "val": shared_content()["val"],
        "test": [image("x.jpg", [person([5, 5, 5, 9], ["Fear"], [3, 3, 3])])],
    }
    src = write_coco(tmp_path / "coco", content)
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no persons left in split 'test'" in text
    assert sorted(p.name for p in out.iterdir()) == ["conversion_report.jsonl", "val.parquet"]


def _coco_file(tmp_path, mutate):
    src = write_coco(tmp_path / "coco", {"val": shared_content()["val"] + shared_content()["train"]})
    file = src / "EMOTIC_val_x1y1x2y2.json"
    doc = json.loads(file.read_text())
    text = mutate(doc)
    file.write_text(text if isinstance(text, str) else json.dumps(doc))
    return file


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda doc: doc["images"][2].update(id=doc["images"][0]["id"]),
            "images[0] ('v1.jpg') and images[2]",
        ),
        (lambda doc: doc["images"][1].update(id=[0]), "images[1]: 'id' [0] is not an integer"),
        (lambda doc: "[" * 100_000, "nested too deeply"),
    ],
)
def test_convert_malformed_coco_is_one_line_error(tmp_path, capsys, mutate, expected):
    file = _coco_file(tmp_path, mutate)
    out = tmp_path / "out"
    assert main(["convert", str(file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emoctx convert: error: {file}: ") and expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_convert_mat_that_crashes_scipy_is_one_line_error(tmp_path, capfd):
    from test_readers import crashing_mat

    bad = crashing_mat(tmp_path / "Annotations.mat")
    out = tmp_path / "out"
    assert main(["convert", str(bad), "--out", str(out)]) == 2  # this process is still here to answer
    err = capfd.readouterr().err
    assert err.startswith(f"emoctx convert: error: {bad}: cannot read as a MATLAB .mat file")
    assert "Traceback" not in err and not out.exists()


def test_convert_reports_duplicates_and_refused_values(tmp_path, capsys):
    def mutate(doc):
        anns = doc["annotations"]
        anns.append(dict(anns[1], id=100))  # t1.jpg person 0 once more
        anns[0]["annotations_continuous"]["valence"] = True  # v1.jpg
        anns[2]["bbox"] = "1234"  # t1.jpg person 1
        doc["images"][2]["file_name"] = "../../../../etc/passwd"  # t2.jpg

    file = _coco_file(tmp_path, mutate)
    out = tmp_path / "out"
    assert main(["convert", str(file), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    val = read_records(out / "val.parquet")
    assert [(r["image"], r["person"]) for r in val.to_dict("records")] == [
        ("ade20k/images/v1.jpg", 0),
        ("mscoco/images/t1.jpg", 0),
        ("mscoco/images/t1.jpg", 2),
    ]
    assert pd.isna(val.iloc[0]["valence"])
    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    got = {(r["image"], r["person"], r["action"], r["field"]) for r in report}
    assert ("mscoco/images/t1.jpg", 2, "kept", "person") in got  # the duplicate, kept and listed
    assert ("mscoco/images/t1.jpg", 1, "dropped", "box") in got
    assert ("ade20k/images/v1.jpg", 0, "repaired", "valence") in got
    assert ("framesdb/images/../../../../etc/passwd", 0, "dropped", "file_name") in got
    assert "duplicate of person 0" in text and "leaves the images root" in text


def test_convert_images_root_survives_a_decompression_bomb(tmp_path, capsys):
    from PIL import Image
    from test_readers import _png_header

    src = write_coco(tmp_path / "coco", shared_content())
    root = tmp_path / "emotic"
    for folder in ("mscoco", "framesdb"):
        (root / folder / "images").mkdir(parents=True)
    _png_header(root / "mscoco" / "images" / "t1.jpg", 20_000, 20_000)
    Image.new("RGB", (320, 240)).save(root / "framesdb" / "images" / "t2.jpg")
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out), "--images-root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "4 checked, 2 missing, 1 unreadable, 0 with another size" in text
    assert "unreadable: mscoco/images/t1.jpg (image too large to decode safely" in text
    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    assert [r["image"] for r in report if "too large" in r["reason"]] == ["mscoco/images/t1.jpg"]
