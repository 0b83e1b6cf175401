"""EMOTIC evaluation: average precision, V/A/D errors, decision thresholds and annotator agreement.

Everything is computed the way the literature reports it, and every figure says how it was computed:

* **Average precision** per category on the raw scores, then the mean over the categories (mAP, as a
  fraction in [0, 1]; reports may show percent). AP depends only on the order of the scores, so it ranks the
  model's raw outputs, never outputs squashed into 0-1: a clamp to [0, 1] (the score of a model trained with
  the authors' squared-error loss) ties every person at 0 or at 1, and a float32 sigmoid rounds large outputs
  to exactly 1.0; such ties change the AP. Training (:class:`EmotionMetrics`), ``emoctx evaluate`` and the
  reports all rank the raw outputs, so they give one mAP for one model and split. Two variants, chosen by
  name:

  - ``"sklearn"`` (default): step-wise AP without interpolation, identical to
    ``sklearn.metrics.average_precision_score``: ``sum_i (R_i - R_{i-1}) * P_i`` over the distinct score
    thresholds, highest first.
  - ``"voc"``: the all-point interpolated AP of PASCAL VOC used by the EMOTIC authors' MATLAB script: the
    precision envelope is made monotone (each precision replaced by the highest precision at any higher
    recall) and its area is summed at each change of recall. Without tied scores this is exactly the MATLAB
    computation; tied scores form one point of the curve here (order-independent), whereas the MATLAB
    script walks tied items in input order.

  A category without positive examples has no AP (NaN): it is left out of the mean and named in a
  warning; it is never counted as 0 or 1.
* **V/A/D** on the 1-10 scale, NaN targets meaning "missing": MAE, RMSE, Pearson correlation (PCC), Lin's
  concordance correlation (CCC) and sign agreement around the scale midpoint (SAGR), per dimension and
  averaged over the dimensions.
* **Thresholds** per category fitted on validation scores (``"f1"`` or ``"pr_equal"``) and precision /
  recall / F1 at given thresholds. A person is predicted positive when ``score >= threshold``.
* **Annotator agreement** (leave-one-out, as in EmoNet-style studies): each annotator is scored against the
  combined labels of the other annotators of the same person, and the model against the same references.
* **Expressions** (face models' discrete task, EmoNet's figures): accuracy and macro-F1 over one class per
  person (:func:`expression_metrics`); persons without an expression label (``-1``) are left out.

The package: :mod:`~emoctx.metrics.categories` (AP, mAP, thresholds), :mod:`~emoctx.metrics.vad`,
:mod:`~emoctx.metrics.expressions`, :mod:`~emoctx.metrics.figures` (all at once, and per group),
:mod:`~emoctx.metrics.agreement` and :mod:`~emoctx.metrics.accumulate` (:class:`EmotionMetrics`); every public
name is importable from here.

Functions that return arrays use NaN for undefined values; functions that return dicts return plain,
JSON-serialisable dicts with flat keys (``mAP``, ``ap/<slug>``, ``vad_mae/<dim>``...) and ``None`` for
undefined values. :class:`EmotionMetrics` accumulates the same figures inside a LightningModule.
"""

from emoctx.metrics.accumulate import EmotionMetrics
from emoctx.metrics.agreement import agreement_from_records, annotator_agreement
from emoctx.metrics.categories import (
    AP_VARIANTS,
    THRESHOLD_RULES,
    average_precision,
    fit_threshold,
    fit_thresholds,
    mean_average_precision,
    per_category_ap,
    precision_recall_curve,
    precision_recall_f1_at,
)
from emoctx.metrics.expressions import expression_metrics
from emoctx.metrics.figures import breakdown, evaluate_arrays
from emoctx.metrics.vad import (
    VAD_METRICS,
    concordance_correlation,
    pearson_correlation,
    sign_agreement,
    vad_metrics,
)

__all__ = [
    "AP_VARIANTS",
    "THRESHOLD_RULES",
    "VAD_METRICS",
    "EmotionMetrics",
    "agreement_from_records",
    "annotator_agreement",
    "average_precision",
    "breakdown",
    "concordance_correlation",
    "evaluate_arrays",
    "expression_metrics",
    "fit_threshold",
    "fit_thresholds",
    "mean_average_precision",
    "pearson_correlation",
    "per_category_ap",
    "precision_recall_curve",
    "precision_recall_f1_at",
    "sign_agreement",
    "vad_metrics",
]
