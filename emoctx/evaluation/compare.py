"""Several evaluations side by side: one Markdown table and one CSV from their ``metrics.json`` files.

:func:`compare_evaluations` reads the metrics documents of ``emoctx evaluate`` (an evaluation folder or its
``metrics.json``), checks that they can be compared and builds one row per evaluation: the mAP, the
per-category AP, the V/A/D errors, F1 at the thresholds where there are thresholds, the persons evaluated and
the AP variant. :func:`write_comparison` writes ``comparison.md`` and ``comparison.csv``.

Figures are comparable only on the same persons with the same AP: evaluations of different records files, of
a different number of persons or with another AP variant are refused, unless ``allow_different`` is given;
the table then carries a caution saying what differs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emoctx import labels
from emoctx.errors import EmoctxError
from emoctx.io import atomic_write_text

log = logging.getLogger(__name__)

MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"

_SAME = (
    ("records files", lambda d: (d.get("records") or {}).get("sha256")),
    ("numbers of persons evaluated", lambda d: d.get("num_persons")),
    ("AP variants", lambda d: d.get("ap_variant")),
)
"""What must agree for figures to be compared, and how each is read from a metrics document."""


@dataclass
class Comparison:
    """Evaluations side by side.

    Attributes:
        table: one row per evaluation (the CSV's columns; figures in percent where the header says ``(%)``).
        categories: one row per category, one AP column (%) per evaluation, and the chance AP (%).
        differences: what differs between the evaluations that should not (empty when they compare).
        documents: the metrics documents, by evaluation name.
    """

    table: pd.DataFrame
    categories: pd.DataFrame
    differences: list[str] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The metrics document of an evaluation: ``path`` is its ``metrics.json`` or the folder holding it.

    Raises:
        EmoctxError: no such file, not JSON, or not an ``emoctx evaluate`` document.
    """
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} holds no metrics.json" if path.is_dir() else f"{path}: no such file or folder"
        raise EmoctxError(f"{where}; give evaluation folders (emoctx evaluate --out) or their metrics.json")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmoctxError(f"{file}: cannot be read as JSON ({e})") from e
    if not isinstance(doc, dict) or "overall" not in doc or "num_persons" not in doc:
        raise EmoctxError(f"{file}: not the metrics.json of emoctx evaluate (no 'overall' figures)")
    return doc


def _name(path: Path, used: set[str]) -> str:
    base = path.parent.name if path.name == "metrics.json" else path.name
    name, n = base or str(path), 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return name


def _pct(v: Any) -> float | None:
    return None if v is None else round(100.0 * float(v), 2)


def _num(v: Any, digits: int = 3) -> float | None:
    return None if v is None else round(float(v), digits)


