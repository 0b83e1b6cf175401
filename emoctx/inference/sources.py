"""What to predict on: image files, folders (recursive), glob patterns and video files, in a fixed order.

:func:`expand_sources` turns the command line's ``SOURCE...`` into an ordered list of :class:`Source` entries.
The order is the order of the arguments; inside a folder or a glob, files are sorted by path. Every entry
becomes rows of the output table (or one error row), so nothing a user named is silently dropped:

* image files (``.jpg``, ``.png``, ... see :data:`IMAGE_SUFFIXES`) and video files (:data:`VIDEO_SUFFIXES`)
  are recognised by their extension;
* a file with another extension, a path that does not exist and a glob that matches nothing give an
  ``error`` entry with the reason;
* inside folders, hidden files and folders (names starting with ``.``) are skipped, and so are paths passed
  in ``exclude`` (the output file and its progress sidecar, the annotation folder);
* a file reached twice (listed twice, or through two arguments) is kept once, at its first place.

``Source.path`` is the path as given (or as found under a given folder or glob): it is the ``source``
column of the output and the key that ``--resume`` and box files match on.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".webp",
        ".tif",
        ".tiff",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
    }
)
"""File extensions read as still images (case-insensitive)."""

VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
)
"""File extensions read as videos with OpenCV (case-insensitive)."""

SourceKind = Literal["image", "video", "error"]


@dataclass(frozen=True)
class Source:
    """One input of a prediction run.

    Attributes:
        path: the path as given or found (the ``source`` column of the output).
        kind: ``"image"``, ``"video"`` or ``"error"`` (see :attr:`error`).
        rel: a relative path naming this input under an output folder (annotated images): the file name for a
            file argument, ``<folder name>/<path inside it>`` for files found in a folder or by a glob.
        error: why this input cannot be read (``kind == "error"`` only).
    """

    path: str
    kind: SourceKind
    rel: str
    error: str | None = None


def kind_of(path: str | os.PathLike) -> SourceKind | None:
    """``"image"`` or ``"video"`` from the file extension, ``None`` for any other extension."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _unsupported(path: str) -> str:
    suffix = Path(path).suffix or "(none)"
    return (
        f"{path}: unsupported file type '{suffix}': emoctx predict reads images "
        f"({', '.join(sorted(IMAGE_SUFFIXES))}) and videos ({', '.join(sorted(VIDEO_SUFFIXES))})"
    )


def _file_source(path: str, rel: str) -> Source:
    kind = kind_of(path)
    if kind is None:
        return Source(path, "error", rel, _unsupported(path))
    return Source(path, kind, rel)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _walk(folder: str) -> list[str]:
    """Every non-hidden file under ``folder``, sorted by relative path (``/`` separated)."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found, key=lambda p: Path(p).as_posix())


def _glob_root(pattern: str) -> str:
    """The leading folders of a glob pattern that hold no wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else ""


def expand_sources(
    inputs: Sequence[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()
) -> list[Source]:
    """Expand files, folders and glob patterns into the ordered list of inputs (see the module docstring).

    Args:
        inputs: paths of image or video files, folders (searched recursively) and glob patterns (``**``
            matches any depth).
        exclude: files or folders never to read (compared by resolved path).

    Returns:
        One :class:`Source` per distinct input file, plus one ``error`` entry per unusable argument.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[str] = set()
    out: list[Source] = []

    def add(source: Source) -> None:
        if source.kind == "error" and not os.path.exists(source.path):
            key = f"missing:{source.path}"
        else:
            key = os.path.realpath(source.path)
        if key in seen:
            return
        if key in excluded or any(key.startswith(e + os.sep) for e in excluded):
            return
        seen.add(key)
        out.append(source)

    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            name = Path(os.path.abspath(text)).name
            for rel in _walk(text):
                add(_file_source(str(Path(text) / rel), str(Path(name) / rel)))
        elif os.path.isfile(text):
            add(_file_source(text, Path(text).name))
        elif _has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                add(Source(text, "error", Path(text).name, f"{text}: no file matches this pattern"))
            root = _glob_root(text)
            for match in matches:
                rel = os.path.relpath(match, root) if root else match
                if os.path.isdir(match):
                    for inner in _walk(match):
                        add(_file_source(str(Path(match) / inner), str(Path(rel) / inner)))
                elif not Path(match).name.startswith("."):
                    add(_file_source(match, rel))
        else:
            add(Source(text, "error", Path(text).name, f"{text}: no such file or folder"))
    return out
