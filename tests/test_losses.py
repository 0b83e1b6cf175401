"""Loss formulas against hand-computed values, masking, the shake mix, statelessness and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emoctx.errors import EmoctxError
from emoctx.labels import NUM_CATEGORIES, NUM_VAD, vad_to_model
from emoctx.losses import (
    DEAD_ZONE,
    EmotionLoss,
    bce_discrete_loss,
    deadzone_continuous_loss,
    emotic_category_weights,
    emotic_discrete_loss,
    l1_continuous_loss,
    l2_continuous_loss,
    scores_from_logits,
    smoothl1_continuous_loss,
)


def batch(b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, NUM_CATEGORIES, generator=g)
    cats = (torch.rand(b, NUM_CATEGORIES, generator=g) < 0.3).float()
    vad = torch.rand(b, NUM_VAD, generator=g)
    vad_target = vad_to_model(torch.randint(1, 11, (b, NUM_VAD), generator=g).float())
    return logits, vad, cats, vad_target


def test_category_weights_formula():
    counts = torch.zeros(NUM_CATEGORIES)
    counts[1], counts[2] = 1, 5
    w = emotic_category_weights(counts)
    assert w[0].item() == pytest.approx(0.0001)
    assert w[1].item() == pytest.approx(1 / math.log(2.2))
    assert w[2].item() == pytest.approx(1 / math.log(6.2))
    assert w.shape == (NUM_CATEGORIES,)


def test_emotic_discrete_loss_by_hand():
    pred = torch.zeros(2, NUM_CATEGORIES)
    target = torch.zeros(2, NUM_CATEGORIES)
    pred[0, 0], target[0, 0] = 0.5, 1.0  # error 0.25
    pred[1, 3] = 2.0  # error 4
    weights = torch.ones(NUM_CATEGORIES)
    weights[3] = 0.5
    # (0.25 * 1 + 4 * 0.5) / 2 persons
    assert emotic_discrete_loss(pred, target, weights).item() == pytest.approx((0.25 + 2.0) / 2)
    assert emotic_discrete_loss(pred, target).item() == pytest.approx((0.25 + 4.0) / 2)


def test_emotion_loss_batch_and_dataset_weights():
    logits, vad, cats, vad_target = batch()
    loss = EmotionLoss(discrete="emotic", discrete_weights="batch")
    n = cats.sum(0)
    w = [0.0001 if n[i] == 0 else 1 / math.log(1.2 + n[i].item()) for i in range(NUM_CATEGORIES)]
    expected = sum(
        w[i] * (logits[b, i].item() - cats[b, i].item()) ** 2 for b in range(4) for i in range(NUM_CATEGORIES)
    )
    assert loss(logits, vad, cats, vad_target)["discrete"].item() == pytest.approx(expected / 4, rel=1e-5)

    counts = torch.arange(NUM_CATEGORIES, dtype=torch.float32) * 10
    by_dataset = EmotionLoss(discrete_weights="dataset", category_counts=counts)
    w = emotic_category_weights(counts)
    expected = ((logits - cats) ** 2 * w).sum(1).mean()
    torch.testing.assert_close(by_dataset(logits, vad, cats, vad_target)["discrete"], expected)
    assert "category_counts" not in by_dataset.state_dict()
    assert dict(by_dataset.named_buffers())["category_counts"].shape == (NUM_CATEGORIES,)


def test_bce_loss():
    logits, vad, cats, vad_target = batch()
    expected = F.binary_cross_entropy_with_logits(logits, cats, reduction="sum") / logits.shape[0]
    torch.testing.assert_close(bce_discrete_loss(logits, cats), expected)
    loss = EmotionLoss(discrete="bce")
    assert loss.discrete_weights == "none"
    torch.testing.assert_close(loss(logits, vad, cats, vad_target)["discrete"], expected)


def test_deadzone_is_one_scale_point():
    assert vad_to_model(2.0) - vad_to_model(1.0) == pytest.approx(DEAD_ZONE)
    # Person 0: off by 0.5, 2 and 3 scale points; person 1: off by 0.9 points everywhere.
    target = vad_to_model(torch.tensor([[5.0, 5.0, 5.0], [3.0, 3.0, 3.0]]))
    pred = vad_to_model(torch.tensor([[5.5, 7.0, 2.0], [3.9, 2.1, 3.9]]))
    expected = ((2 / 9) ** 2 + (3 / 9) ** 2) / 2  # only the errors of at least one point count
    assert deadzone_continuous_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_continuous_losses_are_masked():
    pred = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.9, 0.1]], requires_grad=True)
    target = torch.tensor([[0.1, float("nan"), 0.9], [0.2, 0.2, 0.2]])
    mask = torch.tensor([[True, True, True], [True, False, True]])  # NaN is missing too
    # Present errors: person 0: 0.4 (V), -0.4 (D); person 1: 0.0 (V), -0.1 (D); 2 persons.
    assert l1_continuous_loss(pred, target, mask).item() == pytest.approx((0.4 + 0.4 + 0.0 + 0.1) / 2)
    assert l2_continuous_loss(pred, target, mask).item() == pytest.approx((0.16 + 0.16 + 0.0 + 0.01) / 2)
    assert deadzone_continuous_loss(pred, target, mask).item() == pytest.approx((0.16 + 0.16) / 2)
    beta = DEAD_ZONE  # smooth L1: quadratic below beta, linear above
    expected = ((0.4 - beta / 2) * 2 + 0.0 + 0.5 * 0.01 / beta) / 2
    loss = smoothl1_continuous_loss(pred, target, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 1] == 0  # missing entries get no gradient


@pytest.mark.parametrize("fn", [deadzone_continuous_loss, smoothl1_continuous_loss, l1_continuous_loss])
def test_all_missing_gives_zero_without_nan(fn):
    pred = torch.rand(3, NUM_VAD, requires_grad=True)
    target = torch.full((3, NUM_VAD), float("nan"))
    loss = fn(pred, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_persons_without_ratings_do_not_dilute_the_mean():
    pred = torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.1, 0.5, 0.5], [float("nan")] * 3])
    assert l2_continuous_loss(pred, target).item() == pytest.approx(0.16)


def test_fixed_and_shake_combinations():
    logits, vad, cats, vad_target = batch()
    fixed = EmotionLoss(weights=(0.3, 0.7))
    out = fixed(logits, vad, cats, vad_target)
    torch.testing.assert_close(out["loss"], 0.3 * out["discrete"] + 0.7 * out["continuous"])

    shake = EmotionLoss(combine="shake", weights=(0.3, 0.7)).train()
    lo, hi = sorted([out["discrete"].item(), out["continuous"].item()])
    values = {shake(logits, vad, cats, vad_target)["loss"].item() for _ in range(20)}
    assert all(lo - 1e-6 <= v <= hi + 1e-6 for v in values)
    assert len(values) > 10  # a fresh mix per step
    shake.eval()
    torch.testing.assert_close(shake(logits, vad, cats, vad_target)["loss"], out["loss"])


def test_forward_changes_no_state():
    logits, vad, cats, vad_target = batch()
    counts = torch.arange(NUM_CATEGORIES, dtype=torch.float32)
    loss = EmotionLoss(discrete_weights="dataset", category_counts=counts)
    before = {k: v.clone() for k, v in loss.named_buffers()}
    first = loss(logits, vad, cats, vad_target)["loss"]
    second = loss(logits * 2, vad, 1 - cats, vad_target)["loss"]
    assert not torch.equal(first, second)
    third = loss(logits, vad, cats, vad_target)["loss"]
    assert torch.equal(first, third)
    after = dict(loss.named_buffers())
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    batch_loss = EmotionLoss()
    a = batch_loss(logits, vad, cats, vad_target)["loss"]
    batch_loss(logits, vad, torch.zeros_like(cats), vad_target)
    assert torch.equal(a, batch_loss(logits, vad, cats, vad_target)["loss"])
    assert batch_loss.state_dict() == {}


@pytest.mark.parametrize("discrete", ["emotic", "bce"])
@pytest.mark.parametrize("continuous", ["deadzone", "smoothl1", "l1", "l2"])
def test_gradients_flow(discrete, continuous):
    logits, vad, cats, vad_target = batch()
    vad = vad_to_model(torch.tensor([[1.0, 10.0, 4.0]] * 4)).requires_grad_()  # far from the targets
    logits.requires_grad_()
    out = EmotionLoss(discrete=discrete, continuous=continuous)(logits, vad, cats, vad_target)
    out["loss"].backward()
    assert logits.grad.abs().sum() > 0 and vad.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all() and torch.isfinite(vad.grad).all()


def test_half_precision_inputs_give_float32_losses():
    logits, vad, cats, vad_target = batch()
    out = EmotionLoss()(logits.half(), vad.half(), cats, vad_target)
    assert out["loss"].dtype == torch.float32


def test_score_activation():
    assert EmotionLoss(discrete="emotic").score_activation == "clamp"
    assert EmotionLoss(discrete="bce").score_activation == "sigmoid"
    x = torch.tensor([-1.0, 0.25, 2.0])
    assert scores_from_logits(x, "clamp").tolist() == [0.0, 0.25, 1.0]
    torch.testing.assert_close(scores_from_logits(x, "sigmoid"), torch.sigmoid(x))


def test_bad_options_are_clear_errors():
    with pytest.raises(EmoctxError, match="did you mean 'deadzone'"):
        EmotionLoss(continuous="dead_zone")
    with pytest.raises(EmoctxError, match="category_counts"):
        EmotionLoss(discrete_weights="dataset")
    with pytest.raises(EmoctxError, match="non-negative counts"):
        EmotionLoss(discrete_weights="dataset", category_counts=torch.ones(3))
    with pytest.raises(EmoctxError, match="only used"):
        EmotionLoss(category_counts=torch.ones(NUM_CATEGORIES))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_losses_on_cuda():
    logits, vad, cats, vad_target = batch()
    vad_target[0, 1] = float("nan")
    counts = torch.arange(NUM_CATEGORIES, dtype=torch.float32)
    for kwargs in ({}, {"discrete_weights": "dataset", "category_counts": counts}, {"discrete": "bce"}):
        loss = EmotionLoss(**kwargs)
        cpu = loss(logits, vad, cats, vad_target)["loss"]
        gpu = loss.to("cuda")(logits.cuda(), vad.cuda(), cats.cuda(), vad_target.cuda())["loss"]
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu)
