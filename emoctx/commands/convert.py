"""Convert annotations into canonical records (one Parquet file per split).

SOURCE is EMOTIC's official Annotations.mat, a COCO-style JSON file or folder of per-split JSON files, or the
Kaggle annot_arrs_<split>.csv files (a file or their folder); or AffectNet's training.csv / validation.csv
(a file, or their folder: faces with an expression, valence and arousal). The layout is detected from the
path unless --format is given. Boxes past the image border are clipped, unusable persons (and images whose
path would leave the images root) are dropped, unknown category names are removed, out-of-range V/A/D values
are set to missing and duplicate persons are kept and listed: every change is printed and written to
<out>/conversion_report.jsonl. A source that cannot be read as a whole (invalid JSON/CSV, duplicate COCO
image ids, a damaged .mat file, which is read in a separate process) is a one-line error and nothing is
written. With --images-root, every image is looked up under ROOT (for EMOTIC the folder holding mscoco/,
framesdb/, emodb_small/ and ade20k/) and missing, unreadable or oversized ones are listed. AffectNet's CSVs
hold no image sizes: they are read from the images (ROOT, by default the Manually_Annotated_Images folder
found beside the CSVs); its validation.csv becomes the test split and --val-share of the training images
the val split.

Examples:
  emoctx convert ~/data/emotic/Annotations/Annotations.mat --images-root ~/data/emotic/emotic
  emoctx convert ~/data/affectnet/Manually_Annotated_file_lists --images-root ~/data/affectnet/Manually_Annotated_Images
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emoctx.data.readers import Annotations, ImageCheck

HELP = "convert EMOTIC (.mat, COCO-style JSON, Kaggle CSV) or AffectNet annotations into canonical records"

DEFAULT_OUT = Path("annotations") / "emotic"
DEFAULT_OUTS = {"affectnet": Path("annotations") / "affectnet"}  # other layouts: DEFAULT_OUT
REPORT_NAME = "conversion_report.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    from emoctx.labels import SPLITS

    parser.add_argument("source", metavar="SOURCE", type=Path, help="annotation file or folder")
    parser.add_argument(
        "--format",
        choices=("mat", "coco", "kaggle", "affectnet"),
        default=None,
        help="source layout (default: detected from SOURCE)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"output folder for <split>.parquet and the report (default: {DEFAULT_OUT}; for AffectNet "
        f"{DEFAULT_OUTS['affectnet']})",
    )
    parser.add_argument(
        "--images-root",
        type=Path,
        default=None,
        metavar="ROOT",
        help="check that every image exists under ROOT (the dataset root the image paths are relative to); "
        "AffectNet reads its image sizes there",
    )
    parser.add_argument(
        "--val-share",
        type=float,
        default=None,
        metavar="FRACTION",
        help="AffectNet only: share of the training images moved to the val split (default 0.05)",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=None,
        metavar="SPLIT",
        help="splits to convert (default: every split in SOURCE)",
    )
    parser.add_argument("--jsonl", action="store_true", help="also write <split>.jsonl (one person per line)")


def run(args: argparse.Namespace) -> int:
    """Convert, write the records and the report, and print a summary; returns the exit status."""
    from emoctx.data.readers import check_images, read_annotations
    from emoctx.data.records import validate_records, write_records

    ann = read_annotations(
        args.source,
        fmt=args.format,
        splits=args.splits,
        images_root=args.images_root,
        val_share=args.val_share,
    )
    out: Path = args.out if args.out is not None else DEFAULT_OUTS.get(ann.format, DEFAULT_OUT)
    for split, df in ann.splits.items():  # validate everything before writing anything
        validate_records(df, source=f"{args.source} ({split})")

    check = None
    if args.images_root is not None:
        check = check_images(ann.splits, args.images_root)
        split_of = {img: split for split, df in ann.splits.items() for img in df["image"]}
        for image in check.missing:
            ann.report.add(
                args.source,
                split_of[image],
                image,
                None,
                "kept",
                "image",
                f"not found under {args.images_root}",
            )
        for image, reason in check.unreadable:
            ann.report.add(
                args.source, split_of[image], image, None, "kept", "image", f"cannot be opened ({reason})"
            )
        for image, declared, actual in check.size_mismatch:
            ann.report.add(
                args.source,
                split_of[image],
                image,
                None,
                "kept",
                "image_size",
                f"annotation says {declared[0]}x{declared[1]}, the file is {actual[0]}x{actual[1]}",
            )

    written = []
    for split, df in ann.splits.items():
        if df.empty:  # nothing to train or evaluate on: no file rather than an empty one
            print(f"note: no persons left in split '{split}'; no {split}.parquet written")
            continue
        written.append(write_records(df, out / f"{split}.parquet", validate=False))
        if args.jsonl:
            written.append(write_records(df, out / f"{split}.jsonl", validate=False))
    written.append(ann.report.write(out / REPORT_NAME))

    print(summary(ann, check, args.images_root))
    print("\nWrote:")
    for path in written:
        print(f"  {path}")
    return 0


def summary(ann: Annotations, check: ImageCheck | None = None, images_root: Path | None = None) -> str:
    """The printed summary: counts per split, category frequencies, every report entry, missing images."""
    from emoctx.labels import CATEGORIES, EXPRESSIONS, VAD_NAMES

    lines = [
        f"Converted {ann.source} ({ann.format} layout): {ann.num_images} images, {ann.num_persons} persons",
        "",
    ]
    splits = list(ann.splits)
    counts = Counter((e.split, e.action) for e in ann.report)
    lines.append(f"{'split':<8}{'images':>8}{'persons':>9}{'dropped':>9}{'repairs':>10}{'V/A/D NaN':>11}")
    for s, df in ann.splits.items():
        vad_nan = int(df[list(VAD_NAMES)].isna().any(axis=1).sum()) if len(df) else 0
        lines.append(
            f"{s:<8}{df['image'].nunique():>8}{len(df):>9}{counts[s, 'dropped']:>9}"
            f"{counts[s, 'repaired']:>10}{vad_nan:>11}"
        )
    with_expressions = any("expression" in df.columns for df in ann.splits.values())
    label_names = EXPRESSIONS if with_expressions else CATEGORIES
    lines += [
        "",
        "Expression frequencies (faces with the expression):"
        if with_expressions
        else "Category frequencies (persons labelled with the category):",
    ]
    header = f"{'expression' if with_expressions else 'category':<18}" + "".join(f"{s:>8}" for s in splits)
    lines.append(header + f"{'total':>8}{'%':>7}")
    freq = {s: _label_counts(df, with_expressions) for s, df in ann.splits.items()}
    for c in label_names:
        total = sum(freq[s].get(c, 0) for s in splits)
        pct = 100.0 * total / ann.num_persons if ann.num_persons else 0.0
        lines.append(
            f"{c:<18}" + "".join(f"{freq[s].get(c, 0):>8}" for s in splits) + f"{total:>8}{pct:>7.1f}"
        )

    by_action = ann.report.counts()
    lines += [
        "",
        f"Report: {by_action.get('dropped', 0)} dropped, {by_action.get('repaired', 0)} repaired, "
        f"{by_action.get('kept', 0)} kept with a note",
    ]
    lines += [f"  {e}" for e in ann.report]
    if check is not None:
        lines += [
            "",
            f"Images under {images_root}: {check.checked} checked, {len(check.missing)} missing, "
            f"{len(check.unreadable)} unreadable, {len(check.size_mismatch)} with another size",
        ]
        lines += [f"  missing: {img}" for img in check.missing]
        lines += [f"  unreadable: {img} ({why})" for img, why in check.unreadable]
        lines += [
            f"  size differs: {img} (annotation {d[0]}x{d[1]}, file {a[0]}x{a[1]})"
            for img, d, a in check.size_mismatch
        ]
    return "\n".join(lines)


def _label_counts(df, expressions: bool = False) -> dict[str, int]:
    """Persons per category, or faces per expression."""
    counts: dict[str, int] = {}
    if expressions:
        for e in df["expression"] if "expression" in df.columns else []:
            if isinstance(e, str):
                counts[e] = counts.get(e, 0) + 1
        return counts
    for cats in df["categories"]:
        for c in cats:
            counts[c] = counts.get(c, 0) + 1
    return counts
