"""Finding the split files of a source layout (which split a file name names), and reading CSV files as text."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd

from emoctx.errors import EmoctxError
from emoctx.labels import SPLITS

# Words in a file name that name a split ("EMOTIC_val_x1y1x2y2.json", "annot_arrs_test.csv").
_SPLIT_WORDS: dict[str, str] = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def split_of_file(path: Path, splits: list[str] | None) -> dict[str, Path]:
    """``{split: path}`` for a single file given as the source: the split its name names, or the one asked for.

    Raises:
        EmoctxError: the name names no split and not exactly one split was asked for, or it names another.
    """
    split = split_from_name(path)
    if split is None:
        if splits is not None and len(splits) == 1:
            return {splits[0]: path}
        raise EmoctxError(
            f"{path}: cannot tell which split this file holds from its name; rename it or pass one split "
            f"(--splits train|val|test)"
        )
    if splits is not None and split not in splits:
        raise EmoctxError(f"{path}: holds the '{split}' split, but {splits} was asked for")
    return {split: path}


def split_from_name(path: str | Path) -> str | None:
    """The split a file name names by one of its words (train, val/valid/validation, test), or None.

    Words are the runs of letters in the file's stem; a name with words for two different splits is ambiguous
    and gives None.
    """
    words = re.findall(r"[a-z]+", Path(path).stem.lower())
    found = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


def split_files(files: list[Path], what: str, splits: list[str] | None, where: Path) -> dict[str, Path]:
    """Map each split to its file among ``files`` by name; error on two files for one split.

    Args:
        files: candidate files.
        what: what the files are, for messages ("COCO-style JSON").
        splits: the splits wanted (None: every split found).
        where: the folder or file the user gave, for messages.
    """
    by_split: dict[str, list[Path]] = {}
    for f in files:
        split = split_from_name(f)
        if split is not None:
            by_split.setdefault(split, []).append(f)
    for split, found in by_split.items():
        if len(found) > 1:
            raise EmoctxError(f"{where}: several {what} files for split '{split}': {[str(f) for f in found]}")
    wanted = [s for s in SPLITS if s in by_split] if splits is None else list(splits)
    if not wanted:
        raise EmoctxError(
            f"{where}: no {what} file with train, val or test in its name (found {[f.name for f in files]})"
        )
    missing = [s for s in wanted if s not in by_split]
    if missing:
        raise EmoctxError(f"{where}: no {what} file for split(s) {missing} (found {[f.name for f in files]})")
    return {s: by_split[s][0] for s in wanted}


def read_csv_text(file: Path) -> pd.DataFrame:
    """Every cell of a CSV file as text (empty cells as ``""``); a damaged file is a clear error.

    A row with more cells than the header would make pandas shift the columns or drop the extra cells with a
    warning: here it is an error naming the file.

    Raises:
        EmoctxError: the file cannot be read or parsed as CSV.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(file, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning as e:
        raise EmoctxError(f"{file}: a row has more cells than the header ({e}); the file is damaged") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise EmoctxError(f"{file}: cannot read as CSV ({type(e).__name__}: {e})") from e
    except OSError as e:
        raise EmoctxError(f"{file}: cannot read ({e.strerror or e})") from e
    return df.fillna("")  # cells missing from a short row: empty, like cells written empty
