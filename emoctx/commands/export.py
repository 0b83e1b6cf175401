"""Export a model to ONNX (one input per stream, dynamic batch) and check it against PyTorch.

Inputs are named after the model's streams (body, scene), NCHW float32 images resized to the stream's size and
normalised with its mean/std; outputs are "scores" (one 0-1 column per category) and "vad" (valence, arousal,
dominance on 1-10). The model's description (stream sizes and normalisation, categories, thresholds) is in the
file's metadata. Unless --no-check, onnxruntime runs the file on random inputs at batch sizes 1 and 3 and the
largest difference from PyTorch is printed; beyond --tolerance the command fails.

Examples:
  emoctx export runs/demo/model.safetensors --out runs/demo/model.onnx
  emoctx export model.safetensors --out model.onnx --opset 20 --tolerance 1e-3
"""

from __future__ import annotations

import argparse

from emoctx import defaults

HELP = "export a model to ONNX (dynamic batch) and check it against PyTorch with onnxruntime"

# The library's defaults, from the module that imports nothing (building the parser imports no torch).
DEFAULT_OPSET = defaults.EXPORT_OPSET
DEFAULT_TOLERANCE = defaults.EXPORT_TOLERANCE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` options to ``parser``."""
    parser.add_argument("model", metavar="MODEL", help="model file (.safetensors, or a training .ckpt)")
    parser.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write (e.g. model.onnx)")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare onnxruntime with PyTorch at batch sizes 1 and 3 (default: on)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest accepted absolute difference per output (default {DEFAULT_TOLERANCE:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Export, check, and print the file's inputs and the measured differences."""
    from emoctx.inference.export import export_onnx
    from emoctx.io import check_output_file

    check_output_file(args.out, [args.model])
    report = export_onnx(args.model, args.out, opset=args.opset, check=args.check, tolerance=args.tolerance)
    print(f"ONNX (opset {report.opset}) written to {report.path}")
    for name, shape in report.inputs.items():
        print(f"  input  {name}: {shape} float32, normalised")
    print("  output scores: [batch, categories] 0-1;  vad: [batch, 3] on 1-10")
    for batch, diffs in report.max_abs_diff.items():
        detail = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        print(f"  onnxruntime vs PyTorch, batch {batch}: max abs diff {detail}")
    if report.max_abs_diff:
        print(f"  check passed (tolerance {report.tolerance:g})")
    return 0
