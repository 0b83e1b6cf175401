"""Evaluation end to end on a tiny EMOTIC-synth: calibration, both evaluate forms, agreement, breakdowns."""

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from emoctx import cli, labels
from emoctx.checkpoint import ModelInfo, describe, load_model, save_model
from emoctx.data.records import category_matrix, read_records, write_records
from emoctx.data.synth import generate
from emoctx.errors import EmoctxError
from emoctx.evaluation import (
    calibrate_model,
    evaluate_model,
    evaluate_predictions,
    read_scored_predictions,
    score_records,
)
from emoctx.evaluation.predictions import SCORE_COLUMNS
from emoctx.io import default_file_mode
from emoctx.metrics import mean_average_precision
from emoctx.models.network import EmotionNet

PNGS = ("ap_per_category.png", "pr_curves.png", "vad_scatter.png")
FIGURES = ("overall", "agreement", "breakdowns", "positives")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_train=4, n_val=10, n_test=10, image_size=(160, 120), seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny random two-stream model saved as a model file (no training: the figures need not be good)."""
    torch.manual_seed(0)
    stream = {"backbone": "test_resnet", "input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    net = EmotionNet({"body": stream, "scene": {**stream, "input_size": 48}}, hidden=16, dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, net, describe(net, training={"note": "test"}))
    return path


@pytest.fixture(scope="module")
def calibrated(model_file, synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated") / "model.safetensors"
    rc = cli.main(
        [
            "calibrate", str(model_file), "--records", str(synth / "annotations" / "val.parquet"),
            "--root", str(synth), "--out", str(out), "--workers", "0", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def evaluated(calibrated, synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_model")
    rc = cli.main(
        [
            "evaluate", "--model", str(calibrated), "--records", str(synth / "annotations" / "test.parquet"),
            "--root", str(synth), "--out", str(out), "--workers", "0", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    return out


def test_score_records_marks_unreadable_images(model_file, synth):
    net, info = load_model(model_file)
    records = read_records(synth / "annotations" / "test.parquet").head(6).copy()
    records.loc[2, "image"] = "images/missing.jpg"
    scores, vad, valid = score_records(net, info, records, synth, batch_size=4, num_workers=0, progress=False)
    assert scores.shape == (6, labels.NUM_CATEGORIES) and vad.shape == (6, labels.NUM_VAD)
    assert valid.tolist() == [True, True, False, True, True, True]
    assert np.isnan(scores[2]).all() and np.isnan(vad[2]).all()
    ok = scores[valid]
    assert ((ok >= 0) & (ok <= 1)).all()
    assert ((vad[valid] >= labels.VAD_MIN) & (vad[valid] <= labels.VAD_MAX)).all()
    # Same inputs, same outputs: the batch size does not change a person's prediction.
    again, _, _ = score_records(net, info, records, synth, batch_size=1, num_workers=0, progress=False)
    np.testing.assert_allclose(again[valid], ok, rtol=1e-5, atol=1e-6)


def test_calibrate_stores_thresholds_in_the_model(calibrated, model_file):
    _, info = load_model(calibrated)
    assert set(info.thresholds) == set(labels.SLUGS)
    assert calibrated.stat().st_mode & 0o777 == default_file_mode()  # readable by others, as any new file
    assert info.training["threshold_calibration"]["rule"] == "f1"
    assert info.training["threshold_calibration"]["num_persons"] > 0
    assert info.training["note"] == "test"  # the training description is kept
    vector = info.threshold_vector()
    for c, slug in enumerate(labels.SLUGS):
        value = info.thresholds[slug]
        assert (value is None and vector[c] == math.inf) or math.isclose(vector[c], value, rel_tol=1e-6)
    # The weights are unchanged.
    net0, _ = load_model(model_file)
    net1, _ = load_model(calibrated)
    for (k, a), (_, b) in zip(net0.state_dict().items(), net1.state_dict().items()):
        assert torch.equal(a, b), k


def test_calibrate_rewrites_in_place_and_stores_never_predicted_as_null(model_file, synth, tmp_path):
    model = tmp_path / "model.safetensors"
    shutil.copy(model_file, model)
    val = read_records(synth / "annotations" / "val.parquet")
    val["categories"] = [[c for c in cats if c != "Sensitivity"] for cats in val["categories"]]
    val_path = write_records(val, tmp_path / "val.parquet")
    cal = calibrate_model(model, val_path, synth, rule="pr_equal", num_workers=0, progress=False)
    assert cal.path == model and cal.thresholds["sensitivity"] is None
    with safe_open(str(model), framework="pt") as f:
        raw = f.metadata()["emoctx"]
    stored = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in the model file"))
    assert stored["thresholds"]["sensitivity"] is None
    _, info = load_model(model)
    assert info.threshold_vector()[labels.SLUGS.index("sensitivity")] == math.inf
    assert "sensitivity" in info.training["threshold_calibration"]["never_predicted"]
    assert info.training["threshold_calibration"]["rule"] == "pr_equal"


def test_threshold_vector_defaults_and_nulls():
    info = ModelInfo(network={}, streams={}, thresholds={labels.SLUGS[0]: None, labels.SLUGS[1]: 0.25})
    v = info.threshold_vector(default=0.5)
    assert v[0] == math.inf and v[1] == 0.25 and (v[2:] == 0.5).all()


def test_evaluate_model_writes_every_output(evaluated, calibrated, synth):
    for name in ("metrics.json", "report.md", "predictions.parquet", *PNGS):
        assert (evaluated / name).stat().st_size > 0, name
    for name in PNGS:
        assert (evaluated / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((evaluated / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    test = read_records(synth / "annotations" / "test.parquet")
    assert doc["ap_variant"] == "sklearn"
    assert doc["source"]["kind"] == "model" and len(doc["source"]["sha256"]) == 64
    assert doc["source"]["streams"]["body"]["input_size"] == 32
    assert doc["records"]["num_records"] == doc["records"]["num_evaluated"] == len(test)
    o = doc["overall"]
    assert o["num_persons"] == doc["num_persons"] == len(test)
    assert {"mAP", "f1_macro", "f1_micro", *(f"ap/{s}" for s in labels.SLUGS)} <= set(o)
    assert {f"vad_{m}/{d}" for m in ("mae", "rmse", "pcc", "ccc", "sagr") for d in labels.VAD_NAMES} <= set(o)
    assert doc["thresholds"]["values"].keys() == set(labels.SLUGS)
    # The figures are those of the metrics module on the written predictions.
    preds = pd.read_parquet(evaluated / "predictions.parquet")
    assert list(preds[["image", "person"]].itertuples(index=False)) == list(
        test[["image", "person"]].itertuples(index=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # categories without positives in 10 images
        ref = mean_average_precision(preds[list(SCORE_COLUMNS)].to_numpy(), category_matrix(test))
    assert o["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    # Agreement with the three simulated annotators, model beside them.
    agreement = doc["agreement"]
    assert agreement["categories"]["num_persons"] == len(test)
    assert {"annotators", "model"} <= set(agreement["categories"]) and {"annotators", "model"} <= set(
        agreement["vad"]
    )
    # Breakdowns: every person in exactly one group of each column.
    for col in ("gender", "age", "source"):
        groups = doc["breakdowns"][col]
        assert sum(g["num_persons"] for g in groups.values()) == len(test)
        assert set(groups) == {("unknown" if v is None else v) for v in test[col]}
    report = (evaluated / "report.md").read_text()
    for heading in ("## Categories", "## Valence, arousal, dominance", "## Agreement with human annotators"):
        assert heading in report
    assert "### By gender" in report and "Doubt/Confusion" in report and "(pr_curves.png)" in report
    assert "| Persons evaluated |" in report and f"{len(test)} persons, {len(test)} evaluated" in report


def test_predictions_form_gives_the_same_figures(evaluated, calibrated, synth, tmp_path):
    base = json.loads((evaluated / "metrics.json").read_text())
    records = synth / "annotations" / "test.parquet"
    # Parquet written by the model form, fed back unchanged.
    again = evaluate_predictions(
        evaluated / "predictions.parquet", records, tmp_path / "b", thresholds=calibrated
    ).metrics
    assert again["source"]["kind"] == "predictions"
    for key in FIGURES:
        assert again[key] == base[key], key
    # JSONL from "another system": rows shuffled, one 'box' column, boxes off by a fraction of a pixel.
    preds = pd.read_parquet(evaluated / "predictions.parquet").sample(frac=1.0, random_state=1)
    preds["box"] = [[r.x1 + 0.4, r.y1 - 0.3, r.x2, r.y2 + 0.2] for r in preds.itertuples()]
    preds = preds.drop(columns=["x1", "y1", "x2", "y2", "person"])
    jsonl = tmp_path / "other.jsonl"
    preds.to_json(jsonl, orient="records", lines=True, double_precision=15)
    other = evaluate_predictions(jsonl, records, tmp_path / "c", thresholds=calibrated, plots=False).metrics
    assert other["overall"]["mAP"] == pytest.approx(base["overall"]["mAP"], abs=1e-12)
    assert other["overall"]["vad_mae"] == pytest.approx(base["overall"]["vad_mae"], abs=1e-9)
    assert (tmp_path / "c" / "report.md").is_file() and not (tmp_path / "c" / PNGS[0]).exists()
    assert "](pr_curves.png)" not in (tmp_path / "c" / "report.md").read_text()


def test_voc_variant_is_recorded(evaluated, synth, tmp_path):
    rc = cli.main(
        [
            "evaluate", "--predictions", str(evaluated / "predictions.parquet"),
            "--records", str(synth / "annotations" / "test.parquet"), "--out", str(tmp_path), "--ap-variant", "voc",
            "--no-plots",
        ]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["ap_variant"] == "voc" and doc["thresholds"] is None
    assert "f1_macro" not in doc["overall"]
    # VOC's envelope is never below the step-wise AP.
    base = json.loads((evaluated / "metrics.json").read_text())["overall"]
    assert doc["overall"]["mAP"] >= base["mAP"] - 1e-12
    assert "no decision thresholds" in doc["agreement"]["note"]


def test_unmatched_predictions_are_an_error(evaluated, synth, tmp_path):
    records = synth / "annotations" / "test.parquet"
    preds = pd.read_parquet(evaluated / "predictions.parquet")
    bad = preds.drop(index=[0]).reset_index(drop=True)
    bad.loc[1, "image"] = "images/elsewhere.jpg"
    bad.loc[2, ["x1", "x2"]] += 500
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(EmoctxError) as e:
        evaluate_predictions(path, records, tmp_path / "out")
    msg = str(e.value)
    assert "2 predictions row(s) match no record" in msg
    assert "row 1" in msg and "images/elsewhere.jpg" in msg and "row 2" in msg
    assert f"3 of {len(preds)} record(s) have no prediction" in msg and "--allow-missing" in msg
    assert not (tmp_path / "out" / "metrics.json").exists()
    # The command prints the message and exits with status 2.
    assert (
        cli.main(["evaluate", "--predictions", str(path), "--records", str(records), "--out", str(tmp_path)])
        == 2
    )
    # Missing records can be allowed; unmatched rows cannot.
    partial = preds.drop(index=[0, 5])
    partial.to_parquet(tmp_path / "partial.parquet")
    doc = evaluate_predictions(
        tmp_path / "partial.parquet", records, tmp_path / "p", allow_missing=True, plots=False
    ).metrics
    assert doc["records"]["num_skipped"] == 2 and doc["overall"]["num_persons"] == len(preds) - 2
    assert doc["num_persons"] == len(preds) - 2  # the persons evaluated, at the top of metrics.json


def test_predictions_file_problems_are_named(evaluated, synth, tmp_path):
    records = synth / "annotations" / "test.parquet"
    preds = pd.read_parquet(evaluated / "predictions.parquet")
    renamed = preds.rename(columns={"p_happiness": "happiness"})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(EmoctxError, match="missing column.*p_happiness.*found 'happiness'"):
        read_scored_predictions(tmp_path / "renamed.csv")
    nan = preds.copy()
    nan.loc[3, "p_anger"] = np.nan
    nan.to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(EmoctxError, match=r"'p_anger'.*row\(s\) 3"):
        read_scored_predictions(tmp_path / "nan.parquet")
    partial_vad = preds.drop(columns=["dominance"])
    partial_vad.to_parquet(tmp_path / "vad.parquet")
    with pytest.raises(EmoctxError, match="all three V/A/D columns or none"):
        read_scored_predictions(tmp_path / "vad.parquet")
    # The output of 'emoctx predict' names the image 'source'; a row with an error has no prediction.
    emoctx_style = preds.rename(columns={"image": "source"}).assign(error=None)
    emoctx_style.loc[4, "error"] = "cannot read image"
    emoctx_style.loc[4, list(SCORE_COLUMNS)] = np.nan
    emoctx_style.to_parquet(tmp_path / "emoctx_style.parquet")
    with pytest.raises(EmoctxError, match="1 of .* record.s. have no prediction"):
        evaluate_predictions(tmp_path / "emoctx_style.parquet", records, tmp_path / "e", plots=False)
    doc = evaluate_predictions(
        tmp_path / "emoctx_style.parquet", records, tmp_path / "e", allow_missing=True, plots=False
    ).metrics
    assert doc["source"]["num_error_rows"] == 1 and doc["records"]["num_skipped"] == 1
    # Without V/A/D columns only the category figures are computed.
    preds.drop(columns=list(labels.VAD_NAMES)).to_parquet(tmp_path / "cats.parquet")
    doc = evaluate_predictions(tmp_path / "cats.parquet", records, tmp_path / "cats").metrics
    assert "mAP" in doc["overall"] and "vad_mae" not in doc["overall"]
    assert not (tmp_path / "cats" / "vad_scatter.png").exists()


def test_evaluator_messages_say_what_is_wrong(evaluated, synth, tmp_path, caplog):
    records = synth / "annotations" / "test.parquet"
    preds = pd.read_parquet(evaluated / "predictions.parquet")
    # A person predicted twice is called a duplicate, naming the row it repeats.
    twice = pd.concat([preds, preds.iloc[[2]]], ignore_index=True)
    twice.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(EmoctxError) as e:
        evaluate_predictions(tmp_path / "twice.csv", records, tmp_path / "out")
    assert f"row {len(preds)} " in str(e.value) and "duplicate of row 2" in str(e.value)
    # A missing category column is not "closely matched" by another category's column...
    preds.drop(columns=["p_yearning"]).to_csv(tmp_path / "no_yearning.csv", index=False)
    with pytest.raises(EmoctxError, match="missing column.*p_yearning") as e:
        read_scored_predictions(tmp_path / "no_yearning.csv")
    assert "close matches" not in str(e.value) and "p_suffering" not in str(e.value)
    # ... but a misspelt one is suggested, and score columns that name no category are warned about.
    preds.rename(columns={"p_yearning": "p_yearnig"}).to_csv(tmp_path / "typo.csv", index=False)
    with pytest.raises(EmoctxError, match="'p_yearning' \\(found 'p_yearnig'\\)"):
        read_scored_predictions(tmp_path / "typo.csv")
    caplog.clear()
    preds.assign(p_joy=0.5).to_csv(tmp_path / "extra.csv", index=False)
    read_scored_predictions(tmp_path / "extra.csv")
    assert "p_joy" in caplog.text and "name no category" in caplog.text
    # Raw score columns come all together or not at all.
    preds.drop(columns=["raw_anger"]).to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(EmoctxError, match="25 of the 26 raw score columns.*raw_anger"):
        read_scored_predictions(tmp_path / "raw.parquet")


def test_model_agrees_like_the_annotator_it_copies(synth, tmp_path):
    """Predictions equal to annotator 0's own labels score exactly as annotator 0 against the others."""
    records = read_records(synth / "annotations" / "val.parquet")
    assert all(len(a) == 3 for a in records["annotator_categories"])
    rows = []
    for r in records.itertuples():
        first = set(r.annotator_categories[0])
        row = {"image": r.image, "x1": r.x1, "y1": r.y1, "x2": r.x2, "y2": r.y2}
        row.update({col: float(c in first) for col, c in zip(SCORE_COLUMNS, labels.CATEGORIES)})
        row.update(dict(zip(labels.VAD_NAMES, r.annotator_vad[0])))
        rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "annotator0.csv", index=False)
    (tmp_path / "th.json").write_text(json.dumps({s: 0.5 for s in labels.SLUGS}))
    doc = evaluate_predictions(
        tmp_path / "annotator0.csv",
        synth / "annotations" / "val.parquet",
        tmp_path / "out",
        thresholds=tmp_path / "th.json",
        plots=False,
    ).metrics
    for part in ("categories", "vad"):
        k0 = doc["agreement"][part]["per_k"][0]
        assert k0["k"] == 0
        for key, value in k0["annotators"].items():
            assert k0["model"][key] == pytest.approx(value, abs=1e-12), (part, key)


