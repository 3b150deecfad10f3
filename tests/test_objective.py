"""The full objective: five reference-point modes, gradients proven by finite differences,
the paper's contradictory-feedback theorem, and SciPy interoperability."""

from __future__ import annotations

import numpy as np
import pytest
from cases import (
    BACKENDS,
    BETAS,
    DTYPES,
    EXTREME_Z0_MODES,
    KINDS,
    RAISE,
    RTOL,
    WEIGHTS,
    Z0_MODES,
    H,
    assert_same_objective,
    check,
    describe,
    extreme_policy,
    fd_floor,
    objective,
    policy_batches,
)
from conftest import assert_close, count_case, examples
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from scipy.optimize import check_grad, minimize

from minikto import SoftmaxPolicy
from minikto.backend import get_namespace, to_numpy
from minikto.exact import exact_kl
from minikto.gradcheck import ALL_Z0, gradcheck, make_case
from minikto.objective import FlatObjective, kto_objective


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", Z0_MODES)
@settings(max_examples=examples(6))
@given(data=st.data(), beta=BETAS, wd=WEIGHTS, wu=WEIGHTS, fixed=st.floats(-2.0, 5.0))
def test_full_objective_gradient_agrees_with_finite_differences(
    mode, kind, data, beta, wd, wu, fixed
):
    """Every z0 mode; "batch" and "exact" are detached, so FlatObjective holds z0 fixed."""
    policy, reference, prompts, resp, desirable = data.draw(policy_batches(2, kind))
    z0 = fixed if mode == "fixed" else mode
    kw = dict(z0=z0, beta=beta, desirable_weight=wd, undesirable_weight=wu)
    if z0 == "batch-grad":  # the clamp's kink: see the kl_estimate test
        mean = kto_objective(policy, reference, prompts, resp, desirable, **kw).kl_logratio_mean
        assume(abs(float(mean)) > 1e-4)
    obj = FlatObjective(policy, reference, prompts, resp, desirable, **kw)
    check(obj, obj.x0, obj.blocks)
    count_case("objective")
    for label in describe(policy, resp, desirable, z0):
        event(label)  # the spread of the cases: pytest --hypothesis-show-statistics


@pytest.mark.parametrize("z0", ALL_Z0)
def test_scipy_check_grad_agrees(z0):
    obj = make_case(z0=z0, features=3, length=3, seed=5)
    err = check_grad(obj.value, obj.gradient, obj.x0, epsilon=1e-6)
    assert err <= 1e-6 * np.linalg.norm(obj.gradient(obj.x0))


def test_scipy_minimize_accepts_the_objective_and_lowers_the_loss():
    obj = make_case(z0="zero", features="onehot", length=3, seed=2)
    start = obj.value(obj.x0)
    result = minimize(obj, obj.x0, jac=True, method="L-BFGS-B", options={"maxiter": 30})
    assert result.fun < start - 0.05


def test_gradient_through_z0_differs_from_the_detached_one_and_the_check_tells_them_apart():
    detached = make_case(z0="batch", features="onehot", length=3, seed=4)
    flowing = make_case(z0="batch-grad", features="onehot", length=3, seed=4)
    assert (
        float(
            to_numpy(
                kto_objective(flowing.policy, flowing.reference, *flowing.batch, z0="batch").z0
            )
        )
        > 0.05
    )
    g_detached = detached.gradient(detached.x0)
    g_flowing = flowing.gradient(flowing.x0)
    assert np.max(np.abs(g_detached - g_flowing)) > 1e-4
    # the detached gradient is NOT the derivative of the loss with z0 re-estimated: the
    # checker must catch that mismatch (it can fail)
    wrong = lambda th: (flowing.value(th), detached.gradient(th))  # noqa: E731
    assert not gradcheck(wrong, flowing.x0).passed


def test_every_backend_gives_numpys_loss_and_gradients_to_1e_12(backend):
    for z0 in ALL_Z0:
        a = make_case(z0=z0, features=3, length=3, seed=8)
        b = make_case(z0=z0, features=3, length=3, seed=8, backend=backend)
        assert abs(a.value(a.x0) - b.value(b.x0)) <= 1e-12
        assert_close(b.gradient(b.x0), a.gradient(a.x0))


