"""Losses for the emotion categories and the three V/A/D dimensions. All stateless and device-agnostic.

Predictions and targets come on the model's internal scales: categories as multi-hot 0/1 vectors, V/A/D on 0-1
(:func:`emoctx.labels.vad_to_model`). Every loss sums over its dimensions; V/A/D losses are masked (a missing
rating contributes nothing, and a batch without any rating gives 0, not NaN). Computation is in float32 whatever
the input precision. Two options change the size of the loss, and with it what a learning rate means:

* ``reduction``: ``"mean"`` (default) averages over the persons of the batch; ``"sum"`` adds them up, as the
  common PyTorch EMOTIC baseline does (its losses end in ``loss.sum()``). At batch size B the summed loss and its
  gradients are B times the mean.
* ``scale`` of the V/A/D losses: ``"0-1"`` (default) compares on the internal scale; ``"1-10"`` compares in points
  of the annotation scale, as the baseline's ``cont_loss(pred_cont * 10, labels_cont * 10)`` does. The margin (dead
  zone, SmoothL1 ``beta``) is one point on either scale. Differences are 9 times larger in points, so a squared
  error is 81 times larger and a SmoothL1 or L1 error 9 times.

Discrete:

* ``emotic``: ``sum_i w_i (yhat_i - y_i)^2`` on linear outputs (Kosti et al.), ``w_i = 1 / ln(1.2 + n_i)`` with
  ``n_i`` the positives of category i in the batch or the training set, and ``w_i = 0.0001`` where ``n_i = 0``.
* ``bce``: binary cross-entropy on logits, optionally weighted per category the same way.

Continuous:

* ``deadzone``: squared error, ignored where ``|yhat - y|`` is under one point of the 1-10 scale (Kosti et al.).
* ``smoothl1`` (Huber with its quadratic zone one scale point wide), ``l1``, ``l2``.

:class:`EmotionLoss` combines both with fixed weights, or with a random convex mix per training step ("shake").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emoctx.deprecation import moved
from emoctx.errors import EmoctxError
from emoctx.labels import NUM_CATEGORIES, VAD_RANGE, vad_points_to_model

DEAD_ZONE: float = vad_points_to_model(1.0)
"""One point of the 1-10 scale on the internal 0-1 scale: the dead zone of the ``deadzone`` loss."""

EMPTY_CATEGORY_WEIGHT: float = 1e-4
"""The weight of a category without positives in the ``emotic`` weighting."""

REDUCTIONS: tuple[str, ...] = ("mean", "sum")
"""How a loss combines the persons of a batch: their mean (default) or their sum (the common PyTorch baseline)."""

CONTINUOUS_SCALES: dict[str, float] = {"0-1": 1.0, "1-10": VAD_RANGE}
"""Where V/A/D losses compare: on the internal 0-1 scale, or in points of the 1-10 scale (differences x 9)."""


def emotic_category_weights(
    counts: torch.Tensor, empty_weight: float = EMPTY_CATEGORY_WEIGHT
) -> torch.Tensor:
    """Per-category weights ``1 / ln(1.2 + n_i)``, and ``empty_weight`` where ``n_i == 0``.

    Args:
        counts: Positives per category ``[C]`` (batch or training-set counts).
        empty_weight: Weight of categories without positives.

    Returns:
        Float weights ``[C]`` on the device of ``counts``.
    """
    counts = counts.float()
    weights = 1.0 / torch.log(counts + 1.2)
    return torch.where(counts == 0, torch.full_like(weights, empty_weight), weights)


def _check_option(kind: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise EmoctxError(f"loss: unknown {kind} '{value}'; choose one of {', '.join(options)}")
    return value


def _reduce_persons(per_person: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean or sum of per-person losses ``[B]``."""
    if _check_option("reduction", reduction, REDUCTIONS) == "sum":
        return per_person.sum()
    # An empty batch gives a zero that still depends on the inputs (keeps the graph valid), not NaN.
    return per_person.mean() if per_person.numel() else per_person.sum()


