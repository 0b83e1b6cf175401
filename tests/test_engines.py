"""Inference engines: parity with PyTorch fp32, the graph cache, int8, missing runtimes, the default rule.

One real export per module (the tiny model's graphs); the cache tests copy those graphs in place of an export
(the same model content gives the same graphs), so they count exports without paying for them.
"""

import logging
import os
import shutil
import sys
import threading

import numpy as np
import pytest
import torch

from emoctx import hardware, labels
from emoctx.checkpoint import describe, load_model, save_model
from emoctx.engines import (
    TOLERANCES,
    CalibrationSet,
    build_engine,
    check_inputs,
    default_engine,
)
from emoctx.engines import build as build_module
from emoctx.engines import cache as cache_module
from emoctx.engines.base import outputs_on_scales
from emoctx.engines.choice import resolve_precision
from emoctx.engines.runtimes import OnnxRuntimeEngine
from emoctx.errors import EmoctxError
from emoctx.hardware import cpu_supports_bf16
from emoctx.inference.predictor import Predictor

NATIVE_BF16 = cpu_supports_bf16()
needs_native_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="bf16 is emulated on this CPU")
CASES = [
    ("torch", "fp32"),
    pytest.param("torch", "bf16", marks=needs_native_bf16),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    pytest.param("openvino", "bf16", marks=needs_native_bf16),
]


@pytest.fixture(scope="module")
def model(tiny_model_path):
    """The tiny model, with its fp32 graphs exported once (every later build of it finds them in the cache)."""
    build_engine(tiny_model_path, "onnxruntime", "fp32")
    return tiny_model_path


@pytest.fixture
def copy_of(model, tmp_path):
    """A byte-identical copy of the tiny model in a fresh folder (no cache yet)."""

    def make(name="model.safetensors"):
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        return shutil.copyfile(model, folder / name)

    return make


@pytest.fixture
def exports(model, monkeypatch):
    """Count exports; each one copies the tiny model's graphs instead of running the exporter."""
    entry = next(p for p in (model.parent / (model.name + ".engines")).glob("*/onnx-fp32-*") if p.is_dir())
    calls = []

    def fake_export(net, preprocessing, folder, opset, what="model"):
        calls.append(folder)
        for f in entry.iterdir():
            if f.suffix == ".onnx":
                shutil.copyfile(f, folder / f.name)
        import json

        manifest = json.loads((entry / "manifest.json").read_text())
        return {"streams": manifest["streams"], "head": manifest["head"]}

    monkeypatch.setattr(build_module, "export_graphs", fake_export)
    return calls


def _reference(model, inputs):
    net, info = load_model(model)
    with torch.inference_mode():
        return outputs_on_scales(net(inputs), info.score_activation)


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize(("engine", "precision"), CASES)
def test_engine_matches_pytorch_fp32(model, engine, precision):
    built = build_engine(model, engine, precision)
    assert (built.name, built.precision) == (engine, precision)
    assert built.check.passed and built.check.batch == 3
    tol_prob, tol_vad = TOLERANCES[precision]
    assert built.check.max_prob_diff <= tol_prob and built.check.max_vad_diff <= tol_vad
    if precision == "fp32":
        assert built.check.max_prob_diff < 1e-5

    # Another batch (another size: the batch dimension is dynamic), through encode and head.
    inputs = check_inputs(load_model(model)[1].preprocessing, batch=5, seed=7)
    features = {s: built.encode(s, x.to(built.input_dtype)) for s, x in inputs.items()}
    assert all(f.dtype == torch.float32 and f.shape[0] == 5 and f.ndim == 2 for f in features.values())
    out = built.head(features)
    assert out["logits"].shape == (5, labels.NUM_CATEGORIES) and out["vad"].shape == (5, labels.NUM_VAD)
    probs, vad = outputs_on_scales(out, "sigmoid")
    want_probs, want_vad = _reference(model, inputs)
    assert np.abs(probs - want_probs).max() <= tol_prob and np.abs(vad - want_vad).max() <= tol_vad

    described = built.describe()
    assert described["engine"] == engine and described["check"]["max_prob_diff"] == built.check.max_prob_diff
    assert described["threads"] == (torch.get_num_threads())
    with pytest.raises(EmoctxError, match="unknown stream 'face'"):
        built.encode("face", inputs["body"])


