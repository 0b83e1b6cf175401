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
    ("emoctx.evaluation.report", "evaluate_model", "emoctx.evaluation.evaluate", "evaluate_model"),
    ("emoctx.evaluation.report", "METRICS_FILE", "emoctx.evaluation.evaluate", "METRICS_FILE"),
    ("emoctx.evaluation.report", "evaluation_document", "emoctx.evaluation.document", "evaluation_document"),
    ("emoctx.evaluation.report", "plot_pr_curves", "emoctx.evaluation.plots", "plot_pr_curves"),
    ("emoctx.evaluation.report", "file_sha256", "emoctx.io", "file_sha256"),
]


@pytest.mark.parametrize(("old_module", "old", "new_module", "new"), MOVED)
def test_moved_names_warn_and_are_the_new_ones(old_module, old, new_module, new):
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
