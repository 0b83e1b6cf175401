"""Places365 import: a checkpoint in the CSAIL layout, written by the test, converted and loaded as a scene stream."""

from __future__ import annotations

import argparse
import logging
from fractions import Fraction

import pytest
import timm
import torch
from safetensors.torch import load_file

from emoctx.commands import places365 as command
from emoctx.errors import EmoctxError
from emoctx.io import default_file_mode
from emoctx.models import EmotionNet, StreamConfig
from emoctx.models.places365 import PLACES365_CLASSES, convert_places365, extract_state_dict


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    """A ResNet-18 with a 365-way classifier, as the CSAIL training produced it (random weights)."""
    torch.manual_seed(3)
    model = timm.create_model("resnet18", num_classes=PLACES365_CLASSES)
    return {k: v.clone() for k, v in model.state_dict().items()}


def write_checkpoint(path, state, *, legacy=False, old_torch=False, **extra):
    """Save in the CSAIL layout: DataParallel 'module.' keys inside {'epoch', 'arch', 'state_dict', ...}."""
    if old_torch:  # PyTorch < 0.4 wrote no BatchNorm step counters
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    checkpoint = {
        "epoch": 90,
        "arch": "resnet18",
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "best_prec1": 54.74,
        **extra,
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=2)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_convert_and_load_as_scene_stream(tmp_path, reference, legacy):
    src = write_checkpoint(
        tmp_path / "resnet18_places365.pth.tar", reference, legacy=legacy, old_torch=legacy
    )
    out = tmp_path / "weights" / "resnet18_places365.safetensors"
    summary = convert_places365(src, out, "resnet18")
    assert summary["dropped"] == ["fc.weight", "fc.bias"]
    assert summary["loaded_with"] == "weights_only"
    assert bool(summary["filled"]) == legacy
    saved = load_file(str(out))
    assert "fc.weight" not in saved and not any(k.startswith("module.") for k in saved)

    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=32),
            "scene": StreamConfig("resnet18", pretrained=str(out), input_size=64),
        },
        hidden=8,
    )
    scene = net.backbones["scene"].state_dict()
    for key, value in scene.items():
        if legacy and key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, reference[key]), key
    assert set(scene) == {k for k in reference if not k.startswith("fc.")}
    assert net.stream_specs()["scene"]["input_size"] == 64


def test_keep_fc(tmp_path, reference, caplog):
    src = write_checkpoint(tmp_path / "ckpt.pth.tar", reference)
    out = tmp_path / "with_fc.safetensors"
    summary = convert_places365(src, out, "resnet18", keep_fc=True)
    assert summary["dropped"] == []
    assert load_file(str(out))["fc.weight"].shape == (PLACES365_CLASSES, 512)
    # A feature-extractor stream still loads it, dropping the classifier with a log message.
    with caplog.at_level(logging.INFO, logger="emoctx.models.backbones"):
        net = EmotionNet({"scene": StreamConfig("resnet18", pretrained=str(out), input_size=64)}, hidden=8)
    assert "fc.weight" in caplog.text
    assert torch.equal(
        net.backbones["scene"].state_dict()["layer4.1.bn2.weight"], reference["layer4.1.bn2.weight"]
    )


def test_mismatched_architecture_is_a_clear_error(tmp_path, reference):
    src = write_checkpoint(tmp_path / "resnet18_places365.pth.tar", reference)
    out = tmp_path / "out.safetensors"
    with pytest.raises(EmoctxError) as info:
        convert_places365(src, out, "resnet34")
    message = str(info.value)
    assert "resnet34" in message and "the checkpoint says arch 'resnet18'" in message
    assert "missing key(s): layer1.2." in message
    assert "more)" in message  # long lists are cut
    assert not out.exists()

    bad = dict(reference)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    src = write_checkpoint(tmp_path / "bad.pth.tar", bad)
    with pytest.raises(EmoctxError, match=r"conv1\.weight \(file \[64, 3, 3, 3\] vs model \[64, 3, 7, 7\]\)"):
        convert_places365(src, out, "resnet18")


def test_unsafe_pickle_needs_trust(tmp_path, reference):
    src = write_checkpoint(tmp_path / "ckpt.pth.tar", reference, lr=Fraction(1, 10))
    out = tmp_path / "out.safetensors"
    with pytest.raises(EmoctxError, match="--trust-pickle"):
        convert_places365(src, out, "resnet18")
    assert not out.exists()
    summary = convert_places365(src, out, "resnet18", trust_pickle=True)
    assert summary["loaded_with"] == "full_unpickle"
    assert torch.equal(load_file(str(out))["conv1.weight"], reference["conv1.weight"])


def test_python2_strings_are_read_with_latin1(tmp_path, reference):
    # A legacy-format file whose 'arch' is a Python 2 byte string with a non-ASCII byte, as old pickles hold.
    src = write_checkpoint(tmp_path / "py2.pth.tar", reference, legacy=True)
    data = src.read_bytes()
    unicode_arch = b"X\x08\x00\x00\x00resnet18"  # BINUNICODE 'resnet18'
    assert data.count(unicode_arch) == 1
    src.write_bytes(data.replace(unicode_arch, b"U\x08r\xe9snet18"))  # SHORT_BINSTRING, latin1 e-acute
    summary = convert_places365(src, tmp_path / "out.safetensors", "resnet18")
    assert summary["loaded_with"] == "weights_only+latin1"
    assert torch.equal(load_file(summary["out"])["layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"])


def test_old_densenet_keys_are_renamed():
    state = {
        "module.features.denseblock1.denselayer1.norm.1.weight": torch.ones(2),
        "module.features.denseblock1.denselayer1.conv.2.weight": torch.ones(2),
        "module.features.norm5.weight": torch.ones(2),
    }
    assert sorted(extract_state_dict({"state_dict": state})) == [
        "features.denseblock1.denselayer1.conv2.weight",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.norm5.weight",
    ]
    with pytest.raises(EmoctxError, match="state_dict"):
        extract_state_dict({"epoch": 1})


def test_command(tmp_path, reference, capsys):
    src = write_checkpoint(tmp_path / "resnet18_places365.pth.tar", reference)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([str(src), "--arch", "resnet18"])) == 0
    out = tmp_path / "resnet18_places365.safetensors"
    assert out.is_file() and out.stat().st_mode & 0o777 == default_file_mode()  # readable by others
    assert f"{out}: {len(reference) - 2} tensors for timm 'resnet18', dropped 2" in capsys.readouterr().out
    with pytest.raises(EmoctxError, match="not found"):
        command.run(parser.parse_args([str(tmp_path / "absent.pth.tar")]))
