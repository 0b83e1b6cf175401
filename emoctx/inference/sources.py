"""What to predict on: image files, folders (recursive), glob patterns and video files, in a fixed order.

:func:`expand_sources` turns the command line's ``SOURCE...`` into an ordered list of :class:`Source` entries.
The order is the order of the arguments; inside a folder or a glob, files are sorted by path. Every entry
becomes rows of the output table (or one error row), so nothing a user named is silently dropped:

* image files (``.jpg``, ``.png``, ... see :data:`IMAGE_SUFFIXES`) and video files (:data:`VIDEO_SUFFIXES`)
  are recognised by their extension;
* inside folders and among the files a glob matches, files with another extension (``notes.txt``,
  ``Thumbs.db``, ``.xmp`` sidecars, a box file kept with the photos) are skipped, as ``yolo predict`` skips
  them: :func:`expand_sources` logs how many, with examples. A file named on its own with another extension,
  a path that does not exist and a glob that matches nothing give an ``error`` entry with the reason;
* inside folders, hidden files and folders (names starting with ``.``) are skipped, and so are paths passed
  in ``exclude`` (the output file and its progress sidecar, the annotation folder);
* links to folders are followed; a folder reached again through a link (a loop, or a second link to it) is not
  searched again, so every search ends;
* a folder that cannot be listed (no permission, removed meanwhile) gives an ``error`` entry naming it;
* a recursive glob (``**``) is matched while walking its leading folder in the same way (Python's ``glob``
  follows link loops until the path is too long), each file once;
* a file reached twice (listed twice, through two arguments, or through a link) is kept once, at its first place.

``Source.path`` is the path as given (or as found under a given folder or glob): it is the ``source``
column of the output and the key that ``--resume`` and box files match on.
"""

from __future__ import annotations

import glob
import logging
import os
import re
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

log = logging.getLogger(__name__)

_SKIPPED_EXAMPLES = 3  # skipped file names shown in the log line


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


