r"""Give annotated persons their faces: a pose model over the records' images, faces matched to the persons.

Runs a pose model (--detector-weights, e.g. yolo11n-pose.pt) once over every image of RECORDS, pairs the
persons it finds with the annotated person boxes by IoU (one to one; --min-iou), and writes each person's face
into the records: the face box (face_x1 .. face_y2), face_score and the five facial keypoints (face_landmarks,
convention coco5), the face box following from the nose, eyes and ears (see annotations/README.md). Persons
without a matching detection, or whose detection shows no face (a back view, a tiny person), get empty face
columns. Earlier face columns are replaced where the image is read. Prints how many persons were matched with
and without a face and how many were not matched; an image that cannot be read is named and its persons keep
the face columns they had. A --root under which most images are missing is an error before the model loads.

RECORDS is never written over unless --overwrite is given (then --out may be left out, or be RECORDS itself);
the output is written atomically and locked while it is written. A report (JSON) is written beside it.

Examples:
  emoctx faces annotations/emotic/train.parquet --root /data/emotic/emotic --detector-weights yolo11n-pose.pt \
      --out annotations/emotic_faces/train.parquet
  emoctx faces photos/annotations/val.parquet --detector-weights yolo11n-pose.pt --overwrite
"""

from __future__ import annotations

import argparse

from emoctx import defaults
from emoctx.commands.options import add_detector_options, add_face_options

HELP = "add face boxes and keypoints from a pose model to annotated records (matched by IoU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``faces`` options to ``parser``."""
    parser.add_argument("records", metavar="RECORDS", help="records file (.parquet or .jsonl)")
    parser.add_argument(
        "--detector-weights",
        required=True,
        metavar="PATH",
        help="a pose model that ultralytics loads (yolo11n-pose.pt, an ONNX or OpenVINO export of one, ...)",
    )
    parser.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="images root the records' paths are relative to (default: the folder above RECORDS' 'annotations' "
        "folder, else RECORDS' folder)",
    )
    parser.add_argument("--out", default=None, metavar="FILE", help="records to write (.parquet or .jsonl)")
    parser.add_argument(
        "--overwrite", action="store_true", help="write over RECORDS (without --out) or an existing --out"
    )
    parser.add_argument(
        "--min-iou",
        type=float,
        default=0.5,
        help="smallest IoU of an annotated box and a detection of the same person (default 0.5)",
    )
    add_detector_options(parser)
    add_face_options(parser)
    parser.add_argument(
        "--max-side",
        type=int,
        default=defaults.MAX_SIDE,
        metavar="PX",
        help=f"decode larger images at this longest side (0 = full size; default {defaults.MAX_SIDE})",
    )
    parser.add_argument(
        "--device", default="cpu", help="detector device: cpu, 0 (first GPU), ... (default cpu)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Add the faces, write the records and the report, print the report."""
    import json
    from pathlib import Path

    from emoctx.data.dataset import check_images
    from emoctx.data.records import read_records, write_records
    from emoctx.errors import EmoctxError
    from emoctx.inference.detect import UltralyticsDetector
    from emoctx.inference.record_faces import add_faces, check_pose_detector
    from emoctx.io import OutputLock, atomic_write_text, check_output_file, same_path
    from emoctx.progress import progress

    source = Path(args.records)
    if not source.is_file():
        raise EmoctxError(f"{source}: no such records file")
    out = Path(args.out) if args.out else source
    if out.suffix not in (".parquet", ".jsonl"):
        raise EmoctxError(f"--out {out}: records are written as .parquet or .jsonl")
    if out.exists() and same_path(out, source):
        if not args.overwrite:
            raise EmoctxError(
                f"{source}: the input records are never written over without --overwrite; pass --out FILE to "
                "write the records with faces elsewhere, or --overwrite to replace them"
            )
    elif out.exists() and not args.overwrite:
        raise EmoctxError(f"--out {out}: exists; it is replaced only with --overwrite")
    check_output_file(out, [args.detector_weights])
    report_path = out.with_name(out.name + ".faces.json")
    if report_path.exists() and not args.overwrite:
        raise EmoctxError(
            f"{report_path}: exists (the report written beside --out); replaced only with --overwrite"
        )
    if not 0.0 < args.min_iou <= 1.0:
        raise EmoctxError(f"--min-iou must be in (0, 1], got {args.min_iou}")
    if args.root is not None:
        root = Path(args.root)
    else:
        root = source.parent.parent if source.parent.name == "annotations" else source.parent
    records = read_records(source)
    check_images(records, root, "--root", source)  # a wrong root fails here, before the detector is loaded
    detector = UltralyticsDetector(
        args.detector_weights,
        conf=args.conf,
        imgsz=args.imgsz,
        device=args.device,
        keypoint_conf=args.keypoint_conf,
        min_face=args.min_face,
    )
    check_pose_detector(detector, args.detector_weights)
    with OutputLock(out, "emoctx faces"):
        frame, report = add_faces(
            records,
            root,
            detector,
            min_iou=args.min_iou,
            max_side=args.max_side or None,
            progress=lambda items: progress(items, desc="faces", unit="img", disable=args.no_progress),
        )
        write_records(frame, out)
        atomic_write_text(
            report_path,
            json.dumps(
                {"records": str(source), "detector": detector.describe(), **report.to_dict()}, indent=2
            )
            + "\n",
        )
    print(f"faces from {detector.describe()} for {source}:")
    for line in report.lines():
        print(line)
    print(f"wrote {out} (report: {report_path})")
    return 0
