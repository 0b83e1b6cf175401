r"""Put several evaluations side by side: one Markdown table and one CSV (mAP, AP per category, V/A/D errors).

EVAL is an evaluation folder written by 'emoctx evaluate --out' (or its metrics.json). Each evaluation becomes a
row of comparison.csv and a column of the per-category table in comparison.md: mAP, F1 at the thresholds, V/A/D
MAE and CCC, the persons evaluated, the AP variant, and each category's AP beside its chance level. The best
figure of each column is in bold.

Figures compare only on the same persons with the same AP: evaluations of different records files, of a
different number of persons or with different AP variants are refused (--allow-different puts them side by
side anyway, with a caution in the table).

Examples:
  emoctx evaluate --model runs/demo/train/model.safetensors --records runs/demo/synth/annotations/test.parquet \
      --root runs/demo/synth --out runs/demo/eval
  emoctx evaluate --model runs/demo/train/checkpoints/last.ckpt \
      --records runs/demo/synth/annotations/test.parquet --root runs/demo/synth --out runs/demo/eval_last
  emoctx compare runs/demo/eval runs/demo/eval_last --out runs/demo/comparison
"""

from __future__ import annotations

import argparse

HELP = "put several evaluations side by side (comparison.md and comparison.csv)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to ``parser``."""
    parser.add_argument(
        "evaluations",
        nargs="+",
        metavar="EVAL",
        help="evaluation folders (emoctx evaluate --out) or metrics.json",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for comparison.md and comparison.csv"
    )
    parser.add_argument(
        "--names", nargs="+", metavar="NAME", help="a name per evaluation (default: folder names)"
    )
    parser.add_argument(
        "--allow-different",
        action="store_true",
        help="compare even when the records, the persons evaluated or the AP variant differ (with a caution)",
    )


def run(args: argparse.Namespace) -> int:
    """Compare, write the two files, and print the summary table."""
    from emoctx.evaluation.compare import CSV_FILE, MARKDOWN_FILE, compare_evaluations, write_comparison
    from emoctx.io import check_output_dir

    check_output_dir(args.out, args.evaluations, (MARKDOWN_FILE, CSV_FILE))
    comparison = compare_evaluations(args.evaluations, names=args.names, allow_different=args.allow_different)
    columns = ["evaluation", "persons evaluated", "mAP (%)", "F1 macro (%)", "V/A/D MAE (1-10 points)"]
    print(comparison.table[columns].to_string(index=False))
    files = write_comparison(comparison, args.out)
    print(f"written to {args.out}: " + ", ".join(p.name for p in files.values()))
    return 0
