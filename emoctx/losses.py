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
* ``ccc``: ``1 - CCC`` per dimension (Lin's concordance correlation between the predictions and the ratings of
  the batch), summed over the dimensions: the loss of the affect literature, which measures agreement by CCC
  (EmoNet among them). A batch statistic: ``reduction`` does not apply, and it does not depend on ``scale``
  (CCC is the same in points and on the internal scale); a dimension with fewer than two ratings in the batch
  adds 0.
* ``emonet``: EmoNet's regression loss (Toisoul et al., 2021): squared error + ``(1 - PCC)`` + ``(1 - CCC)``,
  per dimension, summed. With ``combine="shake"`` each of the three terms gets its own coefficient drawn
  uniformly in [0, 1] at every training step (their shake-shake regularisation of the regression terms).

Expressions (an auxiliary discrete task of face models, after EmoNet): :func:`expression_loss`, the
cross-entropy of the expression logits against one class per person (``-1``: none, left out).

:class:`EmotionLoss` combines the tasks with fixed weights, or with a random convex mix per training step
("shake": for the categories and V/A/D, ``a`` and ``1 - a`` with ``a ~ U(0, 1)``; with the expression task,
weights drawn uniformly over the simplex of the tasks whose fixed weight is not 0).
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


def _ccc_pcc(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per dimension: Lin's CCC and Pearson's r over the rated persons (population moments), and whether defined.

    A dimension is defined with at least two ratings; its values are 0 otherwise (and where a variance is 0,
    the correlation is 0). Differentiable in ``pred``.
    """
    w = mask.float()
    pred = torch.where(mask, pred, torch.zeros_like(pred))  # a prediction where no rating is, is not read
    target = torch.where(mask, target, torch.zeros_like(target))
    n = w.sum(dim=0)
    defined = n >= 2
    n = n.clamp(min=1.0)
    mp = (w * pred).sum(dim=0) / n
    mt = (w * target).sum(dim=0) / n
    dp, dt = (pred - mp) * w, (target - mt) * w
    vp, vt = (dp**2).sum(dim=0) / n, (dt**2).sum(dim=0) / n
    cov = (dp * dt).sum(dim=0) / n
    eps = torch.finfo(torch.float32).eps
    ccc = 2.0 * cov / (vp + vt + (mp - mt) ** 2).clamp(min=eps)
    pcc = cov / (vp * vt).clamp(min=eps).sqrt()
    zero = torch.zeros_like(ccc)
    return torch.where(defined, ccc, zero), torch.where(defined, pcc, zero), defined


def ccc_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    scale: str = "0-1",
) -> torch.Tensor:
    """``sum_d (1 - CCC_d)`` over the batch's rated persons (see the module docstring).

    ``reduction`` and ``scale`` are checked and otherwise not used: CCC is computed over the batch and does not
    change with the scale.
    """
    _check_option("reduction", reduction, REDUCTIONS)
    _scale_factor(scale)
    pred, target, mask = _masked(pred, target, mask)
    ccc, _, defined = _ccc_pcc(pred, target, mask)
    return torch.where(defined, 1.0 - ccc, torch.zeros_like(ccc)).sum()


def emonet_continuous_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    scale: str = "0-1",
    coefficients: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """EmoNet's ``a * MSE + b * (1 - PCC) + c * (1 - CCC)``, each summed over the dimensions.

    The squared error follows ``reduction`` and ``scale`` as :func:`l2_continuous_loss`; the correlations are
    batch statistics. ``coefficients`` are ``(a, b, c)`` (shake-shake draws them in training).
    """
    mse = l2_continuous_loss(pred, target, mask, reduction=reduction, scale=scale)
    pred, target, mask = _masked(pred, target, mask)
    ccc, pcc, defined = _ccc_pcc(pred, target, mask)
    zero = torch.zeros_like(ccc)
    k = torch.as_tensor(coefficients, dtype=torch.float32, device=pred.device)
    one_minus_pcc = torch.where(defined, 1.0 - pcc, zero).sum()
    one_minus_ccc = torch.where(defined, 1.0 - ccc, zero).sum()
    return k[0] * mse + k[1] * one_minus_pcc + k[2] * one_minus_ccc


NO_EXPRESSION = -1
"""The expression target of a person without an expression label (left out of :func:`expression_loss`)."""


def expression_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of expression logits ``[B, E]`` against class indices ``[B]`` (``-1``: no label, left out).

    ``"mean"`` averages over the labelled persons (0 when there are none, not NaN), ``"sum"`` adds them up.
    """
    _check_option("reduction", reduction, REDUCTIONS)
    target = target.long()
    labelled = target != NO_EXPRESSION
    err = F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
    err = torch.where(labelled, err, torch.zeros_like(err))
    if reduction == "sum":
        return err.sum()
    return err.sum() / labelled.sum().clamp(min=1)


DISCRETE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "emotic": emotic_discrete_loss,
    "bce": bce_discrete_loss,
}
CONTINUOUS_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "deadzone": deadzone_continuous_loss,
    "smoothl1": smoothl1_continuous_loss,
    "l1": l1_continuous_loss,
    "l2": l2_continuous_loss,
    "ccc": ccc_continuous_loss,
    "emonet": emonet_continuous_loss,
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
        expression_weight: Fixed weight of the expression cross-entropy (:func:`expression_loss`); 0 (default)
            leaves the task out. With it, :meth:`forward` needs the expression logits and targets.
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
        expression_weight: float = 0.0,
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
        if not float(expression_weight) >= 0.0:
            raise EmoctxError(
                f"loss: 'expression_weight' must be a non-negative number, got {expression_weight}"
            )
        self.expression_weight = float(expression_weight)
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
        expression_logits: torch.Tensor | None = None,
        expression_target: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute the joint loss.

        Args:
            logits: Category outputs ``[B, C]``.
            vad: V/A/D predictions ``[B, 3]`` (internal 0-1 scale).
            categories: Multi-hot targets ``[B, C]``.
            vad_target: V/A/D targets ``[B, 3]`` (internal scale; NaN where missing).
            vad_mask: ``[B, 3]``, True where a rating is present; ``None`` derives it from NaN.
            expression_logits: Expression outputs ``[B, E]`` (needed when ``expression_weight > 0``).
            expression_target: Expression class per person ``[B]`` (``-1``: none).

        Returns:
            ``{"loss", "discrete", "continuous"}`` scalar tensors, and ``"expression"`` with that task.
        """
        discrete = DISCRETE_LOSSES[self.discrete](
            logits, categories, self.category_weights(categories), reduction=self.reduction
        )
        shaking = self.combine == "shake" and self.training
        options = {}
        if self.continuous == "emonet" and shaking:
            options["coefficients"] = torch.rand(3, device=vad.device)
        continuous = CONTINUOUS_LOSSES[self.continuous](
            vad, vad_target, vad_mask, reduction=self.reduction, scale=self.continuous_scale, **options
        )
        out = {"discrete": discrete, "continuous": continuous}
        if self.expression_weight > 0:
            if expression_logits is None or expression_target is None:
                raise EmoctxError(
                    "loss: the expression task is on (expression_weight > 0) but no expression logits or targets "
                    "were given; the network needs 'expressions' configured"
                )
            out["expression"] = expression_loss(
                expression_logits, expression_target, reduction=self.reduction
            )
            terms = [
                (self.weights[0], discrete),
                (self.weights[1], continuous),
                (self.expression_weight, out["expression"]),
            ]
            if shaking:
                kept = [value for weight, value in terms if weight > 0]
                mix = -torch.log(torch.rand(len(kept), device=discrete.device).clamp(min=1e-12))
                mix = mix / mix.sum()  # uniform over the simplex (a Dirichlet(1, ..., 1) draw)
                loss = sum(m * value for m, value in zip(mix, kept))
            else:
                loss = sum(weight * value for weight, value in terms)
        elif shaking:
            alpha = torch.rand((), device=discrete.device)
            loss = alpha * discrete + (1.0 - alpha) * continuous
        else:
            loss = self.weights[0] * discrete + self.weights[1] * continuous
        return {"loss": loss, **out}

    def extra_repr(self) -> str:
        """The options, shown when the module is printed."""
        return (
            f"discrete={self.discrete}, continuous={self.continuous}, discrete_weights={self.discrete_weights}, "
            f"combine={self.combine}, weights={self.weights}, reduction={self.reduction}, "
            f"continuous_scale={self.continuous_scale}, expression_weight={self.expression_weight}"
        )


# Names that moved: scores_from_logits went to emoctx.models.outputs (with the model's other post-processing).
__getattr__ = moved(
    __name__,
    {
        "scores_from_logits": ("emoctx.models.outputs", "scores_from_logits"),
        "SCORE_ACTIVATIONS": (__name__, "SCORE_ACTIVATION_OF_LOSS"),
    },
)
