"""Model files from anywhere: the description is validated field by field, hostile files run no code (emoctx
model files, training checkpoints for --resume, and detector weights), genuine ultralytics files still load."""

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from emoctx.checkpoint import describe, load_model, save_model
from emoctx.cli import main
from emoctx.description import MAX_INPUT_SIZE
from emoctx.errors import EmoctxError
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet

MARKER_NAME = "code-ran.txt"


pytestmark = pytest.mark.usefixtures("fresh_log_handlers")


def write_marker(path):
    """What a hostile file would run: writes a marker file (and returns something harmless)."""
    Path(path).write_text("this file was written by code inside a model file")
    return {}


class Hostile:
    """Unpickling this calls write_marker: loading a file that holds it must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (write_marker, (self.marker,))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=32),
            "scene": StreamConfig("test_resnet", input_size=48),
        },
        hidden=8,
    )
    return net, describe(net)


def _file(tmp_path, net, meta, name="m.safetensors"):
    path = tmp_path / name
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(path), metadata={"emoctx": text})
    return path


def _with(meta, dotted, value):
    """A copy of ``meta`` with the field at ``dotted`` (``a.b.c``) set to ``value`` (``...`` deletes it)."""
    out = json.loads(json.dumps(meta))
    *parents, last = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("streams.body.input_size", 70000, "'streams.body.input_size' must be a whole number from 1 to 2048"),
        (
            "network.streams.scene.input_size",
            70000,
            "'network.streams.scene.input_size' must be a whole number",
        ),
        ("format_version", "abc", "'format_version' must be a positive whole number, got the string 'abc'"),
        ("network", ..., "'network' is missing"),
        ("streams", ..., "'streams' is missing"),
        ("thresholds", {"affection": "high"}, "'thresholds.affection' must be a number in [0, 1]"),
        ("thresholds", {"joy": 0.5}, "'thresholds' has unknown categor"),
        ("thresholds", [0.5] * 26, "'thresholds' must be an object, got a list"),
        ("streams.body.mean", [0.5, "x", 0.5], "'streams.body.mean[1]' must be a number"),
        ("streams.body.std", [0.5, 0.0, 0.5], "'streams.body.std[1]' must be a number in (0, 1000]"),
        ("streams.body.mean", [0.5, 0.5], "'streams.body.mean' must be a list of 3 numbers"),
        (
            "streams.scene.input_size",
            64,
            "'streams.scene.input_size' is 64, but network.streams.scene.input_size",
        ),
        ("network.hidden", 10**9, "'network.hidden' must be a whole number from 1 to 65536"),
        ("network.dropout", "0.5", "'network.dropout' must be a number"),
        ("network.streams.body.kwargs", {"checkpoint_path": "/etc/passwd"}, "names a file, folder, URL"),
        (
            "network.streams.body.kwargs",
            {"pretrained_cfg_overlay": {"file": "x.pth"}},
            "names a file, folder",
        ),
        ("network.streams.body.kwargs", {"act_layer": {"nested": 1}}, "must be a number, string, boolean"),
        ("network.streams.body.backbone", 5, "'network.streams.body.backbone' must be a non-empty string"),
        ("network.surprise", 1, "'network' has unknown key(s) ['surprise']"),
        ("score_activation", "softmax", "'score_activation' must be one of"),
        ("training", "lots", "'training' must be an object"),
        ("training.mask_subject", "false", "'training.mask_subject' must be true or false"),
        ("preprocessing", ..., "'preprocessing' is missing"),
        ("preprocessing.streams.body.region", ..., "'preprocessing.streams.body' lacks 'region'"),
        (
            "preprocessing.streams.scene.region",
            "hands",
            "'preprocessing.streams.scene.region' must be one of",
        ),
        (
            "preprocessing.streams.scene.mask",
            "image",
            "'preprocessing.streams.scene.mask' must be null or one of",
        ),
        (
            "preprocessing.streams.body.mask",
            "person",
            "'preprocessing.streams.body.mask' must be null or one of []",
        ),
        ("preprocessing.streams.body.resize", "cubic", "'preprocessing.streams.body.resize' must be one of"),
        (
            "preprocessing.streams.body.input_size",
            [64, 64],
            "'preprocessing.streams.body.input_size' is [64, 64], but streams.body.input_size is 32",
        ),
        ("preprocessing.streams.body.input_size", 32, "must be [height, width]"),
        ("preprocessing.max_side", 0, "'preprocessing.max_side' must be a whole number from 1"),
        ("preprocessing.streams", {"body": {}}, "'preprocessing.streams' names ['body'], but the network"),
        ("streams.body.resize", "area", "'streams.body.resize' is not read from format v2"),
        ("vad.max", 100, "V/A/D scale 1.0-100 differs"),
        ("categories", "Affection", "'categories' must be a list of category names"),
        ("emoctx_version", 7, "'emoctx_version' must be a non-empty string"),
    ],
)
def test_every_description_field_is_checked(tmp_path, small, field, value, message):
    net, meta = small
    path = _file(tmp_path, net, _with(meta, field, value))
    with pytest.raises(EmoctxError) as err:
        load_model(path)
    assert message in str(err.value) and str(path) in str(err.value), str(err.value)


def _v1(meta, training):
    """The description as emoctx wrote it in format v1: no preprocessing, the resize rule in streams."""
    old = _with(_with(meta, "preprocessing", ...), "format_version", 1)
    old["streams"]["scene"]["resize"] = "bilinear"
    old["training"] = training
    return old


def test_format_v1_files_still_load_with_their_preprocessing(tmp_path, small):
    """A v1 file (what training wrote before the preprocessing field) loads, its preprocessing derived from what
    v1 held; saved again (as calibrate does) it is a v2 file with the same preprocessing."""
    net, meta = small
    assert meta["format_version"] == 2 and "resize" not in meta["streams"]["scene"]
    written = {"data": {"mask_subject": True, "max_side": 640, "batch_size": 4}, "mask_subject": True}
    path = _file(tmp_path, net, _v1(meta, written), "v1.safetensors")
    _, info = load_model(path)
    prep = info.preprocessing
    assert info.format_version == 1 and prep.mask_subject and prep.max_side == 640
    assert prep.streams["scene"].resize == "bilinear" and prep.streams["body"].resize == "area"
    assert prep.streams["scene"].mask == "person" and prep.streams["body"].region == "person"
    assert prep.streams["scene"].input_size == (48, 48)
    again = save_model(tmp_path / "v2.safetensors", net, info)
    _, info2 = load_model(again)
    assert (
        info2.format_version == 2 and info2.preprocessing == prep and "resize" not in info2.streams["scene"]
    )
    plain = _file(tmp_path, net, _v1(meta, {"data": {"mask_subject": False}}), "v1plain.safetensors")
    assert not load_model(plain)[1].preprocessing.mask_subject
    # v1 files knew no regions: a stream they cannot name is a clear error
    odd = _v1(meta, {})
    odd["network"]["streams"]["hands"] = odd["network"]["streams"].pop("body")
    odd["streams"] = {"scene": odd["streams"]["scene"], "hands": odd["streams"]["body"]}
    odd["network"]["streams"] = {
        "scene": odd["network"]["streams"]["scene"],
        "hands": odd["network"]["streams"]["hands"],
    }
    with pytest.raises(EmoctxError, match="stream 'hands': no region"):
        load_model(_file(tmp_path, net, odd, "v1odd.safetensors"))


def test_malformed_descriptions_are_clear_errors(tmp_path, small, capsys):
    net, meta = small
    cases = {
        "list.safetensors": (json.dumps([meta]), "not an emoctx model file"),
        "nested.safetensors": ("[" * 100_000 + "]" * 100_000, "not valid JSON (RecursionError"),
        "garbage.safetensors": ("{not json", "not valid JSON"),
        "nan.safetensors": (
            json.dumps(_with(meta, "streams.body.mean", [float("nan")] * 3)),
            "must be a number",
        ),
    }
    for name, (text, message) in cases.items():
        with pytest.raises(EmoctxError, match=message.replace("(", r"\(")):
            load_model(_file(tmp_path, net, text, name))
    # a training checkpoint with a description that is not an object
    ckpt = tmp_path / "c.ckpt"
    torch.save({"emoctx": [1, 2], "state_dict": {}}, ckpt)
    with pytest.raises(EmoctxError, match="not an emoctx model file"):
        load_model(ckpt)
    # the command line reports it in one line, before any work
    bad = _file(tmp_path, net, _with(meta, "streams.body.input_size", 70000), "huge.safetensors")
    status = main(["export", str(bad), "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert status == 2 and "input_size" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_unknown_top_level_fields_are_kept_and_warned_about(tmp_path, small, caplog):
    net, meta = small
    newer = dict(meta, recorded_versions={"torch": "9.9", "timm": "9.9"}, training_precision="bf16-mixed")
    path = _file(tmp_path, net, newer)
    with caplog.at_level(logging.WARNING, logger="emoctx.description"):
        back, info = load_model(path)
    assert "recorded_versions, training_precision" in caplog.text
    assert info.extra == {
        "recorded_versions": {"torch": "9.9", "timm": "9.9"},
        "training_precision": "bf16-mixed",
    }
    # saving again (what calibrate does) keeps them at the top level
    again = save_model(tmp_path / "again.safetensors", back, info)
    from safetensors import safe_open

    with safe_open(str(again), framework="pt") as f:
        stored = json.loads(f.metadata()["emoctx"])
    assert stored["recorded_versions"] == {"torch": "9.9", "timm": "9.9"} and "extra" not in stored
    # their values must still be plain JSON
    with pytest.raises(EmoctxError, match=r"'later\[0\]' holds a number that is not finite"):
        load_model(_file(tmp_path, net, dict(meta, later=[float("inf")]), "inf.safetensors"))
    assert MAX_INPUT_SIZE == 2048
    # a field ModelInfo knows but the rules do not (added later): accepted if it holds JSON, not warned about
    from emoctx.description import validate_description

    caplog.clear()
    known, extra = validate_description(dict(meta, precision="bf16-mixed"), "x", fields={"precision"})
    assert known["precision"] == "bf16-mixed" and extra == {} and "precision" not in caplog.text


def test_hostile_training_checkpoint_for_resume_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """``train --resume`` with a checkpoint whose pickle calls a function: one clear line, and nothing runs."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER_NAME
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Hostile(marker)}, evil)
    with open(tmp_path / "old.ckpt", "wb") as f:  # the old pickle format too
        pickle.dump({"state_dict": {}, "payload": Hostile(marker)}, f)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "synth_tiny.yaml")
    for name in ("evil.ckpt", "old.ckpt"):
        argv = ["train", "--config", config, "--data.root", str(tmp_path), "--trainer.logger", "false"]
        argv += ["--trainer.default_root_dir", str(tmp_path / "run"), "--resume", str(tmp_path / name)]
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 2, err
        assert f"{name}: cannot be loaded safely" in err and "Traceback" not in err, err
        assert not marker.exists()


