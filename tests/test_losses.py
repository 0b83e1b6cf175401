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
    smoothl1_continuous_loss,
)
from emoctx.models.outputs import scores_from_logits


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
    recipes = (
        {},
        {"discrete_weights": "dataset", "category_counts": counts},
        {"discrete": "bce"},
        {"reduction": "sum", "continuous_scale": "1-10", "continuous": "smoothl1"},
    )
    for kwargs in recipes:
        loss = EmotionLoss(**kwargs)
        cpu = loss(logits, vad, cats, vad_target)["loss"]
        gpu = loss.to("cuda")(logits.cuda(), vad.cuda(), cats.cuda(), vad_target.cuda())["loss"]
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu)


# ------------------------------------------------------------------- the common PyTorch baseline's recipe
# The baseline's loss formulas, written from its source (github.com/Tandon-A/emotic loss.py and train.py): the
# discrete loss with dynamic weights, the V/A/D L2 with a margin and the V/A/D SmoothL1 with a margin, all summed
# over the batch; train.py calls them as cont_loss(pred_cont * 10, labels_cont * 10) on outputs and labels that
# are ratings / 10.
def baseline_discrete_loss(pred, target):
    target_stats = torch.sum(target, dim=0).float().unsqueeze(dim=0)
    weights = torch.zeros((1, NUM_CATEGORIES))
    weights[target_stats != 0] = 1.0 / torch.log(target_stats[target_stats != 0].data + 1.2)
    weights[target_stats == 0] = 0.0001
    return (((pred - target) ** 2) * weights).sum()


def baseline_l2_loss(pred, target, margin=1):
    labs = torch.abs(pred - target)
    loss = labs**2
    loss[(labs < margin)] = 0.0
    return loss.sum()


def baseline_sl1_loss(pred, target, margin=1):
    labs = torch.abs(pred - target)
    loss = 0.5 * (labs**2)
    loss[(labs > margin)] = labs[(labs > margin)] - 0.5
    return loss.sum()


