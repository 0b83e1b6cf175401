"""Readers that turn each annotation layout into canonical records (:mod:`emoctx.data.records`).

Four layouts are read (see ``annotations/README.md``), three of EMOTIC and one of faces:

* ``mat``: the official ``Annotations.mat`` (:func:`read_mat`);
* ``coco``: the COCO-style JSON conversion, one file per split (:func:`read_coco`);
* ``kaggle``: the Kaggle CSVs ``annot_arrs_{train,val,test}.csv`` (:func:`read_kaggle`);
* ``affectnet``: AffectNet's ``training.csv`` / ``validation.csv`` (:func:`read_affectnet`): faces with an
  expression, valence and arousal.

All of them apply the same repair rules (:mod:`emoctx.data.readers.cleaning`) and record every repaired,
dropped or noted person in a :class:`ConversionReport`. :func:`read_annotations` detects the layout from the
path and reads it; :func:`check_images` checks converted records against the images on disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emoctx.data.readers.affectnet import is_affectnet_csv, read_affectnet
from emoctx.data.readers.cleaning import image_path_problem
from emoctx.data.readers.coco import read_coco
from emoctx.data.readers.kaggle import read_kaggle
from emoctx.data.readers.mat import read_mat
from emoctx.data.readers.report import ACTIONS, ConversionReport, ReportEntry
from emoctx.errors import EmoctxError

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("mat", "coco", "kaggle", "affectnet")
READERS: dict[str, Callable[..., dict[str, pd.DataFrame]]] = {
    "mat": read_mat,
    "coco": read_coco,
    "kaggle": read_kaggle,
    "affectnet": read_affectnet,
}
_SUFFIXES = {".mat": "mat", ".json": "coco", ".csv": "kaggle"}

__all__ = [
    "ACTIONS",
    "FORMATS",
    "READERS",
    "Annotations",
    "ConversionReport",
    "ImageCheck",
    "ReportEntry",
    "check_images",
    "detect_format",
    "read_affectnet",
    "read_annotations",
    "read_coco",
    "read_kaggle",
    "read_mat",
]


def detect_format(path: str | os.PathLike) -> str:
    """The layout of ``path``: ``mat``, ``coco``, ``kaggle`` or ``affectnet``.

    A file is recognised by its suffix (``.mat``, ``.json``, ``.csv``; a ``.csv`` whose header names
    AffectNet's ``subDirectory_filePath`` is ``affectnet``). A folder by what it holds: ``annot_arrs_*.csv``
    (directly or in ``annots_arrs/``) is ``kaggle``, ``*.json`` is ``coco``, ``*.mat`` (directly or in
    ``Annotations/``) is ``mat``, AffectNet's ``training.csv`` or ``validation.csv`` (directly or in
    ``Manually_Annotated_file_lists/``) is ``affectnet``.

    Raises:
        EmoctxError: the path does not exist, or holds no layout or more than one (pass the format then).
    """
    path = Path(path)
    if path.is_file():
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt == "kaggle" and is_affectnet_csv(path):
            fmt = "affectnet"
        if fmt is None:
            raise EmoctxError(
                f"{path}: cannot tell the annotation layout from the suffix {path.suffix!r}; "
                f"expected .mat, .json or .csv, or pass --format {{{','.join(FORMATS)}}}"
            )
        return fmt
    if not path.is_dir():
        raise EmoctxError(f"{path}: no such file or folder")
    found = []
    if any(path.glob("annot_arrs_*.csv")) or any(path.glob("annots_arrs/annot_arrs_*.csv")):
        found.append("kaggle")
    if any(path.glob("*.json")):
        found.append("coco")
    if any(path.glob("*.mat")) or any(path.glob("Annotations/*.mat")):
        found.append("mat")
    if any(
        (folder / name).is_file()
        for folder in (path, path / "Manually_Annotated_file_lists")
        for name in ("training.csv", "validation.csv")
    ):
        found.append("affectnet")
    if len(found) == 1:
        return found[0]
    if not found:
        raise EmoctxError(
            f"{path}: no annotations found (expected EMOTIC's Annotations.mat, per-split .json files or "
            f"annot_arrs_<split>.csv, or AffectNet's training.csv / validation.csv)"
        )
    raise EmoctxError(f"{path}: holds more than one annotation layout ({found}); pass --format to choose one")


@dataclass
class Annotations:
    """Converted annotations: the records of each split and the report of what was changed."""

    source: Path
    format: str
    splits: dict[str, pd.DataFrame]
    report: ConversionReport = field(default_factory=ConversionReport)

    @property
    def num_persons(self) -> int:
        """Persons over all splits."""
        return sum(len(df) for df in self.splits.values())

    @property
    def num_images(self) -> int:
        """Distinct images over all splits."""
        return len({img for df in self.splits.values() for img in df["image"]})


def read_annotations(
    path: str | os.PathLike,
    fmt: str | None = None,
    splits: Iterable[str] | None = None,
    images_root: str | os.PathLike | None = None,
    val_share: float | None = None,
) -> Annotations:
    """Read annotations in any supported layout into canonical records.

    Args:
        path: a source file or folder.
        fmt: ``mat``, ``coco``, ``kaggle`` or ``affectnet``; None detects it (:func:`detect_format`).
        splits: the splits to read; None reads every split the source has.
        images_root: the images folder, for layouts that need the images to convert (AffectNet, whose CSVs
            hold no image sizes); the EMOTIC layouts do not use it.
        val_share: AffectNet only: the share of the training images moved to ``val`` (default 5%).

    Raises:
        EmoctxError: the source cannot be read; the message names the file and the problem.
    """
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in READERS:
        raise EmoctxError(f"unknown annotation format {fmt!r}; expected one of {FORMATS}")
    report = ConversionReport()
    options: dict = {}
    if fmt == "affectnet":
        options["images_root"] = images_root
        if val_share is not None:
            options["val_share"] = val_share
    elif val_share is not None:
        raise EmoctxError(f"a val share is for AffectNet only; the {fmt} layout has its own val split")
    frames = READERS[fmt](path, splits=list(splits) if splits is not None else None, report=report, **options)
    return Annotations(source=path, format=fmt, splits=frames, report=report)


@dataclass
class ImageCheck:
    """What :func:`check_images` found: missing files, unreadable files and sizes that differ from the records."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    size_mismatch: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every image exists, opens and has the recorded size."""
        return not (self.missing or self.unreadable or self.size_mismatch)


