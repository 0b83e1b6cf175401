"""``report.md``, the Markdown view of an evaluation's metrics document, and the summary ``evaluate`` prints.

The entry points that run an evaluation moved to :mod:`emoctx.evaluation.evaluate` (``evaluate_model``,
``evaluate_predictions``, ``write_outputs``, ``load_thresholds``, the output file names), the document to
:mod:`emoctx.evaluation.document` and the plots to :mod:`emoctx.evaluation.plots`; importing them from here
still works and warns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from emoctx import labels
from emoctx.deprecation import moved
from emoctx.evaluation.document import AP_VARIANT_TEXT, document_title, number_text

log = logging.getLogger(__name__)


def _pct(v: Any, digits: int = 2) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _source_lines(doc: Mapping[str, Any]) -> list[str]:
    src = doc.get("source", {})
    rec = doc.get("records", {})
    lines = []
    if src.get("kind") == "model":
        streams = ", ".join(
            f"{name}: {s.get('backbone')} {s.get('input_size')} px"
            for name, s in src.get("streams", {}).items()
        )
        lines.append(
            f"- **Model**: `{src.get('path')}` (sha256 `{str(src.get('sha256', ''))[:12]}`, written by emoctx "
            f"{src.get('emoctx_version')}; streams {streams}; fusion {src.get('network', {}).get('fusion')}; "
            f"scores: {src.get('score_activation')})"
        )
    else:
        lines.append(
            f"- **Predictions**: `{src.get('path')}` (sha256 `{str(src.get('sha256', ''))[:12]}`, "
            f"{src.get('num_rows')} rows, V/A/D {'given' if src.get('has_vad') else 'not given'})"
        )
    lines.append(
        f"- **Records**: `{rec.get('path')}` (sha256 `{str(rec.get('sha256', ''))[:12]}`): "
        f"{rec.get('num_records')} persons, {rec.get('num_evaluated')} evaluated"
        + (
            f", {rec.get('num_skipped')} skipped ({rec.get('skipped_reason')})"
            if rec.get("num_skipped")
            else ""
        )
    )
    ranks = (
        "the model's raw category outputs (before its sigmoid or clamp)"
        if doc.get("ap_ranks") == "raw outputs"
        else "the scores as given"
    )
    lines.append(
        f"- **AP variant**: `{doc['ap_variant']}`, {AP_VARIANT_TEXT[doc['ap_variant']]}; AP ranks {ranks}"
    )
    th = doc.get("thresholds")
    lines.append(
        f"- **Decision thresholds**: {th['from']}"
        if th
        else "- **Decision thresholds**: none (no P/R/F1 figures)"
    )
    lines.append(f"- emoctx {doc.get('emoctx_version')}, {doc.get('created')}")
    lines.append(
        "- **Units**: AP, precision, recall, F1, SAGR and Jaccard in percent here (`metrics.json` holds them as "
        "fractions of 1, as its `units` says); V/A/D errors in points of the 1-10 scale; PCC and CCC from -1 to 1"
    )
    return lines + [""]


def _category_section(doc: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    o = doc["overall"]
    th = (doc.get("thresholds") or {}).get("values")
    chance = doc.get("chance_ap") or {}
    header = ["Category", "Positives", "AP (%)", "Chance AP (%)"]
    if th:
        header += ["Threshold", "Precision (%)", "Recall (%)", "F1 (%)"]
    rows = []
    for name, slug in zip(labels.CATEGORIES, labels.SLUGS):
        ap = o.get(f"ap/{slug}")
        row = [name, str(doc["positives"][slug]), _pct(ap), _pct(chance.get(slug)) if ap is not None else "—"]
        if th:
            t = th.get(slug)
            row += [
                "never" if t is None else f"{t:.3f}",
                _pct(o.get(f"precision/{slug}"), 1),
                _pct(o.get(f"recall/{slug}"), 1),
                _pct(o.get(f"f1/{slug}"), 1),
            ]
        rows.append(row)
    with_ap = [slug for slug in labels.SLUGS if o.get(f"ap/{slug}") is not None and slug in chance]
    chance_map = sum(chance[slug] for slug in with_ap) / len(with_ap) if with_ap else None
    mean = ["**mean**", "", f"**{_pct(o.get('mAP'))}**", _pct(chance_map)]
    if th:
        mean += [
            "macro",
            _pct(o.get("precision_macro"), 1),
            _pct(o.get("recall_macro"), 1),
            _pct(o.get("f1_macro"), 1),
        ]
        rows.append(mean)
        rows.append(
            [
                "micro",
                "",
                "",
                "",
                "",
                _pct(o.get("precision_micro"), 1),
                _pct(o.get("recall_micro"), 1),
                _pct(o.get("f1_micro"), 1),
            ]
        )
    else:
        rows.append(mean)
    lines = ["## Categories", ""]
    if o.get("undefined_ap"):
        lines += [
            f"AP undefined (no positive example, left out of the mAP): {', '.join(o['undefined_ap'])}.",
            "",
        ]
    if chance:
        lines += [
            "Chance AP is what scores that know nothing (random or constant) reach: the share of positives among "
            "the persons evaluated. An AP means as much as its distance from it.",
            "",
        ]
    if th:
        lines += ["A person is predicted to show a category when its score is at least the threshold.", ""]
    lines += _table(header, rows)
    if "ap_plot" in plots:
        lines += [f"![AP per category]({plots['ap_plot']})", ""]
    if "pr_plot" in plots:
        lines += [f"![Precision-recall curves]({plots['pr_plot']})", ""]
    return lines


def _vad_section(doc: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    o = doc["overall"]
    if "vad_mae" not in o:
        return ["## Valence, arousal, dominance", "", "No V/A/D predictions.", ""]
    header = ["Dimension", "n", "MAE", "RMSE", "PCC", "CCC", "SAGR (%)"]
    rows = [
        [
            dim,
            str(o.get(f"vad_n/{dim}")),
            number_text(o.get(f"vad_mae/{dim}")),
            number_text(o.get(f"vad_rmse/{dim}")),
            number_text(o.get(f"vad_pcc/{dim}")),
            number_text(o.get(f"vad_ccc/{dim}")),
            _pct(o.get(f"vad_sagr/{dim}"), 1),
        ]
        for dim in labels.VAD_NAMES
    ]
    rows.append(
        [
            "**mean**",
            "",
            number_text(o.get("vad_mae")),
            number_text(o.get("vad_rmse")),
            number_text(o.get("vad_pcc")),
            number_text(o.get("vad_ccc")),
            _pct(o.get("vad_sagr"), 1),
        ]
    )
    lines = ["## Valence, arousal, dominance", ""]
    lines += [
        f"Against the records' V/A/D labels (each person's combined label), in points of the {labels.VAD_MIN:g}-"
        f"{labels.VAD_MAX:g} scale; SAGR = sign agreement around {labels.VAD_MID:g}.",
        "",
    ]
    lines += _table(header, rows)
    if "vad_plot" in plots:
        lines += [f"![Predicted vs true V/A/D]({plots['vad_plot']})", ""]
    return lines


_AGREEMENT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("categories", "category_f1_micro", "Categories F1, micro (%)"),
    ("categories", "category_f1_macro", "Categories F1, macro (%)"),
    ("categories", "category_precision_micro", "Categories precision, micro (%)"),
    ("categories", "category_recall_micro", "Categories recall, micro (%)"),
    ("categories", "category_jaccard", "Categories Jaccard per person (%)"),
    *(("vad", f"vad_mae/{d}", f"{d.capitalize()} MAE") for d in labels.VAD_NAMES),
    *(("vad", f"vad_ccc/{d}", f"{d.capitalize()} CCC") for d in labels.VAD_NAMES),
    ("vad", "vad_pcc", "V/A/D PCC (mean)"),
    ("vad", "vad_sagr", "V/A/D SAGR (mean, %)"),
)


def _agreement_section(doc: Mapping[str, Any]) -> list[str]:
    a = doc.get("agreement") or {}
    lines = ["## Agreement with human annotators", ""]
    if "skipped" in a:
        return lines + [f"Not computed: {a['skipped']}.", ""]
    cats, vad = a.get("categories", {}), a.get("vad", {})
    lines += [
        f"Each annotator is compared with the others of the same person ({a.get('reference_rule')}); the "
        "model is compared with the same references on the same persons. Figures are averaged over the "
        "annotators.",
        "",
        f"Persons with at least {a.get('min_annotators')} annotators: {cats.get('num_persons')} "
        f"(categories), {vad.get('num_persons', '—')} (V/A/D).",
        "",
    ]
    if a.get("note"):
        lines += [f"Note: {a['note']}.", ""]
    if (vad.get("model") or {}) and "vad_mae" in doc.get("overall", {}):
        lines += [
            "The model's V/A/D errors here are against each annotator's reference (the other annotators' mean, "
            "averaged over the annotators), not against the records' combined labels that the Valence, arousal, "
            f"dominance section and the summary use ({number_text(doc['overall'].get('vad_mae'))} there): "
            "different references, so different figures.",
            "",
        ]
    rows = []
    for part, key, label in _AGREEMENT_ROWS:
        block = a.get(part) or {}
        if "annotators" not in block or key not in block["annotators"]:
            continue
        fmt = _pct if ("(%)" in label or "%)" in label) else number_text
        model = block.get("model", {}).get(key) if "model" in block else None
        rows.append([label, fmt(block["annotators"][key]), fmt(model) if "model" in block else "—"])
    return lines + _table(["Figure", "Annotators", "Model"], rows)


def _breakdown_section(doc: Mapping[str, Any]) -> list[str]:
    b = doc.get("breakdowns") or {}
    lines = ["## Breakdowns", ""]
    if not b:
        return lines + ["The records give no gender, age group or source database.", ""]
    has_vad = "vad_mae" in doc["overall"]
    has_th = doc.get("thresholds") is not None
    header = ["Group", "Persons", "mAP (%)", "Categories with AP"]
    if has_vad:
        header += [f"{d.capitalize()} MAE" for d in labels.VAD_NAMES] + ["CCC (mean)"]
    if has_th:
        header += ["F1 macro (%)"]
    shared = doc.get("breakdowns_shared") or {}
    header.insert(4, "mAP over shared categories (%)")
    lines += [
        "Every figure of each group is in `metrics.json` (`breakdowns`). A group's mAP averages the categories "
        "with a positive example in that group (their number is in the table): small groups lose rare "
        "categories, often the hardest, so their mAP can exceed the overall one without the model doing better "
        "on them (and a group's AP ranks its own persons only). The mAP over the categories every group of the table has compares the groups (and the "
        "overall figure, given above each table) over the same categories.",
        "",
    ]
    for col, groups in b.items():
        rows = []
        common = shared.get(col) or {}
        for group, f in groups.items():
            row = [
                group,
                str(f["num_persons"]),
                _pct(f.get("mAP")),
                str(f.get("num_categories_evaluated")),
                _pct((common.get("mAP") or {}).get(str(group))),
            ]
            if has_vad:
                row += [number_text(f.get(f"vad_mae/{d}")) for d in labels.VAD_NAMES] + [
                    number_text(f.get("vad_ccc"))
                ]
            if has_th:
                row += [_pct(f.get("f1_macro"), 1)]
            rows.append(row)
        lines += [f"### By {col}", ""]
        if common:
            lines += [
                f"Shared categories: {len(common['categories'])} of {labels.NUM_CATEGORIES}; overall mAP over them: "
                f"{_pct(common.get('overall_mAP'))}%.",
                "",
            ]
        lines += _table(header, rows)
    return lines


def markdown_report(doc: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The Markdown report of a metrics document; ``plots`` maps plot kinds to file names beside it."""
    o = doc["overall"]
    summary_header = ["Persons evaluated", "mAP (%)"]
    summary = [str(o["num_persons"]), _pct(o.get("mAP"))]
    if "vad_mae" in o:
        summary_header += ["V/A/D MAE (1-10 points)", "V/A/D CCC"]
        summary += [number_text(o.get("vad_mae")), number_text(o.get("vad_ccc"))]
    if doc.get("thresholds"):
        summary_header += ["F1 macro (%)", "F1 micro (%)"]
        summary += [_pct(o.get("f1_macro"), 1), _pct(o.get("f1_micro"), 1)]
    lines = [f"# Evaluation: {document_title(doc)}", ""]
    lines += _source_lines(doc)
    lines += _table(summary_header, [summary])
    lines += _category_section(doc, plots)
    lines += _vad_section(doc, plots)
    lines += _agreement_section(doc)
    lines += _faces_section(doc)
    lines += _breakdown_section(doc)
    return "\n".join(lines).rstrip() + "\n"


