"""Readers for the three EMOTIC layouts: fixtures are written here in each layout, never taken from the dataset."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from emoctx.data.readers import (
    ConversionReport,
    check_images,
    detect_format,
    read_annotations,
    read_coco,
    read_kaggle,
    read_mat,
)
from emoctx.data.readers.cleaning import image_path_problem
from emoctx.data.readers.files import split_from_name
from emoctx.data.readers.kaggle import parse_numbers
from emoctx.data.records import COLUMNS, validate_records
from emoctx.errors import EmoctxError
from emoctx.labels import CATEGORIES, SLUGS, VAD_NAMES

NAN = float("nan")

# The Kaggle CSVs order their category columns differently from the canonical order; they start like this.
# The rest follow here in reverse canonical order: what matters is that the order is not the canonical one.
_KAGGLE_FIRST = ["Peace", "Affection", "Esteem", "Anticipation", "Engagement"]
KAGGLE_CATEGORY_ORDER = _KAGGLE_FIRST + [c for c in reversed(CATEGORIES) if c not in _KAGGLE_FIRST]


# --------------------------------------------------------------------------------------------------------
# Content: a list of images per split, each with persons. Writers below put the same content in each layout.
# A person: box, categories (the ground truth: combined for val/test), vad, gender, age; val/test persons may
# also carry annotator lists (only the .mat layout stores them).
# --------------------------------------------------------------------------------------------------------


def person(box, categories, vad, gender="Female", age="Adult", annotators=None, annotator_vad=None):
    return dict(
        box=box,
        categories=categories,
        vad=vad,
        gender=gender,
        age=age,
        annotators=annotators,
        annotator_vad=annotator_vad,
    )


def image(filename, persons, folder="mscoco/images", width=640, height=480, source=None):
    return dict(
        filename=filename,
        folder=folder,
        width=width,
        height=height,
        source=source or folder.split("/")[0],
        persons=persons,
    )


def shared_content():
    """Content every layout can hold exactly: boxes inside the image, known names, combined labels."""
    return {
        "train": [
            image(
                "t1.jpg",
                [
                    person([10, 20, 200, 400], ["Peace", "Happiness"], [7, 4, 6]),
                    person([300, 50, 600, 470], ["Doubt/Confusion"], [5, 6, 5], gender="Male", age="Kid"),
                ],
            ),
            image(
                "t2.jpg",
                [person([0, 0, 100, 120], ["Fatigue"], [3, 2, 4], gender="Male", age="Teenager")],
                folder="framesdb/images",
                width=320,
                height=240,
            ),
        ],
        "val": [
            image(
                "v1.jpg",
                [person([5, 5, 50, 60], ["Engagement", "Anticipation"], [6, 7, 6])],
                folder="ade20k/images",
                width=800,
                height=600,
            ),
        ],
        "test": [
            image(
                "s1.jpg",
                [
                    person([1, 2, 30, 40], ["Sadness"], [2, 3, 3]),
                    person([40, 2, 90, 40], ["Suffering", "Pain", "Sadness"], [1, 8, 2], age="Teenager"),
                ],
                folder="emodb_small/images",
                width=100,
                height=50,
            ),
        ],
    }


# -- .mat ------------------------------------------------------------------------------------------------


def struct_array(records):
    """A 1xN MATLAB struct array (numpy record array with object fields): what savemat writes as a struct."""
    keys = list(records[0])
    arr = np.zeros((1, len(records)), dtype=[(k, object) for k in keys])
    for i, r in enumerate(records):
        for k in keys:
            arr[0, i][k] = r[k]
    return arr


def cell(items):
    """A 1xN MATLAB cell array (loadmat with squeeze_me gives a str for one item, an empty array for none)."""
    arr = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        arr[0, i] = x
    return arr


def _vad_struct(vad):
    return dict(zip(VAD_NAMES, (float(v) if v is not None else NAN for v in vad)))


def _mat_person(p, split):
    out = dict(body_bbox=np.array([p["box"]], dtype=float))
    if split == "train":
        out["annotations_categories"] = struct_array([dict(categories=cell(p["categories"]))])
        out["annotations_continuous"] = struct_array([_vad_struct(p["vad"])])
    else:
        annotators = p["annotators"] if p["annotators"] is not None else [p["categories"]]
        annotator_vad = p["annotator_vad"] if p["annotator_vad"] is not None else [p["vad"]]
        out["annotations_categories"] = struct_array([dict(categories=cell(a)) for a in annotators])
        out["combined_categories"] = cell(p["categories"])
        out["annotations_continuous"] = struct_array([_vad_struct(v) for v in annotator_vad])
        out["combined_continuous"] = struct_array([_vad_struct(p["vad"])])
    out["gender"] = p["gender"]
    out["age"] = p["age"]
    return out


def write_mat(path, content):
    data = {}
    for split, images in content.items():
        data[split] = struct_array(
            [
                dict(
                    filename=img["filename"],
                    folder=img["folder"],
                    image_size=struct_array([dict(n_col=float(img["width"]), n_row=float(img["height"]))]),
                    original_database=struct_array(
                        [dict(name=img["source"], info=struct_array([dict(id=1.0)]))]
                    ),
                    person=struct_array([_mat_person(p, split) for p in img["persons"]]),
                )
                for img in images
            ]
        )
    sio.savemat(path, data)
    return Path(path)


# -- COCO-style JSON --------------------------------------------------------------------------------------


def _json_value(v):
    return "None" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_coco(folder, content, box_format="x1y1x2y2"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, images in content.items():
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
        for i, img in enumerate(images):
            doc["images"].append(
                {
                    "id": i,
                    "file_name": img["filename"],
                    "folder": img["folder"],
                    "name": img["source"],
                    "height": img["height"],
                    "width": img["width"],
                }
            )
            for p in img["persons"]:
                x1, y1, x2, y2 = p["box"]
                box = [x1, y1, x2 - x1, y2 - y1] if box_format == "xywh" else [x1, y1, x2, y2]
                doc["annotations"].append(
                    {
                        "id": len(doc["annotations"]),
                        "image_id": i,
                        "category_id": 1,
                        "bbox": box,
                        "annotations_categories": list(p["categories"]),
                        "annotations_continuous": {n: _json_value(v) for n, v in zip(VAD_NAMES, p["vad"])},
                        "gender": p["gender"],
                        "age": p["age"],
                    }
                )
        (folder / f"EMOTIC_{split}_{box_format}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


# -- Kaggle CSV --------------------------------------------------------------------------------------------


def _kaggle_number(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_kaggle(folder, content, drop_columns=()):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = ["Index", "Folder", "Filename", "Image Size", "BBox", "Arr_name", "Crop_name"]
    header += KAGGLE_CATEGORY_ORDER + ["Valence", "Arousal", "Dominance", "Gender", "Age"]
    header = [h for h in header if h not in drop_columns]
    for split, images in content.items():
        with open(folder / f"annot_arrs_{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            n = 0
            for img in images:
                for p in img["persons"]:
                    row = {
                        "Index": n,
                        "Folder": img["folder"],
                        "Filename": img["filename"],
                        # as the mat2py-style conversion writes them: Python lists, [width, height] and x1 y1 x2 y2
                        "Image Size": str([img["width"], img["height"]]),
                        "BBox": str(list(p["box"])),
                        "Arr_name": f"arr_{split}_{n}.npy",
                        "Crop_name": f"crop_{split}_{n}.npy",
                        **{c: int(c in p["categories"]) for c in KAGGLE_CATEGORY_ORDER},
                        "Valence": _kaggle_number(p["vad"][0]),
                        "Arousal": _kaggle_number(p["vad"][1]),
                        "Dominance": _kaggle_number(p["vad"][2]),
                        "Gender": p["gender"],
                        "Age": p["age"],
                    }
                    writer.writerow([row[h] for h in header])
                    n += 1
    return folder


# --------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------

SHARED_FIELDS = [
    "image",
    "width",
    "height",
    "split",
    "person",
    "x1",
    "y1",
    "x2",
    "y2",
    "categories",
    "valence",
    "arousal",
    "dominance",
    "gender",
    "age",
    "source",
]


def _expected_rows(content):
    rows = []
    for split, images in content.items():
        for img in images:
            for k, p in enumerate(img["persons"]):
                rows.append(
                    dict(
                        image=f"{img['folder']}/{img['filename']}",
                        width=img["width"],
                        height=img["height"],
                        split=split,
                        person=k,
                        x1=p["box"][0],
                        y1=p["box"][1],
                        x2=p["box"][2],
                        y2=p["box"][3],
                        categories=[c for c in CATEGORIES if c in p["categories"]],
                        valence=p["vad"][0],
                        arousal=p["vad"][1],
                        dominance=p["vad"][2],
                        gender=p["gender"],
                        age=p["age"],
                        source=img["source"],
                    )
                )
    return rows


def _rows(frames, fields=SHARED_FIELDS):
    out = []
    for df in frames.values():
        out.extend({k: r[k] for k in fields} for r in df.to_dict("records"))
    return out


def test_same_content_in_three_layouts_gives_identical_records(tmp_path):
    content = shared_content()
    sources = {
        "mat": write_mat(tmp_path / "Annotations.mat", content),
        "coco": write_coco(tmp_path / "coco", content),
        "kaggle": write_kaggle(tmp_path / "kaggle" / "annots_arrs", content),
    }
    results = {}
    for fmt, src in sources.items():
        ann = read_annotations(src)
        assert ann.format == fmt
        assert list(ann.splits) == ["train", "val", "test"]
        assert len(ann.report) == 0, [str(e) for e in ann.report]
        for split, df in ann.splits.items():
            validate_records(df, source=f"{fmt}:{split}")
        results[fmt] = _rows(ann.splits)
    expected = _expected_rows(content)
    assert results["mat"] == expected
    assert results["coco"] == expected
    assert results["kaggle"] == expected
    # the parent folder of annots_arrs/ is recognised too
    assert _rows(read_kaggle(tmp_path / "kaggle")) == expected


def test_mat_reads_every_field_by_name(tmp_path):
    content = {
        "train": [
            image(
                "a.jpg",
                [person([10, 20, 200, 400], ["Happiness", "Peace"], [7, 4, 6], gender="Male", age="Kid")],
            )
        ],
        "val": [
            image(
                "b.jpg",
                [
                    person(
                        [1, 2, 30, 40],
                        ["Happiness"],
                        [6, 5, 5],
                        annotators=[
                            ["Happiness", "Pleasure"],
                            ["Happiness"],
                            ["Happiness", "Doubt/Confusion"],
                        ],
                        annotator_vad=[[6, 5, 5], [7, NAN, 4], [5, 5, 6]],
                    ),
                    person([3, 4, 50, 60], ["Fear", "Surprise"], [3, 8, 2], gender="Male", age="Teenager"),
                ],
                folder="ade20k/images",
                width=320,
                height=200,
            )
        ],
    }
    mat = write_mat(tmp_path / "Annotations.mat", content)
    frames = read_mat(mat)
    assert list(frames) == ["train", "val"]
    tr = frames["train"].iloc[0]
    assert tr["image"] == "mscoco/images/a.jpg"
    assert (tr["width"], tr["height"]) == (640, 480)
    assert [tr["x1"], tr["y1"], tr["x2"], tr["y2"]] == [10, 20, 200, 400]
    assert tr["categories"] == ["Happiness", "Peace"]
    assert [tr["valence"], tr["arousal"], tr["dominance"]] == [7, 4, 6]
    assert (tr["gender"], tr["age"], tr["source"]) == ("Male", "Kid", "mscoco")
    assert tr["annotator_categories"] == [] and tr["annotator_vad"] == []

    val = frames["val"]
    assert list(val["person"]) == [0, 1]
    v0 = val.iloc[0]
    assert (v0["width"], v0["height"], v0["source"]) == (320, 200, "ade20k")
    assert v0["categories"] == ["Happiness"]
    assert v0["annotator_categories"] == [
        ["Happiness", "Pleasure"],
        ["Happiness"],
        ["Doubt/Confusion", "Happiness"],
    ]
    assert v0["annotator_vad"][0] == [6, 5, 5]
    assert v0["annotator_vad"][1][0] == 7 and math.isnan(v0["annotator_vad"][1][1])
    assert val.iloc[1]["categories"] == ["Fear", "Surprise"]
    assert val.iloc[1]["annotator_categories"] == [
        ["Fear", "Surprise"]
    ]  # a single annotator squeezed to a struct


def test_mat_squeezed_single_and_empty_entries(tmp_path):
    """One image per split, one person, one annotator, one category, no category: squeeze_me makes scalars."""
    content = {
        "train": [image("one.jpg", [person([1, 1, 20, 20], ["Pain"], [2, 9, 3])])],
        "val": [image("empty.jpg", [person([1, 1, 20, 20], [], [5, 5, 5], annotators=[[]])])],
        "test": [
            image(
                "nan.jpg",
                [person([1, 1, 20, 20], ["Esteem"], [NAN, NAN, NAN], annotator_vad=[[NAN, NAN, NAN]])],
            )
        ],
    }
    mat = write_mat(tmp_path / "Annotations.mat", content)
    loaded = sio.loadmat(mat, struct_as_record=False, squeeze_me=True)
    assert isinstance(loaded["train"].person.annotations_categories.categories, str)  # the case under test
    report = ConversionReport()
    frames = read_mat(mat, report=report)
    assert frames["train"].iloc[0]["categories"] == ["Pain"]
    assert frames["val"].iloc[0]["categories"] == []
    assert frames["val"].iloc[0]["annotator_categories"] == [[]]
    t = frames["test"].iloc[0]
    assert all(math.isnan(t[n]) for n in VAD_NAMES)
    notes = {(e.split, e.action, e.field) for e in report}
    assert ("val", "kept", "categories") in notes  # no category: kept, noted
    assert ("test", "kept", "valence/arousal/dominance") in notes  # NaN V/A/D kept as missing, noted
    for df in frames.values():
        validate_records(df)


def test_mat_repairs_and_drops_are_reported(tmp_path):
    content = {
        "train": [
            image(
                "r.jpg",
                [
                    person([-10, 20, 700, 400], ["Happiness"], [7, 4, 6]),  # past the border: clipped
                    person([100, 100, 100, 200], ["Happiness"], [7, 4, 6]),  # empty: dropped
                    person([700, 10, 800, 50], ["Happiness"], [7, 4, 6]),  # outside: empty after clipping
                    person(
                        [1, 1, 50, 50], ["Happiness", "Joyfulness"], [11, 4, 0]
                    ),  # unknown name, V/A/D range
                    person(
                        [1, 1, 50, 50], ["peace", "doubt_confusion"], [5, 5, 5], gender="female", age="elder"
                    ),
                ],
            ),
            image("zero.jpg", [person([1, 1, 5, 5], ["Peace"], [5, 5, 5])], width=0),
        ],
    }
    mat = write_mat(tmp_path / "Annotations.mat", content)
    report = ConversionReport()
    df = read_mat(mat, report=report)["train"]
    validate_records(df)
    assert list(df["person"]) == [0, 3, 4]  # person indices stay those of the source
    assert df.iloc[0][["x1", "y1", "x2", "y2"]].tolist() == [0, 20, 640, 400]
    assert df.iloc[1]["categories"] == ["Happiness"]
    assert (
        math.isnan(df.iloc[1]["valence"])
        and df.iloc[1]["arousal"] == 4
        and math.isnan(df.iloc[1]["dominance"])
    )
    assert df.iloc[2]["categories"] == ["Doubt/Confusion", "Peace"]  # canonical spelling and order
    assert df.iloc[2]["gender"] == "Female" and pd.isna(df.iloc[2]["age"])

    entries = {(e.image, e.person, e.action, e.field): e for e in report}
    assert all(e.file == str(mat) and e.split == "train" for e in report)
    assert "clipped to [0, 20, 640, 400]" in entries["mscoco/images/r.jpg", 0, "repaired", "box"].reason
    assert "empty or inverted" in entries["mscoco/images/r.jpg", 1, "dropped", "box"].reason
    assert "after clipping" in entries["mscoco/images/r.jpg", 2, "dropped", "box"].reason
    assert "'Joyfulness'" in entries["mscoco/images/r.jpg", 3, "repaired", "categories"].reason
    assert "11 is outside 1-10" in entries["mscoco/images/r.jpg", 3, "repaired", "valence"].reason
    assert "0 is outside" in entries["mscoco/images/r.jpg", 3, "repaired", "dominance"].reason
    assert "'elder'" in entries["mscoco/images/r.jpg", 4, "repaired", "age"].reason
    assert "width" in entries["mscoco/images/zero.jpg", 0, "dropped", "image_size"].reason
    assert report.counts()["dropped"] == 3


def test_mat_errors_name_the_file(tmp_path):
    bad = tmp_path / "Annotations.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + bytes(range(256)) * 4)
    with pytest.raises(EmoctxError, match=r"Annotations\.mat.*cannot read"):
        read_mat(bad)
    good = write_mat(tmp_path / "good.mat", shared_content())
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(EmoctxError, match="truncated.mat"):
        read_mat(truncated)
    only_train = write_mat(tmp_path / "train_only.mat", {"train": shared_content()["train"]})
    with pytest.raises(EmoctxError, match=r"train_only\.mat.*\['test'\]"):
        read_mat(only_train, splits=["train", "test"])
    sio.savemat(tmp_path / "other.mat", {"x": np.ones(3)})
    with pytest.raises(EmoctxError, match=r"other\.mat.*no train/val/test"):
        read_mat(tmp_path / "other.mat")


def test_coco_none_strings_xywh_and_orphans(tmp_path):
    content = {
        "val": [
            image(
                "c.jpg",
                [
                    person([10, 10, 100, 90], ["Sympathy", "Bliss"], [NAN, 5, NAN]),
                    person([-5, 10, 700, 90], ["Yearning"], [4, 4, 4]),
                ],
            )
        ]
    }
    folder = write_coco(tmp_path / "coco", content)
    doc = json.loads((folder / "EMOTIC_val_x1y1x2y2.json").read_text())
    assert doc["annotations"][0]["annotations_continuous"]["valence"] == "None"
    doc["annotations"].append(dict(doc["annotations"][0], id=99, image_id=12345))
    (folder / "EMOTIC_val_x1y1x2y2.json").write_text(json.dumps(doc))
    report = ConversionReport()
    df = read_coco(folder / "EMOTIC_val_x1y1x2y2.json", report=report)["val"]
    validate_records(df)
    assert len(df) == 2
    assert df.iloc[0]["categories"] == ["Sympathy"]
    assert (
        math.isnan(df.iloc[0]["valence"])
        and df.iloc[0]["arousal"] == 5
        and math.isnan(df.iloc[0]["dominance"])
    )
    assert df.iloc[1][["x1", "x2"]].tolist() == [0, 640]
    reasons = [(e.action, e.field, e.reason) for e in report]
    assert ("repaired", "categories", "unknown category name 'Bliss' removed") in reasons
    assert any(a == "dropped" and f == "image_id" and "12345" in r for a, f, r in reasons)
    assert any(a == "kept" and f == "valence/dominance" for a, f, _ in reasons)

    xywh = write_coco(tmp_path / "xywh", shared_content(), box_format="xywh")
    assert _rows(read_coco(xywh)) == _expected_rows(shared_content())


def test_coco_errors(tmp_path):
    bad = tmp_path / "EMOTIC_train.json"
    bad.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(EmoctxError, match=r"EMOTIC_train\.json: not valid JSON"):
        read_coco(bad)
    wrong = tmp_path / "d" / "test.json"
    wrong.parent.mkdir()
    wrong.write_text('{"images": []}', encoding="utf-8")
    with pytest.raises(EmoctxError, match=r"test\.json.*'annotations'"):
        read_coco(wrong.parent)
    noname = tmp_path / "emotic.json"
    noname.write_text('{"images": [], "annotations": []}', encoding="utf-8")
    with pytest.raises(EmoctxError, match="cannot tell which split"):
        read_coco(noname)
    assert read_coco(noname, splits=["test"])["test"].empty


def test_kaggle_columns_by_name_and_cell_formats(tmp_path):
    content = {
        "test": [
            image(
                "k.jpg",
                [
                    person([10, 10, 100, 90], ["Doubt/Confusion", "Peace"], [NAN, 5, 6], gender="Male"),
                    person([20, 30, 500, 470], ["Anger"], [2, 9, 8]),
                ],
            )
        ]
    }
    folder = write_kaggle(tmp_path, content)
    file = folder / "annot_arrs_test.csv"
    with open(file, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][7:12] == _KAGGLE_FIRST and rows[1][3] == "[640, 480]"  # the layout under test
    # other spellings of the same cells: tuples, numpy-style spacing
    rows[2][3], rows[2][4] = "(640, 480)", "[ 20  30 500 470]"
    with open(file, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    report = ConversionReport()
    df = read_kaggle(file, report=report)["test"]
    validate_records(df)
    assert df.iloc[0]["categories"] == ["Doubt/Confusion", "Peace"]
    assert math.isnan(df.iloc[0]["valence"]) and df.iloc[0]["dominance"] == 6
    assert df.iloc[1][["x1", "y1", "x2", "y2"]].tolist() == [20, 30, 500, 470]
    assert (df.iloc[1]["width"], df.iloc[1]["height"]) == (640, 480)
    assert list(df["person"]) == [0, 1] and df.iloc[0]["source"] == "mscoco"
    assert [e.field for e in report] == ["valence"]


def test_kaggle_box_columns_variant_and_bad_cells(tmp_path):
    file = tmp_path / "annot_arrs_train.csv"
    cats = {c: 0 for c in KAGGLE_CATEGORY_ORDER}
    header = [
        "Folder",
        "Filename",
        "Image Size",
        "X_min",
        "Y_min",
        "X_max",
        "Y_max",
        *cats,
        *VAD_NAMES,
        "Gender",
        "Age",
    ]
    header = [h.capitalize() if h in VAD_NAMES else h for h in header]
    good = [
        "mscoco/images",
        "x.jpg",
        "[100, 80]",
        5,
        6,
        150,
        70,
        *(1 if c == "Fear" else 0 for c in cats),
        3,
        7,
        4,
    ]
    bad_size = ["mscoco/images", "y.jpg", "[100]", 5, 6, 50, 70, *cats.values(), 3, 7, 4]
    bad_cat = [
        "mscoco/images",
        "z.jpg",
        "[100, 80]",
        5,
        6,
        50,
        70,
        *(2 if c == "Fear" else 0 for c in cats),
        3,
        7,
        4,
    ]
    with open(file, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in (good, bad_size, bad_cat):
            w.writerow([*r, "Female", "Adult"])
    report = ConversionReport()
    df = read_kaggle(file, report=report)["train"]
    assert list(df["image"]) == ["mscoco/images/x.jpg", "mscoco/images/z.jpg"]
    assert df.iloc[0][["x1", "y1", "x2", "y2"]].tolist() == [5, 6, 100, 70]
    assert df.iloc[0]["categories"] == ["Fear"] and df.iloc[1]["categories"] == []
    by_image = {e.image: e for e in report if e.action != "kept"}
    assert (
        by_image["mscoco/images/x.jpg"].field == "box"
        and by_image["mscoco/images/x.jpg"].action == "repaired"
    )
    assert "'[100]'" in by_image["mscoco/images/y.jpg"].reason
    assert "Fear = '2'" in by_image["mscoco/images/z.jpg"].reason


def test_kaggle_missing_column_names_column_and_file(tmp_path):
    folder = write_kaggle(tmp_path, {"val": shared_content()["val"]}, drop_columns=("Dominance", "Fatigue"))
    with pytest.raises(EmoctxError) as err:
        read_kaggle(folder)
    msg = str(err.value)
    assert "annot_arrs_val.csv" in msg and "'Dominance'" in msg and "'Fatigue'" in msg


def test_parse_numbers_never_evaluates():
    assert parse_numbers("[640, 480]") == [640, 480]
    assert parse_numbers("(1.5, -2, 3e2, 4)") == [1.5, -2, 300, 4]
    assert parse_numbers("640x480") == [640, 480]
    assert math.isnan(parse_numbers("[nan, 3]")[0])
    assert parse_numbers("__import__('os').system('true')") == []


def test_detect_format_and_split_names(tmp_path):
    (tmp_path / "m" / "Annotations").mkdir(parents=True)
    mat = write_mat(tmp_path / "m" / "Annotations" / "Annotations.mat", shared_content())
    assert detect_format(mat) == "mat"
    assert detect_format(tmp_path / "m") == "mat"
    assert detect_format(write_coco(tmp_path / "c", shared_content())) == "coco"
    assert detect_format(write_kaggle(tmp_path / "k" / "annots_arrs", shared_content())) == "kaggle"
    assert detect_format(tmp_path / "k") == "kaggle"
    assert detect_format(tmp_path / "k" / "annots_arrs" / "annot_arrs_val.csv") == "kaggle"
    assert detect_format(tmp_path / "c" / "EMOTIC_val_x1y1x2y2.json") == "coco"
    mixed = write_coco(tmp_path / "k" / "annots_arrs", {"val": shared_content()["val"]})
    with pytest.raises(EmoctxError, match="--format"):
        detect_format(mixed)
    assert list(read_annotations(mixed, fmt="kaggle", splits=["val"]).splits) == ["val"]
    with pytest.raises(EmoctxError, match="no such file"):
        detect_format(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EmoctxError, match="suffix"):
        detect_format(tmp_path / "notes.txt")
    assert split_from_name("EMOTIC_train_x1y1x2y2.json") == "train"
    assert split_from_name("annot_arrs_val.csv") == "val"
    assert split_from_name("validation.json") == "val"
    assert split_from_name("train_test.json") is None
    assert split_from_name("emotic.json") is None


def test_check_images(tmp_path):
    from PIL import Image

    frames = read_mat(write_mat(tmp_path / "Annotations.mat", shared_content()))
    root = tmp_path / "emotic"
    (root / "mscoco" / "images").mkdir(parents=True)
    Image.new("RGB", (640, 480)).save(root / "mscoco" / "images" / "t1.jpg")
    (root / "framesdb" / "images").mkdir(parents=True)
    Image.new("RGB", (240, 320)).save(root / "framesdb" / "images" / "t2.jpg")  # width and height swapped
    check = check_images(frames, root)
    assert check.checked == 4
    assert sorted(check.missing) == ["ade20k/images/v1.jpg", "emodb_small/images/s1.jpg"]
    assert check.size_mismatch == [("framesdb/images/t2.jpg", (320, 240), (240, 320))]
    assert not check.ok


def test_annotation_docs_match_the_code():
    docs = Path(__file__).resolve().parents[1] / "annotations"
    readme = (docs / "README.md").read_text(encoding="utf-8")
    for column in COLUMNS:
        assert f"`{column}`" in readme, f"annotations/README.md does not document column {column!r}"
    table = (docs / "categories.md").read_text(encoding="utf-8")
    rows = [
        line for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    ]
    assert [(r.split("|")[2].strip(), r.split("|")[3].strip(" `")) for r in rows] == list(
        zip(CATEGORIES, SLUGS)
    )


# -- malformed and hostile sources -------------------------------------------------------------------------


def _coco_doc(tmp_path, content=None, split="train"):
    """One split of ``content`` (default: the shared content) as a COCO-style file and its parsed JSON."""
    folder = write_coco(tmp_path / "coco", {split: (content or shared_content())[split]})
    file = folder / f"EMOTIC_{split}_x1y1x2y2.json"
    return file, json.loads(file.read_text())


def test_coco_duplicate_image_id_is_an_error_naming_both_entries(tmp_path):
    file, doc = _coco_doc(tmp_path)
    doc["images"][1]["id"] = doc["images"][0]["id"]  # t2.jpg takes the id of t1.jpg
    file.write_text(json.dumps(doc))
    with pytest.raises(EmoctxError) as err:
        read_coco(file)
    msg = str(err.value)
    assert str(file) in msg and "images[0]" in msg and "images[1]" in msg
    assert "'t1.jpg'" in msg and "'t2.jpg'" in msg and "same 'id' 0" in msg


@pytest.mark.parametrize(
    ("where", "key", "value", "field"),
    [
        ("annotations", "bbox", 5, "box"),
        ("annotations", "bbox", {"x1": 1}, "box"),
        ("annotations", "annotations_categories", 5, "categories"),
        ("annotations", "annotations_categories", {"Peace": 1}, "categories"),
        ("annotations", "image_id", [0], "image_id"),
        ("annotations", "image_id", True, "image_id"),  # would equal id 1: another image's persons
    ],
)
def test_coco_malformed_person_values_are_dropped_with_a_report_entry(tmp_path, where, key, value, field):
    file, doc = _coco_doc(tmp_path)
    doc[where][0][key] = value
    file.write_text(json.dumps(doc))
    report = ConversionReport()
    df = read_coco(file, report=report)["train"]
    validate_records(df)
    assert len(df) == 2  # the two other persons are converted
    (entry,) = report.by_action("dropped")
    assert entry.file == str(file) and entry.field == field
    assert repr(value)[:4] in entry.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            lambda doc: json.dumps(dict(doc, images=[dict(doc["images"][0], id=[0])])),
            r"images\[0\]: 'id' \[0\]",
        ),
        (
            lambda doc: json.dumps(dict(doc, images=[dict(doc["images"][0], id=1.0)])),
            r"images\[0\]: 'id' 1\.0",
        ),
        (lambda doc: "[" * 100_000, "nested too deeply"),
        (lambda doc: '{"images": [' * 50_000, "nested too deeply"),
        (lambda doc: '{"images": [], "annotations": [], "x": ' + "9" * 5000 + "}", "not valid JSON"),
    ],
)
def test_coco_malformed_files_are_clear_errors(tmp_path, text, expected):
    file, doc = _coco_doc(tmp_path)
    file.write_text(text(doc))
    with pytest.raises(EmoctxError, match=expected) as err:
        read_coco(file)
    assert str(file) in str(err.value)


def test_bool_and_string_values_are_not_numbers(tmp_path):
    """``bbox: "1234"`` is not [1, 2, 3, 4] and ``valence: true`` is not 1, in every layout that can hold them."""
    file, doc = _coco_doc(tmp_path)
    doc["annotations"][0]["bbox"] = "1234"
    doc["annotations"][1]["annotations_continuous"]["valence"] = True
    doc["annotations"][2]["bbox"] = [True, 0, 100, 120]
    file.write_text(json.dumps(doc))
    report = ConversionReport()
    df = read_coco(file, report=report)["train"]
    validate_records(df)
    assert [(r["image"], r["person"]) for r in df.to_dict("records")] == [("mscoco/images/t1.jpg", 1)]
    assert math.isnan(df.iloc[0]["valence"]) and df.iloc[0]["arousal"] == 6
    entries = {(e.person, e.action, e.field): e.reason for e in report if e.image == "mscoco/images/t1.jpg"}
    assert "'1234' is not a list of four numbers" in entries[0, "dropped", "box"]
    assert "True is not a number" in entries[1, "repaired", "valence"]
    assert any(e.action == "dropped" and e.field == "box" and "True" in e.reason for e in report)


@pytest.mark.parametrize(
    "name",
    ["../../../../etc/passwd", "a/../../b.jpg", "x\x00.jpg", "\x1b[2Jx.jpg", "", 5],
)
def test_coco_image_paths_must_stay_under_the_root(tmp_path, name):
    file, doc = _coco_doc(tmp_path)
    doc["images"][0]["file_name"] = name
    file.write_text(json.dumps(doc))
    report = ConversionReport()
    df = read_coco(file, report=report)["train"]
    assert list(df["image"]) == ["framesdb/images/t2.jpg"]  # the other image is converted
    dropped = report.by_action("dropped")
    assert [e.person for e in dropped] == [0, 1] and {e.field for e in dropped} == {"file_name"}
    assert all("\x00" not in e.image and "\x1b" not in e.image for e in dropped)  # names escaped for printing


def test_mat_and_kaggle_image_paths_must_stay_under_the_root(tmp_path):
    content = {"train": [image("../../../etc/passwd", [person([1, 1, 20, 20], ["Pain"], [2, 9, 3])])]}
    content["train"] += shared_content()["train"]
    for read in (
        lambda r: read_mat(write_mat(tmp_path / "a.mat", content), report=r),
        lambda r: read_kaggle(write_kaggle(tmp_path / "k", content), report=r),
    ):
        report = ConversionReport()
        df = read(report)["train"]
        assert not any(".." in img for img in df["image"]) and len(df) == 3
        (entry,) = report.by_action("dropped")
        assert "leaves the images root" in entry.reason and entry.field == "file_name"
    assert image_path_problem("C:/Windows/win.ini") == "the image path leaves the images root"
    assert image_path_problem("mscoco/images/a..b.jpg") is None


def test_duplicate_persons_are_kept_and_listed_in_every_layout(tmp_path):
    twin = person([10, 20, 200, 400], ["Peace", "Happiness"], [7, 4, 6])
    content = {
        "test": [
            image(
                "dup.jpg",
                [
                    twin,
                    dict(twin, annotators=[["Peace"], ["Happiness", "Peace"]]),  # only the .mat holds these
                    person([10, 20, 200, 400], ["Peace"], [7, 4, 6]),
                ],
            ),
            image("other.jpg", [dict(twin)]),  # the same person in another image is not a duplicate
        ]
    }
    sources = {
        "mat": write_mat(tmp_path / "Annotations.mat", content),
        "coco": write_coco(tmp_path / "coco", content),
        "kaggle": write_kaggle(tmp_path / "kaggle", content),
    }
    for fmt, src in sources.items():
        ann = read_annotations(src)
        assert len(ann.splits["test"]) == 4, fmt  # kept
        notes = [(e.image, e.person, e.action, e.field, e.reason) for e in ann.report]
        assert notes == [
            (
                "mscoco/images/dup.jpg",
                1,
                "kept",
                "person",
                "duplicate of person 0 (same box, categories, V/A/D, gender and age)",
            )
        ], fmt


def test_mat_read_in_a_child_process_gives_the_same_records_and_report(tmp_path):
    content = shared_content()
    content["val"].append(
        image(
            "odd.jpg",
            [
                person(
                    [-5, 2, 30, 40],
                    ["Esteem", "Glee"],
                    [NAN, 5, 11],
                    annotators=[["Esteem"], ["Esteem", "Fear"]],
                    annotator_vad=[[NAN, 5, 4], [3, 12, 4]],
                    gender="female",
                    age="elder",
                )
            ],
            width=100,
            height=50,
        )
    )
    content["test"] = [image("gone.jpg", [person([5, 5, 5, 9], ["Fear"], [3, 3, 3])])]  # a split left empty
    mat = write_mat(tmp_path / "Annotations.mat", content)
    here, child = ConversionReport(), ConversionReport()
    frames_here = read_mat(mat, report=here, isolate=False)
    frames_child = read_mat(mat, report=child)
    assert here.entries == child.entries and len(here) > 3
    assert list(frames_child) == ["train", "val", "test"] and frames_child["test"].empty
    for split in frames_here:
        pd.testing.assert_frame_equal(frames_here[split], frames_child[split])


def test_mat_reader_crash_is_an_error_naming_the_file(tmp_path, monkeypatch):
    from emoctx.data.readers import mat as mat_module

    mat = write_mat(tmp_path / "Annotations.mat", shared_content())
    # the child dies the way scipy's compiled reader does on some damaged files
    monkeypatch.setattr(mat_module, "_CHILD_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(EmoctxError, match=r"Annotations\.mat: .*crashed on it \(SIGSEGV\)"):
        read_mat(mat)
    monkeypatch.setattr(mat_module, "_CHILD_CODE", "import sys; sys.exit(3)")
    with pytest.raises(EmoctxError, match=r"Annotations\.mat: .*exit status 3"):
        read_mat(mat)


def crashing_mat(path):
    """A small .mat file that crashes scipy's reader (SIGSEGV, scipy 1.17): the complex flag set on a double
    held in a struct, with no imaginary part in the file."""
    import io

    buf = io.BytesIO()
    sio.savemat(buf, {"train": {"a": 1.0, "b": 2.0}})
    data = bytearray(buf.getvalue())
    flags = data.index(bytes([6, 0, 0, 0, 8, 0, 0, 0, 6]), 128)  # array flags (miUINT32, 8 bytes) of a double
    data[flags + 9] |= 0x08  # complex
    Path(path).write_bytes(data)
    return Path(path)


def test_mat_file_that_crashes_scipy_is_reported_and_this_process_survives(tmp_path):
    import subprocess
    import sys

    bad = crashing_mat(tmp_path / "Annotations.mat")
    probe = subprocess.run(
        [sys.executable, "-c", f"import scipy.io as s; s.loadmat({str(bad)!r}, squeeze_me=True)"],
        capture_output=True,
        check=False,
    )
    if probe.returncode >= 0:
        pytest.skip(f"this scipy does not crash on the damaged file (exit status {probe.returncode})")
    with pytest.raises(EmoctxError, match=r"Annotations\.mat: .*crashed on it \(SIG"):
        read_mat(bad)


def test_kaggle_row_longer_than_the_header_is_an_error(tmp_path):
    folder = write_kaggle(tmp_path, {"val": shared_content()["val"]})
    file = folder / "annot_arrs_val.csv"
    lines = file.read_text().splitlines()
    file.write_text("\n".join([lines[0]] + [line + ",extra" for line in lines[1:]]) + "\n")
    with pytest.raises(EmoctxError, match=r"annot_arrs_val\.csv: a row has more cells than the header"):
        read_kaggle(file)


def _png_header(path, width, height):
    """A PNG file that declares ``width`` x ``height`` pixels (header and an empty data chunk: enough to open)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    )