@pytest.mark.parametrize("z0", ALL_Z0)
def test_contradictory_feedback_gives_loss_one_half_and_zero_gradient_thm_4_3(backend, z0):
    """Thm. 4.3: (x, y1) and (x, y2) each labelled once desirable and once undesirable."""
    for seed in range(3):
        policy = SoftmaxPolicy(
            5, 2, features="onehot", backend=backend, eos_token=0, seed=seed, init_std=1.5
        )
        reference = SoftmaxPolicy(5, 2, backend=backend, eos_token=0, seed=99).copy()
        xp = policy.xp
        prompts = xp.asarray([1, 1, 1, 1])
        responses = xp.asarray([[2, 3, 0], [2, 3, 0], [4, 0, -1], [4, 0, -1]])
        desirable = xp.asarray([True, False, True, False])
        out = kto_objective(policy, reference, prompts, responses, desirable, z0=z0, beta=0.5)
        assert abs(float(out.loss) - 0.5) <= 1e-15
        for g in out.grads.values():
            assert np.max(np.abs(to_numpy(g))) <= 1e-15


def test_at_initialisation_the_objective_is_one_half_with_z0_zero():
    policy = SoftmaxPolicy(6, 3, eos_token=0, seed=1)
    prompts = np.array([0, 1, 2, 0, 1])
    responses = to_numpy(policy.sample(prompts, 3, seed=0))
    for z0 in ("batch", "exact", "batch-grad"):
        out = kto_objective(
            policy,
            policy.copy(),
            prompts,
            responses,
            np.array([True, False, True, True, False]),
            z0=z0,
        )
        assert float(out.loss) == 0.5 and float(out.z0) == 0.0


def test_flat_objective_never_modifies_the_callers_policy():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=3)
    before = policy.get_flat()
    prompts = np.array([0, 1, 1])
    responses = to_numpy(policy.sample(prompts, 3, seed=1))
    obj = FlatObjective(policy, policy.copy(), prompts, responses, np.array([True, False, True]))
    obj(before + 0.5)
    np.testing.assert_array_equal(policy.get_flat(), before)


def test_nan_parameters_are_refused_downstream_by_the_loss_never_silently_used():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    policy.set_flat(np.full(policy.num_parameters, np.nan))
    batch = (np.array([0, 1]), np.array([[1, 0], [2, 0]]), np.array([True, False]))
    with pytest.raises(ValueError, match="policy_logps: expected finite values; got 2 NaN"):
        kto_objective(policy, SoftmaxPolicy(5, 2, eos_token=0), *batch, z0="zero")


@pytest.fixture
def pair():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1)
    batch = (np.array([0, 1]), np.array([[1, 0], [2, 0]]), np.array([True, False]))
    return policy, SoftmaxPolicy(5, 2, eos_token=0, seed=2).copy(), batch


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [(dict(policy=None), TypeError, "policy: expected a SoftmaxPolicy; got NoneType"),
     (dict(reference="ref"), TypeError, "reference: expected a SoftmaxPolicy; got str"),
     (dict(reference=SoftmaxPolicy(6, 2, eos_token=0)), ValueError,
      "reference: expected the policy's vocab_size, 5; got 6"),
     (dict(reference=SoftmaxPolicy(5, 3, eos_token=0)), ValueError,
      "reference: expected the policy's num_prompts, 2; got 3"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=1)), ValueError,
      "reference: expected the policy's eos_token, 0; got 1"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=0, backend="array_api_strict")), TypeError,
      r"reference: expected the backend and dtype of policy \(numpy, float64\); "
      r"got \(array_api_strict, float64\)"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=0, dtype="float32")), TypeError,
      r"reference: expected the backend and dtype of policy"),
     (dict(z0=True), TypeError, "z0: expected a real number; got bool True"),
     (dict(z0=float("inf")), ValueError, "z0: expected a finite number"),
     (dict(desirable=np.array([1, 0])), TypeError, "desirable: expected a boolean array"),
     (dict(desirable=np.array([True])), ValueError, r"desirable: expected shape \(2,\)"),
     (dict(desirable=get_namespace("array_api_strict").asarray([True, False])), TypeError,
      "one array library"),
     (dict(reference_logps=np.zeros(3)), ValueError, r"reference_logps: expected shape \(2,\)"),
     (dict(reference_logps=np.zeros(2, dtype=np.float32)), TypeError,
      "reference_logps: expected dtype float64"),
     (dict(fixed_z0=float("nan")), ValueError, "z0: expected a finite number"),
     (dict(z0="exact", max_length=0), ValueError, "length: expected a positive int"),
     (dict(beta=-0.1), ValueError, "beta: expected a number > 0")],
)
def test_the_objective_refuses_bad_arguments_naming_them(pair, change, error, message):
    policy, reference, (prompts, responses, desirable) = pair
    args = dict(policy=policy, reference=reference, prompts=prompts, responses=responses,
                desirable=desirable)
    kwargs = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    with pytest.raises(error, match=message):
        kto_objective(*args.values(), **kwargs)