def check_images(records: pd.DataFrame | Mapping[str, pd.DataFrame], root: str | os.PathLike) -> ImageCheck:
    """Check that every record's image exists under ``root`` with the recorded width and height.

    Only the image header is read (Pillow opens files lazily), so this is fast even for the whole dataset.
    One image that cannot be checked (damaged, in an unknown format, over Pillow's decompression-bomb
    limit, or with a path leaving ``root``) is listed in :attr:`ImageCheck.unreadable` with the reason,
    and the others are still checked.

    Args:
        records: one records frame or ``{split: frame}``.
        root: the dataset root the ``image`` paths are relative to (for EMOTIC: ``<root>/emotic``).
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise EmoctxError(f"{root}: images root is not a folder")
    frames = records.values() if isinstance(records, Mapping) else [records]
    sizes: dict[str, tuple[int, int]] = {}
    for df in frames:
        for image, w, h in zip(df["image"], df["width"], df["height"]):
            sizes.setdefault(image, (int(w), int(h)))
    result = ImageCheck(checked=len(sizes))
    for image, declared in sizes.items():
        problem = image_path_problem(image) if isinstance(image, str) else "the image path is not text"
        if problem is not None:
            result.unreadable.append((image, problem))
            continue
        file = root / image
        try:
            if not file.is_file():  # may raise too: a name too long, a folder without permission
                result.missing.append(image)
                continue
            with Image.open(file) as im:
                actual = im.size
        except Image.DecompressionBombError as e:
            # the limit guards every decode (training, prediction): the image is unusable as it is
            result.unreadable.append((image, f"image too large to decode safely ({e})"))
            continue
        except Exception as e:  # Pillow's plugins raise OSError, ValueError, SyntaxError... on bad headers
            result.unreadable.append((image, f"{type(e).__name__}: {e}"))
            continue
        if tuple(actual) != declared:
            result.size_mismatch.append((image, declared, tuple(actual)))
    logger.info("checked %d images under %s: %d missing", result.checked, root, len(result.missing))
    return result
