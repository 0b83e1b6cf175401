"""EmoNet's losses and figures: CCC-based V/A losses, the expression task, shake-shake over the tasks, and
expression accuracy / macro-F1."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emoctx.errors import EmoctxError
from emoctx.labels import EXPRESSIONS, vad_from_signed
from emoctx.losses import (
    EmotionLoss,
    ccc_continuous_loss,
    emonet_continuous_loss,
    expression_loss,
)
from emoctx.metrics import EmotionMetrics, concordance_correlation, expression_metrics, pearson_correlation


def _vad(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, generator=g)
    pred = (0.6 * target + 0.3 * torch.rand(n, 3, generator=g)).requires_grad_()
    return pred, target


def test_ccc_loss_is_one_minus_lins_ccc_per_dimension():
    pred, target = _vad()
    target[3, 1] = math.nan  # a missing rating is left out of that dimension
    loss = ccc_continuous_loss(pred, target)
    want = 0.0
    for d in range(3):
        keep = ~torch.isnan(target[:, d])
        want += 1.0 - concordance_correlation(pred[keep, d].detach().numpy(), target[keep, d].numpy())
    assert float(loss) == pytest.approx(want, abs=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # perfect agreement: 0; the scale (points or 0-1) does not matter; a dimension with one rating adds 0
    assert float(ccc_continuous_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(ccc_continuous_loss(pred, target, scale="1-10")) == pytest.approx(float(loss))
    lonely = target.clone()
    lonely[1:, 2] = math.nan
    per_dim = [1 - concordance_correlation(pred[:, d].detach().numpy(), target[:, d].numpy()) for d in (0, 1)]
    assert float(ccc_continuous_loss(pred, lonely[:, :])) == pytest.approx(
        per_dim[0] + 1 - concordance_correlation(pred[lonely[:, 1].isfinite(), 1].detach().numpy(),
                                                 lonely[lonely[:, 1].isfinite(), 1].numpy()), abs=1e-5
    )  # fmt: skip
    assert float(ccc_continuous_loss(pred, torch.full_like(target, math.nan))) == 0.0


def test_emonet_loss_is_mse_plus_one_minus_pcc_plus_one_minus_ccc():
    pred, target = _vad(seed=1)
    p, t = pred.detach().numpy(), target.numpy()
    mse = float(np.mean(np.sum((p - t) ** 2, axis=1)))
    pcc = sum(1 - pearson_correlation(p[:, d], t[:, d]) for d in range(3))
    ccc = sum(1 - concordance_correlation(p[:, d], t[:, d]) for d in range(3))
    assert float(emonet_continuous_loss(pred, target)) == pytest.approx(mse + pcc + ccc, abs=1e-5)
    weighted = emonet_continuous_loss(pred, target, coefficients=(0.5, 0.0, 2.0))
    assert float(weighted) == pytest.approx(0.5 * mse + 2.0 * ccc, abs=1e-5)


def test_expression_loss_leaves_unlabelled_persons_out():
    logits = torch.randn(5, 8, requires_grad=True)
    target = torch.tensor([1, -1, 7, 0, -1])
    loss = expression_loss(logits, target)
    keep = target >= 0
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits[keep], target[keep])))
    assert float(expression_loss(logits, target, reduction="sum")) == pytest.approx(
        float(F.cross_entropy(logits[keep], target[keep], reduction="sum"))
    )
    none = expression_loss(logits, torch.full((5,), -1))
    none.backward()
    assert float(none) == 0.0 and logits.grad is not None


def test_emotion_loss_with_the_expression_task():
    torch.manual_seed(0)
    logits, categories = torch.randn(6, 26), torch.zeros(6, 26)
    pred, target = _vad(6, seed=2)
    expr, expr_target = torch.randn(6, 8), torch.tensor([0, 1, 2, -1, 4, 5])
    fixed = EmotionLoss(discrete="bce", continuous="ccc", weights=(0.0, 1.0), expression_weight=0.5)
    out = fixed(logits, pred, categories, target, None, expr, expr_target)
    assert set(out) == {"loss", "discrete", "continuous", "expression"}
    assert float(out["loss"]) == pytest.approx(float(out["continuous"] + 0.5 * out["expression"]), abs=1e-6)
    # shake: a random convex mix of the tasks whose weight is not 0 (here V/A and the expressions)
    shake = EmotionLoss(
        discrete="bce", continuous="ccc", weights=(0.0, 1.0), combine="shake", expression_weight=1
    )
    shake.train()
    huge = torch.full((6, 26), 50.0)  # a category loss this large would show if it were mixed in
    losses = []
    for _ in range(5):
        out = shake(huge, pred, categories, target, None, expr, expr_target)
        lo, hi = sorted((float(out["continuous"]), float(out["expression"])))
        assert lo - 1e-5 <= float(out["loss"]) <= hi + 1e-5
        losses.append(float(out["loss"]))
    assert len(set(losses)) > 1  # drawn afresh at every step
    shake.eval()
    out = shake(huge, pred, categories, target, None, expr, expr_target)
    assert float(out["loss"]) == pytest.approx(float(out["continuous"] + out["expression"]), abs=1e-6)
    with pytest.raises(EmoctxError, match="no expression logits or targets were given"):
        fixed(logits, pred, categories, target)
    with pytest.raises(EmoctxError, match="'expression_weight' must be a non-negative number"):
        EmotionLoss(expression_weight=-1)


def test_emonet_loss_shakes_its_three_terms_in_training():
    pred, target = _vad(seed=3)
    loss = EmotionLoss(discrete="bce", continuous="emonet", combine="shake")
    loss.eval()
    args = (torch.zeros(16, 26), pred, torch.zeros(16, 26), target)
    assert float(loss(*args)["continuous"]) == pytest.approx(float(emonet_continuous_loss(pred, target)))
    loss.train()
    values = {round(float(loss(*args)["continuous"]), 6) for _ in range(4)}
    assert len(values) == 4


def test_two_task_shake_is_unchanged():
    """Without the expression task, shake draws one a ~ U(0, 1) per step, as it always did."""
    pred, target = _vad(seed=4)
    logits, categories = torch.randn(16, 26), (torch.rand(16, 26) > 0.8).float()
    loss = EmotionLoss(discrete="bce", continuous="smoothl1", combine="shake").train()
    torch.manual_seed(7)
    out = loss(logits, pred, categories, target)
    torch.manual_seed(7)
    alpha = torch.rand(())
    assert float(out["loss"]) == pytest.approx(
        float(alpha * out["discrete"] + (1 - alpha) * out["continuous"])
    )


def test_expression_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    true = rng.integers(0, 8, 200)
    true[:10] = -1  # unlabelled: left out
    logits = rng.normal(size=(200, 8))
    logits[np.arange(200), np.clip(true, 0, 7)] += 1.5  # better than chance
    logits[:, 7] -= 10  # class 7 is never predicted: its F1 is 0 and counts in the mean
    out = expression_metrics(logits, true)
    keep = true >= 0
    pred = logits.argmax(axis=1)
    assert out["expression_n"] == 190
    assert out["expression_accuracy"] == pytest.approx(accuracy_score(true[keep], pred[keep]))
    assert out["expression_f1_macro"] == pytest.approx(f1_score(true[keep], pred[keep], average="macro"))
    assert out["expression_f1/contempt"] == 0.0
    # a class in neither the labels nor the predictions is left out of the mean, as scikit-learn does
    few = expression_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert few["expression_f1/sad"] is None
    assert few["expression_f1_macro"] == pytest.approx(f1_score([0, 1, 0], [0, 1, 1], average="macro"))
    assert expression_metrics(np.zeros((2, 8)), np.array([-1, -1]))["expression_accuracy"] is None
    with pytest.raises(ValueError, match="expected shape"):
        expression_metrics(np.zeros((2, 7)), np.array([0, 1]))
    assert len(EXPRESSIONS) == 8 and vad_from_signed(-1.0) == 1.0 and vad_from_signed(1.0) == 10.0


def test_emotion_metrics_accumulate_expressions():
    rng = np.random.default_rng(1)
    metric = EmotionMetrics()
    logits = torch.tensor(rng.normal(size=(40, 8)), dtype=torch.float32)
    target = torch.tensor(rng.integers(-1, 8, 40))
    scores, cats = torch.rand(40, 26), (torch.rand(40, 26) > 0.7).float()
    for part in (slice(0, 25), slice(25, 40)):
        metric.update(scores[part], cats[part])
        metric.update_expressions(logits[part], target[part])
    figures = metric.compute()
    want = expression_metrics(logits.numpy(), target.numpy())
    assert float(figures["expression_accuracy"]) == pytest.approx(want["expression_accuracy"])
    assert float(figures["expression_f1_macro"]) == pytest.approx(want["expression_f1_macro"])
    plain = EmotionMetrics()
    plain.update(scores, cats)
    assert "expression_accuracy" not in plain.compute()
