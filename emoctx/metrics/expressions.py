"""Discrete expressions (face models' task, EmoNet's figures): accuracy and macro-F1 over one class per person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emoctx.labels import EXPRESSIONS, slugify
from emoctx.metrics.inputs import as_array


def expression_metrics(pred: Any, true: Any, names: Sequence[str] = EXPRESSIONS) -> dict[str, Any]:
    """Accuracy and macro-F1 of discrete expressions, as EmoNet reports them.

    Written with numpy (scikit-learn is only a development dependency); the macro-F1 is scikit-learn's
    ``f1_score(average="macro")``: the mean F1 over the classes that occur in the labels or the predictions,
    a class never predicted counting 0.

    Args:
        pred: ``(N, E)`` scores or logits (the highest is the prediction) or ``(N,)`` predicted class indices.
        true: ``(N,)`` class indices; ``-1`` marks a person without a label (left out).
        names: the class names (default :data:`emoctx.labels.EXPRESSIONS`).

    Returns:
        ``expression_accuracy``, ``expression_f1_macro``, ``expression_f1/<name>`` (None for a class that
        occurs in neither) and ``expression_n`` (persons scored); None figures when nobody is labelled.
    """
    names = tuple(names)
    p = as_array(pred, "expression_pred")
    t = as_array(true, "expression_true")
    if p.ndim == 2:
        if p.shape[1] != len(names):
            raise ValueError(f"expression_pred: expected shape (N, {len(names)}), got {p.shape}")
        p = p.argmax(axis=1)
    if p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"expression_pred/true: expected (N,) classes each, got {p.shape} and {t.shape}")
    labelled = t != -1
    p, t = p[labelled].astype(np.int64), t[labelled].astype(np.int64)
    if ((t < 0) | (t >= len(names))).any() or ((p < 0) | (p >= len(names))).any():
        raise ValueError(f"expression classes must be in 0..{len(names) - 1} (or -1 for none)")
    out: dict[str, Any] = {"expression_n": int(t.size)}
    if t.size == 0:
        out.update(expression_accuracy=None, expression_f1_macro=None)
        out.update({f"expression_f1/{slugify(n)}": None for n in names})
        return out
    per: list[float] = []
    for k, name in enumerate(names):
        tp = int(((p == k) & (t == k)).sum())
        predicted, actual = int((p == k).sum()), int((t == k).sum())
        if predicted + actual == 0:
            out[f"expression_f1/{slugify(name)}"] = None
            continue
        f1 = 2.0 * tp / (predicted + actual)
        out[f"expression_f1/{slugify(name)}"] = f1
        per.append(f1)
    out["expression_accuracy"] = float(np.mean(p == t))
    out["expression_f1_macro"] = float(np.mean(per))
    return out
