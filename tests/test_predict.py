"""emoctx predict on image folders: the output table in three formats, bad files, resume, the Python API,
scene sharing against per-person forwards, bf16 against fp32, and a real photo with given boxes."""

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emoctx import labels
from emoctx.checkpoint import describe, load_model, save_model
from emoctx.cli import main
from emoctx.data.preprocess import PreprocessCfg
from emoctx.data.transforms import build_transform
from emoctx.errors import EmoctxError
from emoctx.inference import (
    COLUMNS,
    BoxFileDetector,
    Detection,
    Predictor,
    read_prediction_table,
    results_frame,
)
from emoctx.inference.results import PersonResult
from emoctx.inference.writers import PartialLog
from emoctx.inference.yolo_weights import import_ultralytics
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet

PROB_COLUMNS = [f"p_{s}" for s in labels.SLUGS]


def _save_model(path, training=None, thresholds=None, mask_subject=False):
    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
        },
        hidden=32,
    )
    prep = PreprocessCfg.for_streams(net.stream_specs(), mask_subject=mask_subject)
    return save_model(path, net, describe(net, training=training, thresholds=thresholds, preprocessing=prep))


def _scene(rng, w=320, h=240, people=()):
    """A textured background with a bright figure per box (so body crops differ from the scene)."""
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    for x1, y1, x2, y2 in people:
        color = [int(c) for c in rng.integers(60, 255, 3)]
        cv2.ellipse(
            img, ((x1 + x2) // 2, y1 + (y2 - y1) // 6), ((x2 - x1) // 4, (y2 - y1) // 7), 0, 0, 360, color, -1
        )
        cv2.rectangle(img, (x1 + (x2 - x1) // 5, y1 + (y2 - y1) // 3), (x2 - (x2 - x1) // 5, y2), color, -1)
    return img


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    th = {s: 0.5 for s in labels.SLUGS}
    th[labels.SLUGS[0]] = 0.0  # always predicted: the categories column cannot be empty for every person
    return _save_model(tmp_path_factory.mktemp("model") / "model.safetensors", thresholds=th)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos (one without persons, one in a subfolder, one PNG) plus bad files, and a CSV box file."""
    root = tmp_path_factory.mktemp("photos")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    layout = {
        "a.jpg": [(20, 30, 120, 230), (150, 40, 260, 235)],
        "b.jpg": [(100, 20, 200, 220)],
        "c.png": [(5, 5, 90, 200), (110, 10, 190, 210), (210, 30, 310, 230)],
        "empty_scene.jpg": [],
        "sub/d.jpg": [(40, 60, 140, 239)],
        "sub/e.jpg": [(0, 0, 320, 240), (250, 100, 330, 260)],  # the second box runs past the border
    }
    rows = []
    for name, boxes in layout.items():
        img = _scene(
            rng, people=[tuple(min(v, 319 if i % 2 == 0 else 239) for i, v in enumerate(b)) for b in boxes]
        )
        Image.fromarray(img).save(images / name, quality=92)
        rows += [{"image": f"images/{name}", "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in boxes]
    good = (images / "a.jpg").read_bytes()
    (images / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.jpg").write_text("this is text, not a JPEG")
    (images / "data.xyz").write_text("1,2,3")
    boxes = root / "boxes.csv"
    pd.DataFrame(rows).to_csv(boxes, index=False)
    return {"root": root, "images": images, "boxes": boxes, "layout": layout}


def _predict(folder, model_path, out, *extra):
    argv = ["predict", str(folder["images"]), "--model", str(model_path), "--boxes", str(folder["boxes"])]
    argv += ["--out", str(out), "--no-progress", "--batch-size", "4", *extra]
    return main(argv)


@pytest.fixture(scope="module")
def reference(folder, model_path, tmp_path_factory):
    """An uninterrupted run in JSONL with two decoding workers."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    assert _predict(folder, model_path, out, "--workers", "2") == 0
    return out


def test_folder_jsonl_columns_and_values(reference, folder, model_path):
    df = read_prediction_table(reference)
    assert list(df.columns) == list(COLUMNS)
    ok = df[df["error"].isna()]
    layout = folder["layout"]
    expected_persons = sum(len(b) for b in layout.values())
    assert len(ok) == expected_persons  # the image without persons gives no row
    assert not (df["source"].str.endswith("empty_scene.jpg")).any()
    # rows follow the sorted folder order, persons in box-file order
    sources = [Path(s).relative_to(folder["images"]).as_posix() for s in ok["source"]]
    assert sources == [n for n in sorted(layout) for _ in layout[n]]
    assert ok["frame"].eq(-1).all() and ok["track_id"].isna().all()
    assert ok.groupby("source")["person"].apply(list).map(lambda p: p == list(range(len(p)))).all()
    assert ok["det_score"].eq(1.0).all()
    assert ((ok[PROB_COLUMNS] >= 0) & (ok[PROB_COLUMNS] <= 1)).all().all()
    for name in labels.VAD_NAMES:
        assert ok[name].between(labels.VAD_MIN, labels.VAD_MAX).all()
    assert ok["width"].eq(320).all() and ok["height"].eq(240).all()
    a = ok[ok["source"].str.endswith("a.jpg")]
    np.testing.assert_allclose(
        a[["x1", "y1", "x2", "y2"]].to_numpy(), [[20, 30, 120, 230], [150, 40, 260, 235]]
    )
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:12]
    assert ok["model"].eq(f"model.safetensors@{digest}").all()
    # categories are exactly those at or above the thresholds (the first one's threshold is 0)
    for _, row in ok.iterrows():
        expected = [
            c
            for c, s in zip(labels.CATEGORIES, labels.SLUGS, strict=True)
            if row[f"p_{s}"] >= (0.0 if s == labels.SLUGS[0] else 0.5)
        ]
        assert row["categories"] == expected
        assert labels.CATEGORIES[0] in row["categories"]
        # the dominant category: the most probable of those at or above their threshold
        probs = {c: row[f"p_{s}"] for c, s in zip(labels.CATEGORIES, labels.SLUGS, strict=True)}
        assert row["dominant_category"] == max(expected, key=probs.get)
    assert ok["time_s"].isna().all()  # photos have no time


def test_dominant_category_is_the_most_probable_predicted_one():
    probs = np.full(labels.NUM_CATEGORIES, 0.1)
    probs[labels.CATEGORY_INDEX["Anger"]] = (
        0.95  # most probable, but below its (high) threshold: not predicted
    )
    probs[labels.CATEGORY_INDEX["Peace"]] = 0.6
    probs[labels.CATEGORY_INDEX["Esteem"]] = 0.7
    person = PersonResult(
        0, (0, 0, 10, 10), probabilities=probs, vad=np.ones(3), categories=["Peace", "Esteem"]
    )
    assert person.dominant == "Esteem" and person.to_dict()["dominant_category"] == "Esteem"
    person.categories = []  # nothing reaches its threshold: no dominant category
    assert person.dominant is None and person.to_dict()["dominant_category"] is None


def test_bad_files_give_error_rows_and_the_rest_goes_on(reference, folder):
    df = read_prediction_table(reference)
    errors = df[df["error"].notna()].set_index(df[df["error"].notna()]["source"].map(lambda s: Path(s).name))
    assert set(errors.index) == {"corrupt.jpg", "empty.jpg", "notes.jpg", "data.xyz"}
    for name in ("corrupt.jpg", "empty.jpg", "notes.jpg", "data.xyz"):
        message = errors.loc[name, "error"]
        assert name in message, message
        assert errors.loc[name, [*PROB_COLUMNS, "valence", "model", "width", "frame"]].isna().all()
    assert "empty (0 bytes)" in errors.loc["empty.jpg", "error"]
    assert "not a recognised image format" in errors.loc["notes.jpg", "error"]
    assert (
        "truncated" in errors.loc["corrupt.jpg", "error"] or "corrupt" in errors.loc["corrupt.jpg", "error"]
    )
    assert "unsupported file type '.xyz'" in errors.loc["data.xyz", "error"]
    # e.jpg: the box that runs past the border is clipped and predicted; no error there
    e_rows = df[df["source"].str.endswith("e.jpg")]
    assert e_rows["error"].isna().all() and len(e_rows) == 2


def test_csv_and_parquet_match_jsonl(reference, folder, model_path, tmp_path):
    ref = read_prediction_table(reference)
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"out.{suffix}"
        assert _predict(folder, model_path, out, "--workers", "0") == 0
        df = read_prediction_table(out)
        assert list(df.columns) == list(COLUMNS)
        pd.testing.assert_frame_equal(df, ref, check_exact=False, rtol=1e-9)
    raw = pd.read_csv(tmp_path / "out.csv")
    assert raw["categories"].dropna().str.contains("Affection").all()  # ";"-joined names in CSV
    assert list(pd.read_parquet(tmp_path / "out.parquet").columns) == list(COLUMNS)
    # --format overrides the suffix
    out = tmp_path / "table.txt"
    assert _predict(folder, model_path, out, "--workers", "0", "--format", "csv") == 0
    assert out.read_text().startswith("source,frame,time_s,person,track_id,x1")


def test_resume_after_interruption_equals_uninterrupted(reference, folder, model_path, tmp_path, monkeypatch):
    out = tmp_path / "run.jsonl"
    calls = {"append": 0}
    original = PartialLog.append

    def interrupted_append(self, source, rows, done):
        calls["append"] += 1
        if calls["append"] > 4:
            raise KeyboardInterrupt
        return original(self, source, rows, done)

    monkeypatch.setattr(PartialLog, "append", interrupted_append)
    assert _predict(folder, model_path, out, "--workers", "0") == 130
    assert not out.exists()
    sidecar = out.with_name(out.name + ".partial")
    assert len(sidecar.read_text().splitlines()) == 1 + 4  # header + four finished sources
    monkeypatch.setattr(PartialLog, "append", original)
    with open(sidecar, "a") as f:
        f.write('{"source": "half-written line of a killed run", "done": tr')  # no newline: cut mid-write

    import emoctx.inference.decode as decode

    decoded = []
    real_read = decode.read_image
    monkeypatch.setattr(
        decode, "read_image", lambda path, **kw: decoded.append(Path(path).name) or real_read(path, **kw)
    )
    assert _predict(folder, model_path, out, "--workers", "0", "--resume") == 0
    assert not sidecar.exists()
    n_sources = 10  # 6 photos + 4 bad files
    # Resumed by whole groups (16 images at --batch-size 4): the unfinished group is done again, every image
    # but data.xyz (never decoded); tests/test_predict_reliability.py resumes after a finished group.
    assert len(decoded) == n_sources - 1
    assert out.read_bytes() == reference.read_bytes()


def test_resume_refuses_other_settings(folder, model_path, tmp_path):
    out = tmp_path / "r.jsonl"
    sidecar = PartialLog(out)
    sidecar.start({"model": "other@000000000000"}, resume=False)
    sidecar.close()
    with pytest.raises(EmoctxError, match="other settings"):
        from emoctx.inference.runner import predict_to_file

        predict_to_file(
            Predictor(model_path, BoxFileDetector(folder["boxes"]), num_workers=0),
            [folder["images"]],
            out,
            resume=True,
            progress=False,
        )


class FixedDetector:
    """Always the same boxes (box-dependent logic without a detection model)."""

    def __init__(self, boxes):
        self.boxes = boxes
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        return [[Detection(tuple(b), 0.9) for b in self.boxes] for _ in images]


def test_python_api_in_memory(model_path):
    rng = np.random.default_rng(1)
    arrays = [_scene(rng, people=[(10, 10, 100, 200)]), _scene(rng, 200, 150)]
    pil = Image.fromarray(arrays[0])
    grey = arrays[1][:, :, 0]
    detector = FixedDetector([(10, 10, 100, 200), (120, 20, 180, 140)])
    predictor = Predictor(model_path, detector, num_workers=0, precision="fp32", min_box=0)
    results = predictor.predict_images([arrays[0], pil, grey], boxes=[None, [[10, 10, 100, 200]], None])
    assert detector.calls == 1  # the two images without given boxes went through one detector call
    assert [len(r.persons) for r in results] == [2, 1, 2]
    assert results[1].persons[0].det_score == 1.0 and results[0].persons[0].det_score == pytest.approx(0.9)
    # the same pixels and box give the same prediction, whether array or PIL
    np.testing.assert_allclose(
        results[0].persons[0].probabilities, results[1].persons[0].probabilities, atol=1e-6
    )
    d = results[0].to_dict()
    assert d["source"] is None and d["frame"] == -1 and (d["width"], d["height"]) == (320, 240)
    person = d["persons"][0]
    assert set(PROB_COLUMNS) <= set(person) and person["x2"] == 100.0
    assert json.loads(json.dumps(d)) == d  # plain values only
    frame = results[2].to_frame()
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 2 and frame["width"].iloc[0] == 200
    top = results[0].persons[0].top(3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert 1.0 <= results[0].persons[0].valence <= 10.0
    table = results_frame(results)
    assert len(table) == 5 and table["person"].tolist() == [0, 1, 0, 0, 1]
    # a box outside the image: an error row for that person, the others are predicted
    out = predictor.predict_images([arrays[1]], boxes=[[[10, 10, 50, 50], [500, 500, 600, 600]]])[0]
    assert out.persons[0].error is None and "outside the 200x150 image" in out.persons[1].error
    assert out.persons[1].probabilities is None and out.to_frame()["error"].notna().tolist() == [False, True]
    # unreadable file given by path: an error result, not an exception
    bad = predictor.predict_images(["/nonexistent/x.jpg"], boxes=[[]])[0]
    assert "no such file" in bad.error and bad.to_rows()[0]["source"] == "/nonexistent/x.jpg"


def _manual_forward(predictor, image, boxes, mask_subject):
    """The training transform (preset none) per person and a plain forward: what the model saw in training."""
    transform = build_transform(predictor.info.preprocessing.with_mask(mask_subject))
    items = [transform(image, b) for b in boxes]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("body", "scene")}
    net, _ = load_model(predictor.model_path)  # the plain network, as training saved it
    with torch.inference_mode():
        out = net(batch)
    return torch.sigmoid(out["logits"]).numpy(), labels.vad_from_model(out["vad"]).numpy()


def test_shared_and_masked_scenes_match_per_person_forwards(model_path):
    rng = np.random.default_rng(2)
    boxes = [(20, 30, 120, 230), (150, 40, 260, 235), (200, 10, 300, 120)]
    image = _scene(rng, people=boxes)
    probs = {}
    for mode in ("shared", "masked"):
        predictor = Predictor(model_path, num_workers=0, precision="fp32", scene_mode=mode, batch_size=2)
        result = predictor.predict_images([image], boxes=[boxes])[0]
        got = np.stack([p.probabilities for p in result.persons])
        vad = np.stack([p.vad for p in result.persons])
        want, want_vad = _manual_forward(predictor, image, boxes, mask_subject=(mode == "masked"))
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(vad, want_vad, atol=1e-4)
        probs[mode] = got
    assert probs["shared"].shape == probs["masked"].shape == (3, labels.NUM_CATEGORIES)
    assert np.abs(probs["shared"] - probs["masked"]).max() > 0  # masking changes what the scene stream sees


def test_scene_mode_auto_follows_training(tmp_path):
    masked = _save_model(tmp_path / "masked.safetensors", mask_subject=True)
    plain = _save_model(tmp_path / "plain.safetensors", training={"lr": 0.1})
    assert Predictor(masked, num_workers=0).scene_mode == "masked"
    assert Predictor(plain, num_workers=0).scene_mode == "shared"
    with pytest.raises(EmoctxError, match="scene mode"):
        Predictor(plain, scene_mode="sometimes")


def test_bf16_close_to_fp32(model_path):
    rng = np.random.default_rng(3)
    images = [_scene(rng, people=[(20, 30, 120, 230), (150, 40, 260, 235)]) for _ in range(4)]
    boxes = [[(20, 30, 120, 230), (150, 40, 260, 235)]] * 4
    out = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(model_path, num_workers=0, precision=precision)
        assert predictor.precision == precision
        results = predictor.predict_images(images, boxes=boxes)
        out[precision] = np.stack([p.probabilities for r in results for p in r.persons])
    diff = float(np.abs(out["fp32"] - out["bf16"]).max())
    print(f"max |p_bf16 - p_fp32| = {diff:.5f}")
    assert 0 < diff < 0.02


def test_real_photo_with_given_boxes_and_annotations(model_path, tmp_path, caplog):
    bus = import_ultralytics().utils.ASSETS / "bus.jpg"
    boxes = tmp_path / "bus_boxes.jsonl"
    people = [[50, 400, 245, 905], [220, 405, 345, 860], [670, 380, 810, 875], [0, 550, 60, 875]]
    boxes.write_text("".join(json.dumps({"source": "bus.jpg", "box": b}) + "\n" for b in people))
    out, ann = tmp_path / "bus.parquet", tmp_path / "annotated"
    argv = ["predict", str(bus), "--model", str(model_path), "--boxes", str(boxes), "--out", str(out)]
    with caplog.at_level(logging.INFO, logger="emoctx.inference.runner"):
        assert main([*argv, "--annotate", str(ann), "--no-progress", "--max-side", "640"]) == 0
    # the run says that the annotated copy is smaller than the photo (the legend on it says so too)
    assert "1 annotated image(s)/video(s) are drawn at the size the images were decoded at" in caplog.text
    df = read_prediction_table(out)
    assert len(df) == 4 and df["error"].isna().all()
    assert (df["width"].iloc[0], df["height"].iloc[0]) == Image.open(
        bus
    ).size  # original size despite --max-side
    np.testing.assert_allclose(df[["x1", "y1", "x2", "y2"]].to_numpy(), people)
    drawn = Image.open(ann / "bus.jpg")
    assert drawn.size == (480, 640)  # drawn on the reduced-size decode
    assert (
        np.abs(
            np.asarray(drawn, dtype=int) - np.asarray(Image.open(bus).resize(drawn.size), dtype=int)
        ).mean()
        > 1
    )


def test_globs_missing_paths_and_exit_status(folder, model_path, tmp_path, capsys):
    out = tmp_path / "g.jsonl"
    pattern = str(folder["images"] / "**" / "*.jpg")
    argv = ["predict", pattern, str(tmp_path / "missing.jpg"), "--model", str(model_path)]
    assert (
        main([*argv, "--boxes", str(folder["boxes"]), "--out", str(out), "--no-progress", "--workers", "0"])
        == 0
    )
    df = read_prediction_table(out)
    names = {Path(s).name for s in df["source"]}
    assert "c.png" not in names and "d.jpg" in names  # the glob picks .jpg files at any depth
    assert df[df["source"].str.endswith("missing.jpg")]["error"].str.contains("no such file").all()
    assert "person(s)" in capsys.readouterr().out
    # nothing readable at all: exit status 1
    only_bad = ["predict", str(folder["images"] / "notes.jpg"), "--model", str(model_path), "--boxes"]
    assert main([*only_bad, str(folder["boxes"]), "--out", str(tmp_path / "b.jsonl"), "--no-progress"]) == 1


def test_partial_log_keeps_only_finished_sources(tmp_path):
    log = PartialLog(tmp_path / "out.jsonl")
    assert log.path.name == "out.jsonl.partial"
    assert log.start({"model": "m"}, resume=True) == set()  # nothing to resume yet
    row = dict.fromkeys(COLUMNS)
    log.append("b.jpg", [{**row, "source": "b.jpg"}], done=True)
    log.append("clip.mp4", [{**row, "source": "clip.mp4", "frame": 0}], done=False)  # a video cut short
    log.append("a.jpg", [], done=True)  # an image without persons is done too
    log.close()
    resumed = PartialLog(tmp_path / "out.jsonl")
    assert resumed.start({"model": "m"}, resume=True) == {"a.jpg", "b.jpg"}
    resumed.append("clip.mp4", [{**row, "source": "clip.mp4", "frame": 0}], done=True)
    resumed.close()
    rows = resumed.rows({"clip.mp4": 0, "a.jpg": 1, "b.jpg": 2})
    assert [(r["source"], r["frame"]) for r in rows] == [
        ("clip.mp4", 0),
        ("b.jpg", None),
    ]  # the cut part is gone
    fresh = PartialLog(tmp_path / "out.jsonl")
    assert fresh.start({"model": "m"}, resume=False) == set()  # without resume: afresh
    fresh.remove()
    assert not fresh.path.exists()


def test_summary_option_writes_tables_and_plots(folder, model_path, tmp_path, capsys):
    out, summary = tmp_path / "p.jsonl", tmp_path / "summary"
    assert _predict(folder, model_path, out, "--workers", "0", "--summary", str(summary)) == 0
    assert "summary file(s)" in capsys.readouterr().out
    for name in ("summary.md", "categories.png", "vad.png"):
        assert (summary / name).stat().st_size > 0
    persons = int(read_prediction_table(out)["error"].isna().sum())
    assert str(persons) in (summary / "summary.md").read_text()


def test_default_workers_follow_the_free_cores(monkeypatch):
    """Decoding processes default to the cores torch's threads leave free (at most 2; 2 beside a GPU), and the
    command's --workers default defers to that."""
    import emoctx.hardware as hardware
    from emoctx.cli import build_parser

    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    for threads, expected in ((4, 0), (3, 1), (1, 2)):
        monkeypatch.setattr(hardware.torch, "get_num_threads", lambda t=threads: t)
        assert hardware.default_workers(torch.device("cpu")) == expected
    assert hardware.default_workers(torch.device("cuda")) == 2
    assert build_parser().parse_args(["predict", "x", "--model", "m"]).workers is None
