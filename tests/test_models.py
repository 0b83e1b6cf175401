"""The network, its backbones and fusions, on tiny timm architectures with random weights (no downloads)."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from emoctx.errors import EmoctxError
from emoctx.labels import NUM_CATEGORIES, NUM_VAD
from emoctx.models import FUSIONS, EmotionNet, StreamConfig, build_backbone, build_fusion

BODY = "test_resnet"
SCENE = "test_efficientnet"
SIZE = 32


def make_net(fusion: str = "concat", streams: tuple[str, ...] = ("body", "scene"), **kwargs) -> EmotionNet:
    cfgs = {"body": StreamConfig(BODY, input_size=SIZE), "scene": StreamConfig(SCENE, input_size=SIZE)}
    return EmotionNet({name: cfgs[name] for name in streams}, fusion=fusion, hidden=16, **kwargs)


def inputs(batch: int = 3, streams: tuple[str, ...] = ("body", "scene")) -> dict[str, torch.Tensor]:
    return {name: torch.randn(batch, 3, SIZE, SIZE) for name in streams}


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_forward_shapes_and_gradients(fusion):
    net = make_net(fusion)
    net.train()
    out = net(inputs(3))
    assert set(out) == {"logits", "vad"}
    assert out["logits"].shape == (3, NUM_CATEGORIES)
    assert out["vad"].shape == (3, NUM_VAD)
    (out["logits"].sum() + out["vad"].sum()).backward()
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("stream", ["body", "scene"])
def test_single_stream_ablation(stream):
    net = make_net("concat", streams=(stream,)).eval()
    assert net.stream_names == (stream,)
    assert list(net.config()["streams"]) == [stream]
    out = net(inputs(2, (stream,)))
    assert out["logits"].shape == (2, NUM_CATEGORIES)
    with pytest.raises(EmoctxError, match="lacks stream"):
        net({"other": torch.randn(2, 3, SIZE, SIZE)})


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_from_config_round_trip(fusion):
    net = make_net(fusion).eval()
    cfg = json.loads(json.dumps(net.config()))  # what a checkpoint stores
    cfg["streams"]["body"]["pretrained"] = "/nonexistent/weights.safetensors"  # must not be read
    rebuilt = EmotionNet.from_config(cfg).eval()
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.stream_specs() == net.stream_specs()
    x = inputs(2)
    with torch.no_grad():
        a, b = net(x), rebuilt(x)
    assert torch.equal(a["logits"], b["logits"])
    assert torch.equal(a["vad"], b["vad"])
    cfg["streams"]["body"]["pretrained"] = None
    assert rebuilt.config() == cfg


def test_config_rejects_unknown_keys():
    cfg = make_net().config()
    with pytest.raises(EmoctxError, match="unknown key"):
        EmotionNet.from_config({**cfg, "fuson": "concat"})
    with pytest.raises(EmoctxError, match="did you mean 'backbone'"):
        StreamConfig.from_dict({"backbon": BODY})


def test_encode_head_equals_forward_and_shares_the_scene():
    net = make_net("gated").eval()
    x = inputs(2)
    with torch.no_grad():
        full = net(x)
        feats = {name: net.encode(name, x[name]) for name in net.stream_names}
        split = net.head(dict(reversed(list(feats.items()))))  # order of the mapping does not matter
        torch.testing.assert_close(split["logits"], full["logits"])
        torch.testing.assert_close(split["vad"], full["vad"])
        # Two persons in one image: encode the scene once and share it.
        scene = x["scene"][:1]
        shared = net.head({"body": feats["body"], "scene": net.encode("scene", scene).expand(2, -1)})
        repeated = net({"body": x["body"], "scene": scene.expand(2, -1, -1, -1)})
        torch.testing.assert_close(shared["logits"], repeated["logits"])


def test_stream_specs_resolve_from_timm_and_config():
    net = EmotionNet(
        {"body": StreamConfig(BODY), "scene": StreamConfig(SCENE, input_size=48, mean=(0.1, 0.2, 0.3))},
        hidden=8,
    )
    data_cfg = timm.data.resolve_model_data_config(timm.create_model(BODY))
    specs = net.stream_specs()
    assert specs["body"] == {
        "input_size": data_cfg["input_size"][-1],
        "mean": list(data_cfg["mean"]),
        "std": list(data_cfg["std"]),
        "backbone": BODY,
    }
    assert specs["scene"]["input_size"] == 48
    assert specs["scene"]["mean"] == [0.1, 0.2, 0.3]
    assert net.config()["streams"]["body"]["input_size"] == data_cfg["input_size"][-1]


def test_parameter_groups_and_freezing():
    net = make_net()
    backbone = {id(p) for p in net.backbone_parameters()}
    head = {id(p) for p in net.head_parameters()}
    assert backbone and head and not backbone & head
    assert backbone | head == {id(p) for p in net.parameters()}
    net.freeze_backbones()
    assert not any(p.requires_grad for p in net.backbone_parameters())
    assert all(p.requires_grad for p in net.head_parameters())
    net.freeze_backbones(False)
    assert all(p.requires_grad for p in net.parameters())


def test_channels_last_gives_the_same_outputs():
    net = make_net("attention").eval()
    x = inputs(2)
    with torch.no_grad():
        ref = net(x)
        net = net.to(memory_format=torch.channels_last)
        out = net({k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()})
    torch.testing.assert_close(out["logits"], ref["logits"], rtol=1e-4, atol=1e-5)


def test_network_runs_without_lightning_or_trackers():
    import subprocess

    # A None entry in sys.modules makes "import name" fail as if the package were not installed.
    code = (
        "import sys\n"
        "for m in ('lightning', 'pytorch_lightning', 'wandb', 'ultralytics'): sys.modules[m] = None\n"
        "import torch\n"
        "from emoctx.models import EmotionNet, StreamConfig\n"
        "from emoctx.losses import EmotionLoss\n"
        f"net = EmotionNet({{'body': StreamConfig('{BODY}', input_size={SIZE})}}, hidden=8).eval()\n"
        f"out = net({{'body': torch.randn(2, 3, {SIZE}, {SIZE})}})\n"
        "print(tuple(out['logits'].shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == f"(2, {NUM_CATEGORIES})"


def test_bad_names_are_clear_errors():
    with pytest.raises(EmoctxError, match="unknown backbone 'resnet18x'.*resnet18"):
        build_backbone(StreamConfig("resnet18x"))
    with pytest.raises(EmoctxError, match="did you mean 'gated'"):
        build_fusion("gate", {"body": 8})
    with pytest.raises(EmoctxError, match="divisible"):
        build_fusion("attention", {"body": 8}, hidden=10, heads=4)
    with pytest.raises(EmoctxError, match="identifier"):
        EmotionNet({"body.crop": StreamConfig(BODY, input_size=SIZE)})
    with pytest.raises(EmoctxError, match="input_size"):
        StreamConfig(BODY, input_size=0)


def test_prefixed_timm_names_are_accepted(tmp_path, monkeypatch):
    """timm.create_model takes 'local-dir:' and 'hf-hub:' names that timm.is_model does not know."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    pretrained_cfg = {"input_size": [3, 48, 48], "mean": [0.4] * 3, "std": [0.2] * 3, "classifier": "fc"}
    (folder / "config.json").write_text(
        json.dumps({"architecture": BODY, "num_classes": 10, "pretrained_cfg": pretrained_cfg})
    )
    net = EmotionNet({"body": StreamConfig(f"local-dir:{folder}")}, hidden=8)
    spec = net.stream_specs()["body"]
    assert spec["input_size"] == 48 and spec["mean"] == pytest.approx([0.4] * 3)  # from the folder's config
    assert net({"body": torch.randn(2, 3, 48, 48)})["logits"].shape == (2, NUM_CATEGORIES)

    # An hf-hub name reaches timm's factory (stubbed: no network in tests)...
    asked = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: asked.append(name) or real(BODY, **kw))
    build_backbone(StreamConfig("hf-hub:timm/resnet18.a1_in1k"))
    assert asked == ["hf-hub:timm/resnet18.a1_in1k"]
    monkeypatch.undo()
    # ... and without the Hub (tests run offline) it is a clear error naming the source.
    with pytest.raises(EmoctxError, match="hf-hub:nobody/nothing.*hf-hub source"):
        build_backbone(StreamConfig("hf-hub:nobody/nothing"))
    with pytest.raises(EmoctxError, match="unknown backbone 'resnet18x'"):
        build_backbone(StreamConfig("resnet18x"))
    with pytest.raises(EmoctxError, match="backbone 'ftp:x'"):
        build_backbone(StreamConfig("ftp:x"))


