"""kto_loss, kl_estimate and mismatched_indices: value, gradient, properties, extremes, errors.

The loss and the batch estimate of its reference point (paper §4.1, Eq. 8, Prop. 4.1)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cases import (
    BETAS,
    DESIRABLE,
    DTYPES,
    EPS,
    EXTREME_BETAS,
    KINDS,
    POLICY,
    RAISE,
    REFERENCE,
    WEIGHTS,
    WIDE,
    WIDE_BETAS,
    check,
    finite_fields,
    unpaired_batches,
)
from conftest import assert_close, count_case, examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import expit

from minikto import kl_estimate, kto_loss, mismatched_indices
from minikto.backend import get_namespace, to_numpy
from minikto.losses import apo_zero_unpaired_loss


def trl_style_kto(policy, reference, desirable, kl, beta, wd, wu):
    """An independent float64 transcription of TRL's/HALOs' KTO semantics."""
    r = policy - reference
    chosen = 1.0 - expit(beta * (r[desirable] - kl))
    rejected = 1.0 - expit(beta * (kl - r[~desirable]))
    losses = np.concatenate([wd * chosen, wu * rejected])
    return losses.mean()


def batch(rng, n, *, scale=3.0):
    policy = rng.normal(size=n) * scale - 5
    reference = rng.normal(size=n) * scale - 5
    desirable = rng.random(n) < 0.5
    return policy, reference, desirable


@pytest.mark.parametrize("seed", range(5))
def test_loss_matches_the_reference_implementations_semantics_to_1e_12(xp, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 20))
    p, r, d = batch(rng, n)
    beta, wd, wu, z0 = rng.uniform(0.01, 2), rng.uniform(0, 3), rng.uniform(0, 3), rng.uniform(0, 2)
    out = kto_loss(
        xp.asarray(p),
        xp.asarray(r),
        xp.asarray(d),
        z0,
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    assert abs(float(out.loss) - trl_style_kto(p, r, d, z0, beta, wd, wu)) <= 1e-12
    assert_close(out.rewards, beta * (p - r))


def test_at_initialisation_the_loss_is_one_half_and_each_gradient_is_beta_over_4b(xp):
    n, beta = 8, 0.1
    logps = xp.asarray(np.full(n, -3.7))
    desirable = xp.asarray(np.arange(n) % 3 == 0)
    out = kto_loss(logps, logps, desirable, 0.0, beta=beta)
    assert float(out.loss) == 0.5
    assert_close(xp.abs(out.grad_policy_logps), np.full(n, beta / (4 * n)), rtol=1e-15)
    # desirable examples are pushed up (negative gradient), undesirable ones down
    assert np.all(to_numpy(out.grad_policy_logps)[to_numpy(desirable)] < 0)
    assert np.all(to_numpy(out.grad_policy_logps)[~to_numpy(desirable)] > 0)


@pytest.mark.parametrize("only", [True, False])
def test_a_batch_of_one_kind_only_has_a_finite_loss(xp, only):
    rng = np.random.default_rng(3)
    p, r, _ = batch(rng, 5)
    out = kto_loss(xp.asarray(p), xp.asarray(r), xp.asarray(np.full(5, only)), 0.2)
    assert np.isfinite(float(out.loss))
    assert abs(float(out.loss) - trl_style_kto(p, r, np.full(5, only), 0.2, 0.1, 1, 1)) < 1e-12


def test_each_loss_lies_between_zero_and_its_weight(xp):
    rng = np.random.default_rng(5)
    p, r, d = batch(rng, 50, scale=30)
    out = kto_loss(
        xp.asarray(p),
        xp.asarray(r),
        xp.asarray(d),
        1.0,
        beta=1.0,
        desirable_weight=2.0,
        undesirable_weight=0.5,
    )
    w = np.where(d, 2.0, 0.5)
    losses = to_numpy(out.losses)
    assert np.all(losses >= 0) and np.all(losses <= w)


def test_gradient_weight_vanishes_far_from_the_reference_point_prop_4_1(xp):
    """Prop. 4.1: |dL/dr| = lambda beta sigma(z) sigma(-z) / B -> 0 as |z| grows."""
    r = np.array([-200.0, -20.0, -2.0, 0.0, 2.0, 20.0, 200.0])
    for label in (True, False):
        out = kto_loss(
            xp.asarray(r), xp.asarray(np.zeros(7)), xp.asarray(np.full(7, label)), 0.0, beta=1.0
        )
        w = np.abs(to_numpy(out.grad_policy_logps)) * 7
        assert w[3] == pytest.approx(0.25)
        assert np.all(np.diff(w[:4]) > 0) and np.all(np.diff(w[3:]) < 0)
        assert w[0] < 1e-80 and w[-1] < 1e-80


def test_no_warning_nan_or_inf_at_extreme_log_ratios_and_beta(xp):
    r = xp.asarray([-1e4, -1.0, 0.0, 1.0, 1e4])
    d = xp.asarray([True, False, True, False, True])
    for beta in (1e-6, 0.1, 1e3):
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            out = kto_loss(r, xp.zeros_like(r), d, 5.0, beta=beta)
        for a in out:
            assert np.all(np.isfinite(to_numpy(a)))


def test_kl_estimate_is_the_mean_log_ratio_clamped_at_zero_after_the_mean(xp):
    p = xp.asarray([-1.0, -2.0, -9.0])
    r = xp.asarray([-2.0, -4.0, -5.0])  # log-ratios +1, +2, -4: mean -1/3 -> clamped
    est = kl_estimate(p, r)
    assert float(est.z0) == 0.0
    assert_close(est.grad_kl_policy_logps, np.zeros(3))
    est = kl_estimate(p, xp.asarray([-2.0, -4.0, -10.0]))  # +1, +2, +1: mean 4/3
    assert float(est.z0) == pytest.approx(4 / 3, rel=1e-15)
    assert_close(est.grad_kl_policy_logps, np.full(3, 1 / 3))


def test_mismatched_pairs_rotate_by_one_and_never_pair_an_example_with_itself():
    for b in range(2, 12):
        idx = to_numpy(mismatched_indices(b))
        assert list(idx) == [(i - 1) % b for i in range(b)]
        assert np.all(idx != np.arange(b))


def test_a_batch_of_one_cannot_estimate_the_reference_point():
    with pytest.raises(ValueError, match="batch_size.*at least 2"):
        mismatched_indices(1)


def test_mismatched_indices_refuses_a_batch_size_that_is_not_an_int():
    for bad in (2.0, True, "4"):
        with pytest.raises(TypeError, match="batch_size: expected an int"):
            mismatched_indices(bad)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples(14))
@given(data=st.data(), beta=BETAS, wd=WEIGHTS, wu=WEIGHTS, z0=st.floats(-5.0, 5.0))
def test_kto_loss_gradient_in_the_log_probs_and_in_z0_agrees_with_finite_differences(
    kind, data, beta, wd, wu, z0
):
    backend, policy, reference, desirable = data.draw(unpaired_batches(kind))
    xp = get_namespace(backend)
    ref, lab = xp.asarray(reference), xp.asarray(desirable)
    kw = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)

    def fun(x):  # x = (policy_logps..., z0)
        out = kto_loss(xp.asarray(x[:-1]), ref, lab, float(x[-1]), **kw)
        return float(out.loss), np.append(to_numpy(out.grad_policy_logps), float(out.grad_z0))

    b = policy.shape[0]
    check(fun, np.append(policy, z0), {"policy_logps": slice(0, b), "z0": slice(b, b + 1)})
    count_case("kto_loss")


@settings(max_examples=examples(30))
@given(case=unpaired_batches())
def test_kl_estimate_gradient_agrees_with_finite_differences_away_from_the_clamp(case):
    backend, policy, reference, _ = case
    # at a mean log-ratio of exactly 0 the clamp max(0, mean) has a kink: no derivative there.
    # A step H moves the mean by at most H, so 1e-4 away from the kink is on one side.
    assume(abs(np.mean(policy - reference)) > 1e-4)
    xp = get_namespace(backend)
    ref = xp.asarray(reference)

    def fun(x):
        out = kl_estimate(xp.asarray(x), ref)
        return float(out.z0), to_numpy(out.grad_kl_policy_logps)

    check(fun, policy)
    count_case("kl_estimate")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples(20))
@given(data=st.data(), beta=WIDE_BETAS, wd=WEIGHTS, wu=WEIGHTS, z0=WIDE)
def test_each_example_loss_lies_between_zero_and_its_weight(kind, data, beta, wd, wu, z0):
    backend, policy, reference, desirable = data.draw(unpaired_batches(kind, WIDE))
    xp = get_namespace(backend)
    args = xp.asarray(policy), xp.asarray(reference), xp.asarray(desirable)
    kw = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)
    weight = np.where(desirable, wd, wu)
    for out in (kto_loss(*args, z0, **kw), apo_zero_unpaired_loss(*args, **kw)):
        losses = to_numpy(out.losses)
        assert np.all(losses >= 0.0) and np.all(losses <= weight), (losses, weight)
        # the batch mean too, up to the rounding of a sum of B terms (7 equal losses w can
        # average to w + 1 ulp)
        assert 0.0 <= float(out.loss) <= max(wd, wu) * (1 + policy.shape[0] * EPS)


@settings(max_examples=examples(50))
@given(data=st.data(), case=unpaired_batches(), beta=BETAS, wd=st.floats(0.01, 3.0),
       wu=st.floats(0.01, 3.0), z0=st.floats(-5.0, 5.0), rise=st.floats(1e-3, 50.0))
def test_loss_falls_as_a_desirable_reward_rises_and_rises_for_an_undesirable_one(
    data, case, beta, wd, wu, z0, rise
):
    backend, policy, reference, desirable = case
    xp = get_namespace(backend)
    i = data.draw(st.integers(0, policy.shape[0] - 1))
    higher = policy.copy()
    higher[i] += rise  # the reward r_i = policy_logps_i - reference_logps_i rises by `rise`
    kw = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)
    ref, lab = xp.asarray(reference), xp.asarray(desirable)
    for loss in (lambda p: kto_loss(p, ref, lab, z0, **kw),
                 lambda p: apo_zero_unpaired_loss(p, ref, lab, **kw)):
        before, after = loss(xp.asarray(policy)), loss(xp.asarray(higher))
        old, new = float(to_numpy(before.losses)[i]), float(to_numpy(after.losses)[i])
        if desirable[i]:
            assert new <= old and float(after.loss) <= float(before.loss)
        else:
            assert new >= old and float(after.loss) >= float(before.loss)
    # strictly, wherever the sigmoid is not saturated: |z_i| <= 10 means sigma'(z) >= 4.5e-5
    z = (1 if desirable[i] else -1) * beta * (policy[i] - reference[i] - z0)
    if abs(z) <= 10:
        old = float(to_numpy(kto_loss(xp.asarray(policy), ref, lab, z0, **kw).losses)[i])
        new = float(to_numpy(kto_loss(xp.asarray(higher), ref, lab, z0, **kw).losses)[i])
        assert (new < old) if desirable[i] else (new > old)


@settings(max_examples=examples(50))
@given(case=unpaired_batches(elements=WIDE))
def test_the_batch_estimate_of_z0_is_never_negative(case):
    backend, policy, reference, _ = case
    xp = get_namespace(backend)
    out = kl_estimate(xp.asarray(policy), xp.asarray(reference))
    assert float(out.z0) >= 0.0
    # its gradient is 1/B per entry where the mean passes the clamp, 0 where it is clamped
    grad = to_numpy(out.grad_kl_policy_logps)
    b = policy.shape[0]
    assert np.all(grad == 1.0 / b) or np.all(grad == 0.0)
    assert (float(out.z0) > 0.0) <= bool(np.all(grad == 1.0 / b))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", EXTREME_BETAS)
@pytest.mark.parametrize("z0", [0.0, 1e4, -1e4])
def test_kto_loss_is_finite_in_range_and_warning_free_at_extreme_log_ratios(xp, dtype, beta, z0):
    policy, reference = (xp.asarray(np.array(v), dtype=getattr(xp, dtype))
                         for v in (POLICY, REFERENCE))
    desirable = xp.asarray(np.array(DESIRABLE))
    with np.errstate(**RAISE):
        out = kto_loss(policy, reference, desirable, z0, beta=beta, desirable_weight=1.5,
                       undesirable_weight=0.5)
    finite_fields(out)
    assert all(getattr(out, name).dtype == policy.dtype for name in out._fields)
    losses = to_numpy(out.losses)
    assert np.all(losses >= 0) and np.all(losses <= np.where(DESIRABLE, 1.5, 0.5))
    # far past the reference point the weight sigma(z) sigma(-z) underflows to 0, not NaN
    z = np.where(DESIRABLE, 1, -1) * beta * (np.array(POLICY) - np.array(REFERENCE) - z0)
    saturated = np.abs(z) > 200  # sigma(z) sigma(-z) < exp(-200): below float64's range
    assert np.all(to_numpy(out.grad_policy_logps)[saturated] == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_batch_estimate_is_finite_and_warning_free_at_extreme_log_ratios(xp, dtype):
    for sign in (1.0, -1.0):
        policy = xp.asarray(sign * np.array(POLICY), dtype=getattr(xp, dtype))
        reference = xp.asarray(np.array(REFERENCE), dtype=getattr(xp, dtype))
        with np.errstate(**RAISE):
            est = kl_estimate(policy, reference)
        finite_fields(est)
        assert float(est.z0) >= 0.0


P = np.array([-1.0, -2.0, -3.0])


R = np.array([-1.5, -2.0, -2.5])


D = np.array([True, False, True])


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        (dict(policy_logps=P[:2]), ValueError, r"reference_logps: expected shape \(2,\)"),
        (dict(reference_logps=R[:2]), ValueError, r"reference_logps: expected shape \(3,\)"),
        (dict(desirable=np.array([1, 0, 1])), TypeError, "desirable: expected a boolean"),
        (dict(desirable=D[:2]), ValueError, r"desirable: expected shape \(3,\)"),
        (dict(policy_logps=np.array([])), ValueError, "policy_logps: expected a non-empty"),
        (dict(policy_logps=np.array([np.nan, 0, 0])), ValueError, "policy_logps: expected finite"),
        (
            dict(reference_logps=np.array([np.inf, 0, 0])),
            ValueError,
            "reference_logps: expected fin",
        ),
        (dict(policy_logps=P.reshape(3, 1)), ValueError, r"policy_logps: expected shape \(B,\)"),
        (dict(policy_logps=[1.0, 2.0, 3.0]), TypeError, "policy_logps: expected an array"),
        (dict(policy_logps=np.array([1, 2, 3])), TypeError, "policy_logps: expected a floating"),
        (dict(beta=0.0), ValueError, "beta: expected a number > 0"),
        (dict(beta=-1.0), ValueError, "beta: expected a number > 0"),
        (dict(beta=float("nan")), ValueError, "beta: expected a finite"),
        (dict(beta="0.1"), TypeError, "beta: expected a real number"),
        (dict(desirable_weight=-1.0), ValueError, "desirable_weight: expected a number >= 0"),
        (dict(undesirable_weight=float("inf")), ValueError, "undesirable_weight: expected a fin"),
        (dict(z0=float("nan")), ValueError, "z0: expected a finite"),
        (dict(z0=np.zeros(2)), ValueError, "z0: expected a scalar"),
    ],
)
def test_kto_loss_refuses_bad_input_naming_the_argument(kwargs, exc, pattern):
    args = dict(policy_logps=P, reference_logps=R, desirable=D, z0=0.0)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        kto_loss(
            args.pop("policy_logps"),
            args.pop("reference_logps"),
            args.pop("desirable"),
            args.pop("z0"),
            **args,
        )


def test_arrays_of_two_backends_are_refused():
    strict = get_namespace("array_api_strict")
    with pytest.raises(TypeError, match="one array library"):
        kto_loss(P, strict.asarray(R), D, 0.0)
    with pytest.raises(TypeError, match="one array library"):
        kl_estimate(strict.asarray(P), R)


def test_kl_estimate_refuses_mismatched_shapes_and_nan():
    with pytest.raises(ValueError, match=r"kl_reference_logps: expected shape \(3,\)"):
        kl_estimate(P, R[:2])
    with pytest.raises(ValueError, match="kl_policy_logps: expected finite"):
        kl_estimate(np.array([np.nan, 1.0]), R[:2])


# ------------------------------------------------------------------------------------------
# Numbers that are not real numbers, or too large for the loss's dtype


@pytest.mark.parametrize(
    ("knob", "value"),
    [("beta", np.bool_(True)), ("beta", 0.1 + 0j), ("beta", np.complex128(0.1)),
     ("desirable_weight", np.bool_(True)), ("undesirable_weight", 1 + 0j),
     ("z0", np.bool_(False)), ("z0", np.complex64(0.5)), ("z0", 0.5 + 0j)],
)
def test_booleans_and_complex_numbers_are_refused_as_beta_weights_or_z0(knob, value):
    kwargs = {knob: value}
    z0 = kwargs.pop("z0", 0.0)
    with pytest.raises(TypeError, match=f"{knob}: expected a real number"):
        kto_loss(P, R, D, z0, **kwargs)


def test_kl_estimate_refuses_mixed_float32_and_float64_like_kto_loss():
    with pytest.raises(TypeError, match="reference_logps: expected dtype float64"):
        kto_loss(P, R.astype(np.float32), D, 0.0)
    with pytest.raises(TypeError, match="kl_reference_logps: expected dtype float64 like "
                                        "kl_policy_logps; got float32"):
        kl_estimate(P, R.astype(np.float32))


@pytest.mark.parametrize("argument", ["policy_logps", "reference_logps", "desirable", "z0"])
def test_a_masked_array_is_refused_naming_the_argument(argument):
    args = dict(policy_logps=P, reference_logps=R, desirable=D, z0=np.asarray(0.0))
    args[argument] = np.ma.masked_array(args[argument], mask=np.zeros(args[argument].shape))
    with pytest.raises(TypeError, match=f"{argument}: expected a plain array; got a masked"):
        kto_loss(*args.values())
    with pytest.raises(TypeError, match="kl_policy_logps: expected a plain array"):
        kl_estimate(np.ma.masked_array(P, mask=[0, 1, 0]), R)


def test_a_float32_loss_refuses_a_beta_or_weight_it_cannot_hold_without_nan_or_warning():
    p32, r32 = P.astype(np.float32), R.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way to the error
        with pytest.raises(ValueError, match="beta: expected a number the loss's dtype float32"):
            kto_loss(p32, r32, D, 0.0, beta=1e39)
        with pytest.raises(ValueError, match="desirable_weight: expected a weight whose product "
                                             "with beta"):
            kto_loss(p32, r32, D, 0.0, beta=1e30, desirable_weight=1e10)
        with pytest.raises(ValueError, match=r"beta: expected a value whose product with the "
                                             r"log-ratios stays finite in float32"):
            kto_loss(p32 * 1e9, r32, D, 0.0, beta=1e30)
    out = kto_loss(P, R, D, 0.0, beta=1e39)  # float64 holds it
    assert np.all(np.isfinite(to_numpy(out.losses)))


def test_a_400_digit_integer_beta_is_a_clear_error_naming_beta():
    with pytest.raises(ValueError, match="beta: expected a finite number; got an integer of 401 "
                                         "digits"):
        kto_loss(P, R, D, 0.0, beta=10**400)
    with pytest.raises(ValueError, match="z0: expected a finite number; got an integer"):
        kto_loss(P, R, D, -(10**400))
