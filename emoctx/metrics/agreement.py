"""Agreement with human annotators (leave-one-out): each annotator, and the model, against the others' labels."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from emoctx.labels import VAD_NAMES
from emoctx.metrics.categories import precision_recall_f1_at
from emoctx.metrics.inputs import as_array, names_and_slugs
from emoctx.metrics.vad import vad_metrics

log = logging.getLogger(__name__)


def _annotator_matrix(
    person: int, sets: Sequence[Sequence[str]], index: Mapping[str, int], num: int
) -> np.ndarray:
    m = np.zeros((len(sets), num), dtype=bool)
    for a, cats in enumerate(sets):
        for c in cats:
            if c not in index:
                raise ValueError(
                    f"annotator_categories: person {person}, annotator {a}: unknown category {c!r}"
                )
            m[a, index[c]] = True
    return m


def _annotator_vad(person: int, triples: Sequence[Sequence[float | None]], dims: int) -> np.ndarray:
    rows = [[math.nan if v is None else float(v) for v in tri] for tri in triples]
    if any(len(r) != dims for r in rows):
        raise ValueError(f"annotator_vad: person {person}: each entry must have {dims} values, got {triples}")
    return np.array(rows, dtype=np.float64).reshape(len(rows), dims)


def _category_figures(pred: np.ndarray, ref: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """Precision/recall/F1 (micro, macro) and the mean per-person Jaccard of binary labels."""
    prf = precision_recall_f1_at(pred.astype(np.float64), ref.astype(np.float64), 0.5, names)
    inter = (pred & ref).sum(1)
    union = (pred | ref).sum(1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # both empty: full agreement
    out = {f"category_{k}": prf[k] for k in ("precision_micro", "recall_micro", "f1_micro")}
    out.update({f"category_{k}": prf[k] for k in ("precision_macro", "recall_macro", "f1_macro")})
    out["category_jaccard"] = float(jaccard.mean()) if len(jaccard) else None
    return out


def _weighted_mean(per_k: list[dict[str, Any]], who: str) -> dict[str, Any]:
    """Average the figures of ``who`` over k, weighting each k by its number of persons."""
    keys = [k for k in per_k[0][who] if not k.startswith("vad_n/")]
    out: dict[str, Any] = {}
    for key in keys:
        pairs = [(e[who][key], e["num_persons"]) for e in per_k if e[who][key] is not None]
        w = sum(n for _, n in pairs)
        out[key] = float(sum(v * n for v, n in pairs) / w) if w else None
    return out


def annotator_agreement(
    annotator_categories: Sequence[Sequence[Sequence[str]]],
    annotator_vad: Sequence[Sequence[Sequence[float | None]]] | None = None,
    model_scores: Any | None = None,
    model_vad: Any | None = None,
    thresholds: Any | None = None,
    min_annotators: int = 3,
    min_share: float = 0.5,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Leave-one-out agreement of the annotators with each other, and of the model with the same references.

    For each annotator index k, on every person with at least ``min_annotators`` annotators and an annotator
    k, the reference is built from the *other* annotators of that person:

    * categories: a category is in the reference when at least ``min_share`` of the other annotators chose
      it (default 0.5: at least half, so with two others either one suffices, with four others two);
    * V/A/D: the mean of the other annotators' values (NaN values ignored; missing when all are NaN).

    Annotator k's labels are scored against the reference: categories with micro/macro precision, recall
    and F1 and the mean per-person Jaccard index (AP is meaningless for binary labels); V/A/D with
    :func:`vad_metrics` on the values present in both. The model (categories thresholded with
    ``score >= threshold``; V/A/D as predicted) is scored against the same references on the same persons
    and the same V/A/D values. Figures are averaged over k, each k weighted by its number of persons.
    Categories and V/A/D are counted separately (a person may have a different number of each).

    Args:
        annotator_categories: per person, one list of category names per annotator (the records column
            ``annotator_categories``).
        annotator_vad: per person, one [valence, arousal, dominance] per annotator on 1-10, NaN/None where
            missing (the records column ``annotator_vad``); None to skip V/A/D.
        model_scores: optional (N, C) model category scores, one row per person.
        model_vad: optional (N, 3) model V/A/D on the 1-10 scale.
        thresholds: (C,) thresholds or one number; required with ``model_scores``.
        min_annotators: persons with fewer annotators are not counted (at least 2).
        min_share: share of the other annotators needed for a category to be in the reference, in (0, 1].
        names: category names; default :data:`emoctx.labels.CATEGORIES`.

    Returns:
        A JSON-serialisable dict with ``reference_rule``, ``min_annotators`` and, for ``categories`` and
        ``vad``: ``num_persons`` (counted), ``num_persons_skipped`` (too few annotators), ``annotators``
        and ``model`` figures averaged over k, and ``per_k`` (figures for each k with its person count).
    """
    if min_annotators < 2:
        raise ValueError(
            f"min_annotators must be at least 2 for a leave-one-out reference, got {min_annotators}"
        )
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    names, _ = names_and_slugs(names)
    index = {n: i for i, n in enumerate(names)}
    n_persons = len(annotator_categories)
    model_pred = None
    if model_scores is not None:
        if thresholds is None:
            raise ValueError("thresholds: required to turn model_scores into category predictions")
        ms = as_array(model_scores, "model_scores")
        if ms.shape != (n_persons, len(names)):
            raise ValueError(f"model_scores: expected shape ({n_persons}, {len(names)}), got {ms.shape}")
        model_pred = ms >= np.broadcast_to(as_array(thresholds, "thresholds"), (len(names),))[None, :]
    mv = None
    if model_vad is not None:
        mv = as_array(model_vad, "model_vad")
        if mv.shape != (n_persons, len(VAD_NAMES)):
            raise ValueError(f"model_vad: expected shape ({n_persons}, {len(VAD_NAMES)}), got {mv.shape}")

    result: dict[str, Any] = {
        "reference_rule": (
            f"leave-one-out: a category is in the reference when at least {min_share:.0%} of the other "
            "annotators chose it; V/A/D reference = mean of the other annotators"
        ),
        "min_annotators": int(min_annotators),
    }

    # Categories.
    mats = [_annotator_matrix(p, sets, index, len(names)) for p, sets in enumerate(annotator_categories)]
    counted = [p for p, m in enumerate(mats) if len(m) >= min_annotators]
    per_k: list[dict[str, Any]] = []
    for k in range(max((len(mats[p]) for p in counted), default=0)):
        persons = [p for p in counted if len(mats[p]) > k]
        ann = np.stack([mats[p][k] for p in persons])
        ref = np.stack(
            [np.delete(mats[p], k, axis=0).sum(0) >= min_share * (len(mats[p]) - 1) for p in persons]
        )
        entry: dict[str, Any] = {"k": k, "num_persons": len(persons)}
        entry["annotators"] = _category_figures(ann, ref, names)
        if model_pred is not None:
            entry["model"] = _category_figures(model_pred[persons], ref, names)
        per_k.append(entry)
    result["categories"] = _agreement_summary(per_k, len(counted), n_persons)

    # V/A/D.
    if annotator_vad is not None:
        if len(annotator_vad) != n_persons:
            raise ValueError(
                f"annotator_vad: {len(annotator_vad)} persons, annotator_categories has {n_persons}"
            )
        vads = [_annotator_vad(p, tri, len(VAD_NAMES)) for p, tri in enumerate(annotator_vad)]
        counted = [p for p, v in enumerate(vads) if len(v) >= min_annotators]
        per_k = []
        for k in range(max((len(vads[p]) for p in counted), default=0)):
            persons = [p for p in counted if len(vads[p]) > k]
            ann = np.stack([vads[p][k] for p in persons])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all others NaN: reference missing
                ref = np.stack([np.nanmean(np.delete(vads[p], k, axis=0), axis=0) for p in persons])
            both = np.isfinite(ann) & np.isfinite(ref)
            entry = {"k": k, "num_persons": len(persons)}
            entry["annotators"] = vad_metrics(np.where(both, ann, 0.0), ref, both)
            if mv is not None:
                entry["model"] = vad_metrics(mv[persons], ref, both)
            per_k.append(entry)
        result["vad"] = _agreement_summary(per_k, len(counted), n_persons)
    log.info(
        "annotator agreement on %d persons (categories) / %s (V/A/D) with >= %d annotators",
        result["categories"]["num_persons"],
        result.get("vad", {}).get("num_persons", "-"),
        min_annotators,
    )
    return result