def test_flat_objective_refuses_foreign_policies_and_vectors_of_the_wrong_size(pair):
    policy, reference, batch = pair
    with pytest.raises(TypeError, match="policy: expected a SoftmaxPolicy; got dict"):
        FlatObjective({}, reference, *batch)
    obj = FlatObjective(policy, reference, *batch)
    with pytest.raises(ValueError, match=rf"theta: expected shape \({policy.num_parameters},\)"):
        obj(np.zeros(3))


def test_labels_given_as_a_python_list_are_accepted_on_every_backend(backend):
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1, backend=backend)
    xp = policy.xp
    batch = (xp.asarray([0, 1]), xp.asarray([[1, 0], [2, 0]]))
    as_list = kto_objective(policy, policy.copy(), *batch, [True, False], z0="zero")
    as_array = kto_objective(policy, policy.copy(), *batch, xp.asarray([True, False]), z0="zero")
    assert float(as_list.loss) == float(as_array.loss)


@settings(max_examples=examples(10))
@given(backend=st.sampled_from(BACKENDS), width=st.integers(8, 32), vocab=st.integers(8, 24),
       seed=st.integers(0, 2**16), mode=st.sampled_from(["batch", "batch-grad", "zero"]))
def test_random_directions_check_the_gradient_of_a_larger_dense_policy(
    backend, width, vocab, seed, mode
):
    """gradcheck's "directions" mode (2K evaluations whatever the size) on up to ~800
    parameters; the same directions reject the gradient with one block scaled by 1.01."""
    kw = dict(features=width, backend=backend, eos_token=0)
    policy = SoftmaxPolicy(vocab, 4, seed=seed, init_std=1.0, **kw)
    reference = SoftmaxPolicy(vocab, 4, seed=seed + 1, **kw).copy()
    rng = np.random.default_rng(seed)
    xp = policy.xp
    prompts = xp.asarray(rng.integers(0, 4, 8))
    resp = policy.sample(prompts, 4, seed=seed)
    desirable = xp.asarray(np.arange(8) % 3 == 0)
    obj = FlatObjective(policy, reference, prompts, resp, desirable, z0=mode, beta=1.0)
    if mode == "batch-grad":  # the clamp's kink: see the kl_estimate test
        assume(abs(float(kto_objective(policy, reference, prompts, resp, desirable,
                                       z0=mode).kl_logratio_mean)) > 1e-4)
    atol = fd_floor(obj.value(obj.x0))
    report = gradcheck(obj, obj.x0, mode="directions", n_directions=12, seed=seed, eps=H,
                       rtol=RTOL, atol=atol)
    assert report.passed, "\n" + report.table()
    assert report.evaluations == 1 + 2 * 12

    def scaled(theta):
        value, grad = obj(theta)
        grad = grad.copy()
        grad[obj.blocks["bias"]] *= 1.01
        return value, grad

    wrong = gradcheck(scaled, obj.x0, mode="directions", n_directions=12, seed=seed, eps=H,
                      rtol=RTOL, atol=atol)
    assert not wrong.passed and wrong.worst.name == "directions"
    count_case("objective (random directions)")


@settings(max_examples=examples(30))
@given(data=st.data(), case=policy_batches(),
       z0=st.sampled_from(["exact", "zero"]) | st.floats(-2.0, 5.0), beta=BETAS)
def test_objective_with_exact_zero_or_fixed_z0_is_invariant_under_any_permutation(
    data, case, z0, beta
):
    batch = case[2].shape[0]
    permutation = data.draw(st.permutations(range(batch)))
    assert_same_objective(objective(case, z0=z0, beta=beta),
                          objective(case, permutation, z0=z0, beta=beta))


@settings(max_examples=examples(30))
@given(data=st.data(), case=policy_batches(min_batch=2),
       z0=st.sampled_from(["batch", "batch-grad"]), beta=BETAS)
def test_batch_estimate_and_objective_are_invariant_under_a_rotation_of_the_batch(
    data, case, z0, beta
):
    """Rotating the batch by k keeps every mismatched pair (x_i, y_{i-1}): same z0, same loss."""
    batch = case[2].shape[0]
    k = data.draw(st.integers(1, batch - 1))
    a = objective(case, z0=z0, beta=beta)
    b = objective(case, np.roll(np.arange(batch), k), z0=z0, beta=beta)
    assert float(a.z0) >= 0.0
    assert abs(float(a.z0) - float(b.z0)) <= 1e-12 * max(1.0, float(a.z0))
    assert_same_objective(a, b)


