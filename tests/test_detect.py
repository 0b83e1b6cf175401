"""Person detection: the real ultralytics code path (a YOLO built from its YAML, random weights), the offline
error without weights, and boxes from CSV/JSONL/Parquet files."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emoctx import labels
from emoctx.cli import main
from emoctx.errors import EmoctxError
from emoctx.inference import BoxFileDetector, Detection, PersonDetector, Predictor, UltralyticsDetector
from emoctx.inference.detect import BoxSource, import_ultralytics, resolve_weights


@pytest.fixture(scope="module")
def bus():
    path = import_ultralytics().utils.ASSETS / "bus.jpg"
    return path, np.asarray(Image.open(path).convert("RGB"))


def person_happy_yolo(**kwargs):
    """The real ultralytics model and code path, architecture from its YAML: random weights, nothing downloaded.

    Random weights find nothing; the person-class bias of the head is raised so that boxes (arbitrary ones)
    come out as persons and flow through the rest of the pipeline.
    """
    detector = UltralyticsDetector("yolo11n.yaml", **kwargs)
    with torch.no_grad():
        for branch in detector.model.model.model[-1].cv3:
            branch[-1].bias[0] = 6.0
    return detector


@pytest.fixture(scope="module")
def yolo():
    return person_happy_yolo(conf=0.25, imgsz=160, min_box=0)


def _check_detections(dets, width, height, with_ids=False):
    assert isinstance(dets, list)
    for d in dets:
        assert isinstance(d, Detection) and len(d.box) == 4
        x1, y1, x2, y2 = d.box
        assert -1 <= x1 <= x2 <= width + 1 and -1 <= y1 <= y2 <= height + 1
        assert 0.0 <= d.score <= 1.0
        assert (d.track_id is not None) == with_ids


def test_ultralytics_yaml_detector_runs_batched(yolo, bus):
    _, photo = bus
    small = np.ascontiguousarray(photo[::4, ::4])
    noise = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    assert isinstance(yolo, PersonDetector) and not isinstance(yolo, BoxSource)
    out = yolo.detect([small, noise, small])
    assert len(out) == 3
    assert len(out[0]) > 0
    _check_detections(out[0], small.shape[1], small.shape[0])
    _check_detections(out[1], 200, 120)
    assert [d.box for d in out[0]] == [d.box for d in out[2]]  # deterministic, batch position does not matter
    tracks = [yolo.track(small) for _ in range(2)]
    for t in tracks:
        _check_detections(t, small.shape[1], small.shape[0], with_ids=True)
    assert tracks[0] and [d.track_id for d in tracks[0]] == [
        d.track_id for d in tracks[1]
    ]  # same frame, same ids
    yolo.reset_tracks()
    assert min(d.track_id for d in yolo.track(small)) == 1  # ids restart after a reset
    assert yolo.describe() == "yolo:yolo11n.yaml"


def test_predictor_with_the_yolo_detector(yolo, tiny_model_path, bus):
    path, photo = bus
    predictor = Predictor(tiny_model_path, yolo, num_workers=0, min_box=20, max_side=320)
    results = predictor.predict_images([path, np.ascontiguousarray(photo[::3, ::3])])
    assert len(results) == 2 and results[0].persons
    for r, (w, h) in zip(results, [(810, 1080), (270, 360)], strict=True):
        assert r.error is None and (r.width, r.height) == (w, h)
        for p in r.persons:
            x1, y1, x2, y2 = p.box
            assert min(x2 - x1, y2 - y1) >= 20  # min_box in original pixels
            assert p.probabilities.shape == (labels.NUM_CATEGORIES,) or p.error is not None
        assert list(r.to_frame().columns)[:5] == ["source", "frame", "time_s", "person", "track_id"]


def test_offline_without_weights_is_a_clear_error(tiny_model_path, bus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no yolo11n.pt in the working folder
    with pytest.raises(EmoctxError) as err:
        UltralyticsDetector("yolo11n.pt")
    # The Python API names its own arguments, never the command's options; the command line the reverse.
    message, cli = str(err.value), err.value.for_cli()
    assert (
        "yolo11n.pt" in message and "detector_weights=PATH" in message and "BoxFileDetector(FILE)" in message
    )
    assert "--" not in message
    assert "--detector-weights PATH" in cli and "--boxes FILE" in cli and "detector_weights=" not in cli
    # Both say where YOLO weights come from and that boxes work for videos too.
    for text in (message, cli):
        assert "https://github.com/ultralytics/assets/releases" in text and "photos and videos alike" in text
    with pytest.raises(EmoctxError, match="no such detector weights file") as err:
        resolve_weights(tmp_path / "missing" / "best.pt")
    assert "--" not in str(err.value) and "--detector-weights PATH" in err.value.for_cli()
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert resolve_weights(weights) == str(weights)  # an existing file is used as is
    # the command line reports it without a traceback, before any work
    status = main(
        ["predict", str(bus[0]), "--model", str(tiny_model_path), "--out", str(tmp_path / "o.jsonl")]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert "--detector-weights PATH" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "o.jsonl").exists()


def test_box_files_in_three_formats(tmp_path):
    rows = [
        {"image": "images/a.jpg", "x1": 1, "y1": 2, "x2": 30, "y2": 40},
        {"image": "images/a.jpg", "x1": 5, "y1": 6, "x2": 50, "y2": 60, "score": 0.7},
        {"image": "other/a.jpg", "x1": 0, "y1": 0, "x2": 10, "y2": 10},
        {"image": "clip.mp4", "frame": 3, "x1": 0, "y1": 0, "x2": 10, "y2": 10, "track_id": 7},
    ]
    csv = tmp_path / "b.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "b.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    for path in (csv, jsonl, parquet):
        det = BoxFileDetector(path)
        assert isinstance(det, BoxSource)
        a = det.boxes_for("/data/set/images/a.jpg")  # the entry is a trailing part of the source path
        assert [d.box for d in a] == [(1, 2, 30, 40), (5, 6, 50, 60)]
        assert [d.score for d in a] == [1.0, pytest.approx(0.7)]
        assert det.boxes_for("/x/other/a.jpg")[0].box == (0, 0, 10, 10)
        assert det.boxes_for("/x/unrelated/a.jpg") is None  # whole folder names must match
        assert det.boxes_for("videos/clip.mp4", 3)[0].track_id == 7
        assert det.boxes_for("videos/clip.mp4", 4) is None
        assert det.detect([np.zeros((4, 4, 3), np.uint8)], keys=[("images/a.jpg", -1)])[0][0].box == (
            1,
            2,
            30,
            40,
        )
        assert det.missing == {"/x/unrelated/a.jpg"}
    # relative entries are also found relative to the box file's folder; a "box" list works in JSONL
    (tmp_path / "sub").mkdir()
    rel = tmp_path / "sub" / "rel.jsonl"
    rel.write_text(json.dumps({"source": "pic.png", "box": [1, 1, 9, 9]}) + "\n")
    assert BoxFileDetector(rel).boxes_for(str(tmp_path / "sub" / "pic.png"))[0].box == (1, 1, 9, 9)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"image": "a.jpg", "x1": 1, "y1": 1, "x2": "wide", "y2": 5}\n', r"row 1: 'x2' must be a number"),
        ('{"x1": 1, "y1": 1, "x2": 3, "y2": 5}\n', r"row 1: no image path"),
        (
            '{"image": "a.jpg", "x1": 1, "y1": 1, "x2": 3, "y2": 5}\n{"image": "b.jpg", "x1": 9, "y1": 1, "x2": 3, "y2": 5}\n',
            r"row 2: empty or inverted box",
        ),
        ('{"image": "a.jpg", "x1": 1\n', r"line 1: not valid JSON"),
    ],
)
def test_box_file_errors_name_the_row(tmp_path, content, match):
    path = tmp_path / "boxes.jsonl"
    path.write_text(content)
    with pytest.raises(EmoctxError, match=match) as err:
        BoxFileDetector(path)
    assert str(path) in str(err.value)


def test_ultralytics_pil_patch_is_undone_before_decoding(tiny_model_path, tmp_path, monkeypatch):
    from ultralytics.utils import patches

    monkeypatch.setattr(Image, "open", patches.image_open)  # as right after `import ultralytics`
    fake = tmp_path / "notes.jpg"
    fake.write_text("plain text")
    result = Predictor(tiny_model_path, num_workers=0).predict_images([fake], boxes=[[]])[0]
    assert "not a recognised image format" in result.error  # no attempt to pip-install a HEIF plugin
    assert Image.open.__module__ == "PIL.Image"


def test_canonical_records_work_as_a_box_file(tmp_path):
    """Records name the image in 'image' and the source database in 'source': the image path is the key."""
    from emoctx.data.records import records_frame, write_records

    row = dict(image="images/beach/test_00001.jpg", width=320, height=240, split="test", person=0,
               x1=10, y1=20, x2=60, y2=200, categories=[], valence=5.0, arousal=5.0, dominance=5.0,
               source="synth")  # fmt: skip
    path = write_records(records_frame([row, dict(row, person=1, x1=100, x2=150)]), tmp_path / "test.parquet")
    found = BoxFileDetector(path).boxes_for("/data/synth/images/beach/test_00001.jpg")
    assert [d.box for d in found] == [(10, 20, 60, 200), (100, 20, 150, 200)]
