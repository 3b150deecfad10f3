"""Numerical extremes: logits and log-ratios up to +-1e4, beta from 1e-6 to 1e3, float32 and
float64. Every value and gradient stays finite, and no floating-point warning is raised under
``numpy.errstate(over="raise", divide="raise", invalid="raise")`` (underflow to zero is
allowed: ``exp(-1e7)`` is 0, and that is the right answer).

The float32 gradient check at the end states its tolerance, derived from
``numpy.finfo(numpy.float32).eps``, the step and the size of the loss.
"""

from __future__ import annotations

import numpy as np
import pytest

from minikto import SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.exact import exact_kl
from minikto.kto import kl_estimate, kto_loss
from minikto.losses import apo_zero_unpaired_loss, dpo_loss, sft_loss
from minikto.objective import FlatObjective, kto_objective

RAISE = dict(over="raise", divide="raise", invalid="raise")
DTYPES = ["float32", "float64"]
BETAS = [1e-6, 1e-3, 0.1, 1.0, 1e3]
Z0_MODES = ["batch", "batch-grad", "exact", "zero", 0.3]

# log-ratios r = policy - reference reach +-2e4, so beta * (r - z0) reaches +-3e7
POLICY = [1e4, -1e4, 0.0, 1.0, -1.0, 1e4, -1e4, 5e3]
REFERENCE = [-1e4, 1e4, 0.0, 0.0, 0.0, 1e4, -1e4, -5e3]
DESIRABLE = [True, True, False, False, True, False, True, False]