@settings(max_examples=examples(30))
@given(data=st.data(), case=policy_batches(min_batch=2), beta=BETAS)
def test_with_z0_held_fixed_the_batch_mode_is_invariant_under_any_permutation(data, case, beta):
    """Any permutation rebuilds OTHER mismatched pairs, so the estimate itself may change;
    held at the unpermuted batch's estimate, the detached loss and gradient do not."""
    batch = case[2].shape[0]
    permutation = data.draw(st.permutations(range(batch)))
    a = objective(case, z0="batch", beta=beta)
    b = objective(case, permutation, z0="batch", beta=beta, fixed_z0=a.z0)
    assert_same_objective(a, b)


def test_a_permutation_that_is_not_a_rotation_can_change_the_batch_estimate():
    """Why the invariance above needs z0 held fixed: swapping two examples of three pairs
    prompts with other responses, and the estimate moves."""
    policy = SoftmaxPolicy(5, 3, eos_token=0, seed=1, init_std=1.5)
    reference = SoftmaxPolicy(5, 3, eos_token=0, seed=2).copy()
    case = (policy, reference, np.array([0, 1, 2]),
            np.array([[1, 2, 0], [3, 0, -1], [4, 4, 4]]), np.array([True, False, True]))
    a = objective(case, z0="batch")
    swapped = objective(case, [1, 0, 2], z0="batch")
    assert abs(float(a.kl_logratio_mean) - float(swapped.kl_logratio_mean)) > 1e-3
    rotated = objective(case, [2, 0, 1], z0="batch")
    assert abs(float(a.kl_logratio_mean) - float(rotated.kl_logratio_mean)) <= 1e-14


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("z0", EXTREME_Z0_MODES)
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


@pytest.mark.parametrize("z0", EXTREME_Z0_MODES)
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


def test_objective_refuses_a_batch_of_one_for_the_batch_estimate_and_unknown_modes():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    one = (np.array([0]), np.array([[1, 0]]), np.array([True]))
    with pytest.raises(ValueError, match="batch_size.*at least 2 examples; got 1"):
        kto_objective(policy, policy.copy(), *one, z0="batch")
    out = kto_objective(policy, policy.copy(), *one, z0="exact")  # no estimate needed
    assert float(out.loss) == 0.5
    with pytest.raises(ValueError, match="z0: expected one of"):
        kto_objective(policy, policy.copy(), *one, z0="kl")


def test_responses_with_a_token_past_max_length_are_refused():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1)
    prompts, labels = np.array([0, 1]), np.array([True, False])
    wide = np.array([[1, 2, 0], [3, 0, -1]])
    with pytest.raises(ValueError, match="responses: expected at most max_length = 2 tokens per "
                                         "response; row 0 has a token at position 2"):
        kto_objective(policy, policy.copy(), prompts, wide, labels, z0="zero", max_length=2)
    padded = np.array([[1, 0, -1], [3, 0, -1]])  # wider than T, but only with padding
    out = kto_objective(policy, policy.copy(), prompts, padded, labels, z0="zero", max_length=2)
    assert np.isfinite(float(out.loss))
    with pytest.raises(TypeError, match="max_length: expected a positive int"):
        kto_objective(policy, policy.copy(), prompts, padded, labels, max_length=2.0)


@pytest.mark.parametrize("z0", ["batch", "batch-grad", "exact", "zero"])
def test_the_value_only_objective_equals_the_full_one_and_skips_the_backward(z0, monkeypatch):
    obj = make_case(z0=z0, features=3, length=3, backend="numpy", seed=5)
    theta = obj.x0 + 0.01
    value_only = obj.value(theta)  # nothing evaluated at theta yet: the value-only path
    full = kto_objective(obj.policy, obj.reference, *obj.batch,
                         reference_logps=obj.reference_logps, fixed_z0=obj.fixed_z0,
                         **obj.loss_kwargs)
    assert value_only == float(full.loss)
    assert kto_objective(obj.policy, obj.reference, *obj.batch, z0=z0, backward=False).grads is None
    calls = []
    backward = SoftmaxPolicy.batch_logps_backward
    monkeypatch.setattr(SoftmaxPolicy, "batch_logps_backward",
                        lambda *a, **k: calls.append(1) or backward(*a, **k))
    report = gradcheck(obj, obj.x0, mode="directions", n_directions=3)
    assert report.passed and report.evaluations == 7
    # at x0 only, never at x +- h v; the detached modes evaluated x0 when they fixed z0
    assert len(calls) == {"batch": 0, "exact": 0, "zero": 1, "batch-grad": 2}[z0]
