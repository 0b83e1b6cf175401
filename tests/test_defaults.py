"""The command line's defaults are the library's: each option against the parameter it fills."""

import inspect

from emoctx import defaults
from emoctx.cli import build_parser, main


def _default(function, parameter):
    return inspect.signature(function).parameters[parameter].default


def _parsed(*argv):
    return build_parser().parse_args(list(argv))


def test_predict_options_default_to_the_predictors_parameters():
    from emoctx.inference.detect import DEFAULT_WEIGHTS, UltralyticsDetector
    from emoctx.inference.predictor import DEFAULT_MAX_SIDE, Predictor

    args = _parsed("predict", "x.jpg", "--model", "m.safetensors")
    pairs = {
        "batch_size": "batch_size",
        "conf": "conf",
        "min_box": "min_box",
        "imgsz": "imgsz",
        "smooth": "smoothing",
        "video_stride": "video_stride",
        "precision": "precision",
        "scene_mode": "scene_mode",
        "device": "device",
        "workers": "num_workers",
    }
    for option, parameter in pairs.items():
        assert getattr(args, option) == _default(Predictor, parameter), option
    # --max-side and --detector-weights are left unset: the library's defaults then apply
    assert args.max_side is None and _default(Predictor, "max_side") == "model"
    assert DEFAULT_MAX_SIDE == defaults.MAX_SIDE
    assert args.detector_weights is None and _default(Predictor, "detector_weights") == DEFAULT_WEIGHTS
    assert DEFAULT_WEIGHTS == defaults.DETECTOR_WEIGHTS == _default(UltralyticsDetector, "weights")
    for parameter in ("conf", "imgsz"):
        assert _default(UltralyticsDetector, parameter) == _default(Predictor, parameter)
    assert _default(UltralyticsDetector, "batch_size") == _default(Predictor, "detector_batch")
    # and --help says what they are
    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    for value in (
        defaults.DETECTOR_WEIGHTS,
        f"default {defaults.DETECTOR_CONF}",
        f"else {defaults.MAX_SIDE}",
    ):
        assert value in text, value


def test_records_commands_default_to_the_librarys_parameters():
    from emoctx.evaluation.calibrate import calibrate_model
    from emoctx.evaluation.evaluate import evaluate_model
    from emoctx.inference.distributed import predict_records

    evaluate = _parsed("evaluate", "--model", "m", "--records", "r", "--out", "o")
    calibrate = _parsed("calibrate", "m", "--records", "r", "--root", "d")
    records = _parsed(
        "predict-records", "--model", "m", "--records", "r", "--root", "d", "--out", "o.parquet"
    )
    for args, function in (
        (evaluate, evaluate_model),
        (calibrate, calibrate_model),
        (records, predict_records),
    ):
        assert args.batch_size == _default(function, "batch_size"), function.__name__
        assert args.workers == _default(function, "num_workers"), function.__name__
    for option in ("accelerator", "devices", "strategy", "num_nodes", "precision"):
        assert getattr(records, option) == _default(predict_records, option), option
    assert evaluate.ap_variant == _default(evaluate_model, "ap_variant")
    assert evaluate.min_annotators == _default(evaluate_model, "min_annotators")
    assert calibrate.rule == _default(calibrate_model, "rule")
    assert records.max_side is None and _default(predict_records, "max_side") == "model"


def test_annotate_detector_options_are_the_detectors():
    from emoctx.inference.detect import UltralyticsDetector

    args = _parsed("annotate", "tasks", "photos", "--out", "t.json")
    assert args.conf == _default(UltralyticsDetector, "conf") and args.imgsz == _default(
        UltralyticsDetector, "imgsz"
    )


def test_the_library_checks_workers_once(tiny_model_path, tmp_path, capsys):
    image = tmp_path / "a.jpg"
    status = main(
        [
            "predict",
            str(image),
            "--model",
            str(tiny_model_path),
            "--workers",
            "-1",
            "--out",
            str(tmp_path / "o.jsonl"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == "emoctx predict: error: workers must be 0 or more, got -1"


def test_the_parser_builds_without_the_heavy_libraries():
    """The defaults come from a module that imports nothing: the parser is built before torch is needed."""
    import subprocess
    import sys

    code = (
        "import sys; from emoctx.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'ultralytics', 'pytorch_lightning') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
