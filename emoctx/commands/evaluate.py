r"""Evaluate a model, or the predictions of any system, on annotated records; write metrics, report and plots.

Two forms:

  emoctx evaluate --model MODEL --records test.parquet --root DIR --out OUTDIR
      runs an emoctx model on every person of the records with its ground-truth box (persons whose image
      cannot be read are left out and counted), and also writes OUTDIR/predictions.parquet;
  emoctx evaluate --predictions PREDS --records test.parquet [--root DIR] --out OUTDIR
      scores a predictions file (.parquet, .jsonl or .csv) of any system, emoctx predict's tables included:
      one row per person with 'image' (relative to the dataset root, as in the records; 'source' is
      accepted; paths under --root DIR, as emoctx predict writes them, are taken relative to it), the box
      'x1','y1','x2','y2' in pixels (or one 'box' column [x1, y1, x2, y2]), one score column 'p_<slug>' per
      category (e.g. p_happiness, p_doubt_confusion) and optionally 'valence','arousal','dominance' on the
      1-10 scale. Rows are paired with records of the same image by box, one to one: coordinates equal within
      --pixel-tolerance pixels, or IoU >= --min-iou. Rows that match no record are an error (the first ones
      are listed, with the --root that would pair them), and so are records without a prediction unless
      --allow-missing. Rows with an 'error', and rows of images without a person, are left out.

With --model, the network computes exactly as loaded (PyTorch fp32) unless --engine or --precision says
otherwise (e.g. --engine openvino --precision int8 measures what int8 costs); metrics.json records the engine
and its largest probability difference from PyTorch fp32.

Outputs in OUTDIR: metrics.json (every figure, the AP variant, the identity of the model or predictions
file and of the records, counts), report.md, ap_per_category.png, pr_curves.png, vad_scatter.png.
Precision/recall/F1 use the model's calibrated thresholds (emoctx calibrate) or --thresholds. Where the
records carry several annotators per person (EMOTIC val/test), the model's agreement with them is reported
beside the annotators' agreement with each other. Every figure is broken down by gender, age group and
source database where the records give them.

Examples:
  emoctx evaluate --model runs/demo/train/model.safetensors --records runs/demo/synth/annotations/test.parquet \
      --root runs/demo/synth --out runs/demo/eval
  emoctx evaluate --predictions runs/demo/predict/synth_test.jsonl --records \
      runs/demo/synth/annotations/test.parquet --root runs/demo/synth --allow-missing --out runs/demo/eval_predict
  emoctx evaluate --predictions other_system.csv --records annotations/emotic/test.parquet --out eval_other \
      --thresholds other_thresholds.json --ap-variant voc
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emoctx.commands.options import add_device_option, add_engine_options, add_records_run_options

HELP = "evaluate a model or a predictions file on annotated records (metrics.json, report.md, plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--model", type=Path, metavar="MODEL", help="an emoctx model file (.safetensors or .ckpt)"
    )
    what.add_argument(
        "--predictions", type=Path, metavar="PREDS", help="predictions of any system (.parquet, .jsonl, .csv)"
    )
    parser.add_argument(
        "--records", type=Path, required=True, metavar="FILE", help="records of the split (.parquet/.jsonl)"
    )
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="the dataset root the records' image paths are relative to (needed with --model; with "
        "--predictions, prediction paths under DIR are compared relative to it)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument(
        "--ap-variant",
        choices=("sklearn", "voc"),
        default="sklearn",
        help="average precision as scikit-learn computes it (default) or the VOC all-point envelope of the "
        "EMOTIC authors' MATLAB script",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        metavar="FILE",
        help="decision thresholds for P/R/F1: a model file or JSON {slug: number or null} "
        "(default: the model's calibrated thresholds; none for --predictions)",
    )
    parser.add_argument(
        "--min-annotators",
        type=int,
        default=3,
        metavar="K",
        help="persons need at least K annotators for the agreement figures (default 3, at least 2)",
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="--predictions: evaluate only matched records"
    )
    parser.add_argument(
        "--min-iou", type=float, default=0.5, help="--predictions: box IoU for a match (default 0.5)"
    )
    parser.add_argument(
        "--pixel-tolerance",
        type=float,
        default=1.0,
        metavar="PX",
        help="--predictions: boxes within PX pixels in every coordinate match whatever their IoU (default 1)",
    )
    add_records_run_options(parser, "--model: persons per batch", "--model: data-loading processes")
    add_device_option(parser, "--model: ")
    add_engine_options(
        parser,
        "torch",
        "with --precision fp32, the network exactly as loaded, the reference every engine is checked against "
        "(the figures are the model's); name another engine or precision to measure what it changes",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="fp32",
        help="--model: the arithmetic of the engine (default fp32; int8: onnxruntime or openvino, calibrated on "
        "--calibration-records)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write metrics.json and report.md only")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the outputs and print a summary."""
    from emoctx.errors import EmoctxError
    from emoctx.evaluation import evaluate as report
    from emoctx.evaluation.evaluate import evaluate_model, evaluate_predictions
    from emoctx.evaluation.report import summary_lines
    from emoctx.io import check_output_dir

    written = (
        report.METRICS_FILE,
        report.REPORT_FILE,
        report.PREDICTIONS_FILE,
        report.AP_PLOT,
        report.PR_PLOT,
    )
    check_output_dir(args.out, [args.model, args.records, args.predictions], (*written, report.VAD_PLOT))

    if args.min_annotators < 2:
        raise EmoctxError(f"--min-annotators must be at least 2, got {args.min_annotators}")
    if args.model is not None:
        if args.root is None:
            raise EmoctxError("--model needs --root, the folder the records' image paths are relative to")
        if args.allow_missing:
            raise EmoctxError("--allow-missing applies to --predictions only")
        from emoctx.hardware import resolve_device

        resolve_device(args.device)  # a missing GPU is reported before any work
        result = evaluate_model(
            args.model,
            args.records,
            args.root,
            args.out,
            ap_variant=args.ap_variant,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            min_annotators=args.min_annotators,
            progress=not args.no_progress,
            thresholds=args.thresholds,
            plots=not args.no_plots,
            engine=args.engine,
            precision=args.precision,
            calibration_records=args.calibration_records,
            calibration_root=args.calibration_root,
            engine_cache=args.engine_cache,
        )
    else:
        result = evaluate_predictions(
            args.predictions,
            args.records,
            args.out,
            ap_variant=args.ap_variant,
            thresholds=args.thresholds,
            min_annotators=args.min_annotators,
            allow_missing=args.allow_missing,
            min_iou=args.min_iou,
            pixel_tolerance=args.pixel_tolerance,
            plots=not args.no_plots,
            root=args.root,
        )
    for line in summary_lines(result.metrics):
        print(line)
    print(f"written to {args.out}: " + ", ".join(sorted(p.name for p in result.files.values())))
    return 0