def finite_fields(out) -> None:
    for name in out._fields:
        value = to_numpy(getattr(out, name))
        assert np.all(np.isfinite(value)), (name, value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", BETAS)
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
@pytest.mark.parametrize("beta", BETAS)
def test_the_family_losses_are_finite_and_warning_free_at_extreme_log_ratios(xp, dtype, beta):
    def arr(values):
        return xp.asarray(np.array(values), dtype=getattr(xp, dtype))

    policy, reference = arr(POLICY), arr(REFERENCE)
    desirable = xp.asarray(np.array(DESIRABLE))
    with np.errstate(**RAISE):
        outs = [
            dpo_loss(policy, reference, reference, policy, beta=beta),
            dpo_loss(reference, policy, policy, reference, beta=beta),
            apo_zero_unpaired_loss(policy, reference, desirable, beta=beta),
            sft_loss(arr(-np.abs(POLICY)), desirable),
        ]
    for out in outs:
        finite_fields(out)
        assert all(getattr(out, name).dtype == policy.dtype for name in out._fields)
    # a wrongly ordered pair with margin h costs -log sigmoid(h), i.e. about |h|, not inf
    # the second call's margin: beta * ((R - P) - (P - R))
    h = 2 * beta * (np.array(REFERENCE) - np.array(POLICY))
    big = h < -50
    np.testing.assert_allclose(to_numpy(outs[1].losses)[big], -h[big],
                               rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_batch_estimate_is_finite_and_warning_free_at_extreme_log_ratios(xp, dtype):
    for sign in (1.0, -1.0):
        policy = xp.asarray(sign * np.array(POLICY), dtype=getattr(xp, dtype))
        reference = xp.asarray(np.array(REFERENCE), dtype=getattr(xp, dtype))
        with np.errstate(**RAISE):
            est = kl_estimate(policy, reference)
        finite_fields(est)
        assert float(est.z0) >= 0.0


def extreme_policy(backend, dtype, features, seed):
    """A policy whose logits are +-1e4 (and sums of two such) at random."""
    policy = SoftmaxPolicy(5, 3, features=features, backend=backend, dtype=dtype, eos_token=0,
                           seed=seed)
    rng = np.random.default_rng(seed)
    theta = 1e4 * rng.choice([-1.0, 0.0, 1.0], size=policy.num_parameters)
    if features != "onehot":  # hidden units are about N(0, 1/2): push the logits to ~1e4
        theta *= 3.0
    policy.set_flat(theta)
    return policy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", ["onehot", 3])
def test_a_policy_with_logits_of_1e4_gives_finite_log_probs_gradients_and_samples(
    backend, dtype, features
):
    policy = extreme_policy(backend, dtype, features, seed=1)
    xp = policy.xp
    prompts = xp.asarray([0, 1, 2, 0])
    responses = xp.asarray([[1, 2, 0], [0, -1, -1], [4, 4, 4], [3, 0, -1]])
    with np.errstate(**RAISE):
        logps = policy.sequence_logps(prompts, responses)
        grads = policy.sequence_logps_backward(prompts, responses, xp.asarray([1.0, -2.0, 0.5, 3.0],
                                                                               dtype=policy.dtype))
        probs = policy.next_token_probs(xp.asarray([0, 1, 2]), xp.asarray([5, 0, 3]))
        samples = policy.sample(xp.asarray([0, 1, 2, 2]), 3, seed=0)
    assert np.all(np.isfinite(to_numpy(logps))) and np.all(to_numpy(logps) <= 0)
    assert all(np.all(np.isfinite(to_numpy(g))) for g in grads.values())
    np.testing.assert_allclose(to_numpy(probs).sum(axis=1), 1.0, rtol=8 * np.finfo(dtype).eps)
    s = to_numpy(samples)
    assert s.shape == (4, 3) and np.all((s >= -1) & (s < 5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("z0", Z0_MODES)
@pytest.mark.parametrize("beta", [1e-6, 0.1, 1e3])
def test_the_objective_is_finite_and_warning_free_for_logits_of_1e4(backend, dtype, z0, beta):
    policy = extreme_policy(backend, dtype, "onehot", seed=2)
    reference = extreme_policy(backend, dtype, "onehot", seed=3).copy()
    xp = policy.xp
    prompts = xp.asarray([0, 1, 2, 1])
    responses = xp.asarray([[1, 2, 0], [0, -1, -1], [4, 4, 4], [3, 0, -1]])
    desirable = xp.asarray([True, False, True, False])
    with np.errstate(**RAISE):
        out = kto_objective(policy, reference, prompts, responses, desirable, z0=z0, beta=beta)
        kl = exact_kl(policy, reference, prompts, 3)
    assert np.isfinite(float(out.loss)) and np.isfinite(float(out.z0)) and float(out.z0) >= 0
    assert 0.0 <= float(out.loss) <= 1.0
    assert all(np.all(np.isfinite(to_numpy(g))) for g in out.grads.values())
    assert np.all(np.isfinite(to_numpy(kl))) and np.all(to_numpy(kl) >= 0)


# ------------------------------------------------------------------------------------------
# float32 gradients, with a tolerance derived from the dtype

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
H32 = 2.0**-8  # ~ EPS32 ** (1/3) = 4.9e-3, which balances truncation (h^2) and rounding (eps/h)
C = 4  # float32 roundings that can pile up in one value of the loss (measured: <= 2.1)


def float32_twin_objectives(backend, features, z0, seed):
    """The same batch objective in float32 and in float64, at the same parameter vector.

    The parameters are put on a grid of 2**-12 with |theta| < 4, so that theta +- H32 is
    exactly representable in float32 and the finite-difference step is exactly H32.
    """
    kw = dict(features=features, backend=backend, eos_token=0, dtype="float32")
    p32 = SoftmaxPolicy(5, 3, seed=seed + 10, **kw)
    r32 = SoftmaxPolicy(5, 3, seed=seed, **kw).copy()
    for policy in (p32, r32):
        policy.set_flat(np.clip(np.round(policy.get_flat() * 2**12) / 2**12, -3.9, 3.9))
    p64, r64 = p32.to(backend, "float64"), r32.to(backend, "float64")
    rng = np.random.default_rng(seed)
    xp = p32.xp
    prompts = xp.asarray(rng.integers(0, 3, 6))
    responses = xp.asarray(to_numpy(p64.sample(prompts, 3, seed=seed)))
    desirable = xp.asarray(np.arange(6) % 2 == 0)
    args = (prompts, responses, desirable)
    return (FlatObjective(p32, r32, *args, z0=z0, beta=1.0),
            FlatObjective(p64, r64, *args, z0=z0, beta=1.0))


def central_differences(obj, x, h):
    return np.array([(obj.value(x + h * e) - obj.value(x - h * e)) / (2 * h)
                     for e in np.eye(x.size)])


@pytest.mark.parametrize("z0", Z0_MODES)
@pytest.mark.parametrize("features", ["onehot", 3])
def test_float32_gradient_agrees_with_finite_differences_within_an_eps_derived_tolerance(
    backend, z0, features
):
    """Tolerance, entry by entry (max over the parameters):

    |fd32 - g32| <= T + C * eps32 * |f| / h + C * eps32 * max|g|

    - T, the truncation error of a central difference at step h (O(h^2 f''')), is measured on
      the float64 twin, where rounding is negligible (eps64 / h ~ 6e-14): T = max|fd64 - g64|;
    - each float32 value of the loss is within C eps32 |f| of the exact value, so the
      quotient (f+ - f-) / 2h is off by at most C eps32 |f| / h (about 6e-5 here);
    - the float32 hand gradient itself is off by at most C eps32 max|g|.
    """
    obj32, obj64 = float32_twin_objectives(backend, features, z0, seed=7)
    x0 = obj64.x0
    assert np.array_equal(obj32.x0, x0)
    g32, g64 = obj32.gradient(x0), obj64.gradient(x0)
    f = obj64.value(x0)
    truncation = np.max(np.abs(central_differences(obj64, x0, H32) - g64))
    tolerance = truncation + C * EPS32 * abs(f) / H32 + C * EPS32 * np.max(np.abs(g64))
    error = np.abs(central_differences(obj32, x0, H32) - g32)
    assert np.max(error) <= tolerance, (np.max(error), tolerance)
    # the check can fail: a gradient 1% off is far outside the tolerance
    assert np.max(np.abs(central_differences(obj32, x0, H32) - 1.01 * g32)) > tolerance
    # and the float32 hand gradient is the float64 one up to the rounding of its sums: at
    # most B * T = 18 terms are added into one entry, so (B * T) * eps32, norm-wise
    assert np.max(np.abs(g32 - g64)) <= 18 * EPS32 * np.max(np.abs(g64))
