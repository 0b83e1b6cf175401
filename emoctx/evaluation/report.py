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
    return lines + [""]


def _category_section(doc: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    o = doc["overall"]
    th = (doc.get("thresholds") or {}).get("values")
    header = ["Category", "Positives", "AP (%)"]
    if th:
        header += ["Threshold", "Precision (%)", "Recall (%)", "F1 (%)"]
    rows = []
    for name, slug in zip(labels.CATEGORIES, labels.SLUGS):
        row = [name, str(doc["positives"][slug]), _pct(o.get(f"ap/{slug}"))]
        if th:
            t = th.get(slug)
            row += [
                "never" if t is None else f"{t:.3f}",
                _pct(o.get(f"precision/{slug}"), 1),
                _pct(o.get(f"recall/{slug}"), 1),
                _pct(o.get(f"f1/{slug}"), 1),
            ]
        rows.append(row)
    mean = ["**mean**", "", f"**{_pct(o.get('mAP'))}**"]
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
        f"On the {labels.VAD_MIN:g}-{labels.VAD_MAX:g} scale; SAGR = sign agreement around {labels.VAD_MID:g}.",
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
    lines += ["Every figure of each group is in `metrics.json` (`breakdowns`).", ""]
    for col, groups in b.items():
        rows = []
        for group, f in groups.items():
            row = [group, str(f["num_persons"]), _pct(f.get("mAP")), str(f.get("num_categories_evaluated"))]
            if has_vad:
                row += [number_text(f.get(f"vad_mae/{d}")) for d in labels.VAD_NAMES] + [
                    number_text(f.get("vad_ccc"))
                ]
            if has_th:
                row += [_pct(f.get("f1_macro"), 1)]
            rows.append(row)
        lines += [f"### By {col}", ""] + _table(header, rows)
    return lines


def markdown_report(doc: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The Markdown report of a metrics document; ``plots`` maps plot kinds to file names beside it."""
    o = doc["overall"]
    summary_header = ["Persons evaluated", "mAP (%)"]
    summary = [str(o["num_persons"]), _pct(o.get("mAP"))]
    if "vad_mae" in o:
        summary_header += ["V/A/D MAE", "V/A/D CCC"]
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
    lines += _breakdown_section(doc)
    return "\n".join(lines).rstrip() + "\n"


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