# ------------------------------------------------------------------------------------------ detector weights
@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory):
    """Genuine ultralytics checkpoints of three tasks, saved as ultralytics saves them (``YOLO.save`` and the
    trainer's checkpoint dict), and a TorchScript export of the detection model."""
    from copy import deepcopy
    from datetime import datetime

    from emoctx.inference.yolo_weights import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG_DICT, __version__

    root = tmp_path_factory.mktemp("yolo")
    files = {}
    for task, cfg in (
        ("detect", "yolo11n.yaml"),
        ("pose", "yolo11n-pose.yaml"),
        ("segment", "yolo11n-seg.yaml"),
    ):
        model = YOLO(cfg)
        files[task] = root / f"{task}.pt"
        model.save(files[task])  # what YOLO.save writes
    # what the trainer writes (best.pt / last.pt): EMA model with its args, optimizer state, metrics, dates
    model = YOLO("yolo11n.yaml").model
    model.args = get_cfg(DEFAULT_CFG_DICT)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trained = {
        "epoch": 3,
        "best_fitness": 0.5,
        "model": None,
        "ema": deepcopy(model).half(),
        "updates": 10,
        "optimizer": opt.state_dict(),
        "scaler": None,
        "train_args": dict(DEFAULT_CFG_DICT),
        "train_metrics": {"metrics/mAP50(B)": 0.1},
        "train_results": {"epoch": [1, 2, 3]},
        "date": datetime.now().isoformat(),
        "version": __version__,
        "git": {"root": None, "branch": None, "commit": None, "origin": None},
        "license": "AGPL-3.0",
        "docs": "https://docs.ultralytics.com",
    }
    files["trainer"] = root / "trained.pt"
    torch.save(trained, files["trainer"])
    files["torchscript"] = Path(YOLO(files["detect"]).export(format="torchscript", imgsz=64))
    return files


