"""The annotation workflow without a server: labelling config, tasks (records, prediction table, photos with a
detector or a box file), Label Studio's export to records (a real export captured from Label Studio 1.23.2 in
tests/data/label_studio_export.json, and every validation error), the combination rule and the agreement
report. The round trip through a real Label Studio is in test_annotate_labelstudio.py."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emoctx import labels
from emoctx.annotate import tasks as T
from emoctx.annotate.agreement import agreement_report, report_markdown
from emoctx.annotate.config import PER_REGION_CONTROLS, labelling_config
from emoctx.annotate.export import Answer, combine, convert_export, read_export, split_for
from emoctx.annotate.server import LabelStudioServer, default_environment_dir, read_accounts
from emoctx.cli import main
from emoctx.data.records import read_records, records_frame, write_records
from emoctx.errors import EmoctxError
from emoctx.inference.detect import UltralyticsDetector
from emoctx.inference.results import COLUMNS, PROB_COLUMNS
from emoctx.inference.writers import read_prediction_table, write_predictions
from emoctx.inference.yolo_weights import import_ultralytics

GOLDEN = Path(__file__).parent / "data" / "label_studio_export.json"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets():
    return import_ultralytics().utils.ASSETS


@pytest.fixture()
def photos(tmp_path, assets):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(assets / "bus.jpg", root / "bus.jpg")  # 810 x 1080
    shutil.copy(assets / "zidane.jpg", root / "sub" / "zidane.jpg")  # 1280 x 720
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


# ------------------------------------------------------------------------------------------------ config
def test_config_is_xml_naming_every_category_with_per_person_controls():
    root = ET.fromstring(labelling_config())
    assert root.tag == "View"
    image = root.find("Image")
    assert image.get("name") == "image" and image.get("value") == "$image"
    boxes = root.find("RectangleLabels")
    assert boxes.get("name") == "person" and [lab.get("value") for lab in boxes] == ["Person"]
    controls = {el.get("name"): el for el in root.iter() if el.get("perRegion") is not None}
    assert set(controls) == set(PER_REGION_CONTROLS)
    for el in controls.values():
        assert el.get("perRegion") == "true" and el.get("toName") == "image" and el.get("required") == "true"
    cats = controls["categories"]
    assert cats.tag == "Choices" and cats.get("choice") == "multiple"
    assert [c.get("value") for c in cats] == list(labels.CATEGORIES)
    assert [c.get("hint") for c in cats] == [labels.CATEGORY_DEFINITIONS[c] for c in labels.CATEGORIES]
    for name in labels.VAD_NAMES:
        el = controls[name]
        assert (el.tag, el.get("min"), el.get("max"), el.get("step")) == ("Number", "1", "10", "1")
    assert [c.get("value") for c in controls["gender"]] == list(labels.GENDERS)
    assert [c.get("value") for c in controls["age"]] == list(labels.AGES)
    assert controls["gender"].get("choice") == "single-radio"
    # the per-person controls show while a box is selected
    per = next(v for v in root.iter("View") if v.get("visibleWhen") == "region-selected")
    assert cats in list(per)

    rating = ET.fromstring(labelling_config("rating", hints=False))
    stars = [el for el in rating.iter("Rating")]
    assert [el.get("name") for el in stars] == list(labels.VAD_NAMES)
    assert all(el.get("maxRating") == "10" for el in stars)
    assert all(c.get("hint") is None for c in rating.iter("Choice"))
    with pytest.raises(EmoctxError, match="V/A/D style"):
        labelling_config("slider")


def test_category_definitions_are_the_documented_ones():
    rows = [
        [p.strip() for p in line.strip().strip("|").split("|")]
        for line in (REPO / "annotations" / "categories.md").read_text().splitlines()
        if re.match(r"^\| \d+ \|", line)
    ]
    assert [r[1] for r in rows] == list(labels.CATEGORIES)
    assert {r[1]: r[3] for r in rows} == labels.CATEGORY_DEFINITIONS


def test_config_command_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "config.xml"
    assert main(["annotate", "config", "--out", str(out)]) == 0
    assert ET.parse(out).getroot().tag == "View"
    assert main(["annotate", "config", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["annotate", "config", "--out", str(out), "--overwrite", "--vad-style", "rating"]) == 0
    assert "Rating" in out.read_text()


# ------------------------------------------------------------------------------------------------- tasks
def _records():
    base = {"width": 640, "height": 480, "valence": 7.0, "arousal": 4.0, "dominance": 6.0}
    return records_frame(
        [
            {**base, "image": "a/1.jpg", "split": "val", "person": 0, "x1": 64, "y1": 48, "x2": 192, "y2": 432,
             "categories": ["Happiness"], "gender": "Female", "age": "Adult", "source": "mscoco"},
            {**base, "image": "a/1.jpg", "split": "val", "person": 2, "x1": 320, "y1": 0, "x2": 640, "y2": 480,
             "categories": ["Peace", "Esteem"], "valence": float("nan")},
            {**base, "image": "b.jpg", "split": "test", "person": 0, "x1": 0, "y1": 0, "x2": 10, "y2": 10,
             "categories": []},
        ]
    )  # fmt: skip


def test_tasks_from_records_keep_person_index_split_and_lock_boxes():
    photos = T.photos_from_records(_records())
    assert [(p.image, p.split, [q.person for q in p.persons]) for p in photos] == [
        ("a/1.jpg", "val", [0, 2]),
        ("b.jpg", "test", [0]),
    ]
    task = T.make_task(photos[0], "photos", "records:x", lock_boxes=True)
    data = task["data"]
    assert data["image"] == "/data/local-files/?d=photos/a/1.jpg"
    assert (data["emoctx_image"], data["emoctx_width"], data["emoctx_height"]) == ("a/1.jpg", 640, 480)
    assert data["emoctx_regions"] == {"p0": 0, "p2": 2} and data["emoctx_split"] == "val"
    assert data["emoctx_source"] == "mscoco"
    (pred,) = task["predictions"]
    assert pred["model_version"] == "records:x"
    boxes = [r for r in pred["result"] if r["type"] == "rectanglelabels"]
    assert [b["id"] for b in boxes] == ["p0", "p2"] and all(b["readonly"] for b in boxes)
    geometry = {k: v for k, v in boxes[0]["value"].items() if k != "rectanglelabels"}
    assert geometry == pytest.approx({"x": 10.0, "y": 10.0, "width": 20.0, "height": 80.0, "rotation": 0})
    assert boxes[0]["value"]["rectanglelabels"] == ["Person"]
    assert (boxes[0]["original_width"], boxes[0]["original_height"]) == (640, 480)
    assert len(pred["result"]) == 2  # boxes only: a new annotator does not see earlier answers

    labelled = T.make_task(T.photos_from_records(_records(), with_labels=True)[0], "photos", "r")
    items = {(r["id"], r["from_name"]): r["value"] for r in labelled["predictions"][0]["result"]}
    assert items["p0", "categories"]["choices"] == ["Happiness"]
    assert items["p0", "valence"]["number"] == 7 and items["p0", "gender"]["choices"] == ["Female"]
    assert ("p2", "valence") not in items  # missing V/A/D is not suggested
    assert items["p2", "categories"]["choices"] == ["Esteem", "Peace"]
    assert "readonly" not in labelled["predictions"][0]["result"][0]


def test_box_percent_round_trip():
    box = (12.5, 40.0, 300.25, 479.0)
    assert T.box_from_percent(T.box_to_percent(box, 640, 480), 640, 480) == pytest.approx(box)


def _prediction_rows(root):
    def row(source, person, box, cats=(), vad=(6.4, 3.5, 8.2), frame=-1, error=None, score=0.9):
        r = {c: None for c in COLUMNS}
        r.update(source=str(source), frame=frame, person=person, det_score=score, width=810, height=1080,
                 categories=list(cats), model="model.safetensors@abc123", error=error)  # fmt: skip
        r.update(dict(zip(("x1", "y1", "x2", "y2"), box)))
        r.update({p: 0.1 for p in PROB_COLUMNS})
        r["p_happiness"], r["p_engagement"] = 0.8, 0.6
        r.update(dict(zip(labels.VAD_NAMES, vad)))
        return r

    return [
        row(root / "bus.jpg", 0, (50, 400, 250, 900), cats=["Engagement", "Happiness"]),
        row(root / "bus.jpg", 1, (220, 400, 350, 860), vad=(float("nan"), 5.0, 5.0)),
        row(root / "broken.jpg", None, (None,) * 4, error="cannot read image"),
        row(root / "clip.mp4", 0, (1, 1, 5, 5), frame=3),
        row("/elsewhere/x.jpg", 0, (1, 1, 5, 5)),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_tasks_from_a_prediction_table(tmp_path, photos, suffix):
    table = write_predictions(_prediction_rows(photos), tmp_path / f"table{suffix}")
    found, skipped, model = T.photos_from_predictions(read_prediction_table(table), photos)
    assert model == "model.safetensors@abc123"
    assert [(p.image, p.width, p.height, [q.person for q in p.persons]) for p in found] == [
        ("bus.jpg", 810, 1080, [0, 1])
    ]
    reasons = " | ".join(f"{s.source}: {s.reason}" for s in skipped)
    assert "broken.jpg: prediction error: cannot read image" in reasons
    assert "video frame 3" in reasons and "not inside the photo folder" in reasons
    task = T.make_task(found[0], photos.name, model)
    pred = task["predictions"][0]
    assert pred["model_version"] == model and pred["score"] == pytest.approx(0.9)
    items = {(r["id"], r["from_name"]): r for r in pred["result"]}
    assert items["p0", "categories"]["value"]["choices"] == ["Engagement", "Happiness"]
    assert items["p0", "categories"]["score"] == pytest.approx(0.7)  # mean probability of the suggested ones
    assert [items["p0", n]["value"]["number"] for n in labels.VAD_NAMES] == [6, 4, 8]  # half up: 3.5 -> 4
    assert ("p1", "valence") not in items and items["p1", "arousal"]["value"]["number"] == 5
    assert ("p1", "categories") not in items  # no category above its threshold: nothing suggested
    assert items["p0", "person"]["score"] == pytest.approx(0.9) and "readonly" not in items["p0", "person"]
    boxes_only, _, _ = T.photos_from_predictions(read_prediction_table(table), photos, suggestions=False)
    result = T.make_task(boxes_only[0], photos.name, model)["predictions"][0]["result"]
    assert {r["type"] for r in result} == {"rectanglelabels"}


def _person_yolo():
    """ultralytics' real YOLO code path from its YAML (random weights; the person bias raised so boxes come out)."""
    detector = UltralyticsDetector("yolo11n.yaml", conf=0.25, imgsz=160)
    with torch.no_grad():
        for branch in detector.model.model.model[-1].cv3:
            branch[-1].bias[0] = 6.0
    return detector


