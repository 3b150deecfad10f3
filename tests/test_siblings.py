"""Specifications of BCO (unpaired), SimPO and ORPO (reference-free, mean token log-probs) and of
the policy's mean token log-prob with its backward pass.

Values against SciPy transcriptions of TRL's formulas (the equality with TRL's own code is
tests/test_siblings_trl.py), gradients against central finite differences on NumPy and
array_api_strict, float32, extreme inputs, refusals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import RAISE, check
from scipy.special import log_expit

from minikto import SoftmaxPolicy
from minikto.backend import get_namespace, to_numpy
from minikto.bco import bco_loss, running_mean
from minikto.reference_free import orpo_loss, simpo_loss

BACKENDS = ["numpy", "array_api_strict"]


@pytest.fixture(params=BACKENDS)
def xp(request):
    return get_namespace(request.param)


def unpaired(seed, batch=7):
    rng = np.random.default_rng(seed)
    reference = -rng.uniform(5, 40, batch)
    desirable = rng.random(batch) < 0.5
    desirable[:2] = [True, False]
    return reference + rng.normal(0, 4, batch), reference, desirable


def means(seed, batch=6):
    rng = np.random.default_rng(seed)
    return -rng.uniform(0.05, 3.0, batch), -rng.uniform(0.05, 3.0, batch)


def lengths_of(seed, batch=6):
    return np.random.default_rng(seed).integers(1, 9, batch).astype(np.float64)


def as_xp(xp, *arrays):
    return tuple(xp.asarray(a) for a in arrays)


# ------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize(("beta", "delta"), [(0.1, 0.0), (0.8, -0.3), (2.0, None)])
def test_bco_value_is_a_logistic_loss_on_reward_minus_delta(xp, beta, delta):
    policy, reference, desirable = unpaired(0)
    out = bco_loss(*as_xp(xp, policy, reference, desirable), beta=beta, delta=delta)
    u = beta * (policy - reference)
    shift = u.mean() if delta is None else delta
    want = np.where(desirable, -log_expit(u - shift), -log_expit(-(u - shift)))
    np.testing.assert_allclose(to_numpy(out.losses), want, rtol=1e-13)
    np.testing.assert_allclose(float(out.loss), want.mean(), rtol=1e-13)
    np.testing.assert_allclose(to_numpy(out.rewards), u, rtol=1e-15)
    assert out.delta == pytest.approx(shift, rel=1e-15)


def test_running_mean_is_the_mean_of_every_reward_seen(xp):
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=n) for n in (3, 5, 1, 4)]
    mean, count = 0.0, 0.0
    for b in batches:
        mean, count = running_mean(mean, count, xp.asarray(b))
    assert mean == pytest.approx(np.concatenate(batches).mean(), rel=1e-14)
    assert count == 13


@pytest.mark.parametrize(("beta", "gamma", "eps"), [(0.1, 0.5, 0.0), (2.5, 1.0, 0.2)])
def test_simpo_value_is_the_shifted_sigmoid_on_the_mean_log_prob_margin(xp, beta, gamma, eps):
    chosen, rejected = means(2)
    out = simpo_loss(
        *as_xp(xp, chosen, rejected), beta=beta, simpo_gamma=gamma, label_smoothing=eps
    )
    h = beta * (chosen - rejected) - gamma
    want = -(1 - eps) * log_expit(h) - eps * log_expit(-h)
    np.testing.assert_allclose(to_numpy(out.losses), want, rtol=1e-13)
    np.testing.assert_allclose(to_numpy(out.chosen_rewards), beta * chosen, rtol=1e-15)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_value_is_the_chosen_nll_plus_the_odds_ratio_term(xp, beta):
    chosen, rejected = means(3)
    lengths = lengths_of(3)
    out = orpo_loss(*as_xp(xp, chosen, rejected, lengths), beta=beta)
    log_odds = (chosen - np.log1p(-np.exp(chosen))) - (rejected - np.log1p(-np.exp(rejected)))
    nll = -(chosen * lengths).sum() / lengths.sum()
    np.testing.assert_allclose(float(out.nll_loss), nll, rtol=1e-14)
    np.testing.assert_allclose(to_numpy(out.losses), -beta * log_expit(log_odds), rtol=1e-13)
    np.testing.assert_allclose(float(out.loss), nll - beta * log_expit(log_odds).mean(), rtol=1e-13)
    np.testing.assert_allclose(float(out.log_odds_chosen), log_odds.mean(), rtol=1e-13)


def test_orpo_log_odds_are_exact_on_both_sides_of_the_branch(xp):
    """log(1 - e^a) near 0 (expm1 branch) and far below it (log1p branch), against math."""
    a = np.array([-1e-12, -0.5, -math.log(2.0), -0.7, -30.0])
    b = np.full(5, -1.0)
    out = orpo_loss(*as_xp(xp, a, b, np.ones(5)), beta=1.0)
    log_odds_a = a - np.array([math.log(-math.expm1(x)) for x in a])
    want = log_odds_a - (b - np.log1p(-np.exp(b)))
    z = to_numpy(out.losses)  # -log sigmoid(z): recover z = log(expm1(loss))
    np.testing.assert_allclose(-np.log(np.expm1(z)), want, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Gradients agree with central finite differences


@pytest.mark.parametrize(("beta", "delta"), [(0.1, 0.2), (1.5, -1.0)])
def test_bco_gradient_matches_finite_differences(xp, beta, delta):
    policy, reference, desirable = unpaired(4, 6)
    ref, lab = xp.asarray(reference), xp.asarray(desirable)

    def fun(x):
        out = bco_loss(xp.asarray(x), ref, lab, beta=beta, delta=delta)
        return float(out.loss), to_numpy(out.grad_policy_logps)

    check(fun, policy)


def paired_check(xp, loss, chosen, rejected, *extra, **kw):
    batch = chosen.shape[0]
    extra = as_xp(xp, *extra)

    def fun(x):
        out = loss(xp.asarray(x[:batch]), xp.asarray(x[batch:]), *extra, **kw)
        grad = np.concatenate(
            [to_numpy(out.grad_policy_chosen_logps), to_numpy(out.grad_policy_rejected_logps)]
        )
        return float(out.loss), grad

    blocks = {"chosen": slice(0, batch), "rejected": slice(batch, 2 * batch)}
    check(fun, np.concatenate([chosen, rejected]), blocks)


@pytest.mark.parametrize(("beta", "gamma", "eps"), [(0.1, 0.5, 0.0), (3.0, 1.0, 0.2)])
def test_simpo_gradient_matches_finite_differences(xp, beta, gamma, eps):
    chosen, rejected = means(5)
    paired_check(
        xp, simpo_loss, chosen, rejected, beta=beta, simpo_gamma=gamma, label_smoothing=eps
    )


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_orpo_gradient_matches_finite_differences(xp, beta):
    chosen, rejected = means(6)
    paired_check(xp, orpo_loss, chosen, rejected, lengths_of(6), beta=beta)


@pytest.mark.parametrize("features", ["onehot", 3])
def test_mean_token_logps_backward_matches_finite_differences(backend_name, features):
    policy = SoftmaxPolicy(5, 3, features=features, backend=backend_name, eos_token=0, seed=2)
    xp = policy.xp
    prompts = xp.asarray(np.array([0, 1, 2, 1]))
    responses = xp.asarray(np.array([[1, 2, 0, -1], [3, 0, -1, -1], [4, 4, 4, 4], [0, -1, -1, -1]]))
    weights = xp.asarray(np.array([0.3, -1.0, 0.7, 2.0]))

    def fun(theta):
        policy.set_flat(theta)
        means, cache = policy.mean_token_logps(prompts, responses, return_cache=True)
        grads = policy.mean_token_logps_backward(prompts, responses, weights, cache=cache)
        return float(xp.sum(weights * means)), policy.flatten_grads(grads)

    check(fun, policy.get_flat(), policy.param_slices())


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    return request.param


def test_mean_token_logps_is_the_sum_over_the_length(backend_name):
    policy = SoftmaxPolicy(4, 2, backend=backend_name, eos_token=0, seed=3)
    xp = policy.xp
    prompts = xp.asarray(np.array([0, 1, 1]))
    responses = xp.asarray(np.array([[1, 0, -1], [2, 3, 1], [0, -1, -1]]))
    lengths = policy.response_lengths(prompts, responses)
    np.testing.assert_array_equal(to_numpy(lengths), [2.0, 3.0, 1.0])
    assert lengths.dtype == policy.dtype
    np.testing.assert_allclose(
        to_numpy(policy.mean_token_logps(prompts, responses)),
        to_numpy(policy.sequence_logps(prompts, responses)) / np.array([2.0, 3.0, 1.0]),
        rtol=1e-15,
    )


# ------------------------------------------------------------------------------------------
# float32, extremes, refusals


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_inputs_give_finite_values_and_no_warning(xp, dtype):
    big = np.array([1e4, -1e4, 0.0, 5e3], dtype=dtype)
    zero = np.zeros(4, dtype=dtype)
    desirable = np.array([True, True, False, False])
    tiny = np.array([-1e-30, -1e4, -0.5, -1e-7], dtype=dtype)  # mean log-probs near 0 and far
    other = np.array([-1e4, -1e-30, -1e-7, -0.5], dtype=dtype)
    ones = np.ones(4, dtype=dtype)
    for beta in (1e-6, 0.1, 1e3):
        with np.errstate(**RAISE):
            outs = [
                bco_loss(*as_xp(xp, big, zero, desirable), beta=beta, delta=0.0),
                simpo_loss(*as_xp(xp, big, -big), beta=beta),
                orpo_loss(*as_xp(xp, tiny, other, ones), beta=beta),
            ]
        for out in outs:
            for field in out._fields:
                value = getattr(out, field)
                assert np.all(np.isfinite(to_numpy(value))), field
                if hasattr(value, "dtype"):
                    assert value.dtype == getattr(xp, dtype), field


def test_float32_agrees_with_float64(xp):
    """float32 inputs, float32 arithmetic, against float64 on the same rounded inputs; a few
    roundings of eps32 / 2 on terms of the field's size: 100 eps32, norm-wise."""
    policy, reference, desirable = unpaired(7)
    chosen, rejected = means(7)
    lengths = lengths_of(7)
    calls = [
        lambda a: bco_loss(*a[:2], a[2], beta=0.5, delta=0.1),
        lambda a: simpo_loss(a[3], a[4], beta=2.0),
        lambda a: orpo_loss(a[3], a[4], a[5], beta=0.3),
    ]
    f32 = [
        policy.astype(np.float32),
        reference.astype(np.float32),
        desirable,
        chosen.astype(np.float32),
        rejected.astype(np.float32),
        lengths.astype(np.float32),
    ]
    f64 = [a.astype(np.float64) if a.dtype != bool else a for a in f32]
    for fn in calls:
        got, want = fn(as_xp(xp, *f32)), fn(as_xp(get_namespace("numpy"), *f64))
        for field in got._fields:
            g, w = (np.asarray(to_numpy(getattr(o, field)), dtype=np.float64) for o in (got, want))
            assert np.max(np.abs(g - w)) <= 100 * np.finfo(np.float32).eps * np.max(np.abs(w))