def _ratings(b: int, seed: int):
    """Predicted ratings (points, with gradient) spread so that every loss zone is hit, and integer ratings."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(1, 11, (b, NUM_VAD), generator=g).float()
    points = (truth + (torch.rand(b, NUM_VAD, generator=g) - 0.5) * 6).requires_grad_()
    return points, truth


def test_sum_reduction_is_the_baselines_discrete_loss_and_gradient():
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(52, NUM_CATEGORIES, generator=g) < 0.15).float()
    target[:, 5] = 0  # a category without positives in the batch: weight 0.0001
    pred_b = torch.randn(52, NUM_CATEGORIES, generator=g).requires_grad_()
    pred_e = pred_b.detach().clone().requires_grad_()
    ours = EmotionLoss(discrete="emotic", discrete_weights="batch", reduction="sum", weights=(1.0, 0.0))
    vad = torch.full((52, NUM_VAD), 0.5)
    loss_e = ours(pred_e, vad, target, vad)["discrete"]
    loss_b = baseline_discrete_loss(pred_b, target)
    loss_e.backward()
    loss_b.backward()
    torch.testing.assert_close(loss_e, loss_b, rtol=1e-6, atol=0)
    torch.testing.assert_close(pred_e.grad, pred_b.grad, rtol=1e-6, atol=1e-9)
    # The mean over the batch is the same loss divided by the batch size (52x smaller gradients).
    pred_m = pred_b.detach().clone().requires_grad_()
    emotic_discrete_loss(pred_m, target, emotic_category_weights(target.sum(0))).backward()
    torch.testing.assert_close(pred_m.grad * 52, pred_b.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "baseline"), [("deadzone", baseline_l2_loss), ("smoothl1", baseline_sl1_loss)]
)
def test_points_scale_is_the_baselines_continuous_loss_and_gradient(name, baseline):
    points, truth = _ratings(52, seed=2)
    # The baseline's tensors: its output and labels are ratings / 10, its loss multiplies both by 10.
    loss_b = baseline(points / 10 * 10, truth / 10 * 10)
    (grad_b,) = torch.autograd.grad(loss_b, points)
    # emoctx's tensors: the same ratings on the internal scale.
    fn = {"deadzone": deadzone_continuous_loss, "smoothl1": smoothl1_continuous_loss}[name]
    loss_e = fn(vad_to_model(points), vad_to_model(truth), reduction="sum", scale="1-10")
    (grad_e,) = torch.autograd.grad(loss_e, points)
    assert loss_b.item() > 0
    torch.testing.assert_close(loss_e, loss_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_e, grad_b, rtol=1e-5, atol=1e-6)
    # And inside EmotionLoss, with the 0.5/0.5 weights of train.py.
    both = EmotionLoss(continuous=name, reduction="sum", continuous_scale="1-10", weights=(0.0, 0.5))
    cats = torch.zeros(52, NUM_CATEGORIES)
    out = both(torch.zeros(52, NUM_CATEGORIES), vad_to_model(points), cats, vad_to_model(truth))
    torch.testing.assert_close(out["loss"], 0.5 * loss_b, rtol=1e-5, atol=1e-5)


def test_the_recipes_differ_by_the_batch_size_and_the_squared_scale():
    """With the dead-zone L2, sum + points gives 52 x 81 = 4,212 times the gradient of mean + 0-1."""
    points, truth = _ratings(52, seed=3)
    pred = vad_to_model(points.detach()).requires_grad_()
    target = vad_to_model(truth)
    (mean01,) = torch.autograd.grad(deadzone_continuous_loss(pred, target), pred)
    (sum110,) = torch.autograd.grad(
        deadzone_continuous_loss(pred, target, reduction="sum", scale="1-10"), pred
    )
    assert (mean01 != 0).any()
    torch.testing.assert_close(sum110, mean01 * 52 * 81, rtol=1e-4, atol=1e-6)
    # SmoothL1 and L1 are 9 times larger in points, L2 81 times (mean over the persons in both).
    torch.testing.assert_close(
        smoothl1_continuous_loss(pred, target, scale="1-10"), 9 * smoothl1_continuous_loss(pred, target)
    )
    torch.testing.assert_close(
        l1_continuous_loss(pred, target, scale="1-10"), 9 * l1_continuous_loss(pred, target)
    )
    torch.testing.assert_close(
        l2_continuous_loss(pred, target, scale="1-10"), 81 * l2_continuous_loss(pred, target)
    )


def test_sum_reduction_masks_missing_ratings():
    pred = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.2, 0.3]])
    target = torch.tensor([[float("nan")] * 3, [0.9, float("nan"), 0.3]])
    # Only one rating is present: |0.1 - 0.9| = 0.8 on the internal scale, 7.2 points.
    assert l2_continuous_loss(pred, target, reduction="sum").item() == pytest.approx(0.64)
    assert l2_continuous_loss(pred, target, reduction="sum", scale="1-10").item() == pytest.approx(
        7.2**2, rel=1e-5
    )
    nothing = torch.full((2, 3), float("nan"))
    for fn in (deadzone_continuous_loss, smoothl1_continuous_loss, l1_continuous_loss, l2_continuous_loss):
        assert fn(pred, nothing, reduction="sum", scale="1-10").item() == 0.0


def test_recipe_options_are_checked():
    with pytest.raises(EmoctxError, match="unknown reduction 'total'"):
        EmotionLoss(reduction="total")
    with pytest.raises(EmoctxError, match="did you mean '1-10'"):
        EmotionLoss(continuous_scale="1_10")
    with pytest.raises(EmoctxError, match="unknown continuous scale"):
        l1_continuous_loss(torch.zeros(1, 3), torch.zeros(1, 3), scale="points")
    assert "reduction=sum" in repr(EmotionLoss(reduction="sum"))