def _row(name: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    o, src, rec = doc["overall"], doc.get("source") or {}, doc.get("records") or {}
    row: dict[str, Any] = {
        "evaluation": name,
        "system": Path(str(src.get("path", ""))).name,
        "kind": src.get("kind"),
        "system sha256": str(src.get("sha256", ""))[:12],
        "records": rec.get("path"),
        "records sha256": str(rec.get("sha256", ""))[:12],
        "persons evaluated": doc.get("num_persons"),
        "AP variant": doc.get("ap_variant"),
        "mAP (%)": _pct(o.get("mAP")),
        "categories with AP": o.get("num_categories_evaluated"),
        "F1 macro (%)": _pct(o.get("f1_macro")),
        "F1 micro (%)": _pct(o.get("f1_micro")),
        "V/A/D MAE (1-10 points)": _num(o.get("vad_mae")),
        **{f"{d} MAE": _num(o.get(f"vad_mae/{d}")) for d in labels.VAD_NAMES},
        "V/A/D CCC": _num(o.get("vad_ccc")),
    }
    for cat, slug in zip(labels.CATEGORIES, labels.SLUGS):
        row[f"AP {cat} (%)"] = _pct(o.get(f"ap/{slug}"))
    return row


def compare_evaluations(
    paths: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
    allow_different: bool = False,
) -> Comparison:
    """Put evaluations side by side (see the module docstring).

    Args:
        paths: evaluation folders (``emoctx evaluate --out``) or their ``metrics.json`` files, two or more.
        names: a name per evaluation (default: the folder names, made distinct).
        allow_different: compare even when the records, the number of persons or the AP variant differ
            (the differences are logged and written beside the table).

    Raises:
        EmoctxError: fewer than two evaluations, an unreadable one, names that do not match the paths, or
            evaluations that differ in what must agree (without ``allow_different``).
    """
    if len(paths) < 2:
        raise EmoctxError(
            "give at least two evaluations to compare (evaluation folders or metrics.json files)"
        )
    if names is not None and len(names) != len(paths):
        raise EmoctxError(f"--names: {len(names)} name(s) for {len(paths)} evaluation(s)")
    used: set[str] = set()
    docs: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(paths):
        doc = read_metrics(p)
        name = names[i] if names is not None else _name(Path(p), used)
        if name in docs:
            raise EmoctxError(f"--names: {name!r} is given twice")
        docs[name] = doc
    differences = []
    for what, read in _SAME:
        values = {name: read(doc) for name, doc in docs.items()}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{n}: {v}" for n, v in values.items())
            differences.append(f"{what} differ ({listed})")
    if differences and not allow_different:
        raise EmoctxError(
            "these evaluations are not comparable: "
            + "; ".join(differences)
            + ". Figures compare on the same persons with the same AP variant; evaluate each system on the same "
            "records (or pass --allow-different to put them side by side anyway, with this caution in the table)"
        )
    for d in differences:
        log.warning("compared although %s", d)
    table = pd.DataFrame([_row(name, doc) for name, doc in docs.items()])
    first = next(iter(docs.values()))
    # Documents written before chance_ap existed have the positives and the persons it comes from.
    chance = first.get("chance_ap") or {
        slug: n / first["num_persons"]
        for slug, n in (first.get("positives") or {}).items()
        if first["num_persons"]
    }
    categories = pd.DataFrame(
        {
            "category": list(labels.CATEGORIES),
            **{
                name: [_pct(doc["overall"].get(f"ap/{slug}")) for slug in labels.SLUGS]
                for name, doc in docs.items()
            },
            "chance AP (%)": [_pct(chance.get(slug)) for slug in labels.SLUGS],
        }
    )
    return Comparison(table=table, categories=categories, differences=differences, documents=docs)


def _cell(v: Any, bold: bool = False) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    text = f"{v:.2f}" if isinstance(v, float) else str(v)
    return f"**{text}**" if bold else text


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def comparison_markdown(c: Comparison) -> str:
    """The Markdown view of a :class:`Comparison`: the summary table, then AP per category (best in bold)."""
    names = list(c.documents)
    lines = [f"# Comparison of {len(names)} evaluations", ""]
    if c.differences:
        lines += ["**Caution: not comparable as they stand.** " + "; ".join(c.differences) + ".", ""]
    else:
        first = next(iter(c.documents.values()))
        lines += [
            f"All on the same {first.get('num_persons')} persons of `{(first.get('records') or {}).get('path')}` "
            f"(sha256 `{str((first.get('records') or {}).get('sha256', ''))[:12]}`), AP variant "
            f"`{first.get('ap_variant')}`. AP, F1 in percent; V/A/D errors in points of the 1-10 scale.",
            "",
        ]
    summary_cols = [
        "evaluation",
        "system",
        "persons evaluated",
        "AP variant",
        "mAP (%)",
        "categories with AP",
        "F1 macro (%)",
        "V/A/D MAE (1-10 points)",
        *(f"{d} MAE" for d in labels.VAD_NAMES),
        "V/A/D CCC",
    ]
    best_high = {"mAP (%)", "F1 macro (%)", "V/A/D CCC"}
    best_low = {"V/A/D MAE (1-10 points)", *(f"{d} MAE" for d in labels.VAD_NAMES)}
    best: dict[str, Any] = {}
    for col in best_high | best_low:
        values = [v for v in c.table[col] if v is not None and not pd.isna(v)]
        if values:
            best[col] = max(values) if col in best_high else min(values)
    rows = []
    for _, r in c.table.iterrows():
        rows.append(
            [
                _cell(r[col], bold=len(names) > 1 and col in best and r[col] == best[col])
                for col in summary_cols
            ]
        )
    lines += _markdown_table(summary_cols, rows)
    lines += [
        "## AP per category (%)",
        "",
        "Chance AP: the share of positives (what scores that know nothing reach).",
        "",
    ]
    cat_rows = []
    for _, r in c.categories.iterrows():
        values = [r[n] for n in names]
        top = max((v for v in values if v is not None and not pd.isna(v)), default=None)
        cat_rows.append(
            [str(r["category"])]
            + [_cell(v, bold=top is not None and v == top) for v in values]
            + [_cell(r["chance AP (%)"])]
        )
    lines += _markdown_table(["category", *names, "chance AP (%)"], cat_rows)
    lines += ["## Sources", ""]
    for name, doc in c.documents.items():
        src, rec = doc.get("source") or {}, doc.get("records") or {}
        lines.append(
            f"- **{name}**: {src.get('kind')} `{src.get('path')}` (sha256 `{str(src.get('sha256', ''))[:12]}`) on "
            f"`{rec.get('path')}`, {doc.get('num_persons')} persons, AP ranks {doc.get('ap_ranks')}, "
            f"emoctx {doc.get('emoctx_version')}, {doc.get('created')}"
        )
    return "\n".join(lines).rstrip() + "\n"


def write_comparison(c: Comparison, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``comparison.md`` and ``comparison.csv`` (one row per evaluation) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / MARKDOWN_FILE, "csv": out / CSV_FILE}
    atomic_write_text(files["markdown"], comparison_markdown(c))
    atomic_write_text(files["csv"], c.table.to_csv(index=False))
    return files
