"""Specifications of minikto.pairwise.preference_loss: the 13 pairwise losses of TRL 0.19.

Values against independent float64 SciPy transcriptions of TRL's formulas (the equality with
TRL's own code is tests/test_pairwise_trl.py), gradients against central finite differences on
NumPy and array_api_strict, float32, extreme inputs, the conventions at the hinge's kink and at
ties of the AOT sort, and the refusals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import EXTREME_BETAS, POLICY, RAISE, REFERENCE, check
from scipy.special import expit, log_expit

from minikto import dpo_loss, preference_loss
from minikto.backend import get_namespace, to_numpy
from minikto.pairwise import PAIRWISE_LOSS_TYPES

BACKENDS = ["numpy", "array_api_strict"]
SMOOTHED = {"sigmoid": 0.1, "robust": 0.2, "exo_pair": 0.05, "aot": 0.1, "aot_pair": 0.3}
#: every loss, and every smoothed loss once more with label smoothing
CASES = [(t, 0.0) for t in PAIRWISE_LOSS_TYPES] + list(SMOOTHED.items())


@pytest.fixture(params=BACKENDS)
def xp(request):
    return get_namespace(request.param)


def pairs(seed: int, batch: int, spread: float = 4.0):
    """(policy_chosen, policy_rejected, reference_chosen, reference_rejected), float64."""
    rng = np.random.default_rng(seed)
    reference = -rng.uniform(5.0, 40.0, size=(2, batch))
    policy = reference + rng.normal(0.0, spread, size=(2, batch))
    return policy[0], policy[1], reference[0], reference[1]


def call(xp, loss_type, arrays, **kw):
    return preference_loss(loss_type, *(xp.asarray(a) for a in arrays), **kw)


# ------------------------------------------------------------------------------------------
# Independent float64 references: TRL's formulas, transcribed with scipy.special


def reference_losses(loss_type, pc, pr, rc, rr, beta, eps, delta, tau):
    c, r = pc - rc, pr - rr
    h = beta * (c - r)
    if loss_type == "sigmoid":
        return -log_expit(h) * (1 - eps) - log_expit(-h) * eps
    if loss_type == "robust":
        return (-log_expit(h) * (1 - eps) + log_expit(-h) * eps) / (1 - 2 * eps)
    if loss_type == "exo_pair":
        eps = eps or 1e-3
        return expit(h) * (log_expit(h) - math.log(1 - eps)) + expit(-h) * (
            log_expit(-h) - math.log(eps)
        )
    if loss_type == "hinge":
        return np.maximum(0.0, 1 - h)
    if loss_type == "ipo":
        return ((c - r) - 1 / (2 * beta)) ** 2
    if loss_type == "bco_pair":
        return -log_expit(beta * c - delta) - log_expit(-(beta * r - delta))
    if loss_type == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if loss_type == "nca_pair":
        return -log_expit(beta * c) - 0.5 * log_expit(-beta * c) - 0.5 * log_expit(-beta * r)
    if loss_type in ("aot", "aot_pair"):
        d = np.sort(pc - pr) - np.sort(rc - rr) if loss_type == "aot" else np.sort(c) - np.sort(r)
        return -log_expit(beta * d) * (1 - eps) - log_expit(-beta * d) * eps
    if loss_type == "discopop":
        s = expit(h / tau)
        return -log_expit(h) * (1 - s) + np.exp(-h) * s
    if loss_type == "apo_zero":
        return 1 - expit(beta * c) + expit(beta * r)
    if loss_type == "apo_down":
        return expit(beta * c) + 1 - expit(h)
    raise AssertionError(loss_type)


@pytest.mark.parametrize(("loss_type", "eps"), CASES)
@pytest.mark.parametrize(("seed", "beta", "tau"), [(0, 0.1, 0.05), (1, 0.7, 0.05), (2, 2.0, 0.4)])
def test_value_and_rewards_match_the_formula(xp, loss_type, eps, seed, beta, tau):
    arrays = pairs(seed, 5 + seed)
    delta = 0.3 if loss_type == "bco_pair" else None
    out = call(xp, loss_type, arrays, beta=beta, label_smoothing=eps, delta=delta, discopop_tau=tau)
    want = reference_losses(loss_type, *arrays, beta, eps, delta, tau)
    np.testing.assert_allclose(to_numpy(out.losses), want, rtol=1e-12)
    np.testing.assert_allclose(float(out.loss), want.mean(), rtol=1e-12)
    pc, pr, rc, rr = arrays
    np.testing.assert_allclose(to_numpy(out.chosen_rewards), beta * (pc - rc), rtol=1e-15)
    np.testing.assert_allclose(to_numpy(out.rejected_rewards), beta * (pr - rr), rtol=1e-15)


@pytest.mark.parametrize("beta", [0.01, 0.1, 3.0])
def test_sigmoid_is_dpo_loss(xp, beta):
    arrays = pairs(3, 9)
    got = call(xp, "sigmoid", arrays, beta=beta)
    want = dpo_loss(*(xp.asarray(a) for a in arrays), beta=beta)
    for field in got._fields:
        np.testing.assert_allclose(
            to_numpy(getattr(got, field)),
            to_numpy(getattr(want, field)),
            rtol=1e-15,
            err_msg=field,
        )


def test_exo_pair_without_smoothing_uses_trls_1e_3(xp):
    arrays = pairs(4, 6)
    a, b = call(xp, "exo_pair", arrays), call(xp, "exo_pair", arrays, label_smoothing=1e-3)
    for field in a._fields:
        np.testing.assert_array_equal(to_numpy(getattr(a, field)), to_numpy(getattr(b, field)))


def test_every_loss_at_the_reference_policy(xp):
    """pi = pi_ref: every log-ratio is 0, so each loss takes a value known in closed form."""
    pc, pr, _, _ = pairs(5, 4)
    beta, log2 = 0.25, math.log(2.0)
    known = {
        "sigmoid": log2,
        "hinge": 1.0,
        "ipo": 1 / (4 * beta**2),
        "exo_pair": 0.5 * (math.log(0.5 / (1 - 1e-3)) + math.log(0.5 / 1e-3)),
        "nca_pair": 2 * log2,
        "robust": log2,
        "bco_pair": 2 * log2,  # delta = None: the batch mean of zero rewards
        "sppo_hard": 2 / (4 * beta**2),
        "aot": log2,
        "aot_pair": log2,
        "discopop": 0.5 * log2 + 0.5,
        "apo_zero": 1.0,
        "apo_down": 1.0,
    }
    assert set(known) == set(PAIRWISE_LOSS_TYPES)
    for loss_type, value in known.items():
        out = call(xp, loss_type, (pc, pr, pc, pr), beta=beta)
        np.testing.assert_allclose(to_numpy(out.losses), value, rtol=1e-15, err_msg=loss_type)


def test_every_backend_agrees_with_numpy(xp):
    numpy = get_namespace("numpy")
    arrays = pairs(6, 7)
    for loss_type, eps in CASES:
        got, want = (
            call(xp, loss_type, arrays, label_smoothing=eps),
            call(numpy, loss_type, arrays, label_smoothing=eps),
        )
        for field in got._fields:
            np.testing.assert_allclose(
                to_numpy(getattr(got, field)),
                to_numpy(getattr(want, field)),
                rtol=1e-14,
                atol=0.0,
                err_msg=f"{loss_type} {field}",
            )


# ------------------------------------------------------------------------------------------
# Gradients agree with central finite differences


@pytest.mark.parametrize(("loss_type", "eps"), CASES)
@pytest.mark.parametrize(("seed", "beta"), [(10, 0.1), (11, 1.5)])
def test_gradient_matches_finite_differences(xp, loss_type, eps, seed, beta):
    batch = 6
    pc, pr, rc, rr = pairs(seed, batch)
    refs = xp.asarray(rc), xp.asarray(rr)
    kw = {"beta": beta, "label_smoothing": eps, "delta": 0.2 if loss_type == "bco_pair" else None}

    def fun(x):  # x = (policy_chosen_logps..., policy_rejected_logps...)
        out = preference_loss(loss_type, xp.asarray(x[:batch]), xp.asarray(x[batch:]), *refs, **kw)
        grad = np.concatenate(
            [to_numpy(out.grad_policy_chosen_logps), to_numpy(out.grad_policy_rejected_logps)]
        )
        return float(out.loss), grad

    blocks = {"chosen": slice(0, batch), "rejected": slice(batch, 2 * batch)}
    check(fun, np.concatenate([pc, pr]), blocks)


# ------------------------------------------------------------------------------------------
# Non-differentiable points: the conventions, stated in the docstrings, hold


def test_hinge_takes_the_right_derivative_zero_at_its_kink(xp):
    # pair 0 sits exactly on the kink h = 1 (beta = 0.5, margin 2); pair 1 just before it
    arrays = (np.array([2.0, 2.0 - 1e-9]), np.zeros(2), np.zeros(2), np.zeros(2))
    out = call(xp, "hinge", arrays, beta=0.5)
    np.testing.assert_array_equal(to_numpy(out.grad_policy_chosen_logps), [0.0, -0.5 / 2])
    np.testing.assert_array_equal(to_numpy(out.grad_policy_rejected_logps), [0.0, 0.5 / 2])
    # the right-hand difference quotient at the kink is 0 as well, the left one is -beta / B
    step = 1e-6

    def loss_at(x):
        return float(call(xp, "hinge", (np.array([x, 1.0]), *arrays[1:]), beta=0.5).loss)

    assert (loss_at(2.0 + step) - loss_at(2.0)) / step == 0.0
    assert (loss_at(2.0) - loss_at(2.0 - step)) / step == pytest.approx(-0.25, rel=1e-6)


@pytest.mark.parametrize("loss_type", ["aot", "aot_pair"])
def test_aot_ties_take_the_one_sided_derivatives_of_the_stable_order(xp, loss_type):
    # the sorted inputs tie at entries 1 and 3; integers, so every difference below is exact
    first = np.array([0.0, 1.0, 3.0, 1.0, -2.0])  # c (aot_pair) or the policy's margin (aot)
    second = np.array([-5.0, 0.0, 5.0, 2.0, -1.0])  # r (aot_pair) or the reference's margin
    base = -np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    if loss_type == "aot_pair":
        pc, pr, rc, rr = base + first, base + second, base, base
    else:
        pc, pr, rc, rr = base + first, base, base + second, base
    beta, step = 1.0, 1e-6

    def loss(x):
        return float(call(xp, loss_type, (x, pr, rc, rr), beta=beta).loss)

    grad = to_numpy(call(xp, loss_type, (pc, pr, rc, rr), beta=beta).grad_policy_chosen_logps)
    e1, e3 = np.eye(5)[1], np.eye(5)[3]
    left_1 = (loss(pc) - loss(pc - step * e1)) / step  # the earlier tied entry moves down
    right_3 = (loss(pc + step * e3) - loss(pc)) / step  # the later tied entry moves up
    both = (loss(pc + step * (e1 + e3)) - loss(pc - step * (e1 + e3))) / (2 * step)
    assert grad[1] == pytest.approx(left_1, rel=1e-5)
    assert grad[3] == pytest.approx(right_3, rel=1e-5)
    assert grad[1] + grad[3] == pytest.approx(both, rel=1e-6)
    # and the two one-sided derivatives really differ here: a kink, not a smooth point
    right_1 = (loss(pc + step * e1) - loss(pc)) / step
    assert abs(right_1 - left_1) > 0.1 * abs(left_1)


@pytest.mark.parametrize("loss_type", ["aot", "aot_pair"])
def test_aot_does_not_depend_on_the_order_of_the_pairs(xp, loss_type):
    arrays = pairs(13, 8)
    order = np.random.default_rng(0).permutation(8)
    a = call(xp, loss_type, arrays, beta=0.4)
    b = call(xp, loss_type, tuple(x[order] for x in arrays), beta=0.4)
    np.testing.assert_allclose(to_numpy(b.losses), to_numpy(a.losses), rtol=1e-15)
    for field in ("grad_policy_chosen_logps", "grad_policy_rejected_logps"):
        np.testing.assert_allclose(
            to_numpy(getattr(b, field)), to_numpy(getattr(a, field))[order], rtol=1e-15
        )


# ------------------------------------------------------------------------------------------
# float32 and extreme inputs


@pytest.mark.parametrize(("loss_type", "eps"), CASES)
def test_float32_keeps_its_dtype_and_agrees_with_float64(xp, loss_type, eps):
    """float32 arithmetic on float32 inputs against float64 arithmetic on the same (rounded)
    inputs: each field is a handful of operations, each rounding by eps32 / 2 relative, on terms
    at most ten times the field's size in these batches; 100 eps32 (1.2e-5) bounds it, norm-wise."""
    arrays32 = tuple(a.astype(np.float32) for a in pairs(14, 6))
    arrays64 = tuple(a.astype(np.float64) for a in arrays32)
    got = call(xp, loss_type, arrays32, beta=0.3, label_smoothing=eps)
    want = call(get_namespace("numpy"), loss_type, arrays64, beta=0.3, label_smoothing=eps)
    for field in got._fields:
        value = getattr(got, field)
        assert value.dtype == xp.float32, field
        g, w = to_numpy(value).astype(np.float64), to_numpy(getattr(want, field))
        assert np.max(np.abs(g - w)) <= 100 * np.finfo(np.float32).eps * np.max(np.abs(w)), field


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("beta", EXTREME_BETAS)
@pytest.mark.parametrize(("loss_type", "eps"), CASES)
def test_extreme_inputs_give_finite_values_and_no_warning(xp, loss_type, eps, beta, dtype):
    # log-ratios up to +-2e4: h = beta * (c - r) reaches +-4e7
    policy, reference = np.array(POLICY, dtype=dtype), np.array(REFERENCE, dtype=dtype)
    arrays = (policy, policy[::-1].copy(), reference, reference[::-1].copy())
    with np.errstate(**RAISE):
        out = call(xp, loss_type, arrays, beta=beta, label_smoothing=eps)
    for field in out._fields:
        assert np.all(np.isfinite(to_numpy(getattr(out, field)))), field


