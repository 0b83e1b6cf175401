"""Metrics: AP/mAP against scikit-learn, VOC AP by hand, V/A/D against numpy/scipy, thresholds, agreement."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score
from torchmetrics.functional.classification import multilabel_average_precision

from emoctx import labels
from emoctx.metrics import (
    EmotionMetrics,
    agreement_from_records,
    annotator_agreement,
    average_precision,
    breakdown,
    concordance_correlation,
    evaluate_arrays,
    fit_threshold,
    fit_thresholds,
    mean_average_precision,
    per_category_ap,
    precision_recall_f1_at,
    vad_metrics,
)

C = labels.NUM_CATEGORIES


def _random_case(rng: np.random.Generator, n: int = 300, ties: bool = False):
    scores = rng.integers(0, 6, size=(n, C)) / 5.0 if ties else rng.random((n, C))
    # Positives somewhat related to the scores, and every category has at least one.
    targets = (rng.random((n, C)) < 0.1 + 0.3 * scores).astype(np.float64)
    targets[0] = 1.0
    return scores, targets


def _sklearn_ap(scores, targets):
    return np.array([average_precision_score(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])


# ------------------------------------------------------------------------------------------------- AP
@pytest.mark.parametrize("ties", [False, True])
def test_ap_matches_sklearn_on_random_data(ties):
    rng = np.random.default_rng(1 + ties)
    for _ in range(5):
        scores, targets = _random_case(rng, n=int(rng.integers(20, 400)), ties=ties)
        ours = per_category_ap(scores, targets)
        ref = _sklearn_ap(scores, targets)
        np.testing.assert_allclose(ours, ref, atol=1e-12)
        res = mean_average_precision(scores, targets)
        assert res["ap_variant"] == "sklearn"
        assert res["mAP"] == pytest.approx(ref.mean(), abs=1e-12)
        assert res["num_categories_evaluated"] == C
        assert res[f"ap/{labels.SLUGS[9]}"] == pytest.approx(ref[9], abs=1e-12)


def test_ap_agrees_with_torchmetrics_on_probabilities():
    # The library the training metrics could have used gives the same numbers (to its float32 precision).
    scores, targets = _random_case(np.random.default_rng(3), ties=True)
    tm = multilabel_average_precision(
        torch.tensor(scores), torch.tensor(targets).long(), num_labels=C, average=None
    ).numpy()
    np.testing.assert_allclose(per_category_ap(scores, targets), tm, atol=1e-6)


def test_ap_on_logits_is_exact_even_where_float32_sigmoid_saturates():
    scores = np.array([30.0, 25.0, 20.0, -1.0, 0.5])
    targets = np.array([0, 1, 1, 0, 1])
    assert average_precision(scores, targets) == pytest.approx(
        average_precision_score(targets, scores), abs=1e-12
    )
    # Same order as probabilities -> same AP.
    assert average_precision(scores, targets) == pytest.approx(average_precision(scores / 100, targets))


def test_ap_with_ties_hand_computed():
    # Scores 0.9 | 0.5 0.5 0.5 | 0.1 with labels 1 | 1 0 0 | 1: three positives.
    # Thresholds: 0.9 -> P=1/1, R=1/3; 0.5 -> P=2/4, R=2/3; 0.1 -> P=3/5, R=3/3.
    # sklearn AP = 1/3*1 + 1/3*(1/2) + 1/3*(3/5) = 0.7
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    targets = np.array([1, 1, 0, 0, 1])
    assert average_precision(scores, targets) == pytest.approx(0.7, abs=1e-12)
    assert average_precision_score(targets, scores) == pytest.approx(0.7, abs=1e-12)
    # The order of tied items does not matter.
    perm = np.array([0, 3, 2, 1, 4])
    assert average_precision(scores[perm], targets[perm]) == pytest.approx(0.7, abs=1e-12)


def test_voc_ap_hand_computed():
    # Scores 0.9 > 0.8 > 0.7 > 0.6 > 0.5 with labels 1 0 0 1 1 (three positives):
    #   rank 1: P=1/1, R=1/3;  rank 2: P=1/2, R=1/3;  rank 3: P=1/3, R=1/3;
    #   rank 4: P=2/4, R=2/3;  rank 5: P=3/5, R=3/3.
    # Envelope (max precision at this or higher recall): 1, 3/5, 3/5, 3/5, 3/5.
    # VOC AP = (1/3 - 0)*1 + (2/3 - 1/3)*3/5 + (1 - 2/3)*3/5 = 1/3 + 1/5 + 1/5 = 0.7333...
    # sklearn AP (no envelope) = 1/3*1 + 1/3*(1/2) + 1/3*(3/5) = 0.7
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 0, 0, 1, 1])
    assert average_precision(scores, targets, "voc") == pytest.approx(1 / 3 + 1 / 5 + 1 / 5, abs=1e-12)
    assert average_precision(scores, targets, "sklearn") == pytest.approx(0.7, abs=1e-12)


def _voc_ap_per_item(scores, targets):
    # Line-by-line translation of the VOC devkit / EMOTIC MATLAB evaluation: sort, cumulate per item,
    # pad, make the precision envelope monotone, sum at recall changes.
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(targets[order] > 0)
    fp = np.cumsum(targets[order] <= 0)
    rec = tp / np.sum(targets > 0)
    prec = tp / (tp + fp)
    mrec = np.r_[0, rec, 1]
    mpre = np.r_[0, prec, 0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return np.sum((mrec[i] - mrec[i - 1]) * mpre[i])


def test_voc_ap_matches_the_per_item_matlab_computation_without_ties():
    scores, targets = _random_case(np.random.default_rng(17))
    ref = [_voc_ap_per_item(scores[:, c], targets[:, c]) for c in range(C)]
    np.testing.assert_allclose(per_category_ap(scores, targets, "voc"), ref, atol=1e-12)


def test_voc_ap_never_below_sklearn_and_selectable_by_name():
    scores, targets = _random_case(np.random.default_rng(4))
    voc = per_category_ap(scores, targets, ap_variant="voc")
    skl = per_category_ap(scores, targets, ap_variant="sklearn")
    assert np.all(voc >= skl - 1e-12)
    assert np.any(voc > skl)
    res = mean_average_precision(scores, targets, ap_variant="voc")
    assert res["ap_variant"] == "voc"
    assert res["mAP"] == pytest.approx(voc.mean())
    with pytest.raises(ValueError, match="unknown AP variant"):
        per_category_ap(scores, targets, ap_variant="11point")


def test_category_without_positives_is_nan_warned_and_left_out():
    scores, targets = _random_case(np.random.default_rng(5))
    targets[:, 1] = 0.0  # Anger: no positive
    with pytest.warns(RuntimeWarning, match="Anger"):
        ap = per_category_ap(scores, targets)
    assert np.isnan(ap[1])
    assert np.isfinite(np.delete(ap, 1)).all()
    with pytest.warns(RuntimeWarning, match="left out of the mAP"):
        res = mean_average_precision(scores, targets)
    assert res["ap/anger"] is None
    assert res["undefined_ap"] == ["Anger"]
    assert res["num_categories_evaluated"] == C - 1
    others = np.delete(np.arange(C), 1)
    assert res["mAP"] == pytest.approx(_sklearn_ap(scores[:, others], targets[:, others]).mean(), abs=1e-12)
    json.dumps(res)


def test_all_positive_category_has_ap_one():
    scores, targets = _random_case(np.random.default_rng(6))
    targets[:, 2] = 1.0
    ap = per_category_ap(scores, targets)
    assert ap[2] == 1.0
    assert average_precision(scores[:, 2], targets[:, 2], "voc") == 1.0


def test_bad_category_input_is_reported():
    scores, targets = _random_case(np.random.default_rng(7), n=10)
    with pytest.raises(ValueError, match="expected shape"):
        per_category_ap(scores[:, :5], targets[:, :5])
    bad = targets.copy()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="only 0 and 1"):
        per_category_ap(scores, bad)
    nan_scores = scores.copy()
    nan_scores[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        per_category_ap(nan_scores, targets)


# ---------------------------------------------------------------------------------------------- V/A/D
def _ccc_reference(x, y):
    # Lin (1989): 2 * s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2) with 1/n moments.
    sxy = np.cov(x, y, bias=True)[0, 1]
    return 2 * sxy / (np.var(x) + np.var(y) + (np.mean(x) - np.mean(y)) ** 2)


def test_vad_metrics_match_numpy_scipy_with_missing_values():
    rng = np.random.default_rng(8)
    n = 200
    true = rng.integers(1, 11, size=(n, 3)).astype(float)
    pred = np.clip(true + rng.normal(0, 1.5, size=(n, 3)), 1, 10)
    true[rng.random((n, 3)) < 0.15] = np.nan  # missing targets
    pred[np.isnan(true)] = 1e6  # predictions where the target is missing must not matter
    res = vad_metrics(pred, true)
    for d, dim in enumerate(labels.VAD_NAMES):
        ok = ~np.isnan(true[:, d])
        x, y = pred[ok, d], true[ok, d]
        assert res[f"vad_n/{dim}"] == ok.sum()
        assert res[f"vad_mae/{dim}"] == pytest.approx(np.mean(np.abs(x - y)), abs=1e-12)
        assert res[f"vad_rmse/{dim}"] == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), abs=1e-12)
        assert res[f"vad_pcc/{dim}"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
        assert res[f"vad_ccc/{dim}"] == pytest.approx(_ccc_reference(x, y), abs=1e-12)
        sagr = np.mean(np.sign(x - labels.VAD_MID) == np.sign(y - labels.VAD_MID))
        assert res[f"vad_sagr/{dim}"] == pytest.approx(sagr, abs=1e-12)
    mae = [res[f"vad_mae/{d}"] for d in labels.VAD_NAMES]
    assert res["vad_mae"] == pytest.approx(np.mean(mae))
    json.dumps(res)


def test_vad_mask_and_degenerate_cases():
    true = np.array([[2.0, 9.0, 5.0], [8.0, 9.0, 6.0], [3.0, 9.0, 7.0]])
    pred = np.array([[2.0, 8.0, 5.0], [8.0, 5.5, 6.0], [3.0, 5.0, 7.0]])
    mask = np.array([[True, True, False], [True, True, False], [True, True, False]])
    res = vad_metrics(pred, true, mask)
    assert res["vad_mae/valence"] == 0.0
    assert res["vad_ccc/valence"] == pytest.approx(1.0)
    assert res["vad_mae/arousal"] == pytest.approx((1 + 3.5 + 4) / 3)
    assert res["vad_pcc/arousal"] is None  # constant targets: correlation undefined
    # Around the midpoint 5.5: 8 agrees with 9; 5.5 (sign 0) and 5 (below) do not.
    assert res["vad_sagr/arousal"] == pytest.approx(1 / 3)
    assert res["vad_n/dominance"] == 0 and res["vad_mae/dominance"] is None
    assert res["vad_mae"] == pytest.approx((0 + 8.5 / 3) / 2)  # mean over the dimensions that have values
    with pytest.raises(ValueError, match="NaN or infinite"):
        vad_metrics(np.full((3, 3), np.nan), true)


def test_ccc_is_lin_and_penalises_bias():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert concordance_correlation(x, x) == pytest.approx(1.0)
    # A constant shift keeps Pearson at 1 but lowers CCC: 2*1.25 / (1.25 + 1.25 + 1) = 2.5/3.5.
    assert concordance_correlation(x + 1, x) == pytest.approx(2.5 / 3.5)


# ------------------------------------------------------------------------------------------ thresholds
def test_f1_threshold_and_its_tie_break():
    # Labels by decreasing score 1 1 0 1 0 0 (P=3). F1 = 2TP / (TP + FP + P):
    #   0.9: 2/4=.5  0.8: 4/5=.8  0.7: 4/6=.667  0.6: 6/7=.857  0.5: 6/8=.75  0.4: 6/9=.667 -> 0.6
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert fit_threshold(scores, np.array([1, 1, 0, 1, 0, 0]), "f1") == 0.6
    # Labels 0 1 1 0 0 1: F1 = 0, 2/5, 4/6, 4/7, 4/8, 6/9 -> 2/3 at 0.7 and at 0.4: the higher one wins.
    assert fit_threshold(scores, np.array([0, 1, 1, 0, 0, 1]), "f1") == 0.7


def test_pr_equal_threshold_without_exact_equality():
    # Scores 0.9 | 0.8 0.8 | 0.7 with labels 1 | 1 0 | 0 (P=2): no threshold predicts exactly 2 persons,
    # so precision never equals recall:  0.9: P=1, R=1/2 (gap 1/2);  0.8: P=2/3, R=1 (gap 1/3);
    #   0.7: P=1/2, R=1 (gap 1/2).  The closest point is 0.8.
    scores = np.array([0.9, 0.8, 0.8, 0.7])
    targets = np.array([1, 1, 0, 0])
    assert fit_threshold(scores, targets, "pr_equal") == 0.8


def test_pr_equal_ignores_zero_recall_and_breaks_ties_upwards():
    # Top-scored person is negative: at 0.9 precision = recall = 0, which is no crossing.
    # 0.8: P=1/2, R=1/2 -> gap 0.
    assert fit_threshold(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 1, 0]), "pr_equal") == 0.8
    # 0.2: P=1, R=1/2 (gap 1/2); 0.1: P=2/4, R=1 (gap 1/2): tie -> the higher threshold.
    assert fit_threshold(np.array([0.2, 0.1, 0.1, 0.1]), np.array([1, 0, 0, 1]), "pr_equal") == 0.2


def test_fit_thresholds_fallback_for_category_without_positives():
    scores, targets = _random_case(np.random.default_rng(9))
    targets[:, 4] = 0.0
    with pytest.warns(RuntimeWarning, match="Aversion"):
        th = fit_thresholds(scores, targets, rule="pr_equal")
    assert th.shape == (C,)
    assert th[4] == math.inf
    assert np.all(np.isin(np.delete(th, 4), scores))  # chosen among observed scores
    with pytest.warns(RuntimeWarning):
        th2 = fit_thresholds(scores, targets, rule="f1", no_positive_threshold=0.5)
    assert th2[4] == 0.5
    # The F1 threshold is the best observed value for each category.
    for c in (0, 7):
        best = max(f1_score(targets[:, c], scores[:, c] >= v) for v in np.unique(scores[:, c]))
        assert f1_score(targets[:, c], scores[:, c] >= th2[c]) == pytest.approx(best)


def test_precision_recall_f1_at_matches_sklearn():
    scores, targets = _random_case(np.random.default_rng(10))
    th = np.linspace(0.3, 0.8, C)
    res = precision_recall_f1_at(scores, targets, th)
    pred = scores >= th
    for c in (0, 13, C - 1):
        slug = labels.SLUGS[c]
        assert res[f"precision/{slug}"] == pytest.approx(
            precision_score(targets[:, c], pred[:, c], zero_division=0)
        )
        assert res[f"recall/{slug}"] == pytest.approx(recall_score(targets[:, c], pred[:, c]))
        assert res[f"f1/{slug}"] == pytest.approx(f1_score(targets[:, c], pred[:, c]))
        assert res[f"support/{slug}"] == targets[:, c].sum()
    for avg in ("micro", "macro"):
        assert res[f"f1_{avg}"] == pytest.approx(f1_score(targets, pred, average=avg, zero_division=0))
        assert res[f"precision_{avg}"] == pytest.approx(
            precision_score(targets, pred, average=avg, zero_division=0)
        )
        assert res[f"recall_{avg}"] == pytest.approx(
            recall_score(targets, pred, average=avg, zero_division=0)
        )


def test_precision_recall_f1_category_without_positives_left_out_of_macro():
    scores, targets = _random_case(np.random.default_rng(11))
    targets[:, 0] = 0.0
    res = precision_recall_f1_at(scores, targets, np.full(C, 0.5))
    assert res["recall/affection"] is None
    assert res["f1/affection"] == 0.0  # predicted although absent: zero F1, but outside the macro mean
    f1s = [res[f"f1/{s}"] for s in labels.SLUGS[1:]]
    assert res["f1_macro"] == pytest.approx(np.mean(f1s))
    never = precision_recall_f1_at(scores, targets, np.r_[math.inf, np.full(C - 1, 0.5)])
    assert never["precision/affection"] is None and never["f1/affection"] is None


# ------------------------------------------------------------------------------- evaluate and breakdown
def test_evaluate_arrays_and_breakdown():
    rng = np.random.default_rng(12)
    scores, targets = _random_case(rng, n=120)
    vad_true = rng.integers(1, 11, size=(120, 3)).astype(float)
    vad_pred = vad_true + rng.normal(0, 1, size=(120, 3))
    th = np.full(C, 0.5)
    res = evaluate_arrays(scores, targets, vad_pred, vad_true, ap_variant="voc", thresholds=th)
    assert res["num_persons"] == 120
    assert res["ap_variant"] == "voc"
    assert res["mAP"] == pytest.approx(per_category_ap(scores, targets, "voc").mean())
    assert res["vad_mae"] == pytest.approx(np.abs(vad_pred - vad_true).mean(axis=0).mean())
    assert "f1_macro" in res and "f1/happiness" in res
    json.dumps(res)

    groups = pd.Series(["Male"] * 50 + ["Female"] * 60 + [None] * 10, name="gender")
    targets[:50][:, 5] = 0.0  # no Confidence among the men: warned for that group only
    with pytest.warns(RuntimeWarning, match=r"gender=Male.*Confidence"):
        per_group = breakdown(groups, scores, targets, vad_pred, vad_true, thresholds=th)
    assert list(per_group) == ["Female", "Male", "unknown"]
    assert [per_group[g]["num_persons"] for g in per_group] == [60, 50, 10]
    female = evaluate_arrays(
        scores[50:110], targets[50:110], vad_pred[50:110], vad_true[50:110], thresholds=th
    )
    assert per_group["Female"] == female
    assert per_group["Male"]["ap/confidence"] is None
    json.dumps(per_group)


# ---------------------------------------------------------------------------------------------- agreement
def _persons(n: int, rng: np.random.Generator, n_ann: int = 3):
    cats, vads, truth_sets, truth_vad = [], [], [], []
    for _ in range(n):
        chosen = sorted(rng.choice(labels.CATEGORIES, size=int(rng.integers(1, 4)), replace=False).tolist())
        v = rng.integers(1, 11, size=3).astype(float).tolist()
        truth_sets.append(chosen)
        truth_vad.append(v)
        cats.append([list(chosen) for _ in range(n_ann)])
        vads.append([list(v) for _ in range(n_ann)])
    return cats, vads, truth_sets, truth_vad


def test_identical_annotators_agree_perfectly_and_so_does_a_model_equal_to_them():
    rng = np.random.default_rng(13)
    cats, vads, truth_sets, truth_vad = _persons(40, rng)
    cats.append([["Anger"], ["Fear"]])  # only two annotators: not counted
    vads.append([[5.0, 5.0, 5.0], [6.0, 6.0, 6.0]])
    model_scores = np.array([labels.multi_hot(s) for s in truth_sets] + [labels.multi_hot(["Anger"])])
    model_vad = np.array(truth_vad + [[5.0, 5.0, 5.0]])
    res = annotator_agreement(cats, vads, model_scores=model_scores, model_vad=model_vad, thresholds=0.5)
    json.dumps(res)
    assert res["categories"]["num_persons"] == 40 and res["categories"]["num_persons_skipped"] == 1
    assert res["vad"]["num_persons"] == 40
    assert [e["k"] for e in res["categories"]["per_k"]] == [0, 1, 2]
    for who in ("annotators", "model"):
        c = res["categories"][who]
        assert c["category_f1_micro"] == 1.0 and c["category_f1_macro"] == 1.0
        assert c["category_precision_micro"] == 1.0 and c["category_jaccard"] == 1.0
        v = res["vad"][who]
        assert v["vad_mae"] == 0.0 and v["vad_rmse"] == 0.0 and v["vad_sagr"] == 1.0
        assert v["vad_ccc"] == pytest.approx(1.0) and v["vad_pcc"] == pytest.approx(1.0)


def test_noisy_annotator_and_known_model_figures():
    rng = np.random.default_rng(14)
    n = 60
    cats, vads, truth_sets, truth_vad = _persons(n, rng)
    # Annotator 2 adds "Fatigue" to every person where it is not true, and rates valence 2 points higher.
    extra = 0
    for p in range(n):
        if "Fatigue" not in truth_sets[p]:
            cats[p][2] = sorted(cats[p][2] + ["Fatigue"])
            extra += 1
        vads[p][2][0] = vads[p][2][0] + 2.0
    res = annotator_agreement(cats, vads)
    per_k = {e["k"]: e for e in res["categories"]["per_k"]}
    # k=0 and k=1: reference from {the other clean one, the noisy one}: with two others, one vote (half)
    # suffices, so the reference gains Fatigue where the noisy one chose it: the clean annotator misses it.
    # k=2: reference = the two clean annotators = truth; the noisy annotator has `extra` false positives.
    tp = sum(len(s) for s in truth_sets)
    assert per_k[2]["annotators"]["category_recall_micro"] == 1.0
    assert per_k[2]["annotators"]["category_precision_micro"] == pytest.approx(tp / (tp + extra))
    assert per_k[0]["annotators"]["category_precision_micro"] == 1.0
    assert per_k[0]["annotators"]["category_recall_micro"] == pytest.approx(tp / (tp + extra))
    vk = {e["k"]: e["annotators"] for e in res["vad"]["per_k"]}
    assert vk[2]["vad_mae/valence"] == pytest.approx(2.0)  # noisy vs mean of the two clean ones
    assert vk[0]["vad_mae/valence"] == pytest.approx(1.0)  # clean vs mean(clean, clean + 2)
    assert vk[0]["vad_mae/arousal"] == 0.0
    # Averaged over k (all k have n persons): valence MAE (1 + 1 + 2) / 3.
    assert res["vad"]["annotators"]["vad_mae/valence"] == pytest.approx(4 / 3)

    # A model equal to the true labels is scored against the same references: perfect against k=2's
    # reference, and on valence off by 1 against the references that include the noisy annotator.
    model_scores = np.array([labels.multi_hot(s) for s in truth_sets])
    res_m = annotator_agreement(
        cats, vads, model_scores=model_scores, model_vad=np.array(truth_vad), thresholds=np.full(C, 0.5)
    )
    mk = {e["k"]: e["model"] for e in res_m["categories"]["per_k"]}
    assert mk[2]["category_f1_micro"] == 1.0
    assert mk[0]["category_recall_micro"] == pytest.approx(tp / (tp + extra))
    mv = {e["k"]: e["model"] for e in res_m["vad"]["per_k"]}
    assert mv[2]["vad_mae/valence"] == 0.0 and mv[0]["vad_mae/valence"] == pytest.approx(1.0)
    assert res_m["vad"]["model"]["vad_mae/valence"] == pytest.approx(2 / 3)
    # The noisy annotator is worse than the model against the same reference.
    assert vk[2]["vad_mae/valence"] > mv[2]["vad_mae/valence"]


def test_agreement_missing_vad_and_records_and_bad_names():
    df = pd.DataFrame(
        {
            "annotator_categories": [[["Peace"], ["Peace"], ["Peace", "Joy"]]],
            "annotator_vad": [[[5.0, float("nan"), 3.0], [5.0, 4.0, 3.0], [7.0, 4.0, 3.0]]],
        }
    )
    with pytest.raises(ValueError, match="person 0, annotator 2: unknown category 'Joy'"):
        agreement_from_records(df)
    df.at[0, "annotator_categories"] = [["Peace"], ["Peace"], ["Peace", "Sympathy"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN reference must not warn
        res = agreement_from_records(df, min_annotators=3)
    vk = {e["k"]: e["annotators"] for e in res["vad"]["per_k"]}
    assert vk[0]["vad_n/arousal"] == 0  # annotator 0 has no arousal
    assert vk[1]["vad_mae/arousal"] == 0.0  # reference = annotator 2 only (annotator 0 missing)
    assert vk[2]["vad_mae/valence"] == pytest.approx(2.0)
    assert res["categories"]["per_k"][2]["annotators"]["category_jaccard"] == pytest.approx(0.5)
    assert agreement_from_records(df, min_annotators=4)["categories"]["num_persons"] == 0


# --------------------------------------------------------------------------------- torchmetrics class
def test_emotion_metrics_accumulates_like_one_shot():
    rng = np.random.default_rng(15)
    scores, targets = _random_case(rng, n=90)
    targets[:, 3] = 0.0  # undefined AP: omitted from the dict and from mAP
    vad_true = rng.integers(1, 11, size=(90, 3)).astype(float)
    vad_pred = vad_true + rng.normal(0, 1, size=(90, 3))
    vad_mask = rng.random((90, 3)) > 0.1
    metric = EmotionMetrics()
    for sl in (slice(0, 30), slice(30, 31), slice(31, 90)):
        metric.update(
            torch.tensor(scores[sl], dtype=torch.float32),
            torch.tensor(targets[sl], dtype=torch.float32),
            torch.tensor(vad_pred[sl], dtype=torch.float32),
            torch.tensor(vad_true[sl], dtype=torch.float32),
            torch.tensor(vad_mask[sl]),
        )
    with pytest.warns(RuntimeWarning, match="Anticipation"):
        got = metric.compute()
    with pytest.warns(RuntimeWarning):
        ref = evaluate_arrays(
            scores.astype(np.float32),
            targets,
            vad_pred.astype(np.float32),
            np.where(vad_mask, vad_true, np.nan),
        )
    assert "ap/anticipation" not in got
    assert {"mAP", "ap/happiness", "vad_mae", "vad_mae/valence", "vad_ccc/dominance"} <= set(got)
    for key, value in got.items():
        assert float(value) == pytest.approx(ref[key], abs=1e-5), key
    metric.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert metric.compute() == {}


def test_emotion_metrics_categories_only_and_voc():
    scores, targets = _random_case(np.random.default_rng(16), n=40)
    metric = EmotionMetrics(ap_variant="voc")
    metric.update(torch.tensor(scores), torch.tensor(targets))
    got = metric.compute()
    assert not any(k.startswith("vad") for k in got)
    assert float(got["mAP"]) == pytest.approx(per_category_ap(scores, targets, "voc").mean(), abs=1e-6)
    with pytest.raises(ValueError, match="expected two"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3))
