"""The benchmark harness (scripts/bench.py) at toy sizes: every section runs and reports what it measured.

Behaviour only: the figures of a --quick run mean nothing, so no timing is asserted.
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("emoctx_bench_script", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script is executed
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture
def no_native_bf16(monkeypatch):
    """This CPU as one without native bf16 (AVX2 only), where bf16 arithmetic is emulated."""
    import emoctx.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)


FAST_SECTIONS = "floor,predict,detector,training,accuracy"  # the memory section starts processes: slow


@pytest.mark.parametrize(
    "sections",
    [pytest.param(FAST_SECTIONS, id="fast-sections"), pytest.param(None, id="all", marks=pytest.mark.slow)],
)
def test_quick_run_measures_every_section(bench, tmp_path, capsys, no_native_bf16, sections):
    """The harness at toy sizes, as on a CPU without native bf16: every bf16 row is skipped and said so.

    The default run leaves out the memory section (its processes cost more than the rest together; its jobs
    are checked by ``test_memory_section_runs_fresh_processes_in_the_default_precision``)."""
    out = tmp_path / "bench"
    res = bench.main(["--quick", "--out", str(out), *(["--sections", sections] if sections else [])])
    printed = capsys.readouterr().out

    # Both files are written, and the Markdown file is what was printed.
    assert json.loads((out / "bench.json").read_text())["plan"]["arch"] == "tiny"
    table = (out / "bench.md").read_text()
    assert table.strip() in printed
    for heading in ("**Model floor**", "**Prediction**", "**Detector**", "**Training**", "**Accuracy cost**"):
        assert heading in table
    assert ("**Memory**" in table) is (sections is None)
    assert res["machine"]["native_bf16"] is False and bench.NO_BF16 in table

    floor = res["floor"]["persons_per_s"]
    engines = [label for label, _, _ in bench.engine_rows(False, bench.have_openvino())]
    assert set(floor) == {"fp32", "fp32 channels-last", *engines}
    assert not any("bf16" in label for label in floor)
    assert all(_positive(rate) for rates in floor.values() for rate in rates.values())
    assert all(set(rates) == {"1", "4"} for rates in floor.values())
    # Each engine built twice: exported (int8: calibrated) into an empty cache, then from the cache.
    builds = res["floor"]["engines"]
    assert set(builds) == set(engines)
    for e in builds.values():
        assert e["check"]["max_prob_diff"] <= e["check"]["tolerance"][0]
        assert e["test_max_prob_diff"] <= e["check"]["tolerance"][0]
        assert (e["cached"] is True) is (e["engine"] != "torch")
        assert (e["calibration"] is not None) is (e["precision"] == "int8")
    assert (
        builds["engine onnxruntime fp32"]["export_s"] > 0
        and builds["engine onnxruntime int8"]["quantize_s"] > 0
    )
    assert "**Engines: building**" in table and "engine onnxruntime int8" in table
    assert "CPU flags: avx2" in table

    # Every prediction mode predicted every given box, in fp32; the baseline ran beside them.
    pred = res["predict"]
    assert set(pred["persons_per_s"]) == set(bench.prediction_modes(False)) == set(pred["modes"])
    assert {precision for _, precision, _ in pred["modes"].values()} == {"fp32", "int8"}
    engines = {"torch", "onnxruntime", *(["openvino"] if bench.have_openvino() else [])}
    assert {engine for engine, _, _ in pred["modes"].values()} == engines
    assert set(pred["first_run_seconds"]) == {f"{e} {p}" for e, p, _ in pred["modes"].values()}
    test = bench.records_of(out / "work" / "synth640", "test")
    predicted_images = bench.first_images(test, pred["images"])
    assert pred["persons"] == int(test["image"].isin(predicted_images).sum()) > pred["images"]
    assert all(_positive(v) for v in pred["persons_per_s"].values())
    assert _positive(res["baseline"]["persons_per_s"])
    assert "baseline reference" in table and "bf16 shared" not in table
    assert "onnxruntime fp32 shared (default)" in table and "onnxruntime int8 shared" in table

    assert _positive(res["detector"]["images_per_s"]) and res["detector"]["imgsz"] == 640
    detectors = res["detector"]["engines"]
    assert set(detectors) == set(bench.detector_engines(bench.have_openvino()))
    assert all(_positive(d["images_per_s"]) for d in detectors.values())
    assert all(d["export_s"] > 0 for e, d in detectors.items() if e != "torch")
    for when in ("roofline_start", "roofline_end"):
        assert _positive(res[when]["fp32"]) and res[when]["bf16"] is None
    assert "Matrix multiply (128x128" in table and "bf16 not measured" in table

    training = res["training"]
    assert training["precision"] == "32-true"
    assert _positive(training["samples_per_s"]["memory"]) and _positive(training["samples_per_s"]["jpeg"])
    assert training["ratio"] == pytest.approx(
        training["samples_per_s"]["jpeg"] / training["samples_per_s"]["memory"]
    )

    if sections is None:
        # Peak memory of both runs at both dataset sizes, each from its own process (told to run fp32).
        sizes = {str(n) for n in bench.QUICK.memory_images}
        assert res["memory"]["predict_mode"] == ["fp32", "shared"]
        assert res["memory"]["training_precision"] == "32-true"
        for what in ("predict", "training"):
            assert set(res["memory"][what]) == sizes
            for peak in res["memory"][what].values():
                assert peak["main"] > 50 and peak["largest_child"] > 0 and peak["count"] > 0
                assert 50 < peak["retained"] <= peak["main"]  # Linux with glibc here

    # Two models trained here (in fp32: the config asks for precision auto), each run shared/masked in fp32.
    models = res["accuracy"]["models"]
    assert len(models) == 2 and res["accuracy"]["precisions"] == ["fp32"]
    for entry in models.values():
        from emoctx.checkpoint import load_model

        assert load_model(entry["path"])[1].training["precision"] == "32-true"
        assert set(entry["modes"]) == {"shared", "masked"}
        for r in entry["modes"].values():
            assert 0 < r["mAP_fp32"] <= 1
            assert r["mAP_bf16"] is None and r["max_abs_prob_diff"] is None
        # int8 beside fp32 on the same inputs; the fp32 engine reproduces PyTorch
        rows = entry["int8"]["rows"]
        assert {"PyTorch fp32", "onnxruntime fp32", "onnxruntime int8"} <= set(rows)
        assert rows["onnxruntime fp32"]["max_prob_diff"] < 1e-5
        assert rows["onnxruntime fp32"]["mAP"] == pytest.approx(rows["PyTorch fp32"]["mAP"])
        assert 0 < rows["onnxruntime int8"]["mAP"] <= 1 and rows["onnxruntime int8"]["max_prob_diff"] <= 0.15
        assert entry["int8"]["calibration"]["count"] == bench.QUICK.calibration_persons
    assert "**int8 accuracy cost**" in table
    assert res["accuracy"]["persons"] > 0


def test_given_model_and_selected_sections(bench, tmp_path, capsys):
    """--model skips the training of the accuracy section; --sections limits the run. bf16 rows are there
    exactly when this CPU has native bf16."""
    from emoctx.checkpoint import describe, save_model
    from emoctx.hardware import cpu_supports_bf16

    net = bench.build_net("tiny")
    model = save_model(tmp_path / "given.safetensors", net, describe(net))
    res = bench.main(
        ["--quick", "--out", str(tmp_path / "b"), "--sections", "floor,accuracy", "--model", str(model)]
    )
    assert set(res) >= {"accuracy", "floor", "machine", "plan"} and "predict" not in res
    (label,) = res["accuracy"]["models"]
    assert "given.safetensors" in label
    printed = capsys.readouterr().out
    assert "**Accuracy cost**" in printed

    native = cpu_supports_bf16()
    assert res["machine"]["native_bf16"] is native
    assert ("bf16 autocast, channels-last" in res["floor"]["persons_per_s"]) is native
    assert (res["roofline_start"]["bf16"] is not None) is native
    assert res["accuracy"]["precisions"] == (["fp32", "bf16"] if native else ["fp32"])
    for r in res["accuracy"]["models"][label]["modes"].values():
        assert (r["mAP_bf16"] is not None) is native
        if native:
            assert 0 <= r["max_abs_prob_diff"] < 0.05
    assert (bench.NO_BF16 in printed) is not native

    with pytest.raises(SystemExit):
        bench.main(["--quick", "--out", str(tmp_path / "c"), "--sections", "floor,nonsense"])


def test_bf16_is_measured_only_where_native(bench, monkeypatch):
    """The machine's matrix multiply, the prediction modes and the training precision follow the detection."""
    import emoctx.hardware as hardware
    from emoctx.engines import choice

    for native in (True, False):
        monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda native=native: native)
        speed = bench.roofline(32, reps=1)
        assert _positive(speed["fp32"]) and (speed["bf16"] is not None) is native
        for openvino in (True, False):
            monkeypatch.setattr(choice, "have_openvino", lambda openvino=openvino: openvino)
            modes = bench.prediction_modes(native, openvino)
            assert ({p for _, p, _, _ in modes.values()} == {"fp32", "bf16", "int8"}) is native
            assert ({e for e, _, _, _ in modes.values()} == {"torch", "onnxruntime", "openvino"}) is openvino
            assert [m for label, m in modes.items() if "(default)" in label] == [
                (*bench.default_mode(native), ())
            ]
        modes = bench.prediction_modes(native)
        assert [m for label, m in modes.items() if "(default)" in label] == [
            (*bench.default_mode(native), ())
        ]
        assert bench.default_mode(native)[:2] == choice.default_engine("cpu")
        assert bench.training_precision(native) == ("bf16-mixed" if native else "32-true")


