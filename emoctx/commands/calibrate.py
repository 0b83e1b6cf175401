r"""Fit per-category decision thresholds on the validation split and store them in the model file.

The model is run on every validation person (ground-truth boxes); for each category the threshold on its
0-1 score is chosen by --rule: 'f1' maximises the category's F1, 'pr_equal' takes the point where
precision and recall are closest. A category without positive validation examples is stored as null,
"never predicted". The model file is rewritten in place, atomically, unless --out is given. Prediction
and evaluation then use these thresholds.

Example:
  emoctx calibrate runs/synth_tiny/model.safetensors --records runs/demo/synth/annotations/val.parquet \
      --root runs/demo/synth
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emoctx.commands.options import add_records_run_options

HELP = "fit per-category decision thresholds on validation records and store them in the model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``calibrate`` options to ``parser``."""
    parser.add_argument(
        "model", type=Path, metavar="MODEL", help="an emoctx model file (.safetensors or .ckpt)"
    )
    parser.add_argument(
        "--records", type=Path, required=True, metavar="FILE", help="validation records (.parquet/.jsonl)"
    )
    parser.add_argument("--root", type=Path, required=True, metavar="DIR", help="dataset root of the images")
    parser.add_argument(
        "--rule",
        choices=("f1", "pr_equal"),
        default="f1",
        help="'f1': maximise each category's F1 (default); 'pr_equal': precision closest to recall",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="MODEL_OUT",
        help="write the calibrated model here (.safetensors) instead of rewriting MODEL",
    )
    add_records_run_options(parser)
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu... (default: GPU if available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Calibrate and print the thresholds."""
    from emoctx import labels
    from emoctx.evaluation.calibrate import calibrate_model
    from emoctx.io import check_output_file

    if args.out is not None:  # the model itself may be named: that is rewriting it, as without --out
        check_output_file(args.out, [args.records])

    cal = calibrate_model(
        args.model,
        args.records,
        args.root,
        rule=args.rule,
        out=args.out,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
    )
    v = cal.validation
    print(
        f"thresholds ({cal.rule}) fitted on {cal.num_persons} validation persons"
        + (f" ({cal.num_skipped} skipped: unreadable image)" if cal.num_skipped else "")
    )
    for name, slug in zip(labels.CATEGORIES, labels.SLUGS):
        t = cal.thresholds[slug]
        f1 = v.get(f"f1/{slug}")
        print(
            f"  {name:16s} {'never' if t is None else f'{t:.3f}':>6s}   "
            f"val F1 {'—' if f1 is None else f'{100 * f1:5.1f}%'}   positives {v[f'support/{slug}']}"
        )
    f1_macro, f1_micro = v.get("f1_macro"), v.get("f1_micro")
    print(
        "validation F1 at these thresholds: macro "
        + ("—" if f1_macro is None else f"{100 * f1_macro:.1f}%")
        + ", micro "
        + ("—" if f1_micro is None else f"{100 * f1_micro:.1f}%")
    )
    print(f"model written: {cal.path}")
    return 0
