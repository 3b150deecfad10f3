"""The core at the edge of the float range: log-probabilities stay normalised for logits up to
the float max, the losses name the log-probs whose difference overflows, and a trainable
policy's parameters keep their shape.

Each test fails on the code before: ``log_softmax([1e16, 1e16, 0])`` gave probabilities summing
to 2, ``kl_estimate`` of +-1e308 returned ``z0 = inf`` with a RuntimeWarning, ``kto_loss`` of
+-1e308 blamed ``beta``, and ``params["bias"] = np.zeros(1)`` was broadcast silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from minikto.backend import log_softmax
from minikto.data.toy import default_task
from minikto.exact import ExactEvaluator
from minikto.kto import kl_estimate, kto_loss
from minikto.policy import SoftmaxPolicy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "logits",
    [[1e16, 1e16, 0.0], [1e30, 1e30, -1e30], [3e38, 3e38, 0.0], [1e308, 1e308, -1e308],
     [1.7e308, -1.7e308, 0.0], [-1e308, -1e308, -1.7e308]],
)
def test_log_softmax_stays_normalised_and_warning_free_up_to_the_float_max(xp, logits, dtype):
    big = float(np.finfo(dtype).max)
    x = np.clip(np.array(logits), -big, big).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = np.asarray(log_softmax(xp.asarray(x)))
    assert out.dtype == np.dtype(dtype)
    assert abs(float(np.exp(out.astype(np.float64)).sum()) - 1.0) < 1e-6
    top = x == x.max()
    np.testing.assert_allclose(out[top], -np.log(top.sum()), rtol=1e-6)  # ties share the mass
    assert np.all(out <= 0)


def test_exact_evaluation_of_a_policy_with_huge_logits_matches_a_moderate_one():
    task = default_task()
    huge, moderate = (SoftmaxPolicy(task.vocab_size, task.num_prompts, eos_token=task.eos_token,
                                    init_std=0.0) for _ in range(2))
    huge.params["bias"] = np.where(np.arange(task.vocab_size) < 2, 1e16, 0.0)
    moderate.params["bias"] = np.where(np.arange(task.vocab_size) < 2, 1e3, 0.0)
    evaluator = ExactEvaluator(task, task.base_policy())
    a, b = evaluator(huge), evaluator(moderate)
    assert a["expected_utility"] == pytest.approx(b["expected_utility"], abs=1e-9)
    assert a["expected_utility"] <= evaluator.best_utility


def test_kl_estimate_names_the_log_probs_whose_difference_overflows():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^kl_policy_logps, kl_reference_logps: expected "
                                             r"values whose difference fits in float64"):
            kl_estimate(np.array([1e308] * 2), np.array([-1e308] * 2))
        # a mean of B differences: each must fit B times over
        with pytest.raises(ValueError, match="kl_policy_logps"):
            kl_estimate(np.array([1.0e308, 1.0e308]), np.zeros(2))
        assert float(kl_estimate(np.array([-1.0, -2.0]), np.array([-2.0, -2.0])).z0) == 0.5


def test_kto_loss_names_the_log_probs_not_beta_for_log_probs_of_1e308():
    desirable = np.array([True, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as info:
            kto_loss(np.array([1e308, -1e308]), np.array([-1e308, 1e308]), desirable, 0.0)
    message = str(info.value)
    assert message.startswith("policy_logps, reference_logps: ") and "beta" not in message


def test_a_trainable_policys_parameter_of_another_shape_or_key_is_refused():
    policy = SoftmaxPolicy(5, 2, seed=0)
    before = policy.get_flat().copy()
    with pytest.raises(ValueError, match=r"params\['bias'\]: expected an array of shape \(5,\)"):
        policy.params["bias"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"params\['bias'\]: .* dtype float64"):
        policy.params["bias"] = np.zeros(5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"params\['typo'\]: expected one of"):
        policy.params["typo"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"params\['prompt'\]"):
        policy.params.update(prompt=np.zeros((1, 5)))
    np.testing.assert_array_equal(policy.get_flat(), before)
    policy.params["bias"] = np.ones(5)  # the right shape and dtype: accepted
    assert policy.get_flat()[-5:].tolist() == [1.0] * 5
    base = default_task().base_policy()  # the toy's base policy is checked the same way
    with pytest.raises(ValueError, match=r"params\['bias'\]: expected an array of shape"):
        base.params["bias"] = np.zeros(1)