def test_discopop_stays_finite_where_trls_exp_times_zero_is_nan(xp):
    # h = -1000: TRL evaluates exp(1000) * sigmoid(-20000) = inf * 0; the loss is -log sigma(h)
    arrays = (np.array([0.0, 0.0]), np.array([1e4, 1.0]), np.zeros(2), np.zeros(2))
    with np.errstate(**RAISE):
        out = call(xp, "discopop", arrays, beta=0.1)
    assert float(out.losses[0]) == pytest.approx(1000.0, rel=1e-15)
    assert float(out.grad_policy_rejected_logps[0]) == pytest.approx(0.1 / 2, rel=1e-15)


# ------------------------------------------------------------------------------------------
# Refusals name the argument


def test_an_unknown_loss_type_is_refused(xp):
    with pytest.raises(ValueError, match=r"^loss_type: expected one of \('sigmoid'"):
        call(xp, "kto_pair", pairs(0, 3))


@pytest.mark.parametrize("loss_type", sorted(set(PAIRWISE_LOSS_TYPES) - set(SMOOTHED)))
def test_label_smoothing_is_refused_where_it_does_not_act(xp, loss_type):
    message = rf"^label_smoothing: expected 0 for loss_type '{loss_type}'"
    with pytest.raises(ValueError, match=message):
        call(xp, loss_type, pairs(0, 3), label_smoothing=0.1)