def test_check_images_reports_decompression_bombs_and_checks_the_rest(tmp_path):
    from PIL import Image

    frames = read_mat(write_mat(tmp_path / "Annotations.mat", shared_content()), isolate=False)
    root = tmp_path / "emotic"
    for folder in ("mscoco", "framesdb"):
        (root / folder / "images").mkdir(parents=True)
    _png_header(root / "mscoco" / "images" / "t1.jpg", 20_000, 20_000)  # over twice Pillow's pixel limit
    Image.new("RGB", (320, 240)).save(root / "framesdb" / "images" / "t2.jpg")
    check = check_images(frames, root)
    assert check.checked == 4
    assert [img for img, _ in check.unreadable] == ["mscoco/images/t1.jpg"]
    assert "too large to decode safely" in check.unreadable[0][1]
    assert sorted(check.missing) == ["ade20k/images/v1.jpg", "emodb_small/images/s1.jpg"]
    assert check.size_mismatch == []
    escaping = pd.DataFrame({"image": ["../outside.jpg"], "width": [10], "height": [10]})
    (tmp_path / "outside.jpg").write_bytes(b"")
    assert check_images(escaping, root).unreadable == [
        ("../outside.jpg", "the image path leaves the images root")
    ]


def test_coco_image_listed_twice_is_noted(tmp_path):
    file, doc = _coco_doc(tmp_path)
    doc["images"].append(dict(doc["images"][1], id=7))  # t2.jpg again, under another id
    doc["annotations"].append(
        dict(doc["annotations"][2], id=9, image_id=7, bbox=[5, 5, 50, 50], annotations_categories=["Fear"])
    )
    file.write_text(json.dumps(doc))
    report = ConversionReport()
    df = read_coco(file, report=report)["train"]
    assert len(df) == 4
    (entry,) = list(report)
    assert (entry.image, entry.person, entry.action) == ("framesdb/images/t2.jpg", 0, "kept")
    assert "listed more than once" in entry.reason