def test_orpo_refuses_a_mean_log_prob_of_zero(xp):
    chosen, rejected = means(8, 3)
    chosen[1] = 0.0
    with pytest.raises(ValueError, match=r"^policy_chosen_logps: expected mean token log-probs"):
        orpo_loss(*as_xp(xp, chosen, rejected, np.ones(3)))
    with pytest.raises(ValueError, match=r"^chosen_lengths: expected token counts >= 1"):
        orpo_loss(*as_xp(xp, rejected, rejected, np.zeros(3)))


def test_refusals_name_the_argument(xp):
    policy, reference, desirable = unpaired(9, 4)
    with pytest.raises(ValueError, match=r"^delta: expected a finite number"):
        bco_loss(*as_xp(xp, policy, reference, desirable), delta=float("inf"))
    with pytest.raises(TypeError, match=r"^desirable: expected a boolean array"):
        bco_loss(*as_xp(xp, policy, reference, policy))
    chosen, rejected = means(9, 4)
    with pytest.raises(ValueError, match=r"^policy_rejected_logps: expected shape \(4,\)"):
        simpo_loss(*as_xp(xp, chosen, rejected[:3]))
    with pytest.raises(ValueError, match=r"^label_smoothing: expected a probability"):
        simpo_loss(*as_xp(xp, chosen, rejected), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"^simpo_gamma: expected a finite number"):
        simpo_loss(*as_xp(xp, chosen, rejected), simpo_gamma=float("nan"))
    with pytest.raises(ValueError, match=r"^beta: expected a number > 0"):
        orpo_loss(*as_xp(xp, chosen, rejected, np.ones(4)), beta=-1.0)


def test_bco_pushes_desirable_up_and_undesirable_down_and_sigmoid_weights_never_vanish(xp):
    policy, reference, desirable = unpaired(10, 8)
    out = bco_loss(*as_xp(xp, policy, reference, desirable), beta=1.0, delta=0.0)
    grad = to_numpy(out.grad_policy_logps)
    assert np.all(grad[desirable] < 0) and np.all(grad[~desirable] > 0)
    # a desirable example far BELOW delta keeps the full weight beta / B (not KTO's vanishing one)
    far = bco_loss(
        *as_xp(xp, np.array([-1e3, 0.0]), np.zeros(2), np.array([True, False])), beta=1.0, delta=0.0
    )
    assert float(far.grad_policy_logps[0]) == pytest.approx(-0.5, rel=1e-15)