def _faces_section(doc: Mapping[str, Any]) -> list[str]:
    """EmoNet's figures for a model with a face stream: V/A CCC, PCC, RMSE, SAGR; expressions; annotators."""
    faces = doc.get("faces")
    if not faces:
        return []
    lines = [
        "## Faces: EmoNet's figures",
        "",
        f"{faces.get('face_present', '—')} of {faces.get('num_persons')} persons showed a face. Valence and "
        "arousal on 1-10 (RMSE in points; SAGR: same side of 5.5); the annotators' figures are each annotator "
        "against the others (leave-one-out, as in the agreement section), the model's against the same "
        "references.",
        "",
    ]
    agreement = (doc.get("agreement") or {}).get("vad") or {}
    rows = []
    sets = [("model, every person", (faces.get("valence_arousal") or {}).get("all"))]
    sets.append(("model, persons with a face", (faces.get("valence_arousal") or {}).get("with_face")))
    sets.append(("face alone (face-derived V/A)", faces.get("face_valence_arousal")))
    sets.append(("annotators vs the others", agreement.get("annotators")))
    sets.append(("model vs the same references", agreement.get("model")))
    for label, figures in sets:
        if not figures:
            continue
        for dim in ("valence", "arousal"):
            rows.append(
                [label, dim]
                + [number_text(figures.get(f"vad_{m}/{dim}")) for m in ("ccc", "pcc", "rmse")]
                + [_pct(figures.get(f"vad_sagr/{dim}"), 1)]
            )
    lines += _table(["Who", "Dimension", "CCC", "PCC", "RMSE", "SAGR (%)"], rows)
    expr = faces.get("expressions")
    if expr and "skipped" not in expr:
        lines += _table(
            ["Expressions: persons", "Accuracy (%)", "Macro-F1 (%)"],
            [
                [
                    str(expr.get("expression_n")),
                    _pct(expr.get("expression_accuracy"), 1),
                    _pct(expr.get("expression_f1_macro"), 1),
                ]
            ],
        )
    elif expr:
        lines += [f"Expressions: not scored ({expr['skipped']}).", ""]
    return lines


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """A few lines for a terminal: mAP, V/A/D errors, F1 and the agreement side by side."""
    o = doc["overall"]
    lines = [f"persons: {o['num_persons']}   mAP ({doc['ap_variant']}): {_pct(o.get('mAP'))}%"]
    if "vad_mae" in o:
        maes = "  ".join(f"{d}={number_text(o.get(f'vad_mae/{d}'), 2)}" for d in labels.VAD_NAMES)
        lines.append(f"V/A/D MAE (1-10 scale): {maes}   CCC mean: {number_text(o.get('vad_ccc'))}")
    if doc.get("thresholds"):
        lines.append(
            f"at the thresholds: F1 macro {_pct(o.get('f1_macro'), 1)}%  micro {_pct(o.get('f1_micro'), 1)}%"
        )
    a = doc.get("agreement") or {}
    if "skipped" not in a:
        cats, vad = a.get("categories", {}), a.get("vad", {})
        ann_f1 = (cats.get("annotators") or {}).get("category_f1_micro")
        mod_f1 = (cats.get("model") or {}).get("category_f1_micro")
        text = f"agreement with annotators ({cats.get('num_persons')} persons): F1 micro annotators {_pct(ann_f1, 1)}%"
        if "model" in cats:
            text += f" vs model {_pct(mod_f1, 1)}%"
        if vad.get("annotators"):
            text += f"; V/A/D MAE annotators {number_text(vad['annotators'].get('vad_mae'), 2)}"
            if vad.get("model"):
                text += f" vs model {number_text(vad['model'].get('vad_mae'), 2)}"
        lines.append(text)
    faces = doc.get("faces") or {}
    va = (faces.get("valence_arousal") or {}).get("all")
    if va:
        lines.append(
            "valence/arousal (EmoNet's figures): "
            + "  ".join(
                f"{d} CCC {number_text(va.get(f'vad_ccc/{d}'))} PCC {number_text(va.get(f'vad_pcc/{d}'))} "
                f"RMSE {number_text(va.get(f'vad_rmse/{d}'))} SAGR {_pct(va.get(f'vad_sagr/{d}'), 1)}%"
                for d in ("valence", "arousal")
            )
        )
    expr = faces.get("expressions") or {}
    if expr.get("expression_accuracy") is not None:
        lines.append(
            f"expressions: accuracy {_pct(expr['expression_accuracy'], 1)}%  macro-F1 "
            f"{_pct(expr['expression_f1_macro'], 1)}% ({expr['expression_n']} persons)"
        )
    return lines


_MOVED = {
    **{
        name: "emoctx.evaluation.evaluate"
        for name in (
            "METRICS_FILE",
            "REPORT_FILE",
            "PREDICTIONS_FILE",
            "AP_PLOT",
            "PR_PLOT",
            "VAD_PLOT",
            "Evaluation",
            "write_outputs",
            "evaluate_model",
            "evaluate_predictions",
            "load_thresholds",
        )
    },
    **{
        name: "emoctx.evaluation.document"
        for name in ("BREAKDOWN_COLUMNS", "DEFAULT_MIN_ANNOTATORS", "evaluation_document")
    },
    **{name: "emoctx.evaluation.plots" for name in ("plot_ap_bars", "plot_pr_curves", "plot_vad_scatter")},
    "file_sha256": "emoctx.io",
}

__getattr__ = moved(__name__, {name: (module, name) for name, module in _MOVED.items()})
