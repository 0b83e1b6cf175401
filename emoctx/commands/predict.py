r"""Find the people in photos and videos and predict each person's emotions into one table.

SOURCE is any mix of image files, folders (searched recursively), glob patterns (quote them; '**' matches any
depth) and video files. Persons are found by an ultralytics YOLO model (--detector-weights; offline, pass a
weights file) or taken from a box file (--boxes: CSV, JSONL or Parquet with source/image, x1, y1, x2, y2 and,
for videos, frame). The output has one row per person: source, frame (-1 for photos), time_s (a video frame's
time), person, track_id, box (x1 y1 x2 y2, original pixels), det_score, p_<category> for every category,
categories (those above the model's thresholds), dominant_category (the most probable of those),
valence/arousal/dominance (1-10), model, error, width, height, and the face columns: face_x1..face_y2,
face_score, face_landmarks (nose, eyes, ears), face_valence/face_arousal (from the face alone) and expression.
Faces come from a pose model (e.g. yolo11n-pose.pt: a face box from the nose, eyes and ears keypoints;
--keypoint-conf, --min-face) or from the box file's face columns; a detection model gives none. A model with a
face stream reads them; persons without a face take its no-face path. A photo without a person keeps one row
with person empty; a file that cannot be read gives one row with 'error' set; the others go on. In a folder,
files that are neither images nor videos (notes.txt, Thumbs.db, sidecars) are skipped; a file named on its own
is always checked.

The table is written when the run ends; meanwhile finished sources go to OUT.partial, and an interrupted run
re-run with --resume (same OUT, same options) skips them and ends with the same table, byte for byte. OUT is
locked while a run writes it (OUT.lock): a second run on the same OUT is refused. OUT is never a folder or an
input (not even with --overwrite), and an existing file that is not a prediction table is replaced only with
--overwrite. File names that are not valid UTF-8 are written with \xNN for each such byte.

The model runs in an inference engine (--engine): PyTorch, ONNX Runtime or OpenVINO, the default being the
fastest measured for the machine's class; each is checked against PyTorch fp32 when it is built, and the largest
probability difference goes to the log and to the table's metadata (Parquet: in the file; JSONL/CSV:
OUT.meta.json). --precision int8 quantises the model, calibrated on --calibration-records (default: the model's
validation split). Exported graphs are cached beside the model file.

Examples:
  emoctx predict photos/ --model runs/demo/train/model.safetensors --out photos.jsonl \
      --annotate photos_annotated/ --summary photos_summary/
  emoctx predict "runs/demo/synth/images/*/test_000*.jpg" --model runs/demo/train/model.safetensors \
      --boxes runs/demo/synth/annotations/test.parquet --out runs/demo/test_scenes.csv
  emoctx predict "shots/**/*.jpg" --model model.safetensors --boxes boxes.csv --out shots.parquet
  emoctx predict clip.mp4 --model model.safetensors --detector-weights yolo11n.pt --video-stride 2 --smooth 0.3
  emoctx predict photos/ --model model.safetensors --engine openvino --precision int8 \
      --calibration-records data/emotic/annotations/val.parquet --out photos.parquet
"""

from __future__ import annotations

import argparse
import logging
import os

from emoctx import defaults
from emoctx.commands.options import (
    ENGINE_CHOICES,
    add_detector_options,
    add_device_option,
    add_engine_options,
    add_face_options,
)

log = logging.getLogger(__name__)

CONSOLE_LINES = 20
"""Photos and videos described on a terminal by default (``--verbose``: all; ``--quiet``: none)."""

HELP = "detect people in photos, folders and videos and predict their emotions (JSONL/CSV/Parquet)"