def test_genuine_ultralytics_files_of_every_task_load_safely(yolo_files):
    from emoctx.inference.yolo_weights import load_yolo

    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    for kind, task in (("detect", "detect"), ("pose", "pose"), ("segment", "segment"), ("trainer", "detect")):
        model = load_yolo(str(yolo_files[kind]))
        assert model.task == task
        assert len(model.predict(image, imgsz=64, verbose=False, device="cpu")) == 1
    exported = load_yolo(str(yolo_files["torchscript"]))
    assert len(exported.predict(image, imgsz=64, verbose=False, device="cpu")) == 1
    # detection, pose and segmentation models all find persons for emoctx
    from emoctx.inference.detect import UltralyticsDetector

    assert UltralyticsDetector(yolo_files["trainer"]).describe().startswith("yolo:trained.pt@")
    for task in ("pose", "segment"):
        assert UltralyticsDetector(yolo_files[task]).task == task


def test_hostile_detector_weights_run_no_code(tmp_path, tiny_model_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / MARKER_NAME
    zipped = tmp_path / "evil.pt"
    torch.save({"model": Hostile(marker)}, zipped)
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as f:
        pickle.dump({"model": Hostile(marker)}, f)
    inside = tmp_path / "inside.pt"  # a hostile object deep inside an otherwise plausible checkpoint
    torch.save({"model": None, "train_args": {"x": Hostile(marker)}, "date": "2024"}, inside)
    from ultralytics import __file__ as ul_file

    arch = yaml_with_code(Path(ul_file).parent / "cfg/models/11/yolo11.yaml", marker, tmp_path / "evil.yaml")
    photo = tmp_path / "p.jpg"
    from PIL import Image

    Image.new("RGB", (64, 48), "gray").save(photo)
    for weights in (zipped, legacy, inside, arch):
        out = tmp_path / f"{weights.stem}.jsonl"
        status = main(
            [
                "predict",
                str(photo),
                "--model",
                str(tiny_model_path),
                "--detector-weights",
                str(weights),
                "--out",
                str(out),
            ]
        )
        err = capsys.readouterr().err
        assert status == 2, err
        assert f"{weights}" in err and "refused" in err and "Traceback" not in err, err
        assert not marker.exists(), f"{weights.name} ran code"
        assert not out.exists()


def yaml_with_code(template, marker, path):
    """An ultralytics model YAML whose 'activation' is Python that writes the marker when eval()-ed."""
    import yaml

    cfg = yaml.safe_load(Path(template).read_text())
    cfg["scale"] = "n"
    cfg["activation"] = f"__import__('pathlib').Path({str(marker)!r}).write_text('x') and None or nn.SiLU()"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_validator_knows_the_values_the_code_writes():
    """The validator's lists of stream resize rules and V/A/D head outputs are the code's own."""
    from emoctx import description
    from emoctx.data.transforms import RESIZES
    from emoctx.models.network import VAD_OUTPUTS

    assert description.RESIZES == RESIZES
    assert description.VAD_OUTPUTS == VAD_OUTPUTS
    from emoctx.data.preprocess import BOX_REGIONS, REGIONS
    from emoctx.losses import SCORE_ACTIVATION_OF_LOSS
    from emoctx.models.outputs import SCORE_ACTIVATIONS

    assert description.SCORE_ACTIVATIONS == SCORE_ACTIVATIONS
    assert set(SCORE_ACTIVATION_OF_LOSS.values()) <= set(SCORE_ACTIVATIONS)
    assert description.REGIONS == REGIONS and description.BOX_REGIONS == BOX_REGIONS


# ------------------------------------------------------------------------------- sharing and foreign files
def _mode(path):
    return Path(path).stat().st_mode & 0o777


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_model_files_get_the_permissions_of_any_new_file(tmp_path, small, umask, expected):
    """safetensors creates its files 0600: colleagues on a shared server could not load them."""
    import os

    net, meta = small
    previous = os.umask(umask)
    try:
        path = save_model(tmp_path / "model.safetensors", net, meta)
        assert _mode(path) == expected
        save_model(path, net, meta)  # rewritten in place (calibrate does it) keeps them
        assert _mode(path) == expected
    finally:
        os.umask(previous)


def test_files_that_are_not_emoctx_models_get_a_clear_message(tmp_path, small, tiny_model_path, capsys):
    net, meta = small
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")  # the start of an ONNX protobuf
    whole = tmp_path / "whole_module.pt"
    torch.save(torch.nn.Linear(2, 2), whole)  # a pickled module, as many projects save them
    state = tmp_path / "state_dict.pth"
    torch.save({"weight": torch.zeros(2)}, state)
    run = tmp_path / "run"
    save_model(run / "model.safetensors", net, meta)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        onnx: [
            "an ONNX file, not an emoctx model file",
            "'emoctx export'",
            "onnxruntime",
            "model.safetensors",
        ],
        whole: [
            "not an emoctx model file",
            "pickled Python object (torch.nn.modules.linear.Linear)",
            "import-baseline",
        ],
        state: ["not an emoctx model file", "no 'emoctx' description", "emoctx train"],
        run: [f"its model file is {run / 'model.safetensors'}"],
        empty: ["is a folder, not an emoctx model file", "make demo"],
    }
    for path, expected in cases.items():
        with pytest.raises(EmoctxError) as err:
            load_model(path)
        message = str(err.value)
        for text in expected:
            assert text in message, (path.name, message)
        # PyTorch's advice to load with weights_only=False (running the file's code) is never passed on.
        assert "weights_only" not in message and "will likely succeed" not in message, message
    # The command line prints it on one line, without a traceback.
    out, boxes = tmp_path / "o.jsonl", tmp_path / "boxes.csv"
    boxes.write_text("source,x1,y1,x2,y2\na.jpg,1,1,20,40\n")
    status = main(["predict", str(tmp_path), "--model", str(onnx), "--boxes", str(boxes), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("emoctx predict: error: ") and "ONNX" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_missing_model_file_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_model(tmp_path / "runs" / "demo" / "train" / "model.safetensors")
    message = str(err.value)
    assert "no such model file" in message
    # train on EMOTIC, import the common baseline's model, or the demo's model for a try
    assert (
        "emoctx convert" in message and "emoctx train --config configs/emotic_kosti_resnet18.yaml" in message
    )
    assert "emoctx import-baseline" in message and "'make demo'" in message
    assert "runs/demo/train/model.safetensors" in message


def test_validator_knows_the_network_fields_and_face_values_the_code_reads():
    """The validator keeps its own copies (it reads model files without importing the models): they are the code's."""
    from emoctx import description
    from emoctx.models import face, network

    assert set(description._NETWORK_KEYS) == set(network._CONFIG_KEYS)
    assert description.FACE_STREAM == face.FACE_STREAM
    assert description.FACE_ATTENTIONS == face.ATTENTIONS
    assert description.FACE_LANDMARKS == face.LANDMARKS
    assert description.MAX_EXPRESSIONS == network.MAX_EXPRESSIONS