# -- local weight files -------------------------------------------------------------------------------------


def trained_state(num_classes: int = 10) -> dict[str, torch.Tensor]:
    """A state dict of the body architecture with a classifier head, as a fine-tuned model would have."""
    torch.manual_seed(1)
    return {k: v.clone() for k, v in timm.create_model(BODY, num_classes=num_classes).state_dict().items()}


def assert_backbone_equals(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = backbone.state_dict()
    assert set(got) == {k for k in state if not k.startswith("fc.")}
    for key, value in got.items():
        assert torch.equal(value, state[key]), key


def test_load_safetensors_drops_the_head(tmp_path, caplog):
    state = trained_state()
    path = tmp_path / "body.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.INFO, logger="emoctx.models.backbones"):
        backbone, resolved = build_backbone(StreamConfig(BODY, pretrained=str(path), input_size=SIZE))
    assert_backbone_equals(backbone, state)
    assert resolved["num_features"] == backbone.num_features
    assert "fc.weight" in caplog.text and "fc.bias" in caplog.text


def test_load_torch_checkpoint_dict(tmp_path):
    state = trained_state()
    path = tmp_path / "body.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    backbone, _ = build_backbone(StreamConfig(BODY, pretrained=str(path)))
    assert_backbone_equals(backbone, state)


def test_weight_mismatch_is_a_clear_error(tmp_path):
    state = trained_state()
    del state["conv1.0.weight"]
    state["extra.weight"] = torch.zeros(2)
    state["conv1.1.weight"] = torch.ones(5)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(EmoctxError) as info:
        build_backbone(StreamConfig(BODY, pretrained=str(path)))
    message = str(info.value)
    assert str(path) in message
    assert "missing key(s): conv1.0.weight" in message
    assert "unexpected key(s): extra.weight" in message
    assert "conv1.1.weight (file [5] vs model [" in message
    assert "fc.weight" not in message  # the head is not a problem


def test_weight_files_are_read_safely(tmp_path):
    from fractions import Fraction

    path = tmp_path / "pickled.pth"
    # An arbitrary Python object: not allowed by torch.load(weights_only=True).
    torch.save({"state_dict": trained_state(), "lr": Fraction(1, 10)}, path)
    with pytest.raises(EmoctxError, match="cannot read weights safely"):
        build_backbone(StreamConfig(BODY, pretrained=str(path)))
    with pytest.raises(EmoctxError, match="not found"):
        build_backbone(StreamConfig(BODY, pretrained=str(tmp_path / "absent.safetensors")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_channels_last_autocast():
    net = make_net("attention").eval()
    x = inputs(2)
    with torch.no_grad():
        ref = net(x)
        net = net.to("cuda", memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net({k: v.cuda().contiguous(memory_format=torch.channels_last) for k, v in x.items()})
    assert out["logits"].device.type == "cuda"
    torch.testing.assert_close(out["logits"].float().cpu(), ref["logits"], rtol=0.1, atol=0.1)
