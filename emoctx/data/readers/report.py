"""The conversion report: every record a reader repaired, dropped or kept with a note, and why.

Readers never silently change or lose an annotation. Each change is one :class:`ReportEntry` naming the
source file, the split, the entry (image and person) and the reason, so a long list stays usable as a
table (``conversion_report.jsonl`` or ``.csv`` next to the converted records).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from emoctx.io import atomic_path

#: What happened to the record: ``dropped`` (not converted), ``repaired`` (converted with a change),
#: ``kept`` (converted unchanged; the note says what is unusual, e.g. missing V/A/D).
ACTIONS: tuple[str, ...] = ("dropped", "repaired", "kept")


@dataclass(frozen=True)
class ReportEntry:
    """One repaired, dropped or noted record.

    Attributes:
        file: source annotation file.
        split: train, val or test.
        image: image path relative to the dataset root (or ``entry <n>`` when the source has none).
        person: index of the person within the image (None for image-level problems).
        action: one of :data:`ACTIONS`.
        field: the field concerned (``box``, ``categories``, ``valence``, ``image_size`` ...).
        reason: what was wrong and what was done, in words.
    """

    file: str
    split: str
    image: str
    person: int | None
    action: str
    field: str
    reason: str

    def __str__(self) -> str:
        who = self.image if self.person is None else f"{self.image} person {self.person}"
        return f"[{self.action}] {self.split} {who}: {self.field}: {self.reason} ({Path(self.file).name})"


@dataclass
class ConversionReport:
    """All :class:`ReportEntry` items of one conversion, in the order they were found."""

    entries: list[ReportEntry] = field(default_factory=list)

    def add(
        self,
        file: str | os.PathLike,
        split: str,
        image: str,
        person: int | None,
        action: str,
        field: str,
        reason: str,
    ) -> None:
        """Record one entry (``action`` must be one of :data:`ACTIONS`)."""
        if action not in ACTIONS:
            raise ValueError(f"report action must be one of {ACTIONS}, got {action!r}")
        self.entries.append(ReportEntry(str(file), split, image, person, action, field, reason))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ReportEntry]:
        return iter(self.entries)

    def by_action(self, action: str) -> list[ReportEntry]:
        """The entries with the given action."""
        return [e for e in self.entries if e.action == action]

    def counts(self) -> Counter:
        """Number of entries per action."""
        return Counter(e.action for e in self.entries)

    def to_frame(self) -> pd.DataFrame:
        """The entries as a table with one column per :class:`ReportEntry` attribute."""
        columns = list(ReportEntry.__dataclass_fields__)
        return pd.DataFrame([asdict(e) for e in self.entries], columns=columns)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the entries atomically as ``.jsonl`` (one object per line) or ``.csv``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            if path.suffix == ".jsonl":
                with open(tmp, "w", encoding="utf-8") as f:
                    for e in self.entries:
                        f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
            elif path.suffix == ".csv":
                self.to_frame().to_csv(tmp, index=False)
            else:
                raise ValueError(
                    f"{path}: a conversion report is written as .jsonl or .csv, not {path.suffix!r}"
                )
        return path
