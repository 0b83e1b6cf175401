"""ONNX export: parity with PyTorch at two batch sizes, metadata, the documented onnxruntime example, the CLI."""

import json
import re
import textwrap
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from emoctx import labels
from emoctx.checkpoint import describe, load_model, save_model
from emoctx.cli import main
from emoctx.commands import export as export_command
from emoctx.data.preprocess import PreprocessCfg
from emoctx.data.transforms import build_transform
from emoctx.errors import EmoctxError
from emoctx.inference import export
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny two-stream model with calibrated thresholds, exported through the command line."""
    d = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
        },
        hidden=32,
    )
    thresholds = {s: 0.3 for s in labels.SLUGS}
    masked = PreprocessCfg.for_streams(net.stream_specs(), mask_subject=True)  # as configs/emotic_strong.yaml
    model = save_model(
        d / "model.safetensors", net, describe(net, thresholds=thresholds, preprocessing=masked)
    )
    out = d / "model.onnx"
    assert main(["export", str(model), "--out", str(out)]) == 0
    return model, out


def test_exported_file_is_readable_by_others(exported):
    from emoctx.io import default_file_mode

    _, onnx_file = exported
    assert onnx_file.stat().st_mode & 0o777 == default_file_mode()


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(exported, batch):
    model, onnx_path = exported
    net, info = load_model(model)
    reference = export.ScoringNet(net, info.score_activation).eval()
    session = _session(onnx_path)
    assert [i.name for i in session.get_inputs()] == ["body", "scene"]
    assert session.get_inputs()[1].shape == ["batch", 3, 96, 96]  # dynamic batch, fixed image size
    assert [o.name for o in session.get_outputs()] == ["scores", "vad"]

    inputs = export.sample_inputs(info, batch=batch, seed=100 + batch)
    scores, vad = session.run(["scores", "vad"], {"body": inputs[0].numpy(), "scene": inputs[1].numpy()})
    with torch.no_grad():
        want_scores, want_vad = reference(*inputs)
    assert scores.shape == (batch, labels.NUM_CATEGORIES) and vad.shape == (batch, labels.NUM_VAD)
    np.testing.assert_allclose(scores, want_scores.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(vad, want_vad.numpy(), atol=1e-4, rtol=0)
    assert ((scores >= 0) & (scores <= 1)).all() and ((vad >= labels.VAD_MIN) & (vad <= labels.VAD_MAX)).all()
    # The raw network agrees too: scores are the sigmoid of the logits, V/A/D the 1-10 mapping of its output.
    with torch.no_grad():
        raw = net({"body": inputs[0], "scene": inputs[1]})
    np.testing.assert_allclose(scores, torch.sigmoid(raw["logits"]).numpy(), atol=1e-5, rtol=0)


def test_metadata_describes_the_model(exported):
    model, onnx_path = exported
    _, info = load_model(model)
    meta = export.read_onnx_metadata(onnx_path)
    assert meta["categories"] == list(labels.CATEGORIES)
    assert meta["thresholds"] == pytest.approx([0.3] * labels.NUM_CATEGORIES)
    assert meta["streams"]["body"] == {
        "input_size": 64,
        "mean": info.streams["body"]["mean"],
        "std": info.streams["body"]["std"],
    }
    assert meta["streams"]["scene"]["input_size"] == 96
    # How each input is made, the subject masking of this model included.
    assert meta["preprocessing"] == info.preprocessing.to_dict()
    assert meta["preprocessing"]["streams"]["scene"]["mask"] == "person"
    assert meta["preprocessing"]["streams"]["body"]["region"] == "person"
    assert meta["score_activation"] == "sigmoid" and meta["vad_names"] == list(labels.VAD_NAMES)
    assert meta["emoctx"]["network"] == info.network  # the full description, enough to rebuild the network
    # onnxruntime sees the same metadata (the documented way to read it)
    runtime_meta = _session(onnx_path).get_modelmeta().custom_metadata_map
    assert json.loads(runtime_meta["streams"]) == meta["streams"]


def test_metadata_is_strict_json_with_null_for_never_predicted():
    from emoctx.checkpoint import ModelInfo

    spec = {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    thresholds = {s: 0.4 for s in labels.SLUGS} | {labels.SLUGS[3]: None}
    meta = export.onnx_metadata(ModelInfo(network={}, streams={"body": spec}, thresholds=thresholds))

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    json_keys = ("emoctx", "preprocessing", "streams", "categories", "thresholds", "vad_names")
    decoded = {k: json.loads(meta[k], parse_constant=refuse) for k in json_keys}
    assert decoded["thresholds"][3] is None and decoded["thresholds"][0] == pytest.approx(0.4)
    assert decoded["emoctx"]["thresholds"][labels.SLUGS[3]] is None


def test_check_reports_differences_and_fails_beyond_tolerance(exported):
    model, onnx_path = exported
    net, info = load_model(model)
    reference = export.ScoringNet(net, info.score_activation)
    diffs = export.check_onnx(onnx_path, reference, info, batches=(1, 3))
    assert set(diffs) == {1, 3} and all(
        0 <= d <= export.DEFAULT_TOLERANCE for v in diffs.values() for d in v.values()
    )
    with torch.no_grad():
        net.vad_head.bias += 0.1  # the PyTorch model drifts away from the exported file
    with pytest.raises(EmoctxError, match=r"differs from PyTorch beyond the tolerance .*'vad' at batch 1"):
        export.check_onnx(onnx_path, reference, info, batches=(1,))


def _documented_recipe() -> str:
    """The indented literal block after the "Running with onnxruntime" paragraph of the export module."""
    doc = export.__doc__
    after = doc[doc.index("Running with onnxruntime") :].split("::\n", 1)[1].splitlines()
    block = []
    for line in after:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_documented_onnxruntime_example_runs(exported, tmp_path, monkeypatch, capsys):
    model, onnx_path = exported
    code = _documented_recipe()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "photo.jpg"), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    code = code.replace('"model.onnx"', repr(str(onnx_path)))
    namespace = {}
    exec(compile(code, "onnxruntime-example", "exec"), namespace)
    printed = capsys.readouterr().out
    # It prints the categories above threshold and three V/A/D values on the 1-10 scale.
    names = re.findall(r"'([^']+)'", printed.split("]")[0])
    assert set(names) <= set(labels.CATEGORIES)
    vad = [float(v) for v in re.findall(r"\d+\.\d+", printed[printed.index("]") + 1 :])]
    assert len(vad) == 3 and all(labels.VAD_MIN <= v <= labels.VAD_MAX for v in vad)

    # The example's preprocessing is emoctx's own (the transform training and prediction use), masking
    # included: this model was trained with the subject masked out of the scene.
    _, info = load_model(model)
    assert info.preprocessing.mask_subject
    assert namespace["streams"] == info.preprocessing.to_dict()["streams"]
    box = (namespace["x1"], namespace["y1"], namespace["x2"], namespace["y2"])
    ours = build_transform(info.preprocessing)(namespace["image"], box)
    for name in ("body", "scene"):
        np.testing.assert_allclose(namespace["feeds"][name][0], ours[name].numpy(), atol=1e-5, rtol=0)
    masked = (namespace["feeds"]["scene"][0] == 0).all(axis=0)
    assert masked.sum() > 100 and torch.equal(torch.from_numpy(masked), (ours["scene"] == 0).all(dim=0))


def test_readme_onnx_recipe_is_the_documented_one():
    """The README's onnxruntime recipe is the one tested above (the export module's), line for line."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### ONNX") :]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.strip() == _documented_recipe().strip()


def test_command_defaults_match_the_library():
    assert export_command.DEFAULT_OPSET == export.DEFAULT_OPSET
    assert export_command.DEFAULT_TOLERANCE == export.DEFAULT_TOLERANCE


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(EmoctxError, match="model.safetensors"):
        export.export_onnx(bad, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
