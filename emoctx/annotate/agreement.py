"""How far the annotators of a labelled batch agree: per category, per annotator, and the spread of V/A/D.

Built on :func:`emoctx.metrics.annotator_agreement`, the leave-one-out comparison ``emoctx evaluate``
reports: each annotator's labels of a person against the reference made from the *other* annotators of
that person (a category is in the reference when at least half of the others chose it; V/A/D is the
others' mean). Here it is broken down three ways:

* **per category**: how often the category was chosen, on how many persons all annotators agreed on it
  (chosen by all, or by none), and each annotator against the others on that category alone
  (precision, recall, F1);
* **per annotator** (by name): that annotator against the others, on the persons they labelled (category
  F1 micro and macro, mean Jaccard index, V/A/D mean absolute error);
* **V/A/D spread**: per dimension, over persons with at least two ratings, the mean standard deviation of
  the ratings, the mean absolute difference between two annotators, and the share of persons whose
  ratings are all within one point.

Only persons with at least ``min_annotators`` annotators count (default 2, the least a comparison needs).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from emoctx.errors import EmoctxError
from emoctx.labels import CATEGORIES, SLUGS, VAD_NAMES
from emoctx.metrics import annotator_agreement


def _lists(df: pd.DataFrame, column: str) -> list[list[Any]]:
    if column not in df.columns:
        return [[] for _ in range(len(df))]
    return [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in df[column]]


def agreement_report(df: pd.DataFrame, min_annotators: int = 2) -> dict[str, Any]:
    """The agreement figures of records with per-annotator labels (see the module docstring).

    Args:
        df: canonical records (``annotator_categories``, ``annotator_vad`` and, for names, ``annotators``).
        min_annotators: persons with fewer annotators are left out (at least 2).

    Returns:
        A JSON-serialisable dict: ``num_persons`` (counted), ``num_persons_skipped``, ``overall`` (the
        :func:`~emoctx.metrics.annotator_agreement` result), ``categories`` (one entry per category),
        ``annotators`` (one entry per name) and ``vad_spread`` (one entry per dimension).

    Raises:
        EmoctxError: no person has ``min_annotators`` annotators.
    """
    if min_annotators < 2:
        raise EmoctxError(f"min_annotators must be at least 2, got {min_annotators}")
    cats = _lists(df, "annotator_categories")
    vads = _lists(df, "annotator_vad")
    names = _lists(df, "annotators")
    keep = [i for i, c in enumerate(cats) if len(c) >= min_annotators]
    if not keep:
        most = max((len(c) for c in cats), default=0)
        raise EmoctxError(
            f"no person has {min_annotators} or more annotators (most on one person: {most}); "
            "agreement needs several annotators of the same persons (an overlap of 2 or more)"
        )
    cats = [cats[i] for i in keep]
    vads = [
        vads[i] if len(vads[i]) == len(cats[k]) else [[math.nan] * 3] * len(cats[k])
        for k, i in enumerate(keep)
    ]
    names = [
        names[i] if len(names[i]) == len(cats[k]) else [f"annotator {j}" for j in range(len(cats[k]))]
        for k, i in enumerate(keep)
    ]

    report: dict[str, Any] = {
        "min_annotators": int(min_annotators),
        "num_persons": len(keep),
        "num_persons_skipped": len(df) - len(keep),
        "overall": annotator_agreement(cats, vads, min_annotators=min_annotators),
    }
    with _quiet("emoctx.metrics"):  # one log line per category and annotator would drown the overall one
        report["categories"] = _per_category(cats, min_annotators)
        report["annotators"] = _per_annotator(cats, vads, names, min_annotators)
    report["vad_spread"] = _vad_spread(vads)
    return report


@contextlib.contextmanager
def _quiet(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _per_category(cats: list[list[list[str]]], min_annotators: int) -> list[dict[str, Any]]:
    out = []
    for c, slug in zip(CATEGORIES, SLUGS):
        only = [[[x for x in ann if x == c] for ann in person] for person in cats]
        votes = [sum(bool(ann) for ann in person) for person in only]
        figures = annotator_agreement(only, None, min_annotators=min_annotators, names=[c])["categories"]
        ann = figures.get("annotators", {})
        out.append(
            {
                "category": c,
                "slug": slug,
                "choices": int(sum(votes)),
                "persons_chosen_by_any": int(sum(v > 0 for v in votes)),
                "persons_chosen_by_all": int(sum(v == len(p) for v, p in zip(votes, only))),
                "persons_unanimous": int(sum(v in (0, len(p)) for v, p in zip(votes, only))),
                "precision": ann.get("category_precision_micro"),
                "recall": ann.get("category_recall_micro"),
                "f1": ann.get("category_f1_micro"),
            }
        )
    return out


def _per_annotator(
    cats: list[list[list[str]]], vads: list[list[list[float]]], names: list[list[str]], min_annotators: int
) -> list[dict[str, Any]]:
    out = []
    for who in sorted({n for person in names for n in person}):
        rows = [i for i, person in enumerate(names) if who in person]
        first = [
            [names[i].index(who)] + [j for j in range(len(names[i])) if names[i][j] != who] for i in rows
        ]
        result = annotator_agreement(
            [[cats[i][j] for j in order] for i, order in zip(rows, first)],
            [[vads[i][j] for j in order] for i, order in zip(rows, first)],
            min_annotators=min_annotators,
        )
        k0 = result["categories"]["per_k"][0]  # this annotator against the others
        v0 = result.get("vad", {}).get("per_k", [{}])[0]
        out.append(
            {
                "annotator": who,
                "num_persons": k0["num_persons"],
                "category_f1_micro": k0["annotators"]["category_f1_micro"],
                "category_f1_macro": k0["annotators"]["category_f1_macro"],
                "category_jaccard": k0["annotators"]["category_jaccard"],
                "vad_mae": (v0.get("annotators") or {}).get("vad_mae"),
            }
        )
    return out


def _vad_spread(vads: list[list[list[float]]]) -> list[dict[str, Any]]:
    out = []
    for d, dim in enumerate(VAD_NAMES):
        per_person = []
        for person in vads:
            values = np.array([v[d] for v in person if v[d] is not None and math.isfinite(v[d])], dtype=float)
            if len(values) >= 2:
                per_person.append(values)
        pairs = [abs(a - b) for values in per_person for a, b in itertools.combinations(values, 2)]
        out.append(
            {
                "dimension": dim,
                "num_persons": len(per_person),
                "mean_std": _mean([float(np.std(v)) for v in per_person]),
                "mean_abs_difference": _mean([float(p) for p in pairs]),
                "share_within_1_point": _mean([float(np.ptp(v) <= 1.0) for v in per_person]),
            }
        )
    return out


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _fmt(v: Any, digits: int = 2, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.{digits}f}"


def report_markdown(report: dict[str, Any], source: str = "") -> str:
    """The report as Markdown tables (``agreement.md``)."""
    overall = report["overall"]
    cat = overall["categories"].get("annotators", {})
    vad = overall.get("vad", {}).get("annotators", {})
    lines = [
        f"# Annotator agreement{f' of {source}' if source else ''}",
        "",
        f"Persons with at least {report['min_annotators']} annotators: {report['num_persons']} "
        f"({report['num_persons_skipped']} with fewer left out). Each annotator is compared with the others "
        f"of the same person ({overall['reference_rule']}).",
        "",
        f"Overall: category F1 micro {_fmt(cat.get('category_f1_micro'), pct=True)}%, macro "
        f"{_fmt(cat.get('category_f1_macro'), pct=True)}%, mean Jaccard {_fmt(cat.get('category_jaccard'))}; "
        f"V/A/D mean absolute error {_fmt(vad.get('vad_mae'))} points.",
        "",
        "## Per category",
        "",
        "| category | chosen | persons (any) | persons (all) | unanimous persons | precision % | recall % | F1 % |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in report["categories"]:
        lines.append(
            f"| {c['category']} | {c['choices']} | {c['persons_chosen_by_any']} | {c['persons_chosen_by_all']} | "
            f"{c['persons_unanimous']} | {_fmt(c['precision'], pct=True)} | {_fmt(c['recall'], pct=True)} | "
            f"{_fmt(c['f1'], pct=True)} |"
        )
    lines += [
        "",
        "## Per annotator (against the others)",
        "",
        "| annotator | persons | category F1 micro % | F1 macro % | Jaccard | V/A/D MAE |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for a in report["annotators"]:
        lines.append(
            f"| {a['annotator']} | {a['num_persons']} | {_fmt(a['category_f1_micro'], pct=True)} | "
            f"{_fmt(a['category_f1_macro'], pct=True)} | {_fmt(a['category_jaccard'])} | {_fmt(a['vad_mae'])} |"
        )
    lines += [
        "",
        "## V/A/D spread",
        "",
        "| dimension | persons | mean std | mean abs. difference | within 1 point % |",
        "|---|--:|--:|--:|--:|",
    ]
    for v in report["vad_spread"]:
        lines.append(
            f"| {v['dimension']} | {v['num_persons']} | {_fmt(v['mean_std'])} | {_fmt(v['mean_abs_difference'])} | "
            f"{_fmt(v['share_within_1_point'], pct=True)} |"
        )
    return "\n".join(lines) + "\n"
