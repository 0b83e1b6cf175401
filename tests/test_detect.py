"""Person detection: the real ultralytics code path (a YOLO built from its YAML, random weights), the offline
error without weights, and boxes from CSV/JSONL/Parquet files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emoctx import labels
from emoctx.cli import main
from emoctx.errors import EmoctxError
from emoctx.inference import BoxFileDetector, Detection, PersonDetector, Predictor, UltralyticsDetector
from emoctx.inference.detect import BoxSource
from emoctx.inference.yolo_weights import import_ultralytics, resolve_weights


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


def test_box_file_log_counts_each_box_once(tmp_path, caplog):
    """Each entry is looked up under two keys (as written and from the box file's folder): counted once."""
    rows = [{"image": f"img{i % 2}.jpg", "x1": i, "y1": 0, "x2": i + 9, "y2": 9} for i in range(6)]
    path = tmp_path / "boxes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    caplog.set_level("INFO", logger="emoctx.inference.box_file")
    BoxFileDetector(path)
    assert [r.getMessage() for r in caplog.records] == [f"{path}: 6 boxes for 2 images/frames"]


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


# ------------------------------------------------------------------------------------------- pose and faces
_FACE_OFFSETS = {0: (0.0, 0.0), 1: (0.5, -0.5), 2: (-0.5, -0.5), 3: (1.0, -0.25), 4: (-1.0, -0.25)}


def rig_pose(detector, facing=True):
    """Random weights made predictable: every anchor a person with a box six strides wide around it, and
    keypoints at fixed offsets from it (in strides: nose at the anchor, eyes half a stride up and aside, ears
    a stride aside). ``facing``: nose and eyes visible (a face); otherwise only the ears (a back view)."""
    head = detector.model.model.model[-1]
    bins = head.reg_max
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias[0] = 6.0
        for branch in head.cv2:  # box sides: the distribution of each side peaks at 3 strides
            conv = branch[-1]
            conv.weight.zero_()
            conv.bias.fill_(-10.0)
            for side in range(4):
                conv.bias[side * bins + 3] = 10.0
        for branch in head.cv4:  # keypoint k = (2 * raw + anchor - 0.5) * stride, visibility sigmoid(raw)
            conv = branch[-1]
            conv.weight.zero_()
            for k in range(17):
                dx, dy = _FACE_OFFSETS.get(k, (0.0, 2.0))
                conv.bias[3 * k], conv.bias[3 * k + 1] = (dx + 0.5) / 2, (dy + 0.5) / 2
                seen = (k < 3) if facing else (k in (3, 4))
                conv.bias[3 * k + 2] = 5.0 if seen or k >= 5 else -5.0
    return detector


def _check_faces(dets, width, height):
    assert dets and all(d.keypoints is not None and len(d.keypoints) == 17 for d in dets)
    faces = [d for d in dets if d.face is not None]
    assert len(faces) >= len(dets) // 2
    for d in faces:
        fx1, fy1, fx2, fy2 = d.face.box
        x1, y1, x2, y2 = d.box
        assert x1 - 1e-3 <= fx1 < fx2 <= x2 + 1e-3 and y1 - 1e-3 <= fy1 < fy2 <= y2 + 1e-3
        assert fx1 >= 0 and fx2 <= width and fy1 >= 0 and fy2 <= height
        assert min(fx2 - fx1, fy2 - fy1) >= 12
        assert d.face.landmarks == d.keypoints[:5] and d.face.convention == "coco5"
        assert 0.9 < d.face.score <= 1.0  # nose and eyes seen with sigmoid(5) = 0.993
    return faces


@pytest.fixture(scope="module")
def small_bus(bus):
    return np.ascontiguousarray(bus[1][::4, ::4])


def test_pose_model_gives_keypoints_and_faces(small_bus):
    detector = rig_pose(UltralyticsDetector("yolo11n-pose.yaml", imgsz=160))
    assert detector.task == "pose"
    height, width = small_bus.shape[:2]
    dets = detector.detect([small_bus])[0]
    faces = _check_faces(dets, width, height)
    # each face is the one the keypoints' rule gives (emoctx.faces)
    from emoctx.faces import face_from_keypoints

    d = faces[0]
    assert d.face == face_from_keypoints(d.keypoints, d.box, (width, height))
    # moved to the original image's pixels together with the box (the pipeline shrinks large photos)
    big = d.scaled(4.0, 4.0)
    assert big.box == pytest.approx(tuple(4 * v for v in d.box))
    assert big.face.box == pytest.approx(tuple(4 * v for v in d.face.box))
    assert big.keypoints[7] == pytest.approx(
        (4 * d.keypoints[7][0], 4 * d.keypoints[7][1], d.keypoints[7][2])
    )
    assert Detection((1, 2, 3, 4)).scaled(2, 2) == Detection((2, 4, 6, 8))
    # tracking keeps them
    tracked = detector.track(small_bus)
    assert tracked and all(t.track_id is not None for t in tracked)
    _check_faces(tracked, width, height)
    # back views: keypoints, no faces
    back = rig_pose(UltralyticsDetector("yolo11n-pose.yaml", imgsz=160), facing=False).detect([small_bus])[0]
    assert back and all(d.keypoints is not None and d.face is None for d in back)


def test_segment_and_detect_models_give_persons_without_faces(yolo, small_bus):
    segment = UltralyticsDetector("yolo11n-seg.yaml", imgsz=160)
    with torch.no_grad():
        for branch in segment.model.model.model[-1].cv3:
            branch[-1].bias[0] = 6.0
    assert segment.task == "segment"
    dets = segment.detect([small_bus])[0]
    assert dets and all(d.keypoints is None and d.face is None for d in dets)
    plain = yolo.detect([small_bus])[0]
    assert plain and all(d.keypoints is None and d.face is None for d in plain)


def test_models_of_tasks_without_persons_are_refused():
    with pytest.raises(EmoctxError, match="a 'classify' model gives no person boxes"):
        UltralyticsDetector("yolo11n-cls.yaml")


def test_exported_pose_models_file_and_folder(tmp_path, monkeypatch, small_bus):
    """ONNX (a file; its name says nothing of its task) and OpenVINO (an export folder) read as ultralytics
    exports them, keypoints and faces included."""
    monkeypatch.chdir(tmp_path)
    detector = rig_pose(UltralyticsDetector("yolo11n-pose.yaml", imgsz=160))
    onnx = tmp_path / "people.onnx"
    Path(detector.model.export(format="onnx", imgsz=160, simplify=False)).rename(onnx)
    folder = Path(detector.model.export(format="openvino", imgsz=160))
    assert folder.is_dir() and resolve_weights(folder) == str(folder)
    height, width = small_bus.shape[:2]
    found = {}
    for weights in (onnx, folder):
        exported = UltralyticsDetector(weights, imgsz=160)
        assert exported.task == "pose"  # from the export's metadata
        found[weights.suffix] = exported.detect([small_bus, small_bus])
        assert len(found[weights.suffix]) == 2
        _check_faces(found[weights.suffix][0], width, height)
    a, b = found[".onnx"][0], found[""][0]
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert np.allclose(da.box, db.box, atol=0.5) and np.allclose(da.face.box, db.face.box, atol=0.5)
    # the resume settings tell export folders apart by their content
    described = UltralyticsDetector(folder, imgsz=160).describe()
    assert described.startswith(f"yolo:{folder.name}@")
    (folder / "metadata.yaml").write_text((folder / "metadata.yaml").read_text() + "\n# changed\n")
    assert UltralyticsDetector(folder, imgsz=160).describe() != described


@pytest.mark.parametrize("name", ["net_saved_model", "net_paddle_model"])
def test_tensorflow_and_paddle_export_folders_are_refused(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\0")
    (folder / "metadata.yaml").write_text("task: pose\n")
    with pytest.raises(EmoctxError, match="detectors are refused"):
        UltralyticsDetector(folder)


def test_detections_are_matched_to_given_persons_one_to_one():
    from emoctx.inference.detect import match_detections

    found = [
        Detection((0, 0, 10, 20), 0.9),
        Detection((100, 0, 110, 20), 0.8),
        Detection((1, 0, 11, 20), 0.7),
    ]
    boxes = [(0.5, 0, 10.5, 20), (50, 50, 60, 60), (0, 0, 10, 20)]
    matched = match_detections(boxes, found)
    # the two overlapping detections go one to each of the two boxes they overlap; nothing near (50, 50)
    assert matched[1] is None and {id(matched[0]), id(matched[2])} == {id(found[0]), id(found[2])}
    assert matched[2] is found[0]  # the exact box gets the exact detection (largest total overlap)
    assert match_detections(boxes, found, min_iou=0.99) == [None, None, found[0]]
    assert match_detections([], found) == [] and match_detections(boxes, []) == [None, None, None]


def test_predict_with_a_pose_model_writes_face_columns_on_the_sample_photos(
    tiny_model_path, tiny_face_model_path, tmp_path
):
    """The pose detector through `emoctx predict`'s path on bus.jpg and zidane.jpg: every person's face box,
    score and keypoints in the table and on the annotated images; a face model reads the faces; a detection
    model gives none."""
    from emoctx.inference import read_prediction_table
    from emoctx.inference.runner import predict_to_file

    assets = import_ultralytics().utils.ASSETS
    photos = [str(assets / "bus.jpg"), str(assets / "zidane.jpg")]
    pose = rig_pose(UltralyticsDetector("yolo11n-pose.yaml", imgsz=320))
    for model in (tiny_model_path, tiny_face_model_path):
        out = tmp_path / f"{Path(model).stem}.parquet"
        predictor = Predictor(model, pose, num_workers=0, max_side=640)
        summary = predict_to_file(
            predictor, photos, out, annotate_dir=tmp_path / Path(model).stem, progress=False
        )
        table = read_prediction_table(out)
        assert summary.persons == len(table) and set(table["source"]) == set(photos)
        faces = table[table["face_x1"].notna()]
        assert len(faces) >= len(table) // 2 and set(faces["source"]) == set(photos)
        for row in faces.itertuples():
            # in the original photo's pixels (it was decoded at 640 px), inside the person's box
            assert row.x1 - 1e-3 <= row.face_x1 < row.face_x2 <= row.x2 + 1e-3
            assert row.y1 - 1e-3 <= row.face_y1 < row.face_y2 <= row.y2 + 1e-3
            assert row.face_x2 <= row.width and row.face_y2 <= row.height
            assert 0.9 < row.face_score <= 1.0
            assert len(row.face_landmarks) == 5 and all(len(p) == 3 for p in row.face_landmarks)
            nose = row.face_landmarks[0]
            assert row.face_x1 <= nose[0] <= row.face_x2 and row.face_y1 <= nose[1] <= row.face_y2
        if model == tiny_face_model_path:  # the face stream's own outputs, only where a face was read
            assert faces["face_valence"].notna().all() and faces["expression"].notna().all()
            assert table.loc[table["face_x1"].isna(), "face_valence"].isna().all()
        else:
            assert table["face_valence"].isna().all() and table["expression"].isna().all()
        assert {p.name for p in (tmp_path / Path(model).stem).iterdir()} == {"bus.jpg", "zidane.jpg"}
    # a plain detection model: persons, no faces; face models then take the no-face path for everyone
    plain = Predictor(tiny_face_model_path, person_happy_yolo(conf=0.25, imgsz=160), num_workers=0)
    result = plain.predict_images([photos[0]])[0]
    assert result.persons and all(p.face is None and p.face_va is None for p in result.persons)
    assert all(p.error is None and np.isfinite(p.vad).all() for p in result.persons)


def test_face_settings_reach_the_detector_and_the_resume_settings(tiny_model_path):
    predictor = Predictor(
        tiny_model_path, detector_weights="yolo11n-pose.yaml", keypoint_conf=0.7, min_face=30, num_workers=0
    )
    settings = predictor.settings()
    assert settings["keypoint_conf"] == 0.7 and settings["min_face"] == 30
    detector = predictor.detector
    assert detector.task == "pose" and detector.keypoint_conf == 0.7 and detector.min_face == 30
    with pytest.raises(EmoctxError, match="keypoint confidence"):
        Predictor(tiny_model_path, detector_weights="yolo11n-pose.yaml", keypoint_conf=1.5)


def test_faces_command_writes_the_pose_models_faces_into_the_records(tmp_path, monkeypatch, capsys):
    """`emoctx faces`: persons matched to the pose model's by IoU get its face (box, score, coco5 keypoints);
    a box no detection overlaps stays without a face; an unreadable image is named and the rest goes on;
    the input is never written over without --overwrite; a detection model is refused."""
    import shutil

    import emoctx.inference.detect as detect_module
    from emoctx.data.records import read_records, records_frame, write_records

    (tmp_path / "images").mkdir()
    shutil.copy(import_ultralytics().utils.ASSETS / "bus.jpg", tmp_path / "images" / "bus.jpg")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    pose = rig_pose(UltralyticsDetector("yolo11n-pose.yaml", imgsz=320))
    width, height = Image.open(tmp_path / "images" / "bus.jpg").size
    found = pose.detect([np.asarray(Image.open(tmp_path / "images" / "bus.jpg").convert("RGB"))])[0]
    with_face = [d for d in found if d.face is not None][:2]
    assert len(with_face) == 2
    base = dict(image="images/bus.jpg", width=width, height=height, split="test", categories=[],
                valence=5.0, arousal=5.0, dominance=5.0, source="mscoco")  # fmt: skip
    rows = [
        dict(base, person=i, **dict(zip(["x1", "y1", "x2", "y2"], d.box))) for i, d in enumerate(with_face)
    ]
    rows.append(dict(base, person=2, x1=1, y1=1, x2=9, y2=9))  # far smaller than any detection: unmatched
    # an unreadable image whose person had a face: kept as it was (never erased by a failed read)
    kept = dict(face_x1=20.0, face_y1=20.0, face_x2=40.0, face_y2=40.0, face_score=0.9,
                face_landmarks=[[30.0, 30.0, 1.0]] * 5, face_landmark_convention="coco5")  # fmt: skip
    rows.append(dict(base, image="images/broken.jpg", person=0, x1=10, y1=10, x2=90, y2=200, **kept))
    source = write_records(records_frame(rows), tmp_path / "annotations" / "test.parquet")
    # the command builds its detector from --detector-weights: here the rigged pose model stands in for one
    monkeypatch.setattr(detect_module, "UltralyticsDetector", lambda *a, **k: pose)
    # the input is never written over without --overwrite
    assert main(["faces", str(source), "--detector-weights", "pose.pt", "--no-progress"]) == 2
    assert "never written over without --overwrite" in capsys.readouterr().err
    out = tmp_path / "faces.parquet"
    assert (
        main(["faces", str(source), "--detector-weights", "pose.pt", "--out", str(out), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "matched, with a face:    2" in printed and "unmatched:               1" in printed
    assert "in unreadable images:    1" in printed
    assert "broken.jpg" in printed
    records = read_records(out)
    assert len(records) == 4 and list(records["person"]) == [0, 1, 2, 0]
    for i, d in enumerate(with_face):
        assert np.allclose(
            records.loc[i, ["face_x1", "face_y1", "face_x2", "face_y2"]].astype(float), d.face.box
        )
        assert records.loc[i, "face_score"] == pytest.approx(d.face.score, abs=1e-6)
        assert (
            records.loc[i, "face_landmark_convention"] == "coco5"
            and len(records.loc[i, "face_landmarks"]) == 5
        )
    assert pd.isna(records.loc[2, "face_x1"]) and pd.isna(records.loc[2, "face_landmark_convention"])
    assert records.loc[3, ["face_x1", "face_y1", "face_x2", "face_y2"]].astype(float).tolist() == [
        20,
        20,
        40,
        40,
    ]
    assert records.loc[3, "face_landmark_convention"] == "coco5" and records.loc[
        3, "face_score"
    ] == pytest.approx(0.9)
    report = json.loads((tmp_path / "faces.parquet.faces.json").read_text())
    assert report["with_face"] == 2 and report["unmatched"] == 1 and report["persons"] == 4
    assert report["unreadable_persons"] == 1
    assert report["unreadable"][0]["image"].endswith("broken.jpg")
    # a detection model gives no faces: refused, nothing written
    plain = person_happy_yolo(conf=0.25, imgsz=160)
    monkeypatch.setattr(detect_module, "UltralyticsDetector", lambda *a, **k: plain)
    other = tmp_path / "plain.parquet"
    assert main(["faces", str(source), "--detector-weights", "yolo11n.pt", "--out", str(other)]) == 2
    assert "needs a pose model" in capsys.readouterr().err and not other.exists()