def test_evaluate_model_on_missing_root_is_a_clear_error(model_file, synth, tmp_path):
    with pytest.raises(EmoctxError, match="no person with a readable image"):
        evaluate_model(
            model_file, synth / "annotations" / "test.parquet", tmp_path, tmp_path / "out", num_workers=0,
            progress=False,
        )  # fmt: skip


def test_training_stores_thresholds_fitted_on_val(synth, tmp_path):
    from emoctx.commands.train import train

    args = [
        "--config", str(Path(__file__).resolve().parents[1] / "configs" / "synth_tiny.yaml"), "--data.root", str(synth), "--trainer.max_epochs", "1",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--data.num_workers", "0",
        "--data.batch_size", "16", "--trainer.default_root_dir", str(tmp_path), "--skip_test",
    ]  # fmt: skip
    results = train(args)
    _, info = load_model(results["model_path"])
    assert set(info.thresholds) == set(labels.SLUGS)
    calibration = info.training["threshold_calibration"]
    assert calibration["records"] == str(synth / "annotations" / "val.parquet")
    assert calibration["num_persons"] == len(read_records(synth / "annotations" / "val.parquet"))


def test_evaluation_masks_the_subject_as_the_model_says_unless_told_otherwise(model_file):
    """Evaluation builds its transform from the model's preprocessing; an explicit choice wins."""
    from emoctx.evaluation.scoring import records_transform

    _, info = load_model(model_file)
    assert not info.preprocessing.mask_subject
    assert not records_transform(info).cfg.mask_subject
    masked = records_transform(info, mask_subject=True).cfg
    assert masked.mask_subject and masked == info.preprocessing.with_mask(True)
