"""Names that moved or were renamed still work from their old place, and say where they went."""

import importlib

import pytest

MOVED = [
    ("emoctx.inference.pipeline", "Predictor", "emoctx.inference.predictor", "Predictor"),
    ("emoctx.inference.pipeline", "DEFAULT_MAX_SIDE", "emoctx.inference.predictor", "DEFAULT_MAX_SIDE"),
    ("emoctx.inference.pipeline", "cpu_supports_bf16", "emoctx.hardware", "cpu_supports_bf16"),
    ("emoctx.inference.pipeline", "default_workers", "emoctx.hardware", "default_workers"),
    ("emoctx.inference.pipeline", "resolve_precision", "emoctx.hardware", "resolve_precision"),
    ("emoctx.inference.pipeline", "fold_batch_norms", "emoctx.inference.optimize", "fold_batch_norms"),
    ("emoctx.inference.pipeline", "fuse_conv_relu", "emoctx.inference.optimize", "fuse_conv_relu"),
    ("emoctx.inference.pipeline", "model_identity", "emoctx.checkpoint", "model_identity"),
    ("emoctx.inference.pipeline", "resize_like_training", "emoctx.data.transforms", "resize_view"),
    ("emoctx.inference.detect", "BoxFileDetector", "emoctx.inference.box_file", "BoxFileDetector"),
    ("emoctx.inference.detect", "import_ultralytics", "emoctx.inference.yolo_weights", "import_ultralytics"),
    ("emoctx.inference.detect", "detector_error", "emoctx.inference.yolo_weights", "detector_error"),
    ("emoctx.evaluation.report", "evaluate_model", "emoctx.evaluation.evaluate", "evaluate_model"),
    ("emoctx.evaluation.report", "METRICS_FILE", "emoctx.evaluation.evaluate", "METRICS_FILE"),
    ("emoctx.evaluation.report", "evaluation_document", "emoctx.evaluation.document", "evaluation_document"),
    ("emoctx.evaluation.report", "plot_pr_curves", "emoctx.evaluation.plots", "plot_pr_curves"),
    ("emoctx.evaluation.report", "file_sha256", "emoctx.io", "file_sha256"),
]


RENAMED = [
    ("emoctx.evaluation", "predict_records", "emoctx.evaluation.scoring", "score_records"),
    ("emoctx.evaluation", "read_predictions", "emoctx.evaluation.predictions", "read_scored_predictions"),
    ("emoctx.evaluation.inference", "predict_records", "emoctx.evaluation.scoring", "score_records"),
    (
        "emoctx.evaluation.inference",
        "read_predictions",
        "emoctx.evaluation.predictions",
        "read_scored_predictions",
    ),
    (
        "emoctx.evaluation.inference",
        "match_predictions",
        "emoctx.evaluation.predictions",
        "match_predictions",
    ),
    ("emoctx.evaluation.inference", "records_transform", "emoctx.evaluation.scoring", "records_transform"),
    ("emoctx.inference", "read_predictions", "emoctx.inference.writers", "read_prediction_table"),
    ("emoctx.inference.writers", "read_predictions", "emoctx.inference.writers", "read_prediction_table"),
    ("emoctx.inference.summary", "read_predictions", "emoctx.inference.summary.table", "read_summary_table"),
    ("emoctx.losses", "scores_from_logits", "emoctx.models.outputs", "scores_from_logits"),
    ("emoctx.losses", "SCORE_ACTIVATIONS", "emoctx.losses", "SCORE_ACTIVATION_OF_LOSS"),
]


@pytest.mark.parametrize(("old_module", "old", "new_module", "new"), MOVED + RENAMED)
def test_moved_and_renamed_names_warn_and_are_the_new_ones(old_module, old, new_module, new):
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=rf"{old_module}\.{old} is deprecated: use .*{new}"):
        value = getattr(module, old)
    assert value is getattr(importlib.import_module(new_module), new)


def test_unknown_names_are_still_attribute_errors():
    from emoctx.evaluation import report
    from emoctx.inference import detect, pipeline

    for module in (pipeline, report, detect):
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018


def test_training_entry_point_train_warns_and_composes_fit_and_calibration(monkeypatch):
    import emoctx.commands.train
    from emoctx.training import cli

    calls = []
    monkeypatch.setattr(
        emoctx.commands.train, "train", lambda args: calls.append(args) or {"model_path": "m"}
    )
    with pytest.warns(DeprecationWarning, match="emoctx.commands.train.train"):
        assert cli.train(["--config", "x.yaml"]) == {"model_path": "m"}
    assert calls == [["--config", "x.yaml"]]


def test_lightning_module_takes_the_network_and_its_deprecated_flat_arguments():
    import torch

    from emoctx.errors import EmoctxError
    from emoctx.models.network import EmotionNet
    from emoctx.training.module import EmotionModule

    streams = {"body": {"backbone": "test_resnet", "input_size": 32}}
    torch.manual_seed(0)
    injected = EmotionModule(EmotionNet(streams, hidden=8, dropout=0.2), lr=0.1)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="EmotionModule\\(streams, hidden, dropout\\) is deprecated"):
        flat = EmotionModule(streams=streams, hidden=8, dropout=0.2, lr=0.1)
    torch.manual_seed(0)
    from_config = EmotionModule(
        {
            "class_path": "emoctx.models.EmotionNet",
            "init_args": {"streams": streams, "hidden": 8, "dropout": 0.2},
        },
        lr=0.1,
    )
    # The same network and weights, and the same record of its arguments in the training settings.
    for other in (flat, from_config):
        assert dict(other.hparams) == dict(injected.hparams)
        for (name, a), (_, b) in zip(injected.net.state_dict().items(), other.net.state_dict().items()):
            assert torch.equal(a, b), name
    assert injected.hparams["streams"]["body"]["input_size"] == 32 and injected.hparams["hidden"] == 8
    with pytest.raises(EmoctxError, match="give the network once"):
        EmotionModule(EmotionNet(streams), hidden=8)