def _smoothing(text: str) -> float:
    if text.lower() in ("off", "none", "no"):
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'off', got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a number in (0, 1] (1 or 'off' = no smoothing), got {value}"
        )
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` options to ``parser``."""
    parser.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="image files, folders, glob patterns, videos"
    )
    parser.add_argument(
        "--model", required=True, metavar="FILE", help="emoctx model file (model.safetensors)"
    )
    parser.add_argument(
        "--out", default="predictions.jsonl", metavar="FILE", help="output table (default: predictions.jsonl)"
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default=None,
        help="table format (default: from the --out suffix, else jsonl)",
    )
    det = parser.add_argument_group("persons")
    det.add_argument(
        "--boxes",
        metavar="FILE",
        help="take person boxes from this CSV/JSONL/Parquet file instead of detecting",
    )
    det.add_argument(
        "--detector-weights",
        default=None,
        metavar="PATH",
        help=f"YOLO weights file or ultralytics model name (default: {defaults.DETECTOR_WEIGHTS}, downloaded "
        "where possible)",
    )
    add_detector_options(det)
    det.add_argument(
        "--detector-engine",
        choices=ENGINE_CHOICES,
        default=defaults.DETECTOR_ENGINE,
        help="what runs the YOLO detector: torch (ultralytics' PyTorch), onnxruntime or openvino (exported once, "
        "checked against PyTorch, cached beside the weights file); auto (default): on a GPU torch, on a CPU "
        "openvino where installed, else onnxruntime (an architecture .yaml runs in torch)",
    )
    det.add_argument(
        "--min-box",
        type=float,
        default=defaults.MIN_BOX,
        metavar="PX",
        help="ignore detected persons smaller than this many pixels in width or height "
        f"(default {defaults.MIN_BOX:g})",
    )
    add_face_options(det)
    vid = parser.add_argument_group("videos")
    vid.add_argument(
        "--video-stride",
        type=_positive,
        default=defaults.VIDEO_STRIDE,
        metavar="N",
        help=f"process every N-th frame (default {defaults.VIDEO_STRIDE})",
    )
    vid.add_argument(
        "--smooth",
        type=_smoothing,
        default=defaults.SMOOTHING,
        metavar="ALPHA",
        help="moving-average weight of the current frame for each tracked person, in (0, 1]; 'off' or 1 "
        f"gives per-frame values (default {defaults.SMOOTHING})",
    )
    vid.add_argument("--no-track", action="store_true", help="do not track persons across frames")
    run_group = parser.add_argument_group("running")
    run_group.add_argument("--annotate", metavar="DIR", help="write annotated images (and videos) into DIR")
    run_group.add_argument(
        "--summary",
        metavar="DIR",
        help="write summaries into DIR: for photos a table and plots of category frequencies and V/A/D "
        "distributions; for each video a timeline of every track (same as 'emoctx summarize')",
    )
    run_group.add_argument(
        "--batch-size",
        type=_positive,
        default=defaults.PREDICT_BATCH_SIZE,
        help=f"persons per model forward (default {defaults.PREDICT_BATCH_SIZE})",
    )
    run_group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image-decoding processes; 0 decodes in the main process between model calls. Default: the "
        "cores the model leaves free, at most 2 (on a GPU: 2; on a CPU, where the model's threads use every "
        "core: 0, which scripts/bench.py measured faster than 2 with PyTorch bf16; see the README's Performance "
        "section for the engines)",
    )
    add_device_option(run_group)
    run_group.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32", "int8"),
        default="auto",
        help="auto (default): bfloat16 where the CPU/GPU supports it natively, else fp32; int8: static "
        "quantisation (onnxruntime or openvino), calibrated on --calibration-records",
    )
    run_group.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    add_engine_options(
        run_group,
        defaults.ENGINE,
        "the fastest measured for the machine's class (see the README's Performance section)",
    )
    run_group.add_argument(
        "--scene-mode",
        choices=("auto", "shared", "masked"),
        default="auto",
        help="shared: one scene pass per image (fast); masked: the person masked out of the scene, one pass per "
        "person; auto (default): masked if the model was trained with mask_subject, else shared",
    )
    run_group.add_argument(
        "--max-side",
        type=int,
        default=None,
        metavar="PX",
        help="decode larger images at this longest side (0 = full size). Default: the size the model was "
        f"trained at, for a model that records one, else {defaults.MAX_SIDE}",
    )
    run_group.add_argument(
        "--resume", action="store_true", help="continue an interrupted run with the same --out"
    )
    run_group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (or OUT.partial) that is not a prediction table (inputs are never replaced)",
    )
    run_group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    console = run_group.add_mutually_exclusive_group()
    console.add_argument(
        "--verbose",
        dest="every_line",
        action="store_true",
        help="print a line for every photo (its persons and their top emotions) and every video; by default "
        f"the first {CONSOLE_LINES} are printed when the output is a terminal",
    )
    console.add_argument(
        "--quiet",
        action="store_true",
        help="print no line per photo, no progress bar and no information messages: warnings and the final "
        "summary only",
    )


def _console_lines(args: argparse.Namespace) -> int | None:
    """How many photos and videos get their line on the console.

    Every one (--verbose), none (--quiet, or not a terminal), else the first :data:`CONSOLE_LINES`.
    """
    import sys

    if args.quiet:
        return 0
    if args.every_line:
        return None
    return CONSOLE_LINES if sys.stdout.isatty() else 0


def _resume_command(args: argparse.Namespace) -> str:
    import shlex

    from emoctx.io import printable

    argv = [a for a in getattr(args, "argv", []) if a != "--resume"]
    return printable("emoctx " + shlex.join([*argv, "--resume"]))


def run(args: argparse.Namespace) -> int:
    """Predict, write the table, and print a summary; returns 0, or 1 when no source could be read."""
    from emoctx.errors import EmoctxError
    from emoctx.hardware import resolve_device
    from emoctx.inference.box_file import BoxFileDetector
    from emoctx.inference.predictor import Predictor
    from emoctx.inference.runner import check_output, predict_to_file
    from emoctx.inference.sources import missing_sources
    from emoctx.io import printable

    if args.quiet:  # warnings and the final summary only
        logging.getLogger("emoctx").setLevel(logging.WARNING)
    # Before any work: sources that all name nothing, and an output that may not be written, are refused.
    missing = missing_sources(args.sources)
    if missing and len(missing) == len(args.sources):
        raise EmoctxError("; ".join(reason for _, reason in missing))
    for _, reason in missing:  # the others are predicted; these get an error row each
        log.warning("%s; it gets an error row, the other sources are predicted", reason)
    check_output(
        args.out,
        args.format,
        args.overwrite,
        [args.model, args.boxes, args.detector_weights, args.calibration_records],
        args.sources,
    )
    resolve_device(args.device)  # a missing GPU is reported before any work
    if args.summary:
        from emoctx.commands.summarize import SUMMARY_FILES
        from emoctx.io import check_output_dir

        check_output_dir(args.summary, [args.out, args.boxes], SUMMARY_FILES, option="--summary")
    detector = BoxFileDetector(args.boxes) if args.boxes else None
    predictor = Predictor(
        args.model,
        detector=detector,
        batch_size=args.batch_size,
        precision="fp32" if args.fp32 else args.precision,
        engine=args.engine,
        calibration=args.calibration_records,
        calibration_root=args.calibration_root,
        engine_cache=args.engine_cache,
        detector_engine=args.detector_engine,
        scene_mode=args.scene_mode,
        device=args.device,
        num_workers=args.workers,
        max_side="model" if args.max_side is None else (args.max_side or None),
        conf=args.conf,
        min_box=args.min_box,
        detector_weights=args.detector_weights or defaults.DETECTOR_WEIGHTS,
        imgsz=args.imgsz,
        track=not args.no_track,
        smoothing=args.smooth,
        video_stride=args.video_stride,
        keypoint_conf=args.keypoint_conf,
        min_face=args.min_face,
    )
    if detector is None:
        _ = predictor.detector  # resolve the weights now: a missing file is reported before any work
    try:
        summary = predict_to_file(
            predictor,
            args.sources,
            args.out,
            fmt=args.format,
            resume=args.resume,
            annotate_dir=args.annotate,
            progress=not (args.no_progress or args.quiet),
            overwrite=args.overwrite,
            lines=_console_lines(args),
        )
    except KeyboardInterrupt:
        print(
            printable(f"interrupted: finished sources are kept in {args.out}.partial; to continue, run\n  ")
            + _resume_command(args)
        )
        raise
    except OSError as e:  # a full disk, a quota, a folder that cannot be written: the finished rows are safe
        where = printable(os.fspath(e.filename)) if e.filename is not None else printable(str(args.out))
        raise EmoctxError(
            f"cannot write {where}: {e.strerror or e}. The sources finished so far are kept in "
            f"{printable(str(args.out))}.partial (any table written before is unchanged); make room and continue "
            f"with: {_resume_command(args)}"
        ) from e

    print(
        f"{summary.sources} source(s): {summary.images} image(s) and {summary.frames} video frame(s) processed"
        + (f", {summary.resumed} taken from the interrupted run" if summary.resumed else "")
    )
    print(
        f"{summary.persons} person(s) in {summary.seconds:.1f} s ({summary.persons_per_second:.1f} persons/s); "
        f"{summary.images_without_persons} image(s)/frame(s) without a person"
    )
    check = predictor.engine.check
    print(
        f"engine {predictor.engine.name} {predictor.precision}"
        + (f" (largest probability difference from PyTorch fp32: {check.max_prob_diff:.2g})" if check else "")
    )
    if summary.error_rows:
        print(f"{summary.error_rows} error row(s) (see the 'error' column), for example:")
        for message in summary.errors[:5]:
            print(f"  {message}")
    print(printable(f"wrote {summary.rows} row(s) to {summary.output}"))
    if args.annotate:
        print(f"wrote {summary.annotated} annotated file(s) to {args.annotate}")
    if args.summary and summary.rows:
        from emoctx.inference.summary import read_summary_table, summarize

        made = summarize(read_summary_table(summary.output), args.summary)
        files = [f for part in made.values() for f in part.files]
        print(f"wrote {len(files)} summary file(s) to {args.summary}")
    processed = summary.images + summary.frames
    return 1 if processed == 0 and summary.resumed == 0 and summary.error_rows > 0 else 0
