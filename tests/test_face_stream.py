"""The face stream: landmark attention, persons without a face, gated fusion over the streams present, modality
dropout, model files with faces, current-format two-stream files, and starting a face stream from a face model."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from emoctx.checkpoint import describe, init_face_stream, load_model, save_model
from emoctx.description import validate_description
from emoctx.errors import EmoctxError
from emoctx.labels import EXPRESSIONS
from emoctx.models.backbones import StreamConfig
from emoctx.models.face import FeatureMap, LandmarkAttention, landmark_heatmaps
from emoctx.models.fusion import build_fusion
from emoctx.models.network import EmotionNet

TINY = {"channel_multiplier": 0.25, "depth_multiplier": 0.5}  # a 12k-parameter timm test network
FIXTURES = Path(__file__).parent / "data" / "two_stream_v1"


class Payload:
    """An object of a class of its own: unpickling it would mean importing and calling code."""


def stream(size, backbone="test_efficientnet", **kw):
    return StreamConfig(
        backbone, input_size=size, kwargs=TINY if backbone == "test_efficientnet" else {}, **kw
    )


def three_streams(**options):
    torch.manual_seed(0)
    defaults = dict(fusion="gated", hidden=16, dropout=0.0, expressions=EXPRESSIONS)
    return EmotionNet(
        {"body": stream(32), "scene": stream(48), "face": stream(64)}, **{**defaults, **options}
    )


def batch(n=4, present=(True, False, True, False)):
    g = torch.Generator().manual_seed(1)
    landmarks = torch.rand(n, 5, 3, generator=g)
    landmarks[..., 2] = 1.0
    return {
        "body": torch.randn(n, 3, 32, 32, generator=g),
        "scene": torch.randn(n, 3, 48, 48, generator=g),
        "face": torch.randn(n, 3, 64, 64, generator=g),
        "face_present": torch.tensor(present),
        "face_landmarks": landmarks,
    }


# ---------------------------------------------------------------------------------------- landmark attention
def test_heatmaps_peak_at_the_landmarks_with_their_confidence():
    points = torch.tensor([[[0.125, 0.625, 0.8], [0.9, 0.1, 0.0], [math.nan, 0.5, 1.0]]])
    heat = landmark_heatmaps(points, 4, 4, sigma=0.1)
    assert heat.shape == (1, 3, 4, 4)
    first = heat[0, 0]
    assert tuple(int(i) for i in divmod(int(first.argmax()), 4)) == (
        2,
        0,
    )  # row 2 (y 0.625), column 0 (x 0.125)
    assert float(first.max()) == pytest.approx(0.8)  # the cell centre is on the point: the confidence
    assert float(heat[0, 1].abs().max()) == 0.0 and float(heat[0, 2].abs().max()) == 0.0  # unseen: nothing


def test_landmark_attention_starts_as_the_sum_of_heatmaps_and_keeps_the_plain_features():
    attention = LandmarkAttention(num_landmarks=5, sigma=0.15)
    feat = torch.randn(2, 8, 4, 4)
    assert torch.equal(attention(feat, None), feat)  # no landmarks: the features as they are
    points = torch.rand(2, 5, 3)
    heat = landmark_heatmaps(points, 4, 4, 0.15).sum(dim=1, keepdim=True)
    assert torch.allclose(attention(feat, points), feat * (1 + heat), atol=1e-6)
    zero = points.clone()
    zero[..., 2] = 0.0
    assert torch.allclose(attention(feat, zero), feat)  # no confident point: a = 0


def test_feature_maps_of_every_layout():
    import timm

    for name, size in (("test_resnet", 64), ("test_vit", 160), ("test_mambaout", 64)):  # NCHW, tokens, NHWC
        fmap = FeatureMap(timm.create_model(name, num_classes=0))
        out = fmap(torch.randn(2, 3, size, size))
        assert out.ndim == 4 and out.shape[:2] == (2, fmap.num_features) and out.shape[2] == out.shape[3]
    # a convolutional face backbone traces like the other streams' (prediction folds its batch norms)
    from emoctx.inference.optimize import fold_batch_norms

    fmap = FeatureMap(timm.create_model("test_resnet", num_classes=0)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = fmap(x)
        folded = fold_batch_norms(fmap)
        assert isinstance(folded, torch.fx.GraphModule) and torch.allclose(folded(x), want, atol=1e-5)


# --------------------------------------------------------------------------------------------- the network
def test_face_stream_outputs_and_absent_faces_never_reach_the_backbone():
    net = three_streams().eval()
    seen = []
    net.backbones["face"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    inputs = batch()
    inputs["face"][1] = math.nan  # the crops of absent faces are never read
    inputs["face"][3] = math.nan
    with torch.no_grad():
        out = net(inputs)
    assert seen == [2]
    assert out["logits"].shape == (4, 26) and out["vad"].shape == (4, 3) and out["expression"].shape == (4, 8)
    assert out["face_present"].tolist() == [True, False, True, False]
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    # the same with only the present faces given
    subset = dict(inputs, face=inputs["face"][[0, 2]], face_landmarks=inputs["face_landmarks"][[0, 2]])
    with torch.no_grad():
        assert torch.allclose(net(subset)["vad"], out["vad"], atol=1e-6)
    # the landmarks change what the face stream sees
    moved = dict(inputs, face_landmarks=1.0 - inputs["face_landmarks"])
    moved["face_landmarks"][..., 2] = 1.0
    with torch.no_grad():
        crops = inputs["face"][[0, 2]]
        plain = net.encode_face(crops)
        attended = net.encode_face(crops, inputs["face_landmarks"][[0, 2]])
        assert (attended - plain).abs().max() > 1e-3 * plain.abs().max()
        assert not torch.allclose(net.encode_face(crops, moved["face_landmarks"][[0, 2]]), attended)
        assert not torch.equal(net(moved)["vad"][[0, 2]], out["vad"][[0, 2]])
        assert torch.equal(net(moved)["vad"][[1, 3]], out["vad"][[1, 3]])  # no face: nothing to attend
    # the gated fusion leaves an absent face out altogether: the no-face embedding plays no part
    with torch.no_grad():
        net.missing["face"].add_(1.0)
        assert torch.equal(net(inputs)["vad"], out["vad"])
    # concatenation has no gate: the persons without a face get the learned no-face embedding instead
    concat = three_streams(fusion="concat").eval()
    with torch.no_grad():
        before = concat(inputs)["vad"]
        concat.missing["face"].add_(1.0)
        changed = concat(inputs)["vad"]
    assert not torch.allclose(changed[[1, 3]], before[[1, 3]])
    assert torch.equal(changed[[0, 2]], before[[0, 2]])


def test_absent_faces_leave_the_batch_norm_statistics_alone():
    net = three_streams().train()
    inputs = batch()
    inputs["face"][[1, 3]] = 100.0  # black (here: absurd) crops would move the statistics if they were seen
    net(inputs)
    after_full = [b.clone() for b in net.backbones["face"].buffers()]
    net2 = three_streams().train()
    net2(dict(inputs, face=inputs["face"][[0, 2]], face_landmarks=inputs["face_landmarks"][[0, 2]]))
    for a, b in zip(after_full, net2.backbones["face"].buffers()):
        assert torch.equal(a, b)


def test_fusions_gate_over_the_streams_present():
    widths = {"body": 6, "scene": 5, "face": 4}
    features = {k: torch.randn(3, w) for k, w in widths.items()}
    present = {"face": torch.tensor([True, False, True])}
    for name in ("gated", "attention"):
        torch.manual_seed(0)
        fusion = build_fusion(name, widths, hidden=8, dropout=0.0).eval()
        plain = fusion(features)
        assert (
            torch.equal(fusion(features, {"face": torch.ones(3, dtype=torch.bool)}), plain)
            or name == "attention"
        )
        assert torch.allclose(fusion(features, {"face": torch.ones(3, dtype=torch.bool)}), plain, atol=1e-6)
        masked = fusion(features, present)
        other = dict(features, face=features["face"] + torch.randn(3, 4))  # new face features
        remasked = fusion(other, present)
        assert torch.allclose(masked[1], remasked[1], atol=1e-6)  # the absent face plays no part
        assert not torch.allclose(masked[0], remasked[0])
        # nobody present anywhere: every stream is kept
        nobody = {n: torch.zeros(3, dtype=torch.bool) for n in widths}
        assert torch.allclose(fusion(features, nobody), plain, atol=1e-6)
    if True:  # gates of an absent stream are 0
        fusion = build_fusion("gated", widths, hidden=8, dropout=0.0).eval()
        _, gates = fusion.gates(features, present)
        assert float(gates[1, 2].abs().max()) == 0.0 and float(gates[0, 2].abs().min()) > 0.0


def test_modality_dropout_in_training_only():
    net = three_streams(modality_dropout={"face": 0.5, "scene": 0.3})
    net.train()
    seen = []
    net.backbones["face"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    n = 200
    inputs = batch(n, present=[True] * n)
    inputs = {k: v for k, v in inputs.items() if k != "face_landmarks"}
    features, present = net.encode_streams(inputs)
    assert 60 < seen[0] < 140 and int(present["face"].sum()) == seen[0]  # about half the faces dropped
    assert 100 < int(present["scene"].sum()) < 180
    assert features["face"][~present["face"]].abs().max() == 0  # dropped faces: no features computed
    # a person never loses every stream
    all_out = three_streams(modality_dropout={"body": 0.95, "scene": 0.95}).train()
    _, kept = all_out.encode_streams(batch(n, present=[False] * n))
    rows = torch.stack([kept.get("body", torch.ones(n, dtype=torch.bool)), kept["scene"], kept["face"]], 1)
    assert rows.any(dim=1).all()
    net.eval()
    seen.clear()
    with torch.no_grad():
        a, b = net(inputs), net(inputs)
    assert seen == [n, n] and torch.equal(a["vad"], b["vad"])  # evaluation drops nothing


def test_face_only_model_and_a_batch_without_faces():
    torch.manual_seed(0)
    net = EmotionNet({"face": stream(64)}, hidden=16, dropout=0.0, expressions=EXPRESSIONS)
    net.train()
    inputs = batch(3, present=[False, False, False])
    out = net({"face": inputs["face"][:0], "face_present": inputs["face_present"]})  # no face at all
    assert out["vad"].shape == (3, 3) and torch.isfinite(out["vad"]).all()
    (out["vad"].sum() + out["expression"].sum()).backward()
    # every face parameter took part (zero gradients), as distributed training needs
    assert all(p.grad is not None for p in net.backbones["face"].parameters())
    assert all(p.grad is not None for p in net.face_attention.parameters())
    assert net.missing["face"].grad is not None and net.missing["face"].grad.abs().sum() > 0


def test_network_config_round_trip_and_parameter_groups():
    net = three_streams(face={"sigma": 0.2}, modality_dropout={"face": 0.25})
    cfg = net.config()
    assert cfg["face"] == {"attention": "landmarks", "landmarks": "coco5", "sigma": 0.2}
    assert cfg["modality_dropout"] == {"face": 0.25} and cfg["expressions"] == list(EXPRESSIONS)
    again = EmotionNet.from_config(cfg)
    assert list(again.state_dict()) == list(net.state_dict())
    head = {id(p) for p in net.head_parameters()}
    assert id(net.missing["face"]) in head and id(net.face_attention.mix.weight) in head
    assert id(net.expression_head.weight) in head
    backbone = {id(p) for p in net.backbone_parameters()}
    assert all(id(p) in backbone for p in net.backbones["face"].parameters()) and not head & backbone
    no_attention = three_streams(face={"attention": "none"})
    assert no_attention.face_attention is None
    with pytest.raises(EmoctxError, match="'face' options are given, but there is no 'face' stream"):
        EmotionNet({"body": stream(32)}, face={})
    with pytest.raises(EmoctxError, match="'modality_dropout' names 'hand'"):
        EmotionNet({"body": stream(32)}, modality_dropout={"hand": 0.1})
    with pytest.raises(EmoctxError, match=r"must be a probability in \[0, 1\)"):
        EmotionNet({"body": stream(32)}, modality_dropout={"body": 1.0})
    with pytest.raises(EmoctxError, match="distinct non-empty names"):
        EmotionNet({"body": stream(32)}, expressions=["Happy", "Happy"])
    with pytest.raises(EmoctxError, match="'sigma' must be a number in"):
        three_streams(face={"sigma": 0})


# -------------------------------------------------------------------------------------------- model files
def test_face_model_file_round_trip(tmp_path):
    net = three_streams(modality_dropout={"face": 0.25}).eval()
    path = save_model(tmp_path / "faces.safetensors", net, describe(net))
    loaded, info = load_model(path)
    assert info.network["face"]["attention"] == "landmarks" and loaded.expressions == EXPRESSIONS
    inputs = batch()
    with torch.no_grad():
        for key in ("logits", "vad", "expression"):
            assert torch.equal(loaded(inputs)[key], net(inputs)[key])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n: n.update(face={"attention": "eyes"}), r"'network.face.attention' must be one of"),
        (lambda n: n.update(face={"sigma": 0}), r"'network.face.sigma' must be a number in \(0, 1\]"),
        (
            lambda n: n.update(face={"sigma": 0.1, "radius": 3}),
            r"'network.face' has unknown key\(s\) \['radius'\]",
        ),
        (
            lambda n: n.update(face={"landmarks": "ibug68"}),
            r"'network.face.landmarks' must be one of \['coco5'\]",
        ),
        (lambda n: n["streams"].pop("face") and n.update(face={}), "has no 'face' stream"),
        (lambda n: n.update(modality_dropout={"hand": 0.1}), "names no stream of the network"),
        (lambda n: n.update(modality_dropout={"face": 1.0}), "must be below 1"),
        (lambda n: n.update(modality_dropout={"face": "often"}), r"must be a number in \[0, 1\]"),
        (lambda n: n.update(expressions=["Happy", "Happy"]), "names a class twice"),
        (lambda n: n.update(expressions=[]), "must be a list of 1 to 64 names"),
        (
            lambda n: n.update(expressions=["x" * 65]),
            r"'network.expressions\[0\]' must be a non-empty string",
        ),
    ],
)
def test_description_rules_for_the_face_fields(change, message):
    net = three_streams()
    meta = describe(net)
    validate_description(meta, "m.safetensors")  # a face model's description is accepted as written
    change(meta["network"])
    if "face" not in meta["network"]["streams"]:
        meta["streams"].pop("face")
    with pytest.raises(EmoctxError, match=message):
        validate_description(meta, "m.safetensors")


@pytest.mark.parametrize("fusion", ["concat", "gated", "attention"])
def test_two_stream_files_of_the_current_format_load_and_compute_the_same(fusion):
    """Files written before the face stream existed (tests/data/two_stream_v1/make.py): same keys, same outputs."""
    expected = load_file(str(FIXTURES / "expected.safetensors"))
    net, info = load_model(FIXTURES / f"{fusion}.safetensors")
    assert net.stream_names == ("body", "scene") and net.face_config is None and not net.expressions
    assert "face" not in info.network and len(net.missing) == 0
    with torch.no_grad():
        out = net({"body": expected["input_body"], "scene": expected["input_scene"]})
    assert set(out) == {"logits", "vad"}
    assert torch.allclose(out["logits"], expected[f"{fusion}_logits"], atol=1e-6, rtol=0)
    assert torch.allclose(out["vad"], expected[f"{fusion}_vad"], atol=1e-6, rtol=0)
    # written again by this version, the description and the keys are those of the original file
    assert describe(net, training={"note": "fixture"})["network"] == info.network


# ---------------------------------------------------------------------------------- face stream start-up
def test_face_stream_starts_from_a_face_only_model(tmp_path):
    torch.manual_seed(1)
    face_only = EmotionNet({"face": stream(64)}, hidden=16, dropout=0.0, expressions=EXPRESSIONS)
    with torch.no_grad():
        face_only.face_attention.mix.weight.mul_(0.5)  # weights that differ from a fresh network's
    path = save_model(tmp_path / "face_va.safetensors", face_only.eval(), describe(face_only))
    context = three_streams().eval()
    before = {k: v.clone() for k, v in context.state_dict().items()}
    copied = init_face_stream(context, path)
    assert copied and all(k.startswith(("backbones.face.", "face_attention.")) for k in copied)
    after = context.state_dict()
    for key, value in after.items():
        if key in copied:
            assert torch.equal(value, face_only.state_dict()[key])
        else:
            assert torch.equal(value, before[key]), key  # fusion, heads, no-face embedding: untouched
    crops, points = torch.randn(2, 3, 64, 64), torch.rand(2, 5, 3)
    with torch.no_grad():
        assert torch.equal(context.encode_face(crops, points), face_only.encode_face(crops, points))


def test_face_stream_start_up_refuses_what_does_not_fit(tmp_path):
    torch.manual_seed(1)
    other = EmotionNet({"face": stream(64, backbone="test_resnet")}, hidden=16)
    other_path = save_model(tmp_path / "resnet_face.safetensors", other, describe(other))
    with pytest.raises(EmoctxError, match="its face stream has backbone 'test_resnet', this network's has"):
        init_face_stream(three_streams(), other_path)
    shifted = EmotionNet({"face": stream(64, mean=(0.5, 0.5, 0.5))}, hidden=16)
    shifted_path = save_model(tmp_path / "shifted.safetensors", shifted, describe(shifted))
    with pytest.raises(EmoctxError, match="its face stream has mean"):
        init_face_stream(three_streams(), shifted_path)
    plain = EmotionNet({"body": stream(32), "scene": stream(48)}, hidden=16)
    plain_path = save_model(tmp_path / "two.safetensors", plain, describe(plain))
    with pytest.raises(EmoctxError, match="the model has no 'face' stream"):
        init_face_stream(three_streams(), plain_path)
    with pytest.raises(EmoctxError, match="the network has no 'face' stream"):
        init_face_stream(plain, plain_path)
    unsafe = tmp_path / "pickled.ckpt"
    torch.save({"emoctx": {}, "payload": Payload()}, unsafe)  # a pickled object is not read
    with pytest.raises(EmoctxError, match="cannot be loaded safely"):
        init_face_stream(three_streams(), unsafe)


def test_face_models_are_fed_everywhere_but_the_onnx_export(tmp_path):
    """Training, prediction and evaluation make a face stream's inputs from the preprocessing; the ONNX export
    still refuses a face model, with a message saying so."""
    from emoctx.evaluation.scoring import records_transform
    from emoctx.inference import Predictor
    from emoctx.inference.export import export_onnx

    net = three_streams()
    path = save_model(tmp_path / "faces.safetensors", net, describe(net))
    with pytest.raises(
        EmoctxError,
        match="a model with a face stream is not exported to ONNX yet: .* the exporter cannot trace",
    ):
        export_onnx(path, tmp_path / "faces.onnx")
    assert not (tmp_path / "faces.onnx").exists()
    _, info = load_model(path)
    assert info.preprocessing.streams["face"].region == "face"
    assert info.preprocessing.unfed_streams == []
    assert records_transform(info).face_streams == ("face",)
    predictor = Predictor(path, num_workers=0)
    assert predictor.engine.name == "torch"  # the default engine for a face model, whatever the machine
    with pytest.raises(EmoctxError, match="face stream runs in the torch engine only"):
        Predictor(path, num_workers=0, engine="onnxruntime")
    image = np.full((120, 160, 3), 128, dtype=np.uint8)
    result = predictor.predict_images([image], boxes=[[[10, 10, 80, 110]]])[0]
    person = result.persons[0]
    # given as a plain box: no face, the no-face path; the model still predicts
    assert person.error is None and person.face is None and person.face_va is None
    assert person.probabilities.shape == (26,) and np.isfinite(person.vad).all()


def test_the_torch_engine_reads_who_shows_a_face_as_the_network_does():
    """evaluate and predict-records run a face model through the torch engine's forward: faces absent take the
    no-face path there too (not their crops through the backbone)."""
    import copy

    from emoctx.engines.torch_engine import TorchEngine

    net = three_streams().eval()
    inputs = batch()
    with torch.no_grad():
        want = net(inputs)
    engine = TorchEngine(copy.deepcopy(net), "fp32")
    got = engine.forward(inputs)
    assert got["face_present"].tolist() == [True, False, True, False]
    for key in ("logits", "vad", "expression"):
        assert torch.allclose(got[key], want[key], atol=1e-5), key
    everyone = engine.forward({k: v for k, v in inputs.items() if k != "face_present"})
    assert not torch.allclose(everyone["logits"], want["logits"], atol=1e-3)  # the flags matter


def test_face_models_take_the_torch_engine_in_predict_records(tmp_path):
    from emoctx.inference.distributed import engine_spec

    assert engine_spec("m.safetensors", "auto", "32-true", "cpu", face=True) == (None, "32-true")
    with pytest.raises(EmoctxError, match="face stream runs in the torch engine only"):
        engine_spec("m.safetensors", "onnxruntime", "fp32", "cpu", face=True)
    with pytest.raises(EmoctxError, match="torch engine only, which has no int8"):
        engine_spec("m.safetensors", "auto", "int8", "cpu", face=True)