def test_memory_section_runs_fresh_processes_in_the_default_precision(bench, tmp_path, monkeypatch):
    """Which processes the memory section starts, and what they are told to run (no process is started)."""
    import emoctx.hardware as hardware

    root = bench.make_data(tmp_path / "synth", (6, 0, 6), (160, 120), seed=0)
    model = bench.save_random_model("tiny", tmp_path / "m.safetensors")
    for native in (False, True):
        monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda native=native: native)
        jobs = []

        def fake_child(kind, spec, jobs=jobs):
            jobs.append((kind, spec))
            return {"count": 1, "main": 100.0, "largest_child": 10.0, "retained": 90.0}

        monkeypatch.setattr(bench, "run_child", fake_child)
        work = tmp_path / f"work{native}"
        work.mkdir()
        result = bench.measure_memory(bench.QUICK, model, root, work, threads=1)
        sizes = [str(n) for n in bench.QUICK.memory_images]
        assert sorted(kind for kind, _ in jobs) == ["predict"] * len(sizes) + ["train"] * len(sizes)
        want = (list(bench.default_mode(native)), "bf16-mixed" if native else "32-true")
        assert want[0][1:] == ["bf16" if native else "fp32", "shared"]
        assert all((spec["mode"], spec["precision"]) == want for _, spec in jobs)
        assert (result["predict_mode"], result["training_precision"]) == want
        assert set(result["predict"]) == set(result["training"]) == set(sizes)


