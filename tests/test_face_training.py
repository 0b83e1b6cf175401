"""The face stream on and off through training, evaluation, calibration, prediction and predict-records, on tiny
EMOTIC-synth with faces; a face-only model chosen by V/A; the face stream started from a face model's file."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emoctx.checkpoint import load_model
from emoctx.cli import main
from emoctx.commands.train import train
from emoctx.data.synth import generate
from emoctx.errors import EmoctxError
from emoctx.inference import Predictor, read_prediction_table

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "configs" / "synth_faces.yaml"
FACE_VA = REPO / "configs" / "face_va.yaml"


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_faces")
    generate(root, n_train=16, n_val=6, n_test=6, image_size=(480, 360), seed=3, faces=True, progress=False)
    return root


def _args(root, run_dir, config, *extra):
    return [
        "--config", str(config),
        "--data.root", str(root),
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.max_epochs", "1",
        "--data.num_workers", "0",
        "--data.batch_size", "16",
        *extra,
    ]  # fmt: skip


def _ablation():
    spec = importlib.util.spec_from_file_location("emoctx_ablation_script", REPO / "scripts" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "streams",
    [
        pytest.param(("body", "scene", "face"), id="face-on"),
        # the two-stream path is covered elsewhere; here it is the ablation's variant of the same config
        pytest.param(("body", "scene"), id="face-off", marks=pytest.mark.slow),
    ],
)
def test_face_stream_on_and_off_through_train_evaluate_and_predict(faces_root, tmp_path, streams):
    """The same config with and without its face stream (as the ablation builds the variants) trains, is
    calibrated, evaluated and predicts; the face model's outputs exist exactly where a face was seen."""
    config = tmp_path / "config.yaml"
    cfg = _ablation().variant_config(yaml.safe_load(FACES.read_text()), streams)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    results = train(_args(faces_root, tmp_path / "run", config))
    model = Path(results["model_path"])
    net, info = load_model(model)
    assert net.stream_names == streams
    face = "face" in streams
    assert net.has_face_va is face and info.thresholds is not None  # calibrated on val
    assert (info.preprocessing.streams.get("face") is not None) is face
    if face:
        assert info.preprocessing.streams["face"].region == "face"
        assert info.network["modality_dropout"] == {"face": 0.1} and info.network["face_va"] is True
        assert "test/expression_accuracy" in results  # the expression head was scored in training
    # evaluate: EmoNet's figures for a face model
    assert main(["evaluate", "--model", str(model), "--records", str(faces_root / "annotations" / "test.parquet"),
                 "--root", str(faces_root), "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    report = (tmp_path / "eval" / "report.md").read_text()
    records = pd.read_parquet(faces_root / "annotations" / "test.parquet")
    seen = int(records["face_x1"].notna().sum())
    if face:
        faces = doc["faces"]
        assert faces["face_present"] == seen < len(records)
        assert faces["expressions"]["expression_n"] == int(records["expression"].notna().sum())
        for key in ("valence_arousal", "face_valence_arousal"):
            figures = faces[key] if key == "face_valence_arousal" else faces[key]["all"]
            assert {"vad_ccc/valence", "vad_pcc/arousal", "vad_rmse/valence", "vad_sagr/arousal"} <= set(
                figures
            )
        assert "## Faces: EmoNet's figures" in report and "annotators vs the others" in report
    else:  # no face stream: no face figures; the expression head (the same tasks in every variant) is scored
        assert {"face_present", "face_valence_arousal"}.isdisjoint(doc["faces"])
        assert doc["faces"]["expressions"]["expression_n"] == int(records["expression"].notna().sum())
    # predict with the records as the box file: they carry the faces
    out = tmp_path / "pred.csv"
    images = sorted({str(faces_root / p) for p in records["image"]})
    assert main(["predict", *images, "--model", str(model), "--boxes",
                 str(faces_root / "annotations" / "test.parquet"), "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    table = read_prediction_table(out)
    assert len(table) == len(records) and table["error"].isna().all()
    assert int(table["face_x1"].notna().sum()) == seen  # the given faces are in the table either way
    assert table["face_valence"].notna().sum() == (seen if face else 0)
    assert table["expression"].notna().sum() == (seen if face else 0)
    # predict-records: the same model over the records at scale
    scaled = tmp_path / "records_pred.parquet"
    assert main(["predict-records", "--model", str(model), "--records",
                 str(faces_root / "annotations" / "test.parquet"), "--root", str(faces_root),
                 "--out", str(scaled)]) == 0  # fmt: skip
    at_scale = pd.read_parquet(scaled)
    assert int(at_scale["face_valence"].notna().sum()) == (seen if face else 0)
    if face:  # the same persons, the same faces, the same face-derived values (fp32 both; batches differ)
        by_box = table.sort_values(["x1", "y1"]).reset_index(drop=True)
        other = at_scale.sort_values(["x1", "y1"]).reset_index(drop=True)
        assert np.allclose(by_box["face_x1"], other["face_x1"], equal_nan=True, atol=1e-3)


def test_persons_without_a_face_take_the_no_face_path(faces_root, tiny_face_model_path):
    """A person who faces away gets no face crop: the face stream's input for them is never read, so any pixels
    there give the same prediction; and records without face columns give nobody a face."""
    from emoctx.data.dataset import EmotionDataset
    from emoctx.evaluation.scoring import records_transform, score_records

    net, info = load_model(tiny_face_model_path)
    records = pd.read_parquet(faces_root / "annotations" / "test.parquet")
    away = records[records["face_x1"].isna()]
    assert len(away), "the fixture should hold a person facing away"
    dataset = EmotionDataset(records, faces_root, transform=records_transform(info))
    item = dataset[int(away.index[0])]
    assert not bool(item["face_present"]) and float(item["face"].abs().sum()) == 0.0
    assert (
        np.isnan(item["face_landmarks"][:, :2].numpy()).all()
        and float(item["face_landmarks"][:, 2].sum()) == 0
    )
    seen = dataset[int(records["face_x1"].notna().idxmax())]
    assert bool(seen["face_present"]) and float(seen["face"].abs().sum()) > 0
    assert int(seen["expression"]) >= 0 and int(item["expression"]) == -1
    # the no-face path does not read the crop
    import torch

    batch = {
        k: torch.stack([item[k], item[k]])
        for k in ("body", "scene", "face", "face_present", "face_landmarks")
    }
    batch["face"][1] = torch.randn_like(batch["face"][1])
    with torch.inference_mode():
        out = net(batch)
    assert torch.allclose(out["logits"][0], out["logits"][1]) and not out["face_present"].any()
    # records without face columns: every person goes without a face (and says so)
    bare = records.drop(columns=[c for c in records.columns if c.startswith("face_")])
    outputs = {}
    score_records(net, info, bare, faces_root, progress=False, outputs=outputs)
    assert not outputs["face_present"].any() and np.isnan(outputs["face_va"]).all()


def test_face_only_model_is_chosen_by_valence_arousal_and_starts_a_context_face_stream(faces_root, tmp_path):
    """configs/face_va.yaml (tiny backbone here): no categories trained, the saved epoch is the best val/vad_ccc;
    its face stream then starts a context model's (model.face_init)."""
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "net": {
                        "init_args": {
                            "streams": {
                                "face": {
                                    "backbone": "test_resnet",
                                    "pretrained": None,
                                    "input_size": 48,
                                    "mean": [0.5, 0.5, 0.5],
                                    "std": [0.25, 0.25, 0.25],
                                }
                            }
                        }
                    }
                }
            }  # fmt: skip
        )
    )
    ann = faces_root / "annotations"
    results = train(
        _args(
            faces_root,
            tmp_path / "face_va",
            FACE_VA,
            "--config",
            str(tiny),
            "--data.train_records",
            str(ann / "train.parquet"),
            "--data.val_records",
            str(ann / "val.parquet"),
            "--data.test_records",
            str(ann / "test.parquet"),
            "--trainer.max_epochs",
            "2",
        )  # fmt: skip
    )
    face_model = Path(results["model_path"])
    net, info = load_model(face_model)
    assert net.stream_names == ("face",) and net.expressions
    selected = info.training["selected_checkpoint"]
    assert selected["monitor"] == "val/vad_ccc" and selected["weights"] == "best validation epoch"
    assert info.training["continuous_loss"] == "emonet" and info.training["combine"] == "shake"
    # the face-only model's own V/A are face-derived: in the predictions of persons with a face
    predictor = Predictor(face_model, num_workers=0)
    from emoctx.inference.box_file import BoxFileDetector

    predictor._detector = BoxFileDetector(ann / "test.parquet")
    records = pd.read_parquet(ann / "test.parquet")
    results_ = list(predictor.predict_sources(sorted({str(faces_root / p) for p in records["image"]})))
    persons = [p for r in results_ for p in r.persons]
    with_face = [p for p in persons if p.face is not None]
    assert with_face and all(np.allclose(p.face_va, p.vad[:2]) for p in with_face)
    # a context model's face stream starts from it: same backbone and normalisation
    config = tmp_path / "faces.yaml"
    cfg = yaml.safe_load(FACES.read_text())
    cfg["model"]["net"]["init_args"]["streams"]["face"]["input_size"] = 48
    cfg["model"]["face_init"] = str(face_model)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    from emoctx.models.network import EmotionNet
    from emoctx.training.module import EmotionModule

    module = EmotionModule(
        net=EmotionNet(**cfg["model"]["net"]["init_args"]),
        face_init=str(face_model),
        expression_weight=0.5,
        face_va_weight=0.5,
    )
    state = net.state_dict()
    for key, value in module.net.state_dict().items():
        if key.startswith(("backbones.face.", "face_attention.")):
            assert np.allclose(value.numpy(), state[key].numpy()), key
    wrong = dict(cfg["model"]["net"]["init_args"], streams={**cfg["model"]["net"]["init_args"]["streams"]})
    wrong["streams"]["face"] = dict(wrong["streams"]["face"], mean=[0.4, 0.4, 0.4])
    with pytest.raises(EmoctxError, match="mean"):
        EmotionModule(net=EmotionNet(**wrong), face_init=str(face_model))
    with pytest.raises(EmoctxError, match="expression_weight > 0 needs a network with expressions"):
        EmotionModule(
            net=EmotionNet({"body": {"backbone": "test_resnet", "input_size": 32}}), expression_weight=1
        )
