"""The full objective: five reference-point modes, gradients proven by finite differences,
the paper's contradictory-feedback theorem, and SciPy interoperability."""

import numpy as np
import pytest
from conftest import assert_close
from scipy.optimize import check_grad, minimize

from minikto import SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.gradcheck import ALL_Z0, gradcheck, make_case
from minikto.objective import FlatObjective, kto_objective


@pytest.mark.parametrize("z0", ALL_Z0)
@pytest.mark.parametrize("features", ["onehot", 3])
@pytest.mark.parametrize("length", [1, 3])
def test_full_objective_gradient_agrees_with_finite_differences(backend, z0, features, length):
    obj = make_case(z0=z0, features=features, length=length, backend=backend, seed=11)
    report = gradcheck(obj, obj.x0, blocks=obj.blocks)
    assert report.passed and report.max_rel_error <= 1e-6, report.table()


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
