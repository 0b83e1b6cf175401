"""Label new photos in EMOTIC's format with Label Studio, model-assisted, and turn the labels into records.

Steps (each one a sub-command; 'emoctx annotate STEP --help' for its options):

  config     write the labelling config (person boxes; per person the 26 categories with their
             definitions as hints, valence/arousal/dominance 1-10, gender, age)
  tasks      photos (with a person detector or a box file), a records file or a prediction table ->
             Label Studio tasks, the boxes (and the model's suggestions) as pre-annotations
  serve      start Label Studio (its own environment, made on first use; offline, on 127.0.0.1), create
             the project with the photos, the config, the tasks and N annotators per task; Ctrl-C stops it
  export     Label Studio's full JSON export (a file, or pulled from the server) -> validated records
             <split>.parquet and a conversion report; several annotators combined
  agreement  how far the annotators of a labelled batch agree (per category, per annotator, V/A/D spread)

Example (a folder of photos to records to training):
  emoctx annotate tasks photos/ --detector-weights yolo11n.pt --out photos_tasks.json
  emoctx annotate serve photos/ --tasks photos_tasks.json --overlap 2      # label in the browser, Ctrl-C
  emoctx annotate export --data-dir runs/label-studio/photos --out photos/annotations --split-ratios 80 10 10
  emoctx train --config configs/synth_tiny.yaml --data.root photos
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emoctx import defaults
from emoctx.commands.options import add_detector_options
from emoctx.errors import EmoctxError

HELP = "label photos with Label Studio (config, tasks, serve, export, agreement) into records"

STEPS = ("config", "tasks", "serve", "export", "agreement")
PROJECT_STATE = "emoctx-project.json"
DEFAULT_DATA_ROOT = Path("runs") / "label-studio"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the steps and their options to ``parser``."""
    from emoctx.annotate.config import VAD_STYLES
    from emoctx.annotate.server import ENV_HOME_VARIABLE, LABEL_STUDIO_VERSION
    from emoctx.labels import SPLITS

    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    fmt = argparse.RawDescriptionHelpFormatter

    p = steps.add_parser(
        "config",
        help="write the labelling config",
        description=inspect.cleandoc(_config.__doc__ or ""),
        formatter_class=fmt,
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="write it to FILE (default: print it)")
    p.add_argument(
        "--vad-style", choices=VAD_STYLES, default="number", help="V/A/D as a number field or stars"
    )
    p.add_argument("--no-hints", action="store_true", help="leave out the category definitions")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(_step=_config)

    p = steps.add_parser(
        "tasks",
        help="photos, records or predictions -> Label Studio tasks",
        description=inspect.cleandoc(_tasks.__doc__ or ""),
        formatter_class=fmt,
    )
    p.add_argument(
        "photos", nargs="*", metavar="PHOTO", help="photo files, folders (searched recursively) or globs"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--records", type=Path, metavar="FILE", help="persons of a records file (.parquet/.jsonl)"
    )
    src.add_argument(
        "--predictions",
        type=Path,
        metavar="TABLE",
        help="persons and suggestions of an 'emoctx predict' table",
    )
    p.add_argument(
        "--root", type=Path, metavar="DIR", help="the photo folder the image paths are relative to"
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="tasks file to write (.json)")
    det = p.add_argument_group("persons in photos")
    det.add_argument(
        "--detector-weights",
        metavar="W",
        help=f"YOLO weights file or name (default {defaults.DETECTOR_WEIGHTS})",
    )
    det.add_argument(
        "--boxes", type=Path, metavar="FILE", help="person boxes from a file instead (CSV/JSONL/Parquet)"
    )
    add_detector_options(det)
    det.add_argument("--device", default="cpu", help="detector device (default cpu)")
    p.add_argument("--with-labels", action="store_true", help="records: suggest the records' own labels")
    p.add_argument(
        "--no-suggestions", action="store_true", help="predictions: boxes only, no suggested labels"
    )
    lock = p.add_mutually_exclusive_group()
    lock.add_argument(
        "--lock-boxes",
        dest="lock",
        action="store_true",
        default=None,
        help="boxes cannot be moved (default for records)",
    )
    lock.add_argument("--unlock-boxes", dest="lock", action="store_false", help="boxes can be moved")
    p.add_argument(
        "--split", choices=SPLITS, help="the split these photos belong to (records keep their own)"
    )
    p.add_argument(
        "--model-version", metavar="NAME", help="name of the pre-annotations' origin shown to annotators"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the tasks file if it exists")
    p.set_defaults(_step=_tasks)

    p = steps.add_parser(
        "serve",
        help="start Label Studio with the project",
        description=inspect.cleandoc(_serve.__doc__ or ""),
        formatter_class=fmt,
    )
    p.add_argument(
        "root", type=Path, metavar="PHOTOS", help="the photo folder (served to the labelling page)"
    )
    p.add_argument("--tasks", type=Path, metavar="FILE", help="tasks file from 'emoctx annotate tasks'")
    p.add_argument(
        "--overlap", type=int, default=1, help="annotators per task (default 1; 2 or more for agreement)"
    )
    p.add_argument("--annotators", type=int, default=None, help="accounts to make (default: the overlap)")
    p.add_argument("--title", help="project title (default: 'emoctx <folder name>')")
    p.add_argument(
        "--vad-style", choices=VAD_STYLES, default="number", help="V/A/D as a number field or stars"
    )
    p.add_argument(
        "--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080; 0 picks a free one)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"the server's own folder: database, accounts (default {DEFAULT_DATA_ROOT}/<folder name>)",
    )
    p.add_argument(
        "--ls-env",
        type=Path,
        metavar="DIR",
        help=f"Label Studio's virtual environment (default ${ENV_HOME_VARIABLE}, else "
        f"~/.cache/emoctx/label-studio-{LABEL_STUDIO_VERSION})",
    )
    p.add_argument(
        "--new-project", action="store_true", help="make a new project even if these tasks have one"
    )
    p.add_argument("--no-wait", action="store_true", help="set up, print, stop (do not keep serving)")
    p.set_defaults(_step=_serve)

    p = steps.add_parser(
        "export",
        help="Label Studio's export -> records",
        description=inspect.cleandoc(_export.__doc__ or ""),
        formatter_class=fmt,
    )
    p.add_argument("export", nargs="?", type=Path, metavar="EXPORT", help="a full JSON export file")
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="pull the export from the server 'serve' runs with DIR"
    )
    p.add_argument("--server", metavar="URL", help="or pull it from this server (with --project and --token)")
    p.add_argument("--project", type=int, help="project id on --server")
    p.add_argument("--token", help="API token for --server (or $LABEL_STUDIO_API_KEY)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for <split>.parquet and the report"
    )
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--split", choices=SPLITS, default="train", help="split of tasks without one (default train)"
    )
    split.add_argument(
        "--split-ratios",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help="spread tasks without a split over train/val/test by image, e.g. 80 10 10",
    )
    p.add_argument(
        "--images-root", type=Path, metavar="ROOT", help="check that every image exists under ROOT"
    )
    p.add_argument("--jsonl", action="store_true", help="also write <split>.jsonl")
    p.add_argument(
        "--strict", action="store_true", help="write nothing and fail if anything was dropped or repaired"
    )
    p.add_argument("--overwrite", action="store_true", help="replace records files that exist")
    p.set_defaults(_step=_export)

    p = steps.add_parser(
        "agreement",
        help="agreement of the annotators",
        description=inspect.cleandoc(_agreement.__doc__ or ""),
        formatter_class=fmt,
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="FILE", help="records files (or a Label Studio JSON export)"
    )
    p.add_argument(
        "--min-annotators", type=int, default=2, help="persons with fewer annotators are left out (default 2)"
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="also write agreement.json and agreement.md into DIR"
    )
    p.add_argument("--overwrite", action="store_true", help="replace agreement.json / agreement.md in DIR")
    p.set_defaults(_step=_agreement)


