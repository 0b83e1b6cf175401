"""The engines in the commands: predict, predict-records and evaluate with --engine and --precision int8; the
table's metadata, resume, the detector's engine, the default int8 calibration set.

One tiny model (random weights) on a few EMOTIC-synth images with their boxes given; its exported graphs are
built once for the module (the engine cache beside the model) and found in the cache afterwards.
"""

import json
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from emoctx import labels
from emoctx.checkpoint import describe, save_model
from emoctx.cli import main
from emoctx.data.records import read_records
from emoctx.data.synth import generate
from emoctx.engines import TOLERANCES
from emoctx.errors import EmoctxError
from emoctx.inference import read_prediction_table
from emoctx.inference.predictor import Predictor
from emoctx.inference.results import COLUMNS, PROB_COLUMNS
from emoctx.inference.writers import metadata_path, read_table_metadata
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet

VAD = list(labels.VAD_NAMES)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """EMOTIC-synth (val and test splits), a box file of the test persons, and a tiny model whose file records
    the data it was 'trained' on (so int8 finds its validation split by default)."""
    d = tmp_path_factory.mktemp("engines")
    root = d / "synth"
    generate(root, n_train=1, n_val=3, n_test=4, image_size=(160, 120), seed=0, progress=False)
    test = read_records(root / "annotations" / "test.parquet")
    boxes = d / "boxes.csv"
    test.assign(image=[str(root / p) for p in test["image"]])[["image", "x1", "y1", "x2", "y2"]].to_csv(
        boxes, index=False
    )
    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
        },
        hidden=32,
    )
    training = {"data": {"root": str(root), "val_records": None}}
    model = save_model(d / "model" / "model.safetensors", net, describe(net, training=training))
    sources = sorted({str(root / p) for p in test["image"]})
    return {"dir": d, "root": root, "boxes": boxes, "model": model, "sources": sources, "test": test}


def _predict(s, out, *extra):
    argv = ["predict", *s["sources"], "--model", str(s["model"]), "--boxes", str(s["boxes"])]
    assert main([*argv, "--out", str(out), "--no-progress", "--workers", "0", *extra]) == 0
    return read_prediction_table(out)


@pytest.fixture(scope="module")
def reference(setup):
    """The table of PyTorch fp32: what every engine is compared with."""
    out = setup["dir"] / "torch.parquet"
    return _predict(setup, out, "--engine", "torch", "--precision", "fp32"), out


@pytest.mark.parametrize(
    ("engine", "precision", "fmt"),
    [
        ("onnxruntime", "fp32", "jsonl"),
        ("openvino", "fp32", "csv"),
        ("openvino", "int8", "parquet"),
        ("onnxruntime", "int8", "jsonl"),
    ],
)
def test_predict_with_an_engine_gives_the_torch_table(setup, reference, engine, precision, fmt, capsys):
    want, _ = reference
    out = setup["dir"] / f"{engine}-{precision}.{fmt}"
    got = _predict(setup, out, "--engine", engine, "--precision", precision)
    printed = capsys.readouterr().out
    assert f"engine {engine} {precision} (largest probability difference from PyTorch fp32: " in printed
    assert list(got.columns) == list(COLUMNS) and len(got) == len(want) == len(setup["test"])
    same = ["source", "frame", "person", "x1", "y1", "x2", "y2", "width", "height", "model", "error"]
    assert got[same].equals(want[same])  # the same rows
    tol_prob, tol_vad = TOLERANCES[precision]
    dp = float(np.abs(got[list(PROB_COLUMNS)].to_numpy() - want[list(PROB_COLUMNS)].to_numpy()).max())
    dv = float(np.abs(got[VAD].to_numpy() - want[VAD].to_numpy()).max())
    assert dp <= tol_prob and dv <= tol_vad
    if precision == "fp32":
        assert dp < 1e-5
    else:
        assert dp > 0  # int8 computes something else, within its tolerance

    meta = read_table_metadata(out)
    assert meta["engine"]["engine"] == engine and meta["engine"]["precision"] == precision
    check = meta["engine"]["check"]
    assert check["max_prob_diff"] <= check["tolerance"][0] == tol_prob
    assert meta["settings"]["engine"] == engine and meta["settings"]["precision"] == precision
    if fmt == "parquet":
        assert not metadata_path(out).exists()
        assert b"emoctx" in pq.read_schema(out).metadata
    else:
        assert metadata_path(out).is_file()
    if precision == "int8":  # calibrated on the model's validation split by default
        calibration = meta["engine"]["calibration"]
        assert calibration["name"].endswith("val.parquet") and calibration["count"] == len(
            read_records(setup["root"] / "annotations" / "val.parquet")
        )
        assert meta["settings"]["calibration"] == calibration["digest"]


