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


def test_quick_run_measures_every_section(bench, tmp_path, capsys):
    out = tmp_path / "bench"
    res = bench.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out

    # Both files are written, and the Markdown file is what was printed.
    assert json.loads((out / "bench.json").read_text())["plan"]["arch"] == "tiny"
    table = (out / "bench.md").read_text()
    assert table.strip() in printed
    for heading in (
        "**Model floor**",
        "**Prediction**",
        "**Detector**",
        "**Training**",
        "**Memory**",
        "**Accuracy cost**",
    ):
        assert heading in table

    floor = res["floor"]["persons_per_s"]
    assert {"fp32", "fp32 channels-last", "bf16 autocast, channels-last"} <= set(floor)
    assert all(_positive(rate) for rates in floor.values() for rate in rates.values())
    assert all(set(rates) == {"1", "4"} for rates in floor.values())

    # Every prediction mode predicted every given box; the baseline ran beside them.
    pred = res["predict"]
    assert set(pred["persons_per_s"]) == set(bench.MODES)
    test = bench.records_of(out / "work" / "synth640", "test")
    predicted_images = bench.first_images(test, pred["images"])
    assert pred["persons"] == int(test["image"].isin(predicted_images).sum()) > pred["images"]
    assert all(_positive(v) for v in pred["persons_per_s"].values())
    assert _positive(res["baseline"]["persons_per_s"])
    assert "baseline reference" in table and "bf16 shared (default)" in table

    assert _positive(res["detector"]["images_per_s"]) and res["detector"]["imgsz"] == 640
    for when in ("roofline_start", "roofline_end"):
        assert set(res[when]) == {"fp32", "bf16"} and all(_positive(v) for v in res[when].values())
    assert "Matrix multiply" in table

    training = res["training"]
    assert _positive(training["samples_per_s"]["memory"]) and _positive(training["samples_per_s"]["jpeg"])
    assert training["ratio"] == pytest.approx(
        training["samples_per_s"]["jpeg"] / training["samples_per_s"]["memory"]
    )

    # Peak memory of both runs at both dataset sizes, each from its own process.
    sizes = {str(n) for n in bench.QUICK.memory_images}
    for what in ("predict", "training"):
        assert set(res["memory"][what]) == sizes
        for peak in res["memory"][what].values():
            assert peak["main"] > 50 and peak["largest_child"] > 0 and peak["count"] > 0
            assert 50 < peak["retained"] <= peak["main"]  # Linux with glibc here

    # Two models trained here, each run shared/masked in fp32 and bf16: mAPs and their differences.
    models = res["accuracy"]["models"]
    assert len(models) == 2
    for entry in models.values():
        assert Path(entry["path"]).is_file()
        assert set(entry["modes"]) == {"shared", "masked"}
        for r in entry["modes"].values():
            assert 0 < r["mAP_fp32"] <= 1 and 0 < r["mAP_bf16"] <= 1
            assert 0 <= r["max_abs_prob_diff"] < 0.05
    assert res["accuracy"]["persons"] > 0


def test_given_model_and_selected_sections(bench, tmp_path, capsys):
    """--model skips the training of the accuracy section; --sections limits the run."""
    from emoctx.checkpoint import describe, save_model

    net = bench.build_net("tiny")
    model = save_model(tmp_path / "given.safetensors", net, describe(net))
    res = bench.main(
        ["--quick", "--out", str(tmp_path / "b"), "--sections", "accuracy", "--model", str(model)]
    )
    assert set(res) >= {"accuracy", "machine", "plan"} and "floor" not in res and "predict" not in res
    (label,) = res["accuracy"]["models"]
    assert "given.safetensors" in label
    assert "**Accuracy cost**" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        bench.main(["--quick", "--out", str(tmp_path / "c"), "--sections", "floor,nonsense"])


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
