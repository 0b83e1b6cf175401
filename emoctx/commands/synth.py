"""Generate EMOTIC-synth, a synthetic benchmark in EMOTIC's record format.

Writes JPEG images under DIR/images/<place>/, canonical records DIR/annotations/{train,val,test}.parquet
(image paths relative to DIR) and DIR/synth.json, then prints the images, persons and category frequencies
per split. Some categories depend only on the person, some only on the place, some on both: a body-only
or a scene-only model fails on part of them, a model that sees both succeeds. The label rules are in
annotations/synth.md.

With --faces the figures show faces with expressions (eyes, brows, mouth; or they face away), drawn at
640x480 by default so that a face crop can read them; the records get face boxes, landmarks and the
expression, and five categories follow the face. Without it the data is what it always was.

Examples:
  emoctx synth --out data/synth
  emoctx synth --out data/synth640 --size 640x480 --train 4000 --workers 2
  emoctx synth --faces --out data/synth_faces
"""

from __future__ import annotations

import argparse

HELP = "generate EMOTIC-synth, a synthetic benchmark in EMOTIC's record format"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` options to ``parser``."""
    from emoctx.data.synth import DEFAULT_COUNTS, DEFAULT_SIZE

    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write (new or empty)")
    for split in ("train", "val", "test"):
        parser.add_argument(
            f"--{split}",
            type=int,
            default=DEFAULT_COUNTS[split],
            metavar="N",
            help=f"number of {split} images (default {DEFAULT_COUNTS[split]})",
        )
    from emoctx.data.synth import DEFAULT_FACES_SIZE

    parser.add_argument(
        "--size",
        type=_size,
        default=None,
        metavar="WxH",
        help=f"image size in pixels (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}, with --faces "
        f"{DEFAULT_FACES_SIZE[0]}x{DEFAULT_FACES_SIZE[1]}; 640x480 for benchmarks)",
    )
    parser.add_argument(
        "--faces",
        action="store_true",
        help="draw faces with expressions and write face boxes, landmarks and expressions (annotations/synth.md)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; one seed gives identical files (default 0)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images (default 1)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier EMOTIC-synth output in DIR"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print its summary."""
    from emoctx.data import synth

    frames = synth.generate(
        args.out,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        image_size=args.size,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        faces=args.faces,
    )
    w, h = args.size or (synth.DEFAULT_FACES_SIZE if args.faces else synth.DEFAULT_SIZE)
    print(f"EMOTIC-synth ({w}x{h}, seed {args.seed}) written to {args.out}")
    for split, df in frames.items():
        n_images = df["image"].nunique()
        print(f"  {split:5s}: {n_images:5d} images, {len(df):5d} persons -> annotations/{split}.parquet")
    counts = synth.category_counts(frames, faces=args.faces)
    print(
        "\nPositives per category (group: body = person cues only, scene = place only, both = person and place"
        + (
            ", face = the expression; face+scene, face+body: the expression and the place or the pose)"
            if args.faces
            else ")"
        )
    )
    if args.faces:
        for split, df in frames.items():
            shown = int(df["expression"].notna().sum())
            print(f"  {split:5s}: {shown} of {len(df)} persons show a face")
    table = counts.copy()
    for split in frames:
        n = max(len(frames[split]), 1)
        table[split] = [f"{v} ({100 * v / n:.1f}%)" for v in counts[split]]
    print(table.to_string())
    print(f"\nRecords: {args.out}/annotations/{{train,val,test}}.parquet; label rules: annotations/synth.md")
    return 0
