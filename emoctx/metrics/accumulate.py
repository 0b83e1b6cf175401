"""The same figures accumulated batch by batch inside a LightningModule (a ``torchmetrics.Metric``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

from emoctx.labels import VAD_NAMES
from emoctx.metrics.categories import AP_VARIANTS, mean_average_precision
from emoctx.metrics.expressions import expression_metrics
from emoctx.metrics.inputs import names_and_slugs
from emoctx.metrics.vad import VAD_METRICS, vad_metrics

log = logging.getLogger(__name__)


class EmotionMetrics(torchmetrics.Metric):
    """mAP, per-category AP and V/A/D errors accumulated over the steps of one stage (one instance per stage).

    States are concatenated across processes (``dist_reduce_fx="cat"``), so the figures are those of the
    whole validation/test set under DDP. :meth:`compute` runs :func:`evaluate_arrays` on CPU in float64 on
    the raw outputs it is given (the training module passes the network's raw category outputs), so the
    numbers equal those of ``emoctx evaluate`` on the same model and split when the network ran in the same
    arithmetic (``emoctx evaluate`` runs fp32: a run trained with ``bf16-mixed`` computes its validation and
    test figures in bf16, a little apart). ``num_persons`` counts the persons scored.

    Example:
        >>> m = EmotionMetrics()
        >>> m.update(scores, targets, vad_pred, vad_true)   # doctest: +SKIP
        >>> m.compute()["mAP"]                              # doctest: +SKIP
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self, ap_variant: str = "sklearn", names: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        """Create the metric.

        Args:
            ap_variant: ``"sklearn"`` or ``"voc"``.
            names: category names of the score columns; default :data:`emoctx.labels.CATEGORIES`.
            **kwargs: passed to :class:`torchmetrics.Metric`.
        """
        super().__init__(**kwargs)
        if ap_variant not in AP_VARIANTS:
            raise ValueError(f"unknown AP variant {ap_variant!r}; choose one of {AP_VARIANTS}")
        self.ap_variant = ap_variant
        self.names, self.slugs = names_and_slugs(names)
        for state in ("scores", "targets", "vad_pred", "vad_true", "expression_pred", "expression_true"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        vad_pred: torch.Tensor | None = None,
        vad_true: torch.Tensor | None = None,
        vad_mask: torch.Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            scores: (B, C) category scores (logits or probabilities: AP only uses their order).
            targets: (B, C) 0/1 labels.
            vad_pred: optional (B, 3) predictions on the 1-10 scale (use :func:`emoctx.labels.vad_from_model`).
            vad_true: optional (B, 3) targets on the 1-10 scale, NaN where missing.
            vad_mask: optional (B, 3) or (B,) booleans, False where the target is missing.
        """
        if scores.ndim != 2 or scores.shape[1] != len(self.names) or targets.shape != scores.shape:
            raise ValueError(
                f"scores/targets: expected two (B, {len(self.names)}) tensors, got "
                f"{tuple(scores.shape)} and {tuple(targets.shape)}"
            )
        self.scores.append(scores.detach().float())
        self.targets.append(targets.detach().float())
        if vad_pred is not None and vad_true is not None:
            vt = vad_true.detach().float()
            if vad_mask is not None:
                m = vad_mask.detach().bool()
                vt = vt.masked_fill(~(m[:, None] if m.ndim == 1 else m), math.nan)
            self.vad_pred.append(vad_pred.detach().float())
            self.vad_true.append(vt)

    def update_expressions(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of expression outputs ``(B, E)`` and class indices ``(B,)`` (``-1``: none)."""
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"expressions: expected (B, E) logits and (B,) targets, got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}"
            )
        self.expression_pred.append(logits.detach().argmax(dim=1))
        self.expression_true.append(target.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        """Flat dict: ``mAP``, ``num_persons``, ``ap/<slug>``, ``vad_<metric>`` and ``vad_<metric>/<dim>``.

        With expressions (:meth:`update_expressions`), also ``expression_accuracy`` and ``expression_f1_macro``.

        Categories without positives are left out of the dict and of ``mAP`` (with a warning); so are
        undefined V/A/D figures. Empty when nothing was accumulated.
        """
        if isinstance(self.scores, list) and not self.scores:
            return {}
        s, t = dim_zero_cat(self.scores), dim_zero_cat(self.targets)
        has_vad = isinstance(self.vad_pred, torch.Tensor) or len(self.vad_pred) > 0
        vp = dim_zero_cat(self.vad_pred) if has_vad else None
        vt = dim_zero_cat(self.vad_true) if has_vad else None
        figures = mean_average_precision(s, t, self.ap_variant, self.names)
        figures["num_persons"] = int(s.shape[0])
        if has_vad:
            figures.update(vad_metrics(vp, vt))
        keys = ["mAP", "num_persons", *(f"ap/{slug}" for slug in self.slugs)]
        if has_vad:
            keys += [
                f"vad_{m}{suffix}" for m in VAD_METRICS for suffix in ("", *(f"/{d}" for d in VAD_NAMES))
            ]
        has_expressions = isinstance(self.expression_pred, torch.Tensor) or len(self.expression_pred) > 0
        if has_expressions:
            ep, et = dim_zero_cat(self.expression_pred), dim_zero_cat(self.expression_true)
            classes = int(torch.cat([ep, et]).max()) + 1 if ep.numel() else 1  # F1 only counts classes seen
            figures.update(expression_metrics(ep, et, names=[str(k) for k in range(max(classes, 1))]))
            keys += ["expression_accuracy", "expression_f1_macro"]
        return {
            k: torch.tensor(figures[k], dtype=torch.float32, device=self.device)
            for k in keys
            if figures.get(k) is not None
        }