def run(args: argparse.Namespace) -> int:
    """Run the chosen step; returns the exit status."""
    return int(args._step(args) or 0)


# ------------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` while writing ``path``: a second emoctx writing the same output stops with an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmoctxError(
                f"{path}: another emoctx process is writing it; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    there = [str(p) for p in paths if p.exists()]
    if there and not overwrite:
        raise EmoctxError(f"{', '.join(there)}: already exists; pass --overwrite to replace it")


def _write_json(path: Path, value: Any, overwrite: bool) -> None:
    from emoctx.io import atomic_write_text

    with _locked(path):
        _refuse_existing([path], overwrite)
        atomic_write_text(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------- config
def _config(args: argparse.Namespace) -> int:
    """Write the Label Studio labelling config (XML) generated from emoctx's label set.

    Person boxes; per selected box: the 26 EMOTIC categories (any number; hover a name for its meaning),
    valence, arousal and dominance as whole numbers 1-10 (--vad-style rating: ten stars), gender and age
    group. 'emoctx annotate serve' uses the same config; this step is for setting up a Label Studio
    project by hand.
    """
    from emoctx.annotate.config import labelling_config
    from emoctx.io import atomic_write_text

    xml = labelling_config(args.vad_style, hints=not args.no_hints)
    if args.out is None:
        sys.stdout.write(xml)
        return 0
    with _locked(args.out):
        _refuse_existing([args.out], args.overwrite)
        atomic_write_text(args.out, xml)
    print(f"Wrote {args.out}")
    return 0


# -------------------------------------------------------------------------------------------------- tasks
def _tasks(args: argparse.Namespace) -> int:
    """Make Label Studio tasks (a JSON list), one per photo, with its persons' boxes as pre-annotations.

    Persons come from one of:
      PHOTO...           photo files, folders or globs; persons found by a YOLO person detector
                         (--detector-weights, --conf) or given by a box file (--boxes, as 'emoctx predict'
                         reads it); photos with nobody found still get a task (boxes can be drawn)
      --records FILE     the persons of canonical records (their boxes locked, their index kept, their
                         split kept): more annotators for existing persons; --with-labels pre-fills the
                         records' labels to correct them
      --predictions T    the table 'emoctx predict' wrote: its boxes, and the model's categories and V/A/D
                         as suggestions (--no-suggestions: boxes only)

    Image paths are stored relative to --root (default: the photo folder when one folder is given); the
    same folder is then given to 'serve'. Unreadable photos and unusable rows are listed, not fatal.
    """
    from emoctx.annotate import tasks as T

    if args.records is not None:
        from emoctx.data.records import read_records

        df = read_records(args.records)
        root = args.root or args.records.parent
        photos = T.photos_from_records(df, with_labels=args.with_labels)
        skipped: list[T.Skipped] = []
        origin = args.model_version or (
            f"records:{args.records.name}" + ("" if args.with_labels else " (boxes)")
        )
        lock = True if args.lock is None else args.lock
    elif args.predictions is not None:
        from emoctx.inference.writers import read_prediction_table

        if args.root is None:
            raise EmoctxError("--predictions needs --root DIR: the photo folder the table's sources lie in")
        root = args.root
        photos, skipped, model = T.photos_from_predictions(
            read_prediction_table(args.predictions), root, suggestions=not args.no_suggestions
        )
        origin = args.model_version or model or f"predictions:{args.predictions.name}"
        lock = bool(args.lock)
    else:
        photos, skipped, root, origin = _photos_with_detector(args)
        lock = bool(args.lock)
    if args.photos and (args.records is not None or args.predictions is not None):
        raise EmoctxError("give photos, or --records, or --predictions: not several")
    for photo in photos:
        T.assign_split(photo, args.split)
    tasks = [
        T.make_task(photo, Path(os.path.abspath(root)).name, origin, lock_boxes=lock) for photo in photos
    ]
    _write_json(args.out, tasks, args.overwrite)
    persons = sum(len(p.persons) for p in photos)
    print(f"Wrote {len(tasks)} tasks ({persons} persons, pre-annotations from {origin}) to {args.out}")
    if skipped:
        print(f"{len(skipped)} not used:")
        for s in skipped:
            print(f"  {s.source}: {s.reason}")
    return 0


def _photos_with_detector(args: argparse.Namespace):
    from emoctx.annotate import tasks as T
    from emoctx.inference.sources import expand_sources

    if not args.photos:
        raise EmoctxError(
            "nothing to make tasks from: give photos (files, folders, globs), --records or --predictions"
        )
    sources = expand_sources(args.photos, exclude=[args.out])
    root = args.root
    if root is None:
        folders = [p for p in args.photos if os.path.isdir(p)]
        if len(folders) != 1 or len(args.photos) != 1:
            raise EmoctxError("pass --root DIR: the photo folder the image paths are relative to")
        root = Path(folders[0])
    skipped = [T.Skipped(s.path, s.error or "") for s in sources if s.kind == "error"]
    skipped += [T.Skipped(s.path, "a video: only photos are annotated") for s in sources if s.kind == "video"]
    paths = [s.path for s in sources if s.kind == "image"]
    if args.boxes is not None:
        from emoctx.inference.box_file import BoxFileDetector

        detector: Any = BoxFileDetector(args.boxes)
    else:
        from emoctx.inference.detect import UltralyticsDetector

        detector = UltralyticsDetector(
            args.detector_weights, conf=args.conf, imgsz=args.imgsz, device=args.device
        )
    photos, bad = T.photos_from_files(paths, root, detector)
    return photos, skipped + bad, root, args.model_version or detector.describe()


# -------------------------------------------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> int:
    """Start a real Label Studio for the photo folder and set up the labelling project.

    On first use Label Studio is installed into its own virtual environment (a pinned version; 1-2 minutes,
    about 1 GB; never into emoctx's environment). The server listens on 127.0.0.1 only, with version checks
    and analytics off, and keeps its database and accounts in --data-dir. It makes the accounts (at least
    --overlap), a project with the labelling config, the photo folder as local files, the tasks, and
    --overlap annotators per task, then prints the address and the logins. Ctrl-C stops the server; a
    later 'serve' with the same --data-dir and tasks reopens the same project with the labels so far.
    """
    from emoctx.annotate import tasks as T
    from emoctx.annotate.client import LabelStudioClient
    from emoctx.annotate.config import labelling_config
    from emoctx.annotate.server import LabelStudioServer, ensure_environment, free_port

    root: Path = args.root
    if not root.is_dir():
        raise EmoctxError(f"{root}: no such photo folder")
    if args.overlap < 1:
        raise EmoctxError(f"--overlap must be at least 1, got {args.overlap}")
    n_accounts = max(args.overlap, args.annotators or 0)
    tasks: list[dict[str, Any]] = []
    digest = None
    if args.tasks is not None:
        if not args.tasks.is_file():
            raise EmoctxError(f"{args.tasks}: no such tasks file")
        raw = args.tasks.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        try:
            tasks = json.loads(raw)
        except json.JSONDecodeError as e:
            raise EmoctxError(f"{args.tasks}: not a JSON file ({e})") from e
        if not isinstance(tasks, list):
            raise EmoctxError(f"{args.tasks}: expected a list of tasks (from 'emoctx annotate tasks')")
        for n, task in enumerate(tasks):
            data = task.get("data") if isinstance(task, dict) else None
            if not isinstance(data, dict) or not isinstance(data.get("emoctx_image"), str):
                raise EmoctxError(
                    f"{args.tasks}: task {n} has no data.emoctx_image (the photo's path in the folder); "
                    "make the tasks with 'emoctx annotate tasks'"
                )
            if not (root / data["emoctx_image"]).is_file():
                raise EmoctxError(f"{args.tasks}: task {n}: {data['emoctx_image']} is not in {root}")
    data_dir = args.data_dir or DEFAULT_DATA_ROOT / Path(os.path.abspath(root)).name
    if Path(os.path.abspath(data_dir)).is_relative_to(Path(os.path.abspath(root))):
        raise EmoctxError(f"{data_dir}: the server's folder must not lie inside the photo folder it serves")

    server = LabelStudioServer(ensure_environment(args.ls_env), data_dir, root, port=args.port or free_port())
    accounts = server.ensure_accounts(n_accounts)
    # Ctrl-C (SIGINT) and SIGTERM end the wait below and stop the server, also when this process was started
    # with SIGINT ignored (a background job of a script).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        client = LabelStudioClient(server.url, accounts[0].token)
        state_path = server.data_dir / PROJECT_STATE
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        project = state.get("project")
        known = {p["id"] for p in client.projects()}
        if (
            args.new_project
            or project not in known
            or (digest is not None and state.get("tasks_sha256") != digest)
        ):
            title = args.title or f"emoctx {server.folder_name}"
            made = client.create_project(title, labelling_config(args.vad_style), overlap=args.overlap)
            project = made["id"]
            client.add_local_storage(project, str(server.photos))
            # the address of each photo in this folder, whatever folder the tasks were made for
            for task in tasks:
                task["data"]["image"] = T.image_url(task["data"]["emoctx_image"], server.folder_name)
            count = client.import_tasks(project, tasks) if tasks else 0
            print(f"Project {project} '{title}': {count} tasks, {args.overlap} annotator(s) per task")
        else:
            print(f"Project {project} reopened (same tasks; labels so far kept)")
        from emoctx.io import atomic_write_text

        atomic_write_text(
            state_path,
            json.dumps(
                {"project": project, "url": server.url, "tasks": str(args.tasks), "tasks_sha256": digest}
            ),
        )
        _print_logins(server, accounts, project, data_dir)
        if args.no_wait:
            return 0
        print("Serving; press Ctrl-C to stop.", flush=True)
        code = server.wait()
        raise EmoctxError(f"Label Studio stopped by itself ({code}); its log: {server.log_path}")
    except KeyboardInterrupt:
        print("\nStopping Label Studio ...", flush=True)
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not leave the server running
            signal.signal(sig, signal.SIG_IGN)
        try:
            server.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _print_logins(server: Any, accounts: list[Any], project: int, data_dir: Path) -> None:
    print(f"\nLabel Studio {server.url}  (only this machine can reach it)")
    print(f"Label the photos: {server.url}/projects/{project}/data  ->  'Label All Tasks'")
    print("Log in as (one account per annotator):")
    for a in accounts:
        print(f"  {a.email}  password {a.password}")
    print(f"API token of {accounts[0].email}: {accounts[0].token}")
    print(f"Accounts are kept in {server.data_dir / 'emoctx-accounts.json'}")
    print(
        f"When done: emoctx annotate export --data-dir {data_dir} --out <photos>/annotations (while serving)\n"
    )


# ------------------------------------------------------------------------------------------------- export
def _export(args: argparse.Namespace) -> int:
    """Convert Label Studio's full JSON export into validated records, one file per split.

    The export comes from a file (EXPORT: the project's 'Export' -> 'JSON'), or is pulled from a running
    server: --data-dir DIR of 'emoctx annotate serve' (its project and token), or --server URL --project ID
    --token TOKEN. Boxes go from percent to pixels; every value is checked (Label Studio keeps values its
    config forbids); each change is printed and written to <out>/conversion_report.jsonl. Several
    annotators of one person are kept per annotator and combined: a category when more than half chose it,
    V/A/D as the mean rounded half up, gender/age by plurality (see emoctx.annotate.export).

    Tasks made from records keep their split; others go to --split, or --split-ratios spreads them by
    image. Output: <out>/<split>.parquet, which 'emoctx train --data.root PHOTOS' reads when <out> is
    PHOTOS/annotations.
    """
    from emoctx.annotate.client import LabelStudioClient
    from emoctx.annotate.export import convert_export, read_export
    from emoctx.commands.convert import REPORT_NAME, summary
    from emoctx.data.readers import check_images
    from emoctx.data.records import write_records

    pulled = None
    users: dict[int, str] = {}
    if args.export is not None:
        if args.data_dir or args.server:
            raise EmoctxError("give an EXPORT file or a server (--data-dir / --server), not both")
        tasks = read_export(args.export)
        source = str(args.export)
    else:
        url, project, token = _server_of(args)
        client = LabelStudioClient(url, token)
        tasks = client.export(project)
        users = client.users()
        pulled = args.out / "label_studio_export.json"
        source = str(pulled)  # the report names the saved copy of what the server gave
        print(f"Pulled the export of {url}/projects/{project}: {len(tasks)} tasks")
    conv = convert_export(tasks, source=source, split=args.split, split_ratios=args.split_ratios, users=users)
    ann = conv.annotations
    counts = ann.report.counts()
    if args.strict and (counts.get("dropped") or counts.get("repaired")):
        print(summary(ann))
        raise EmoctxError(
            f"{counts.get('dropped', 0)} dropped and {counts.get('repaired', 0)} repaired (listed above); "
            "nothing written (--strict)"
        )
    check = None
    if args.images_root is not None:
        check = check_images(ann.splits, args.images_root)
        for image in check.missing:
            split = next(s for s, df in ann.splits.items() if image in set(df["image"]))
            ann.report.add(source, split, image, None, "kept", "image", f"not found under {args.images_root}")

    out: Path = args.out
    targets = [out / f"{s}.parquet" for s in ann.splits] + (
        [out / f"{s}.jsonl" for s in ann.splits] if args.jsonl else []
    )
    written = []
    with _locked(out / REPORT_NAME):
        _refuse_existing(targets + [out / REPORT_NAME], args.overwrite)
        for split, df in ann.splits.items():
            written.append(write_records(df, out / f"{split}.parquet"))
            if args.jsonl:
                written.append(write_records(df, out / f"{split}.jsonl"))
        written.append(ann.report.write(out / REPORT_NAME))
        if pulled is not None:
            from emoctx.io import atomic_write_text

            atomic_write_text(pulled, json.dumps(tasks, ensure_ascii=False))
            written.append(pulled)
    print(summary(ann, check, args.images_root))
    print(
        f"\n{conv.tasks} tasks, {conv.annotations_used} annotations by {len(conv.annotators)} annotator(s): "
        f"{', '.join(conv.annotators) or '-'}"
    )
    if not ann.splits:
        print("note: no person was labelled; no records written")
    print("\nWrote:")
    for path in written:
        print(f"  {path}")
    return 0


def _server_of(args: argparse.Namespace) -> tuple[str, int, str]:
    """Server address, project and token: from --data-dir's state, or from --server/--project/--token."""
    if args.data_dir is not None:
        from emoctx.annotate.server import read_accounts

        state_path = args.data_dir / PROJECT_STATE
        if not state_path.is_file():
            raise EmoctxError(
                f"{args.data_dir}: no project here; run 'emoctx annotate serve' with this --data-dir"
            )
        state = json.loads(state_path.read_text())
        accounts = read_accounts(args.data_dir)
        if not accounts:
            raise EmoctxError(
                f"{args.data_dir}: no accounts file; run 'emoctx annotate serve' with this --data-dir"
            )
        return (
            args.server or state["url"],
            args.project or int(state["project"]),
            args.token or accounts[0].token,
        )
    token = args.token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not (args.server and args.project and token):
        raise EmoctxError(
            "give an EXPORT file, or --data-dir DIR (of 'emoctx annotate serve'), or --server URL --project ID "
            "--token TOKEN"
        )
    return args.server, int(args.project), token


# ---------------------------------------------------------------------------------------------- agreement
def _agreement(args: argparse.Namespace) -> int:
    """Report how far the annotators of labelled persons agree.

    Input: records with several annotators per person (what 'emoctx annotate export' writes when tasks
    had an overlap of 2 or more; EMOTIC val/test; EMOTIC-synth val/test), or a Label Studio JSON export
    (converted first). Per category: how often it was chosen, on how many persons everyone agreed, and
    each annotator against the others (precision, recall, F1, as 'emoctx evaluate' compares them); per
    annotator by name; and the spread of valence, arousal and dominance.
    """
    import pandas as pd

    from emoctx.annotate.agreement import agreement_report, report_markdown
    from emoctx.annotate.export import convert_export, read_export
    from emoctx.data.records import read_records

    frames = []
    for path in args.inputs:
        if path.suffix.lower() == ".json":
            frames.extend(convert_export(read_export(path), source=str(path)).annotations.splits.values())
        else:
            frames.append(read_records(path))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    report = agreement_report(df, min_annotators=args.min_annotators)
    text = report_markdown(report, ", ".join(str(p) for p in args.inputs))
    print(text)
    if args.out is not None:
        from emoctx.io import atomic_write_text

        with _locked(args.out / "agreement.json"):
            _refuse_existing([args.out / "agreement.json", args.out / "agreement.md"], args.overwrite)
            atomic_write_text(args.out / "agreement.json", json.dumps(report, indent=1) + "\n")
            atomic_write_text(args.out / "agreement.md", text)
        print(f"Wrote {args.out / 'agreement.json'} and {args.out / 'agreement.md'}")
    return 0