def test_tasks_from_photos_with_the_yolo_detector(photos):
    paths = [str(photos / "bus.jpg"), str(photos / "sub" / "zidane.jpg"), str(photos / "broken.jpg")]
    found, skipped = T.photos_from_files(paths, photos, _person_yolo(), batch_size=2)
    assert [(p.image, p.width, p.height) for p in found] == [
        ("bus.jpg", 810, 1080),
        ("sub/zidane.jpg", 1280, 720),
    ]
    assert found[0].persons and all(p.score is not None for p in found[0].persons)
    for p in found[0].persons:  # pixels of the full-resolution photo, inside it
        x1, y1, x2, y2 = p.box
        assert 0 <= x1 < x2 <= 810 and 0 <= y1 < y2 <= 1080
    assert [p.person for p in found[0].persons] == list(range(len(found[0].persons)))
    assert [s.source for s in skipped] == [str(photos / "broken.jpg")] and "cannot read image" in skipped[
        0
    ].reason


def test_tasks_command_with_a_box_file(tmp_path, photos, capsys):
    boxes = tmp_path / "boxes.csv"
    pd.DataFrame(
        [
            {"image": "bus.jpg", "x1": 50, "y1": 400, "x2": 250, "y2": 900},
            {"image": "bus.jpg", "x1": 700, "y1": 400, "x2": 900, "y2": 900},  # past the right edge: clipped
            {"image": "sub/zidane.jpg", "x1": 100, "y1": 50, "x2": 600, "y2": 700},
        ]
    ).to_csv(boxes, index=False)
    out = tmp_path / "tasks.json"
    code = main(
        ["annotate", "tasks", str(photos), "--boxes", str(boxes), "--out", str(out), "--split", "val"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "Wrote 2 tasks (3 persons" in printed and "broken.jpg" in printed and "cannot read image" in printed
    )
    tasks = json.loads(out.read_text())
    assert [t["data"]["emoctx_image"] for t in tasks] == ["bus.jpg", "sub/zidane.jpg"]
    assert all(t["data"]["emoctx_split"] == "val" for t in tasks)
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=photos/sub/zidane.jpg"
    clipped = tasks[0]["predictions"][0]["result"][1]["value"]
    assert clipped["x"] + clipped["width"] == pytest.approx(100.0)
    assert main(["annotate", "tasks", str(photos), "--boxes", str(boxes), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "annotate",
                "tasks",
                str(photos / "bus.jpg"),
                "--boxes",
                str(boxes),
                "--out",
                str(tmp_path / "t2.json"),
            ]
        )
        == 2
    )
    assert "--root" in capsys.readouterr().err