def test_child_peak_memory_is_its_own(bench):
    """A measuring process reports its own peak, not the memory of the process that started it (Linux's
    ``ru_maxrss`` keeps the parent's resident size across fork + exec)."""
    import numpy as np

    ballast = np.ones(1_500_000_000 // 8)  # 1.5 GB resident in this process while the child runs
    with open("/proc/self/status", encoding="ascii") as f:
        own = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    from dataclasses import asdict

    peak = bench.run_child("imports", {"plan": asdict(bench.QUICK), "threads": 1})
    assert ballast.sum() > 0
    assert 50 < peak["main"] < own - 1000


@pytest.mark.parametrize(
    "native",
    [pytest.param(False, id="no-native-bf16"), pytest.param(True, id="native-bf16", marks=pytest.mark.slow)],
)
def test_faces_section_measures_the_face_stream_and_predict_with_and_without_it(
    bench, tmp_path, capsys, monkeypatch, native
):
    """The faces section: ms per face of the face stream, and persons/s of `emoctx predict` with and without a
    face stream on EMOTIC-synth with faces; in fp32 only where bf16 is not native."""
    import emoctx.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: native)
    res = bench.main(["--quick", "--out", str(tmp_path / "b"), "--sections", "faces"])
    faces = res["faces"]
    assert set(faces["face_ms"]) == ({"fp32", "bf16"} if native else {"fp32"})
    assert all(_positive(ms) for ms in faces["face_ms"].values())
    assert set(faces["persons_per_s"]) == {"body + scene", "body + scene + face"}
    assert all(_positive(rate) for rate in faces["persons_per_s"].values())
    assert 0 < faces["faces"] < faces["persons"]  # some persons face away
    printed = capsys.readouterr().out
    assert "**Faces**" in printed and "| body + scene + face |" in printed