@pytest.mark.parametrize(
    ("loss_type", "eps"), [("robust", 0.5), ("exo_pair", 1.0), ("sigmoid", 1.5), ("aot", -0.1)]
)
def test_label_smoothing_out_of_range_is_refused(xp, loss_type, eps):
    with pytest.raises(ValueError, match=r"^label_smoothing: expected"):
        call(xp, loss_type, pairs(0, 3), label_smoothing=eps)


def test_delta_is_refused_outside_bco_pair(xp):
    with pytest.raises(ValueError, match=r"^delta: expected None for loss_type 'sigmoid'"):
        call(xp, "sigmoid", pairs(0, 3), delta=0.1)
    with pytest.raises(ValueError, match=r"^delta: expected a finite number"):
        call(xp, "bco_pair", pairs(0, 3), delta=float("nan"))


@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf")])
def test_discopop_tau_must_be_positive_and_finite(xp, tau):
    with pytest.raises(ValueError, match=r"^discopop_tau: expected"):
        call(xp, "discopop", pairs(0, 3), discopop_tau=tau)


def test_discopop_refuses_a_batch_whose_loss_overflows(xp):
    # tau > 1: the loss grows like exp(-h (1 - 1/tau)), here exp(1e6 * 0.5)
    arrays = (np.zeros(2), np.array([1e6, 0.0]), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"^discopop_tau: expected a value for which"):
        call(xp, "discopop", arrays, beta=1.0, discopop_tau=2.0)


@pytest.mark.parametrize("loss_type", ["ipo", "sppo_hard"])
def test_a_square_that_would_overflow_is_refused(loss_type):
    big = np.array([1e20, 0.0], dtype=np.float32)
    zero = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^beta: expected a value whose product"):
        preference_loss(loss_type, big, zero, zero, zero, beta=1e-3)


def test_bad_arrays_name_the_argument(xp):
    pc, pr, rc, rr = pairs(0, 3)
    with pytest.raises(ValueError, match=r"^reference_rejected_logps: expected shape \(3,\)"):
        call(xp, "ipo", (pc, pr, rc, rr[:2]))
    bad = pr.copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match=r"^policy_rejected_logps: expected finite values"):
        call(xp, "hinge", (pc, bad, rc, rr))
    with pytest.raises(ValueError, match=r"^beta: expected a number > 0"):
        call(xp, "nca_pair", (pc, pr, rc, rr), beta=0.0)