class _Counting:
    """Stands where the predictor calls its engine, counting what each stream encodes."""

    def __init__(self, engine):
        self.engine = engine
        self.encoded = {"body": [], "scene": []}
        self.input_dtype = engine.input_dtype
        self.channels_last = engine.channels_last

    def encode(self, stream, x):
        self.encoded[stream].append(int(x.shape[0]))
        return self.engine.encode(stream, x)

    def head(self, features):
        return self.engine.head(features)


def test_engine_in_the_predictor_keeps_the_scene_shared(model):
    """An engine takes the network's place in today's predictor: one scene per image, one body per person,
    and the table of the torch path."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [
        [[10, 10, 60, 100], [70, 20, 120, 110], [5, 5, 40, 40]],
        [[20, 10, 90, 100], [100, 30, 150, 110]],
    ]
    torch_path = Predictor(model, num_workers=0, precision="fp32", scene_mode="shared", min_box=0)
    want = torch_path.predict_images(images, boxes=boxes)

    predictor = Predictor(
        model, num_workers=0, precision="fp32", engine="onnxruntime", scene_mode="shared", min_box=0
    )
    counting = _Counting(predictor.engine)
    predictor.engine = counting
    got = predictor.predict_images(images, boxes=boxes)
    assert sum(counting.encoded["scene"]) == 2  # once per image
    assert sum(counting.encoded["body"]) == 5  # once per person
    for g, w in zip(got, want):
        for pg, pw in zip(g.persons, w.persons):
            assert np.abs(pg.probabilities - pw.probabilities).max() < 1e-5
            assert np.abs(pg.vad - pw.vad).max() < 1e-4


def test_an_engine_that_differs_is_refused(model, monkeypatch):
    run_head = OnnxRuntimeEngine._run_head

    def wrong_head(self, features):
        logits, vad = run_head(self, features)
        return [logits + 1.0, vad]

    monkeypatch.setattr(OnnxRuntimeEngine, "_run_head", wrong_head)
    with pytest.raises(EmoctxError, match="differs from PyTorch fp32 beyond the tolerance"):
        build_engine(model, "onnxruntime", "fp32")


def pretend_a_gpu(monkeypatch):
    """Device checks see one CUDA GPU (the engine rules are decided without touching it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_unsupported_choices_are_clear_errors(model, monkeypatch):
    pretend_a_gpu(monkeypatch)
    with pytest.raises(EmoctxError, match="unknown engine 'tensorrt'"):
        build_engine(model, "tensorrt")
    with pytest.raises(
        EmoctxError, match="torch engine does not compute in int8.*--engine onnxruntime or openvino"
    ):
        build_engine(model, "torch", "int8")
    with pytest.raises(EmoctxError, match="does not compute in bf16"):
        build_engine(model, "onnxruntime", "bf16")
    with pytest.raises(EmoctxError, match="runs on the CPU"):
        build_engine(model, "openvino", "fp32", device="cuda")
    with pytest.raises(EmoctxError, match="int8 needs calibration images"):
        build_engine(model, "onnxruntime", "int8")


# ------------------------------------------------------------------------------------------------- cache
def test_second_build_comes_from_the_cache(copy_of, exports):
    path = copy_of()
    first = build_engine(path, "onnxruntime", "fp32")
    second = build_engine(path, "openvino", "fp32")  # the same graphs serve both runtimes
    assert len(exports) == 1
    assert first.info["cached"] is False and second.info["cached"] is True
    assert first.info["graphs"] == second.info["graphs"]
    graphs = first.info["graphs"]
    digest = cache_module.file_sha256(path)
    assert graphs.startswith(str(path.parent / "model.safetensors.engines" / digest[:12]))
    assert (path.parent / "model.safetensors.engines" / "CACHEDIR.TAG").is_file()
    import json

    manifest = json.loads((path.parent / graphs / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == digest and manifest["precision"] == "fp32"
    assert set(manifest["files"]) == {"body.onnx", "scene.onnx", "head.onnx"}
    assert manifest["versions"]["torch"] == torch.__version__


def test_a_changed_model_file_is_exported_again(copy_of, exports):
    path = copy_of()
    first = build_engine(path, "onnxruntime", "fp32")
    net, info = load_model(path)
    save_model(path, net, describe(net, thresholds={s: 0.3 for s in labels.SLUGS}))  # same name, new content
    second = build_engine(path, "onnxruntime", "fp32")
    assert len(exports) == 2 and second.info["cached"] is False
    assert first.info["graphs"] != second.info["graphs"]
    folders = [p.name for p in (path.parent / "model.safetensors.engines").iterdir() if p.is_dir()]
    assert folders == [cache_module.file_sha256(path)[:12]]  # the old content's graphs are gone


def test_an_incomplete_entry_is_rebuilt(copy_of, exports):
    path = copy_of()
    first = build_engine(path, "onnxruntime", "fp32")
    (path.parent / first.info["graphs"] / "body.onnx").write_bytes(b"truncated")
    second = build_engine(path, "onnxruntime", "fp32")
    assert len(exports) == 2 and second.info["cached"] is False and second.check.passed


def test_concurrent_builds_export_once(copy_of, exports):
    path = copy_of()
    built, errors = [], []

    def run():
        try:
            built.append(build_engine(path, "onnxruntime", "fp32"))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(built) == 3
    assert len(exports) == 1
    assert sorted(e.info["cached"] for e in built) == [False, True, True]
    leftovers = [p.name for p in path.parent.glob("model.safetensors.engines/*/.*") if p.is_dir()]
    assert leftovers == []  # no temporary folders left behind


def _read_only(monkeypatch, folder):
    """Make ``folder`` unwritable: by its permissions, or (as root, whom permissions do not stop) by refusing
    the cache's writes there."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = cache_module._probe

    def probe(target):
        if str(target).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(target))
        real(target)

    monkeypatch.setattr(cache_module, "_probe", probe)


def test_read_only_model_folder_falls_back_to_the_user_cache(copy_of, exports, monkeypatch, caplog, tmp_path):
    path = copy_of()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    _read_only(monkeypatch, path.parent)
    try:
        with caplog.at_level(logging.WARNING, logger="emoctx.engines.cache"):
            built = build_engine(path, "onnxruntime", "fp32")
    finally:
        path.parent.chmod(0o755)
    assert built.check.passed
    assert built.info["graphs"].startswith(str(tmp_path / "user-cache" / "emoctx" / "engines"))
    assert "cannot hold its engine cache" in caplog.text
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]
    assert build_engine(path, "onnxruntime", "fp32").info["cached"] is True and len(exports) == 1


def test_a_folder_emoctx_did_not_make_is_left_alone(copy_of, exports, monkeypatch, caplog, tmp_path):
    path = copy_of()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    foreign = path.parent / "model.safetensors.engines"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING, logger="emoctx.engines.cache"):
        built = build_engine(path, "onnxruntime", "fp32")
    assert "was not made by emoctx" in caplog.text
    assert (
        sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
        and (foreign / "notes.txt").read_text() == "mine"
    )
    assert built.info["graphs"].startswith(str(tmp_path / "user-cache"))


# -------------------------------------------------------------------------------------------------- int8
def _calibration(streams, name="synthetic", seeds=range(4)):
    return CalibrationSet.from_batches(
        [check_inputs(streams, batch=8, seed=100 + s) for s in seeds], name=name
    )


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_int8_within_tolerance_with_its_calibration_recorded(model, engine):
    import json

    streams = load_model(model)[1].preprocessing
    calibration = _calibration(streams)
    built = build_engine(model, engine, "int8", calibration=calibration)
    assert built.precision == "int8" and built.check.passed
    assert (
        built.check.max_prob_diff <= TOLERANCES["int8"][0]
        and built.check.max_vad_diff <= TOLERANCES["int8"][1]
    )
    assert built.info["calibration"] == {"name": "synthetic", "count": 32, "digest": calibration.digest}
    manifest = json.loads((model.parent / built.info["graphs"] / "manifest.json").read_text())
    assert manifest["calibration"]["digest"] == calibration.digest and manifest["calibration"]["count"] == 32
    assert manifest["quantization"]["format"] == "QDQ"
    import onnx

    body = onnx.load(str(model.parent / built.info["graphs"] / "body.onnx"))
    ops = {n.op_type for n in body.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # the graph computes in int8


def test_int8_from_the_cache_reads_no_calibration_images(model):
    streams = load_model(model)[1].preprocessing
    calibration = _calibration(streams)
    first = build_engine(model, "onnxruntime", "int8", calibration=calibration)

    def unreadable():
        raise AssertionError("calibration images read although the graphs are cached")

    same = CalibrationSet(unreadable, calibration.digest, calibration.count, "same set")
    again = build_engine(model, "onnxruntime", "int8", calibration=same)
    assert again.info["cached"] is True and again.info["graphs"] == first.info["graphs"]

    other = build_engine(
        model, "onnxruntime", "int8", calibration=_calibration(streams, "other", range(4, 6))
    )
    assert other.info["graphs"] != first.info["graphs"] and other.info["calibration"]["count"] == 16


def test_calibration_identity():
    a = CalibrationSet.from_items(["a.jpg#1,2,3,4", "b.jpg#1,2,3,4"], lambda: [])
    assert a.count == 2
    assert a.digest == CalibrationSet.from_items(["a.jpg#1,2,3,4", "b.jpg#1,2,3,4"], lambda: []).digest
    assert a.digest != CalibrationSet.from_items(["a.jpg#1,2,3,4"], lambda: []).digest
    assert a.digest != CalibrationSet.from_items(["b.jpg#1,2,3,4", "a.jpg#1,2,3,4"], lambda: []).digest
    with pytest.raises(EmoctxError, match="empty"):
        CalibrationSet.from_items([], lambda: [])
    with pytest.raises(EmoctxError, match=r"expected \[B, 3, H, W\]"):
        CalibrationSet.from_batches([{"body": np.zeros((2, 64, 64), np.float32)}])


def test_calibration_images_of_the_wrong_size_are_refused(copy_of, exports):
    path = copy_of()
    wrong = CalibrationSet.from_batches(
        [{"body": torch.zeros(2, 3, 32, 32), "scene": torch.zeros(2, 3, 96, 96)}], name="wrong"
    )
    with pytest.raises(
        EmoctxError, match=r"stream 'body' images are \[3, 32, 32\], the model takes \[3, 64, 64\]"
    ):
        build_engine(path, "onnxruntime", "int8", calibration=wrong)


# --------------------------------------------------------------------------------------- optional packages
def test_missing_openvino_names_the_extra(copy_of, exports, monkeypatch):
    path = copy_of()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(EmoctxError, match=r"pip install 'emoctx\[openvino\]'"):
        build_engine(path, "openvino", "fp32")
    assert exports == [] and not (path.parent / "model.safetensors.engines").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # a dependency, missing only from a broken install
    with pytest.raises(EmoctxError, match="install it with pip install onnxruntime"):
        build_engine(path, "onnxruntime", "fp32")


# ------------------------------------------------------------------------------------------ default rule
@pytest.mark.parametrize("openvino", [True, False])
def test_default_engine_follows_the_hardware(monkeypatch, openvino):
    from emoctx.engines import choice

    monkeypatch.setattr(choice, "have_openvino", lambda: openvino)
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)  # e.g. AVX512-BF16
    assert default_engine("cpu") == ("openvino" if openvino else "torch", "bf16")
    assert default_engine("cpu", "fp32") == ("onnxruntime", "fp32")
    assert default_engine("cpu", "int8") == ("openvino" if openvino else "onnxruntime", "int8")
    assert resolve_precision("openvino", "auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)  # AVX2 only: bf16 emulated
    assert default_engine("cpu") == ("onnxruntime", "fp32")
    assert default_engine("cpu", "int8") == ("openvino" if openvino else "onnxruntime", "int8")
    assert resolve_precision("torch", "auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("openvino", "auto", torch.device("cpu")) == "fp32"
    pretend_a_gpu(monkeypatch)
    assert default_engine("cuda") == ("torch", "auto")  # decided without touching a GPU


def test_default_detector_engine(monkeypatch):
    import importlib.util

    from emoctx.engines.choice import default_detector_engine

    pretend_a_gpu(monkeypatch)
    assert default_detector_engine("cuda") == "torch"
    real = importlib.util.find_spec
    assert default_detector_engine("cpu") == ("openvino" if real("openvino") else "onnxruntime")
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    assert default_detector_engine("cpu") == "onnxruntime"


@pytest.mark.default_engines
def test_auto_builds_the_default_engine(model, monkeypatch):
    from emoctx.engines import choice

    monkeypatch.setattr(choice, "have_openvino", lambda: False)
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    built = build_engine(model)  # a CPU without native bf16: onnxruntime fp32
    assert (built.name, built.precision) == ("onnxruntime", "fp32") and built.info["cached"] is True
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    built = build_engine(model)
    assert (built.name, built.precision) == ("torch", "bf16") and built.input_dtype == torch.bfloat16


def test_openvino_engines_share_the_process_core(model, monkeypatch):
    """Every OpenVINO engine compiles on the process's one core (see the next test for why)."""
    import openvino

    from emoctx.engines import runtimes

    core = runtimes.openvino_core()
    made = []
    real = openvino.Core
    monkeypatch.setattr(openvino, "Core", lambda *a, **k: made.append(1) or real(*a, **k))
    engines = [build_engine(model, "openvino", "fp32") for _ in range(2)]
    assert made == [] and runtimes.openvino_core() is core
    assert all(e.check.passed for e in engines)


@pytest.mark.slow
def test_one_openvino_core_for_the_process(model, tmp_path):
    """OpenVINO engines built and dropped in any order leave the process able to take signals (each OpenVINO
    core installs an alternate signal stack and frees it when it goes; cores dropped out of order left a freed
    one, and the next signal, such as a data-loading worker ending, killed the process)."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        f"""
        import gc, os, signal
        from emoctx.engines import build_engine
        received = []
        signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
        first = build_engine({str(model)!r}, "openvino", "fp32")
        second = build_engine({str(model)!r}, "openvino", "fp32")
        del first
        gc.collect()
        del second
        gc.collect()
        os.kill(os.getpid(), signal.SIGUSR1)
        print("signals received:", len(received))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "signals received: 1" in done.stdout


# -------------------------------------------------------------------------------------------------- detector
def test_detector_export_is_cached_beside_its_weights_and_loads_safely(yolo_weights, monkeypatch):
    from emoctx.engines import detector as detector_module
    from emoctx.inference.detect import UltralyticsDetector

    calls = []
    real = detector_module._export
    monkeypatch.setattr(detector_module, "_export", lambda *a: calls.append(a) or real(*a))
    path = detector_module.export_detector(yolo_weights, "onnxruntime", imgsz=64)
    again = detector_module.export_detector(yolo_weights, "onnxruntime", imgsz=64)
    assert path == again and len(calls) == 1 and path.endswith(".onnx")
    digest = cache_module.file_sha256(yolo_weights)[:12]
    assert path.startswith(str(yolo_weights.parent / "det.pt.engines" / digest))
    assert sorted(p.name for p in yolo_weights.parent.iterdir()) == ["det.pt", "det.pt.engines"]

    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    found = UltralyticsDetector(path, imgsz=64).detect([image, image])  # ultralytics' ONNX Runtime backend
    assert len(found) == 2 and all(isinstance(f, list) for f in found)
    assert detector_module.export_detector(yolo_weights, "torch") == str(yolo_weights)


def test_detector_openvino_export_of_an_architecture(tmp_path):
    from emoctx.engines.detector import export_detector
    from emoctx.inference.detect import UltralyticsDetector

    with pytest.raises(EmoctxError, match="give a folder to export into"):
        export_detector("yolo11n.yaml", "openvino", imgsz=64)
    path = export_detector("yolo11n.yaml", "openvino", imgsz=64, out=tmp_path)
    assert path.endswith("_openvino_model.xml") and (tmp_path / "metadata.yaml").is_file()
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert len(UltralyticsDetector(path, imgsz=64).detect([image])) == 1  # ultralytics' OpenVINO backend
    with pytest.raises(EmoctxError, match="unknown detector engine"):
        export_detector("yolo11n.yaml", "tensorrt", out=tmp_path)