def emotic_discrete_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """The EMOTIC weighted squared error ``sum_i w_i (pred_i - y_i)^2`` per person, averaged (or summed) over the batch.

    Args:
        pred: Linear category outputs ``[B, C]``.
        target: Multi-hot targets ``[B, C]``.
        weights: Per-category weights ``[C]`` (or ``[B, C]``); ``None`` weighs every category 1.
        reduction: ``"mean"`` or ``"sum"`` over the persons of the batch.
    """
    err = (pred.float() - target.float()) ** 2
    if weights is not None:
        err = err * weights.to(err.dtype)
    return _reduce_persons(err.sum(dim=1), reduction)


def bce_discrete_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy on logits, summed over categories (optionally weighted), averaged (or summed) over the batch.

    Args:
        logits: Raw category scores ``[B, C]``.
        target: Multi-hot targets ``[B, C]``.
        weights: Per-category weights ``[C]`` (or ``[B, C]``); ``None`` weighs every category 1.
        reduction: ``"mean"`` or ``"sum"`` over the persons of the batch.
    """
    err = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if weights is not None:
        err = err * weights.to(err.dtype)
    return _reduce_persons(err.sum(dim=1), reduction)


def _masked(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 ``pred``, ``target`` with missing entries replaced by ``pred`` (zero error), and the mask."""
    pred, target = pred.float(), target.float()
    present = ~torch.isnan(target)
    mask = present if mask is None else mask.bool() & present
    # Filling with pred.detach() rather than multiplying afterwards keeps NaN out of both values and gradients.
    target = torch.where(mask, target, pred.detach())
    return pred, target, mask