def _agreement_summary(per_k: list[dict[str, Any]], counted: int, total: int) -> dict[str, Any]:
    out: dict[str, Any] = {"num_persons": counted, "num_persons_skipped": total - counted}
    if per_k:
        out["annotators"] = _weighted_mean(per_k, "annotators")
        if "model" in per_k[0]:
            out["model"] = _weighted_mean(per_k, "model")
    out["per_k"] = per_k
    return out


def agreement_from_records(
    df: pd.DataFrame,
    model_scores: Any | None = None,
    model_vad: Any | None = None,
    thresholds: Any | None = None,
    min_annotators: int = 3,
    min_share: float = 0.5,
) -> dict[str, Any]:
    """:func:`annotator_agreement` on the ``annotator_categories`` / ``annotator_vad`` columns of records.

    ``model_scores`` and ``model_vad`` have one row per record, in the order of ``df``.
    """
    if "annotator_categories" not in df.columns:
        raise ValueError(
            "records: no 'annotator_categories' column (the source has one annotator per person)"
        )
    vad = list(df["annotator_vad"]) if "annotator_vad" in df.columns else None
    return annotator_agreement(
        list(df["annotator_categories"]),
        vad,
        model_scores=model_scores,
        model_vad=model_vad,
        thresholds=thresholds,
        min_annotators=min_annotators,
        min_share=min_share,
    )