def _walk(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Every non-hidden file under ``folder``, following links to folders, each folder searched once.

    Returns:
        ``(files, errors)``: the files' paths relative to ``folder`` sorted by relative path (``/``
        separated), and ``(folder path, reason)`` for each folder that could not be listed.
    """
    found: list[str] = []
    errors: list[tuple[str, str]] = []
    visited: set[str] = set()

    def failed(e: OSError) -> None:
        where = e.filename if e.filename is not None else folder
        errors.append((os.fspath(where), e.strerror or str(e)))

    for root, dirs, files in os.walk(folder, onerror=failed, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:  # reached again through a link: a loop, or a second way in
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found, key=lambda p: Path(p).as_posix()), sorted(errors)


def _translate_segment(segment: str) -> str:
    """One path segment of a glob pattern as a regular expression (``*``, ``?`` and ``[...]`` stay in it)."""
    out, i, n = [], 0, len(segment)
    while i < n:
        c = segment[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            start = i + 1 if i < n and segment[i] == "!" else i
            start = start + 1 if start < n and segment[start] == "]" else start
            end = segment.find("]", start)
            if end < 0:
                out.append(re.escape(c))
                continue
            body = segment[i:end].replace("\\", "\\\\")
            i = end + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob pattern as a regular expression over ``/``-separated relative paths; ``**`` spans folders.

    Hand-written because ``fnmatch`` lets ``*`` cross ``/``, and the standard library's translation of ``**``
    (``glob.translate``) needs Python 3.13.
    """
    segments = pattern.split("/")
    parts = []
    for k, segment in enumerate(segments):
        last = k == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_translate_segment(segment) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _recursive_glob(pattern: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Files matching a glob pattern with ``**``, found by :func:`_walk` from the pattern's leading folder."""
    root = _glob_root(pattern)
    rest = Path(pattern).relative_to(root).as_posix() if root else Path(pattern).as_posix()
    start = root or "."
    if not os.path.isdir(start):
        return [], []
    regex = _glob_regex(rest)
    files, errors = _walk(start)
    folders = {Path(f).parent.as_posix() for f in files}
    folders |= {p.as_posix() for f in files for p in Path(f).parents if p.as_posix() != "."}
    matches = [f for f in files if regex.match(Path(f).as_posix())]
    matches += [d for d in sorted(folders) if regex.match(d)]  # a pattern may name folders ("g/**/")
    joined = [os.path.join(root, m) if root else m for m in matches]
    return sorted(joined), errors


def _glob_root(pattern: str) -> str:
    """The leading folders of a glob pattern that hold no wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else ""


def reaches(inputs: Sequence[str | os.PathLike], path: str | os.PathLike) -> bool:
    """Whether one of ``inputs`` names ``path``: the file itself, a folder above it, or a glob matching it.

    A cheap check without listing any folder (files reached only through links are not seen here).
    """
    real = os.path.realpath(path)
    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            if real.startswith(os.path.join(os.path.realpath(text), "")):
                return True
        elif os.path.isfile(text):
            if os.path.realpath(text) == real:
                return True
        elif _has_magic(text):
            root = os.path.realpath(_glob_root(text) or ".")
            if real.startswith(os.path.join(root, "")):
                rest = Path(text).relative_to(_glob_root(text)).as_posix() if _glob_root(text) else text
                if _glob_regex(rest).match(Path(os.path.relpath(real, root)).as_posix()):
                    return True
    return False


def expand_sources(
    inputs: Sequence[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()
) -> list[Source]:
    """Expand files, folders and glob patterns into the ordered list of inputs (see the module docstring).

    Args:
        inputs: paths of image or video files, folders (searched recursively) and glob patterns (``**``
            matches any depth).
        exclude: files or folders never to read (compared by resolved path).

    Returns:
        One :class:`Source` per distinct image or video file, plus one ``error`` entry per unusable argument
        (files in folders and globs that are neither are skipped and logged).
    """
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[str] = set()
    out: list[Source] = []
    skipped: dict[str, list[str]] = {}  # argument -> files found under it that are neither image nor video

    def add_found(path: str, rel: str, item: str) -> None:
        """A file found in a folder or by a glob: kept when it is an image or a video, else skipped."""
        if kind_of(path) is None:
            if os.path.realpath(path) not in excluded:
                skipped.setdefault(item, []).append(Path(path).name)
            return
        add(_file_source(path, rel))

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

    def add_folder(folder: str, rel_root: str, item: str) -> None:
        files, errors = _walk(folder)
        for rel in files:
            add_found(str(Path(folder) / rel), str(Path(rel_root) / rel), item)
        for path, reason in errors:
            add(Source(path, "error", Path(path).name, f"{path}: cannot list this folder: {reason}"))

    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            add_folder(text, Path(os.path.abspath(text)).name, text)
        elif os.path.isfile(text):
            add(_file_source(text, Path(text).name))
        elif _has_magic(text):
            errors: list[tuple[str, str]] = []
            if "**" in text:
                matches, errors = _recursive_glob(text)
            else:
                matches = sorted(glob.glob(text))
            if not matches and not errors:
                add(Source(text, "error", Path(text).name, f"{text}: no file matches this pattern"))
            root = _glob_root(text)
            for match in matches:
                rel = os.path.relpath(match, root) if root else match
                if os.path.isdir(match):
                    add_folder(match, rel, text)
                elif not Path(match).name.startswith("."):
                    add_found(match, rel, text)
            for path, reason in errors:
                add(Source(path, "error", Path(path).name, f"{path}: cannot list this folder: {reason}"))
        else:
            add(Source(text, "error", Path(text).name, f"{text}: no such file or folder"))
    for item, names in skipped.items():
        more = f" and {len(names) - _SKIPPED_EXAMPLES} more" if len(names) > _SKIPPED_EXAMPLES else ""
        log.info(
            "%s: %d file(s) that are neither images nor videos skipped (%s%s)",
            item,
            len(names),
            ", ".join(names[:_SKIPPED_EXAMPLES]),
            more,
        )
    return out


def missing_sources(inputs: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """The arguments that name nothing.

    ``(argument, reason)`` for each path that does not exist and each glob that matches nothing, with a close
    name in the same folder where there is one (``photoz``: ``photos``).

    A cheap look before any work: no folder is walked (a ``**`` glob is only checked for its leading folder).
    """
    import difflib

    out = []
    for item in inputs:
        text = os.fspath(item)
        if os.path.exists(text):
            continue
        if _has_magic(text):
            if "**" in text:
                root = _glob_root(text) or "."
                if os.path.isdir(root):
                    continue
                out.append((text, f"{text}: no such folder {root}"))
            elif not glob.glob(text):
                out.append((text, f"{text}: no file matches this pattern"))
            continue
        parent = os.path.dirname(text.rstrip("/" + os.sep)) or "."
        name = os.path.basename(text.rstrip("/" + os.sep))
        try:
            siblings = os.listdir(parent) if os.path.isdir(parent) else []
        except OSError:
            siblings = []
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.75)
        hint = (
            f" (did you mean {os.path.join(parent, close[0]) if parent != '.' else close[0]}?)"
            if close
            else ""
        )
        out.append((text, f"{text}: no such file or folder{hint}"))
    return out