def _reduce_masked(err: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sum over dimensions; mean over the persons with at least one rating (0 when there are none), or sum."""
    err = torch.where(mask, err, torch.zeros_like(err))
    if _check_option("reduction", reduction, REDUCTIONS) == "sum":
        return err.sum()
    persons = mask.any(dim=1).sum().clamp(min=1)
    return err.sum() / persons


def _scale_factor(scale: str) -> float:
    """What V/A/D differences are multiplied by on ``scale`` (1 on the internal scale, 9 in points)."""
    return CONTINUOUS_SCALES[_check_option("continuous scale", scale, list(CONTINUOUS_SCALES))]


def deadzone_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    margin: float = DEAD_ZONE,
    reduction: str = "mean",
    scale: str = "0-1",
) -> torch.Tensor:
    """Squared error ignored where ``|pred - target| < margin`` (one scale point by default), masked.

    With ``scale="1-10"`` and ``reduction="sum"`` this is the baseline's ``ContinuousLoss_L2`` (margin 1) applied
    to ``pred * 10, labels * 10``.

    Args:
        pred: V/A/D predictions ``[B, 3]`` on the internal 0-1 scale.
        target: V/A/D targets ``[B, 3]`` on the internal scale; NaN where missing.
        mask: ``[B, 3]``, True where the rating is present (combined with ``~isnan(target)``).
        margin: The dead zone on the internal scale (converted to points with ``scale="1-10"``).
        reduction: ``"mean"`` or ``"sum"`` over the persons of the batch.
        scale: ``"0-1"`` (internal) or ``"1-10"`` (points) for the compared differences.
    """
    pred, target, mask = _masked(pred, target, mask)
    k = _scale_factor(scale)
    diff = (pred - target) * k
    err = torch.where(diff.abs() < margin * k, torch.zeros_like(diff), diff**2)
    return _reduce_masked(err, mask, reduction)


def smoothl1_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    beta: float = DEAD_ZONE,
    reduction: str = "mean",
    scale: str = "0-1",
) -> torch.Tensor:
    """Smooth L1 (Huber) error, quadratic within ``beta`` (one scale point by default), masked like the others.

    With ``scale="1-10"`` and ``reduction="sum"`` this is the baseline's ``ContinuousLoss_SL1`` (margin 1, which
    is SmoothL1 with ``beta`` one point) applied to ``pred * 10, labels * 10``.
    """
    pred, target, mask = _masked(pred, target, mask)
    k = _scale_factor(scale)
    err = F.smooth_l1_loss(pred * k, target * k, reduction="none", beta=beta * k)
    return _reduce_masked(err, mask, reduction)


def l1_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    scale: str = "0-1",
) -> torch.Tensor:
    """Absolute error, masked."""
    pred, target, mask = _masked(pred, target, mask)
    return _reduce_masked(((pred - target) * _scale_factor(scale)).abs(), mask, reduction)


def l2_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    scale: str = "0-1",
) -> torch.Tensor:
    """Squared error, masked."""
    pred, target, mask = _masked(pred, target, mask)
    return _reduce_masked(((pred - target) * _scale_factor(scale)) ** 2, mask, reduction)


DISCRETE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "emotic": emotic_discrete_loss,
    "bce": bce_discrete_loss,
}
CONTINUOUS_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "deadzone": deadzone_continuous_loss,
    "smoothl1": smoothl1_continuous_loss,
    "l1": l1_continuous_loss,
    "l2": l2_continuous_loss,
}
DISCRETE_WEIGHTS: tuple[str, ...] = ("batch", "dataset", "none")
COMBINES: tuple[str, ...] = ("fixed", "shake")
SCORE_ACTIVATION_OF_LOSS: dict[str, str] = {"emotic": "clamp", "bce": "sigmoid"}
"""The score activation (:data:`emoctx.models.outputs.SCORE_ACTIVATIONS`) that fits each discrete loss."""


def _choose(kind: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        close = difflib.get_close_matches(str(value), list(options), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise EmoctxError(f"loss: unknown {kind} '{value}'{hint}; choose one of {', '.join(options)}")
    return value


class EmotionLoss(nn.Module):
    """The joint category + V/A/D loss.

    Args:
        discrete: ``"emotic"`` (weighted squared error on linear outputs) or ``"bce"``.
        continuous: ``"deadzone"``, ``"smoothl1"``, ``"l1"`` or ``"l2"``.
        discrete_weights: Per-category weights: ``"batch"`` (``1/ln(1.2+n)`` from each batch's targets),
            ``"dataset"`` (the same from ``category_counts``) or ``"none"``. Default: ``"batch"`` for ``emotic``,
            ``"none"`` for ``bce``.
        category_counts: Training-set positives per category ``[NUM_CATEGORIES]``; required for ``"dataset"``.
            Kept as a non-persistent buffer (follows ``.to(device)``, not saved in state dicts).
        combine: ``"fixed"`` (``w_d * L_d + w_c * L_c``) or ``"shake"`` (in training, ``a * L_d + (1 - a) * L_c``
            with a fresh ``a ~ U(0, 1)`` per call; in eval, the fixed weights).
        weights: ``(w_d, w_c)`` for the fixed combination.
        reduction: ``"mean"`` (default) or ``"sum"`` over the persons of a batch, for both tasks.
        continuous_scale: ``"0-1"`` (default) or ``"1-10"``: where the V/A/D loss compares (see the module
            docstring). ``reduction="sum"`` with ``continuous_scale="1-10"`` is the common PyTorch baseline's
            recipe.
    """

    def __init__(
        self,
        discrete: str = "emotic",
        continuous: str = "deadzone",
        discrete_weights: str | None = None,
        category_counts: torch.Tensor | Sequence[float] | None = None,
        combine: str = "fixed",
        weights: Sequence[float] = (0.5, 0.5),
        reduction: str = "mean",
        continuous_scale: str = "0-1",
    ) -> None:
        super().__init__()
        self.discrete = _choose("discrete loss", discrete, list(DISCRETE_LOSSES))
        self.reduction = _choose("reduction", reduction, REDUCTIONS)
        self.continuous_scale = _choose("continuous scale", continuous_scale, list(CONTINUOUS_SCALES))
        self.continuous = _choose("continuous loss", continuous, list(CONTINUOUS_LOSSES))
        if discrete_weights is None:
            discrete_weights = "batch" if discrete == "emotic" else "none"
        self.discrete_weights = _choose("discrete weighting", discrete_weights, DISCRETE_WEIGHTS)
        self.combine = _choose("combination", combine, COMBINES)
        if len(weights) != 2 or any(float(w) < 0 for w in weights):
            raise EmoctxError(
                f"loss: 'weights' must be two non-negative numbers (discrete, continuous), got {weights}"
            )
        self.weights = (float(weights[0]), float(weights[1]))
        if self.discrete_weights == "dataset":
            if category_counts is None:
                raise EmoctxError("loss: discrete_weights='dataset' needs the training-set 'category_counts'")
            counts = torch.as_tensor(category_counts, dtype=torch.float32).detach().clone()
            if (
                counts.shape != (NUM_CATEGORIES,)
                or bool((counts < 0).any())
                or not bool(counts.isfinite().all())
            ):
                raise EmoctxError(
                    f"loss: 'category_counts' must hold {NUM_CATEGORIES} non-negative counts, got shape "
                    f"{tuple(counts.shape)}"
                )
            self.register_buffer("category_counts", counts, persistent=False)
        elif category_counts is not None:
            raise EmoctxError(
                f"loss: 'category_counts' is only used with discrete_weights='dataset' (got '{self.discrete_weights}')"
            )
        else:
            self.register_buffer("category_counts", None, persistent=False)

    @property
    def score_activation(self) -> str:
        """How to turn this loss's category outputs into 0-1 scores: ``"sigmoid"`` (bce) or ``"clamp"`` (emotic)."""
        return SCORE_ACTIVATION_OF_LOSS[self.discrete]

    def category_weights(self, target: torch.Tensor) -> torch.Tensor | None:
        """The per-category weights for a batch of multi-hot targets ``[B, C]`` (``None`` for ``"none"``)."""
        if self.discrete_weights == "batch":
            return emotic_category_weights(target.detach().float().sum(dim=0))
        if self.discrete_weights == "dataset":
            return emotic_category_weights(self.category_counts)
        return None

    def forward(
        self,
        logits: torch.Tensor,
        vad: torch.Tensor,
        categories: torch.Tensor,
        vad_target: torch.Tensor,
        vad_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute the joint loss.

        Args:
            logits: Category outputs ``[B, C]``.
            vad: V/A/D predictions ``[B, 3]`` (internal 0-1 scale).
            categories: Multi-hot targets ``[B, C]``.
            vad_target: V/A/D targets ``[B, 3]`` (internal scale; NaN where missing).
            vad_mask: ``[B, 3]``, True where a rating is present; ``None`` derives it from NaN.

        Returns:
            ``{"loss", "discrete", "continuous"}`` scalar tensors.
        """
        discrete = DISCRETE_LOSSES[self.discrete](
            logits, categories, self.category_weights(categories), reduction=self.reduction
        )
        continuous = CONTINUOUS_LOSSES[self.continuous](
            vad, vad_target, vad_mask, reduction=self.reduction, scale=self.continuous_scale
        )
        if self.combine == "shake" and self.training:
            alpha = torch.rand((), device=discrete.device)
            loss = alpha * discrete + (1.0 - alpha) * continuous
        else:
            loss = self.weights[0] * discrete + self.weights[1] * continuous
        return {"loss": loss, "discrete": discrete, "continuous": continuous}

    def extra_repr(self) -> str:
        """The options, shown when the module is printed."""
        return (
            f"discrete={self.discrete}, continuous={self.continuous}, discrete_weights={self.discrete_weights}, "
            f"combine={self.combine}, weights={self.weights}, reduction={self.reduction}, "
            f"continuous_scale={self.continuous_scale}"
        )


# Names that moved: scores_from_logits went to emoctx.models.outputs (with the model's other post-processing).
__getattr__ = moved(
    __name__,
    {
        "scores_from_logits": ("emoctx.models.outputs", "scores_from_logits"),
        "SCORE_ACTIVATIONS": (__name__, "SCORE_ACTIVATION_OF_LOSS"),
    },
)