def test_resume_refuses_a_changed_engine(setup, tmp_path, monkeypatch, capsys):
    from emoctx.inference.writers import PartialLog

    out = tmp_path / "t.jsonl"
    original = PartialLog.append

    def interrupted(self, source, rows, done):  # the run stops after its first source
        original(self, source, rows, done)
        raise KeyboardInterrupt

    monkeypatch.setattr(PartialLog, "append", interrupted)
    argv = ["predict", *setup["sources"], "--model", str(setup["model"]), "--boxes", str(setup["boxes"])]
    argv += ["--out", str(out), "--no-progress", "--workers", "0", "--precision", "fp32"]
    assert main([*argv, "--engine", "onnxruntime"]) == 130
    monkeypatch.undo()
    assert out.with_name("t.jsonl.partial").is_file() and not out.exists()
    capsys.readouterr()
    assert main([*argv, "--resume", "--engine", "torch"]) == 2
    err = capsys.readouterr().err
    assert "the interrupted run used other settings (engine differ" in err, err
    assert main([*argv, "--resume", "--engine", "onnxruntime"]) == 0  # the same engine resumes
    assert len(read_prediction_table(out)) == len(setup["test"])


def test_missing_openvino_names_the_extra(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    argv = ["predict", *setup["sources"], "--model", str(setup["model"]), "--boxes", str(setup["boxes"])]
    assert main([*argv, "--out", str(tmp_path / "o.jsonl"), "--engine", "openvino", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "emoctx predict: error:" in err and "pip install 'emoctx[openvino]'" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_int8_without_a_recorded_validation_split_says_what_to_name(setup, tmp_path):
    net = EmotionNet({"body": StreamConfig("test_resnet", input_size=64)}, hidden=16)
    model = save_model(tmp_path / "m.safetensors", net, describe(net))
    with pytest.raises(EmoctxError, match="--calibration-records FILE"):
        Predictor(model, engine="onnxruntime", precision="int8", num_workers=0)
    with pytest.raises(EmoctxError, match="no such calibration records file"):
        Predictor(model, engine="onnxruntime", precision="int8", calibration=tmp_path / "none.parquet")
    with pytest.raises(EmoctxError, match="torch engine does not compute in int8"):
        Predictor(setup["model"], engine="torch", precision="int8", num_workers=0)


def test_named_calibration_records_and_their_identity(setup):
    test_records = setup["root"] / "annotations" / "test.parquet"
    named = Predictor(
        setup["model"], engine="onnxruntime", precision="int8", calibration=test_records, num_workers=0
    )
    default = Predictor(setup["model"], engine="onnxruntime", precision="int8", num_workers=0)
    assert named.engine.info["calibration"]["name"].endswith("test.parquet")
    assert named.settings()["calibration"] != default.settings()["calibration"]
    assert named.engine.info["graphs"] != default.engine.info["graphs"]  # each set has its own graphs
    again = Predictor(
        setup["model"], engine="onnxruntime", precision="int8", calibration=test_records, num_workers=0
    )
    assert again.engine.info["cached"] is True and again.settings() == named.settings()


def test_predict_records_with_an_engine(setup, tmp_path, monkeypatch):
    from emoctx.inference.distributed import predict_records

    records = setup["root"] / "annotations" / "test.parquet"
    common = {"accelerator": "cpu", "devices": 1, "batch_size": 3, "num_workers": 0, "progress": False}
    ref = tmp_path / "torch.parquet"
    predict_records(setup["model"], records, setup["root"], ref, **common)
    got = tmp_path / "ov.parquet"
    result = predict_records(setup["model"], records, setup["root"], got, engine="openvino", **common)
    assert result is not None and result.rows == len(setup["test"])
    a, b = pq.read_table(ref).to_pandas(), pq.read_table(got).to_pandas()
    assert list(a.columns) == list(b.columns) and a["record"].equals(b["record"])
    assert np.abs(a[list(PROB_COLUMNS)].to_numpy() - b[list(PROB_COLUMNS)].to_numpy()).max() < 1e-5
    meta = read_table_metadata(got)
    assert meta["engine"]["engine"] == "openvino" and meta["engine"]["precision"] == "fp32"
    assert meta["engine"]["check"]["max_prob_diff"] < 1e-4
    assert read_table_metadata(ref)["engine"]["engine"] == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the engine rule, not the device check
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EmoctxError, match="runs on the CPU"):
        predict_records(setup["model"], records, setup["root"], got, engine="onnxruntime", accelerator="gpu")
    with pytest.raises(EmoctxError, match="needs an exported engine"):
        predict_records(setup["model"], records, setup["root"], got, engine="torch", precision="int8")


def test_evaluate_with_an_engine(setup, tmp_path):
    records = setup["root"] / "annotations" / "test.parquet"
    argv = [
        "evaluate",
        "--model",
        str(setup["model"]),
        "--records",
        str(records),
        "--root",
        str(setup["root"]),
    ]
    argv += ["--no-plots", "--no-progress", "--workers", "0"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    assert main([*argv, "--out", str(tmp_path / "ort"), "--engine", "onnxruntime"]) == 0
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    ort = json.loads((tmp_path / "ort" / "metrics.json").read_text())
    assert ref["source"]["engine"]["engine"] == "torch"  # the network as loaded
    engine = ort["source"]["engine"]
    assert engine["engine"] == "onnxruntime" and engine["precision"] == "fp32"
    assert engine["check"]["max_prob_diff"] < 1e-4
    assert ort["overall"]["vad_mae"] == pytest.approx(ref["overall"]["vad_mae"], abs=1e-4)
    assert (
        main([*argv, "--out", str(tmp_path / "int8"), "--engine", "onnxruntime", "--precision", "int8"]) == 0
    )
    int8 = json.loads((tmp_path / "int8" / "metrics.json").read_text())["source"]["engine"]
    assert int8["precision"] == "int8" and int8["calibration"]["name"].endswith("val.parquet")


# ------------------------------------------------------------------------------------------------ detector
@pytest.mark.default_engines
def test_detector_engine_choice(setup, yolo_weights, monkeypatch):
    from emoctx.engines import choice

    common = {"engine": "torch", "num_workers": 0, "detector_weights": yolo_weights, "imgsz": 64}
    monkeypatch.setattr(choice, "have_openvino", lambda: False)
    auto = Predictor(setup["model"], **common)
    assert auto.detector_engine == "onnxruntime"  # a CPU without OpenVINO
    assert auto.detector.weights.endswith(".onnx") and "det.pt.engines" in auto.detector.weights
    assert auto.settings()["detector_engine"] == "onnxruntime"
    forced = Predictor(setup["model"], detector_engine="torch", **common)
    assert forced.detector.weights == str(yolo_weights) and forced.settings()["detector_engine"] == "torch"
    monkeypatch.setattr(choice, "have_openvino", lambda: True)
    assert Predictor(setup["model"], **common).detector_engine == "openvino"
    arch = Predictor(setup["model"], engine="torch", num_workers=0, detector_weights="yolo11n.yaml")
    assert arch.detector_engine == "torch"  # no weights file to key an export by
    with pytest.raises(EmoctxError, match="unknown detector engine 'tensorrt'"):
        Predictor(setup["model"], detector_engine="tensorrt", **common)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert len(auto.predict_images([image])) == 1  # ultralytics runs the ONNX export


def test_predict_records_engine_and_precision_names(monkeypatch):
    """Which path predict-records takes for each --engine and --precision (nothing is built)."""
    import emoctx.hardware as hardware
    from emoctx.inference.distributed import engine_spec

    for native, want in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda native=native: native)
        assert engine_spec("m.safetensors", "torch", "auto", "cpu") == (None, want)
    assert engine_spec("m.safetensors", "torch", "fp32", "cpu") == (None, "32-true")
    assert engine_spec("m.safetensors", "torch", "16-mixed", "cpu") == (None, "16-mixed")
    spec, lightning = engine_spec("m.safetensors", "openvino", "bf16-mixed", "cpu", engine_cache="c")
    assert (spec.engine, spec.precision, spec.cache_dir, lightning) == ("openvino", "bf16", "c", "32-true")
    spec, _ = engine_spec("m.safetensors", "onnxruntime", "int8", "cpu", calibration_records="val.parquet")
    assert (spec.precision, spec.calibration_records) == ("int8", "val.parquet")
    with pytest.raises(EmoctxError, match="computes in fp32, bf16 or int8"):
        engine_spec("m.safetensors", "onnxruntime", "16-mixed", "cpu")
    with pytest.raises(EmoctxError, match="unknown engine 'tensorrt'"):
        engine_spec("m.safetensors", "tensorrt", "fp32", "cpu")