def test_tasks_command_from_records(tmp_path, capsys):
    recs = write_records(_records(), tmp_path / "val.parquet")
    out = tmp_path / "tasks.json"
    assert (
        main(["annotate", "tasks", "--records", str(recs), "--root", str(tmp_path), "--out", str(out)]) == 0
    )
    tasks = json.loads(out.read_text())
    assert [t["data"]["emoctx_split"] for t in tasks] == ["val", "test"]
    assert all(r.get("readonly") for t in tasks for r in t["predictions"][0]["result"])


# ------------------------------------------------------------------------------------------------ export
def test_golden_export_to_records():
    conv = convert_export(read_export(GOLDEN), source=GOLDEN)
    ann = conv.annotations
    assert (conv.tasks, conv.annotations_used, conv.annotators) == (3, 4, ["user 1", "user 2"])
    assert list(ann.splits) == ["train"]
    df = ann.splits["train"]
    assert list(zip(df["image"], df["person"], df["ls_region"])) == [
        ("imgs/img1.jpg", 0, "p0"),
        ("imgs/img1.jpg", 1, "p1"),
        ("imgs/img1.jpg", 2, "U91H3R9r8p"),  # task 3 shows the same photo: its person gets a new index
        ("imgs/img2.jpg", 0, "q0"),
    ]
    p0, p1, drawn, q0 = df.to_dict("records")
    # 15.625 % x 640 = 100, 16.67 % x 480 = 80, 25 % x 640 = 160 wide, 70.83 % x 480 = 340 high
    assert [p0[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx([100, 80, 260, 420])
    assert (p0["width"], p0["height"], q0["width"], q0["height"]) == (640, 480, 800, 600)
    assert [q0[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx([125, 100, 325, 525], abs=1e-3)
    # two annotators: kept per annotator and combined (majority of two = both; V/A/D mean rounded half up)
    assert p0["annotators"] == ["user 1", "user 2"]
    assert p0["annotator_vad"] == [[8, 6, 6], [7, 6, 6]] and p0["valence"] == 8.0  # (8 + 7) / 2 = 7.5 -> 8
    assert p1["annotator_categories"] == [["Doubt/Confusion"], ["Annoyance", "Doubt/Confusion"]]
    assert p1["categories"] == ["Doubt/Confusion"]
    assert (p0["gender"], p0["age"], p1["gender"], p1["age"]) == ("Female", "Adult", "Male", "Teenager")
    # one annotator: that annotator's labels, per-annotator lists empty (as EMOTIC's train split)
    assert drawn["categories"] == ["Fatigue", "Sadness"] and drawn["annotator_categories"] == []
    assert (drawn["valence"], drawn["arousal"], drawn["dominance"], drawn["age"]) == (2, 3, 4, "Kid")
    assert [str(e) for e in ann.report] == [
        "[repaired] train imgs/img1.jpg person 2: person: task 3: the photo is also in task 1, which has a "
        "person 0; this one (region U91H3R9r8p) is person 2 (label_studio_export.json)"
    ]


def test_export_command_writes_a_layout_train_reads(tmp_path, capsys):
    out = tmp_path / "photos" / "annotations"
    assert (
        main(
            [
                "annotate",
                "export",
                str(GOLDEN),
                "--out",
                str(out),
                "--split-ratios",
                "50",
                "50",
                "0",
                "--jsonl",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "label-studio layout" in printed and "3 tasks, 4 annotations by 2 annotator(s)" in printed
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    splits = {split_for(img, [50, 50, 0]) for img in ("imgs/img1.jpg", "imgs/img2.jpg")}
    assert written == sorted(
        [*(f"{s}.parquet" for s in splits), *(f"{s}.jsonl" for s in splits), "conversion_report.jsonl"]
    )
    total = sum(len(read_records(out / f"{s}.parquet")) for s in splits)
    assert total == 4
    for s in splits:  # every person of an image in one split, the split column says which
        assert set(read_records(out / f"{s}.parquet")["split"]) == {s}
    from emoctx.data.datamodule import EmotionDataModule

    dm = EmotionDataModule(root=str(tmp_path / "photos"))
    assert {
        s
        for s in ("train", "val", "test")
        if (s == "train" or dm.records_path(s)) and (out / f"{s}.parquet").exists()
    } == splits
    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    assert len(report) == 1 and report[0]["action"] == "repaired"
    assert (
        main(["annotate", "export", str(GOLDEN), "--out", str(out)]) == 2
    )  # nothing replaced without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_split_for_is_stable_and_follows_the_ratios():
    images = [f"img/{i:04d}.jpg" for i in range(3000)]
    splits = [split_for(i, [80, 10, 10]) for i in images]
    assert splits == [split_for(i, [8, 1, 1]) for i in images]  # scale-free, deterministic
    share = {s: splits.count(s) / len(images) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["val"] == pytest.approx(0.1, abs=0.02)
    assert {split_for(i, [0, 0, 1]) for i in images[:50]} == {"test"}
    with pytest.raises(EmoctxError, match="three non-negative"):
        split_for("a.jpg", [1, 1])


def _box(rid, x=10.0, y=10.0, w=20.0, h=50.0, size=(640, 480), rotation=0):
    return {"id": rid, "type": "rectanglelabels", "from_name": "person", "to_name": "image",
            "original_width": size[0], "original_height": size[1], "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": ["Person"]}}  # fmt: skip


def _ans(rid, name, kind, value):
    return {
        "id": rid,
        "type": kind,
        "from_name": name,
        "to_name": "image",
        "value": {"x": 10, "y": 10, kind: value},
    }


def _full(rid, cats=("Happiness",), vad=(7, 5, 6), gender="Female", age="Adult", **box):
    return [
        _box(rid, **box),
        _ans(rid, "categories", "choices", list(cats)),
        *(_ans(rid, n, "number", v) for n, v in zip(labels.VAD_NAMES, vad)),
        _ans(rid, "gender", "choices", [gender]),
        _ans(rid, "age", "choices", [age]),
    ]


def _task(tid, annotations, image=None, **data):
    image = image or f"{tid}.jpg"
    return {"id": tid, "data": {"image": f"/data/local-files/?d=photos/{image}", "emoctx_image": image,
            "emoctx_width": 640, "emoctx_height": 480, **data}, "annotations": annotations, "drafts": []}  # fmt: skip


def _annotation(aid, user, result, **extra):
    return {"id": aid, "completed_by": user, "result": result, "was_cancelled": False, **extra}


def test_every_validation_error_names_task_annotation_and_region():
    bad_values = _full(
        "p0", cats=("Happiness", "Joy", "happiness"), vad=(42, 5.5, "7"), gender="Nope", age="Adult"
    )
    bad_values[-1]["value"]["choices"] = ["Kid", "Adult"]  # two ages
    tasks = [
        _task(1, [_annotation(11, 1, bad_values)], emoctx_regions={"p0": 0}),
        _task(
            2,
            [
                _annotation(
                    21,
                    1,
                    [
                        *_full("p0", x=90.0, w=20.0),  # past the right edge: clipped
                        *_full("p1", x=120.0),  # entirely outside: dropped
                        *_full("p2", w=0.0),  # empty: dropped
                        *_full("p3", x=50.0, rotation=90),  # rotated: bounding box
                        _ans("p9", "valence", "number", 5),  # an answer without a box: dropped
                        _ans("p0", "mood", "choices", ["good"]),  # not a control of the config: ignored
                        _box("p4"),  # a box without answers: kept, noted
                        _box("p5", x="left"),  # not numbers: dropped
                    ],
                )
            ],
        ),  # fmt: skip
        _task(
            3,
            [
                _annotation(31, 1, _full("p0"), was_cancelled=True),
                _annotation(32, 2, _full("p0", cats=("Peace",)), updated_at="2026-01-01"),
                _annotation(33, 2, _full("p0", cats=("Fear",)), updated_at="2026-01-02"),
            ],
            drafts=[{"id": 5, "user": 3, "result": []}],
        ),  # fmt: skip
        _task(4, []),
        {"id": 5, "data": {"image": "/data/local-files/?d=/etc/passwd"}, "annotations": []},
        _task(6, [_annotation(61, 1, _full("p0", size=(320, 240)))]),
        _task(7, [_annotation(71, 1, _full("p0", x=10.0)), _annotation(72, 2, _full("p0", x=30.0))]),
        _task(8, [_annotation(81, 1, "not a list")]),
    ]
    tasks[2]["drafts"] = [{"id": 5, "user": 3, "result": []}]
    conv = convert_export(tasks, source="export.json", users={2: "ann2@localhost"})
    lines = [str(e) for e in conv.annotations.report]
    text = "\n".join(lines)

    def has(*parts):
        assert any(all(p in line for p in parts) for line in lines), f"no report line with {parts}:\n{text}"

    has(
        "[repaired] train 1.jpg: categories: task 1, annotation 11 (user 1), region p0",
        "unknown category 'Joy'; removed",
    )
    has("task 1, annotation 11", "region p0", "category Happiness given twice")
    has("task 1, annotation 11", "region p0", "valence 42 is not a whole number 1-10; set to missing")
    has("region p0", "arousal 5.5 is not a whole number")
    has("region p0", "dominance '7' is not a whole number")
    has("region p0", "gender ['Nope'] is not one of Male, Female; set to null")
    has("region p0", "age ['Kid', 'Adult'] is not one of Kid, Teenager, Adult")
    has("[repaired]", "task 2, annotation 21 (user 1), region p0", "extends past the 640x480 image; clipped")
    has("[dropped]", "task 2, annotation 21 (user 1), region p1", "lies outside the 640x480 image")
    has("[dropped]", "task 2, annotation 21 (user 1), region p2", "box is empty")
    has("[repaired]", "task 2, annotation 21 (user 1), region p3", "rotated by 90 degrees")
    has("[dropped]", "task 2, annotation 21 (user 1), region p9", "answer for a region that has no box")
    has("[repaired]", "task 2, annotation 21 (user 1), region p0", "answer from 'mood'")
    has("[kept]", "task 2, annotation 21 (user 1), region p4", "no answer for categories, valence")
    has("[dropped]", "task 2, annotation 21 (user 1), region p5", "box is not four numbers")
    has("[dropped]", "task 3, annotation 31 (user 1)", "skipped by the annotator")
    has(
        "[dropped]",
        "task 3, annotation 32 (ann2@localhost)",
        "submitted annotations 32 and 33; the later one is kept",
    )
    has("[dropped]", "task 3", "draft of user 3 was never submitted")
    has("[dropped]", "task 4", "no submitted annotation")
    has("[dropped]", "task 5", "'/etc/passwd' is not relative to the photo folder")
    has(
        "[kept]",
        "task 6, annotation 61 (user 1), region p0",
        "measured the image as 320x240, the task says 640x480",
    )
    has("[kept]", "task 7", "region p0", "the annotators' boxes differ")
    has("[dropped]", "task 8, annotation 81 (user 1)", "'result' is not a list")

    df = conv.annotations.splits["train"]
    one = df[df["ls_task"] == 1].iloc[0]
    assert one["categories"] == ["Happiness"] and one["gender"] is None and one["age"] is None
    assert math.isnan(one["valence"]) and math.isnan(one["arousal"]) and math.isnan(one["dominance"])
    two = df[df["ls_task"] == 2]
    assert list(two["ls_region"]) == ["p0", "p3", "p4"]  # p1, p2, p5 dropped, each reported
    clipped = two.iloc[0]
    assert (clipped["x1"], clipped["x2"]) == pytest.approx((576.0, 640.0))
    rotated = two.iloc[1]  # 128 x 240 px box turned 90 degrees around its top-left corner (320, 48)
    assert [rotated[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx([80, 48, 320, 176])
    assert two.iloc[2]["categories"] == [] and math.isnan(two.iloc[2]["valence"])
    three = df[df["ls_task"] == 3].iloc[0]
    assert three["categories"] == ["Fear"] and three["annotators"] == ["ann2@localhost"]
    seven = df[df["ls_task"] == 7].iloc[0]
    assert (seven["x1"], seven["x2"]) == pytest.approx((128.0, 256.0))  # the mean of 64-192 and 192-320
    assert set(df["ls_task"]) == {1, 2, 3, 6, 7}


def test_boxes_drawn_by_annotators_are_matched_by_overlap():
    tasks = [
        _task(
            1,
            [
                _annotation(1, 1, [*_full("aaa", x=10, cats=("Fear",)), *_full("bbb", x=60, cats=("Pain",))]),
                _annotation(
                    2, 2, [*_full("zzz", x=61, cats=("Pain",)), *_full("yyy", x=11, cats=("Fear", "Anger"))]
                ),
                _annotation(
                    3, 3, [*_full("ccc", x=35, cats=("Peace",))]
                ),  # overlaps neither: a person of its own
            ],
        ),  # fmt: skip
    ]
    df = convert_export(tasks).annotations.splits["train"]
    assert list(df["annotators"]) == [["user 1", "user 2"], ["user 1", "user 2"], ["user 3"]]
    assert list(df["annotator_categories"]) == [[["Fear"], ["Anger", "Fear"]], [["Pain"], ["Pain"]], []]
    assert list(df["categories"]) == [["Fear"], ["Pain"], ["Peace"]]
    assert list(df["person"]) == [0, 1, 2]


def test_read_export_refuses_other_exports(tmp_path):
    (tmp_path / "min.json").write_text(json.dumps([{"image": "x", "person": []}]))
    with pytest.raises(EmoctxError, match="export the project as 'JSON'"):
        read_export(tmp_path / "min.json")
    (tmp_path / "csv.json").write_text("image,person\n")
    with pytest.raises(EmoctxError, match="not a JSON file"):
        read_export(tmp_path / "csv.json")
    with pytest.raises(EmoctxError, match="no such export file"):
        read_export(tmp_path / "none.json")


def test_strict_export_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_task(1, [_annotation(1, 1, _full("p0", vad=(42, 5, 5)))])]))
    out = tmp_path / "out"
    assert main(["annotate", "export", str(bad), "--out", str(out), "--strict"]) == 2
    assert "nothing written (--strict)" in capsys.readouterr().err
    assert not out.exists()
    assert main(["annotate", "export", str(bad), "--out", str(out)]) == 0
    assert math.isnan(read_records(out / "train.parquet")["valence"].iloc[0])


# ------------------------------------------------------------------------------------------ combination
def test_combination_rule():
    nan = float("nan")
    a = [
        Answer(1, "a", "p0", (0, 0, 1, 1), ["Fear", "Pain"], [7, 5, nan], "Male", "Adult"),
        Answer(2, "b", "p0", (0, 0, 1, 1), ["Fear"], [8, 6, nan], "Female", "Adult"),
        Answer(3, "c", "p0", (0, 0, 1, 1), ["Fear", "Pain", "Peace"], [8, nan, nan], None, "Kid"),
    ]
    cats, vad, gender, age = combine(a)
    assert cats == ["Fear", "Pain"]  # 3/3 and 2/3 kept, 1/3 not
    assert vad[:2] == [8.0, 6.0] and math.isnan(vad[2])  # mean 7.67 -> 8; 5.5 -> 6 (half up); nobody -> NaN
    assert (gender, age) == (None, "Adult")  # Male vs Female is a tie: null
    cats, vad, _, _ = combine(a[:2])
    assert cats == ["Fear"] and vad[:2] == [8.0, 6.0]  # two annotators: both must choose; 7.5 -> 8
    cats, vad, gender, _ = combine(a[:1])
    assert cats == ["Fear", "Pain"] and vad[:2] == [7.0, 5.0] and gender == "Male"  # one annotator: as given


# -------------------------------------------------------------------------------------------- agreement
def test_agreement_report():
    nan = float("nan")
    rows = []
    for i, (c1, c2, v1, v2) in enumerate(
        [
            (["Fear"], ["Fear"], [5, 5, 5], [6, 5, 3]),
            (["Fear", "Pain"], ["Fear"], [2, 8, 5], [2, 8, 5]),
            (["Peace"], ["Happiness"], [9, 2, 7], [7, 2, nan]),
        ]
    ):
        rows.append({"image": f"{i}.jpg", "width": 10, "height": 10, "split": "val", "person": 0, "x1": 0, "y1": 0,
                     "x2": 5, "y2": 5, "categories": [], "valence": 5, "arousal": 5, "dominance": 5,
                     "annotator_categories": [c1, c2], "annotator_vad": [v1, v2], "annotators": ["ann", "bob"]})  # fmt: skip
    rows.append(
        {
            **rows[0],
            "image": "single.jpg",
            "annotator_categories": [],
            "annotator_vad": [],
            "annotators": ["ann"],
        }
    )
    report = agreement_report(records_frame(rows))
    assert (report["num_persons"], report["num_persons_skipped"]) == (3, 1)
    per = {c["category"]: c for c in report["categories"]}
    assert (per["Fear"]["choices"], per["Fear"]["persons_chosen_by_all"], per["Fear"]["f1"]) == (4, 2, 1.0)
    assert (
        per["Pain"]["persons_chosen_by_any"],
        per["Pain"]["persons_chosen_by_all"],
        per["Pain"]["f1"],
    ) == (1, 0, 0.0)
    assert per["Anger"]["persons_unanimous"] == 3 and per["Anger"]["f1"] is None
    people = {a["annotator"]: a for a in report["annotators"]}
    # ann against bob: TP Fear, Fear; FP Pain, Peace; FN Happiness -> F1 = 4 / (4 + 2 + 1)
    assert people["ann"]["category_f1_micro"] == pytest.approx(4 / 7)
    assert people["bob"]["category_f1_micro"] == pytest.approx(4 / 7)
    # |5-6|, |5-5|, |5-3|; 0, 0, 0; |9-7|, 0 (dominance missing for bob on the third person)
    assert people["ann"]["vad_mae"] == pytest.approx(np.mean([(1 + 0 + 2) / 3, 0.0, (2 + 0) / 2]))
    spread = {v["dimension"]: v for v in report["vad_spread"]}
    assert spread["valence"]["mean_abs_difference"] == pytest.approx((1 + 0 + 2) / 3)
    assert spread["valence"]["share_within_1_point"] == pytest.approx(2 / 3)
    assert spread["dominance"]["num_persons"] == 2 and spread["dominance"]["mean_std"] == pytest.approx(0.5)
    text = report_markdown(report)
    assert "| Fear | 4 | 2 | 2 | 3 | 100.0 | 100.0 | 100.0 |" in text and "| ann | 3 | 57.1 |" in text
    with pytest.raises(EmoctxError, match="no person has 3 or more annotators"):
        agreement_report(records_frame(rows), min_annotators=3)


def test_agreement_command_on_the_golden_export(tmp_path, capsys):
    assert main(["annotate", "agreement", str(GOLDEN), "--out", str(tmp_path)]) == 0
    assert "Overall: category F1 micro 85.7%" in capsys.readouterr().out
    report = json.loads((tmp_path / "agreement.json").read_text())
    assert report["num_persons"] == 2 and (tmp_path / "agreement.md").is_file()


# ----------------------------------------------------------------------------------------------- server
def test_environment_folder_and_server_settings(tmp_path, monkeypatch, photos):
    monkeypatch.setenv("EMOCTX_LABEL_STUDIO_HOME", str(tmp_path / "ls-env"))
    assert default_environment_dir() == tmp_path / "ls-env"
    monkeypatch.delenv("EMOCTX_LABEL_STUDIO_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_environment_dir("9.9") == tmp_path / "cache" / "emoctx" / "label-studio-9.9"
    monkeypatch.setenv("LABEL_STUDIO_USERNAME", "someone")
    server = LabelStudioServer(tmp_path / "bin" / "label-studio", tmp_path / "data", photos, port=12345)
    env = server.environment()
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(photos.parent)
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path / "data")
    assert (
        env["LATEST_VERSION_CHECK"] == "false"
        and env["COLLECT_ANALYTICS"] == "false"
        and env["SENTRY_DSN"] == ""
    )
    assert "LABEL_STUDIO_USERNAME" not in env and "PYTHONPATH" not in env
    assert server.url == "http://127.0.0.1:12345" and server.folder_name == "photos"


FAKE_LABEL_STUDIO = textwrap.dedent(
    """\
    #!{python}
    # Stands in for label-studio: 'init' records the account, 'start' serves /health/ on --internal-host:--port
    # from a child process (so that stopping must end the whole process group).
    import http.server, json, os, subprocess, sys, time
    args = sys.argv[1:]
    data = os.environ["LABEL_STUDIO_BASE_DATA_DIR"]
    if args[0] == "init":
        with open(os.path.join(data, "inits.jsonl"), "a") as f:
            f.write(json.dumps(args) + "\\n")
        print("Label Studio has been successfully initialized.")
        sys.exit(0)
    host, port = args[args.index("--internal-host") + 1], int(args[args.index("--port") + 1])
    os.makedirs(os.path.join(data, "www", "health"), exist_ok=True)
    open(os.path.join(data, "www", "health", "index.html"), "w").write("UP")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(os.path.join(data, "child.pid"), "w").write(str(child.pid))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=os.path.join(data, "www"))
    http.server.HTTPServer((host, port), handler).serve_forever()
    """
)


def test_server_lifecycle_with_a_stand_in(tmp_path, photos):
    exe = tmp_path / "label-studio"
    exe.write_text(FAKE_LABEL_STUDIO.format(python=sys.executable))
    exe.chmod(0o755)
    data = tmp_path / "data"
    server = LabelStudioServer(exe, data, photos)
    accounts = server.ensure_accounts(2)
    assert [a.email for a in accounts] == ["annotator1@localhost", "annotator2@localhost"]
    assert (
        read_accounts(data) == accounts and oct((data / "emoctx-accounts.json").stat().st_mode)[-3:] == "600"
    )
    inits = [json.loads(line) for line in (data / "inits.jsonl").read_text().splitlines()]
    assert "--enable-legacy-api-token" in inits[0] and "--enable-legacy-api-token" not in inits[1]
    assert inits[1][inits[1].index("--user-token") + 1] == accounts[1].token
    assert server.ensure_accounts(2) == accounts and len((data / "inits.jsonl").read_text().splitlines()) == 2
    with server:
        assert server.healthy()
        child = int((data / "child.pid").read_text())
        assert Path(f"/proc/{child}").exists()
    assert not server.healthy()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{child}/status").read_text() if Path(f"/proc/{child}/status").exists() else ""
        if "zombie" in status:
            break
        time.sleep(0.1)
    status = Path(f"/proc/{child}/status").read_text() if Path(f"/proc/{child}/status").exists() else "gone"
    assert status == "gone" or "zombie" in status  # the whole process group was stopped


def test_server_that_exits_is_a_clear_error(tmp_path, photos):
    exe = tmp_path / "label-studio"
    exe.write_text("#!/bin/sh\necho 'django.db.utils.OperationalError: disk full'\nexit 3\n")
    exe.chmod(0o755)
    server = LabelStudioServer(exe, tmp_path / "data", photos)
    with pytest.raises(EmoctxError, match=r"exited \(3\) while starting:\n.*disk full"):
        server.start(timeout=20)


def test_serve_refuses_a_data_folder_inside_the_photos(tmp_path, photos, capsys):
    assert main(["annotate", "serve", str(photos), "--data-dir", str(photos / "ls")]) == 2
    assert "must not lie inside the photo folder" in capsys.readouterr().err


def test_help_of_every_step():
    for step in ("config", "tasks", "serve", "export", "agreement"):
        done = subprocess.run(
            [sys.executable, "-m", "emoctx", "annotate", step, "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert done.returncode == 0 and "usage: emoctx annotate " + step in done.stdout


def test_serve_checks_the_tasks_before_starting_anything(tmp_path, photos, capsys):
    bad = tmp_path / "tasks.json"
    bad.write_text(json.dumps([{"data": {"image": "/data/local-files/?d=photos/bus.jpg"}}]))
    data = tmp_path / "server"
    assert main(["annotate", "serve", str(photos), "--tasks", str(bad), "--data-dir", str(data)]) == 2
    assert "task 0 has no data.emoctx_image" in capsys.readouterr().err
    bad.write_text(json.dumps([{"data": {"emoctx_image": "gone.jpg"}}]))
    assert main(["annotate", "serve", str(photos), "--tasks", str(bad), "--data-dir", str(data)]) == 2
    assert "gone.jpg is not in" in capsys.readouterr().err
    assert not data.exists()  # nothing installed, made or started
