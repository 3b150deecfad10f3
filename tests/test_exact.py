"""Exact quantities: the response space, exact response probabilities and the exact sequence
KL, their properties and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from cases import policy_shapes
from conftest import assert_close, examples
from hypothesis import given, settings
from hypothesis import strategies as st

from minikto import ExactEvaluator, SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.data.toy import default_task
from minikto.exact import exact_kl, expected_value, response_log_probs, response_space


@pytest.fixture
def pair():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1)
    batch = (np.array([0, 1]), np.array([[1, 0], [2, 0]]), np.array([True, False]))
    return policy, SoftmaxPolicy(5, 2, eos_token=0, seed=2).copy(), batch


SHAPES = [  # (features, length, eos)
    ("onehot", 1, None),
    ("onehot", 3, 0),
    ("onehot", 2, None),
    (3, 3, 2),
    (4, 1, None),
]


@pytest.mark.parametrize("features,length,eos", SHAPES)
def test_probabilities_of_all_responses_sum_to_one(backend, features, length, eos):
    policy = SoftmaxPolicy(4, 3, features=features, backend=backend, eos_token=eos, init_std=2.0)
    space = response_space(4, length, eos)
    probs = np.exp(to_numpy(response_log_probs(policy, np.arange(3), space)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_response_space_counts():
    assert response_space(5, 3).shape == (125, 3)
    # with an end token: "." + "a." (4) + "ab?" (4 * 4 * 5: the third token may be anything)
    assert response_space(5, 3, eos_token=0).shape == (1 + 4 + 80, 3)


def test_exact_kl_is_zero_for_identical_policies_and_positive_otherwise(backend):
    policy = SoftmaxPolicy(4, 2, backend=backend, eos_token=1, seed=0)
    assert_close(exact_kl(policy, policy.copy(), [0, 1], 3), np.zeros(2), atol=1e-15)
    other = SoftmaxPolicy(4, 2, backend=backend, eos_token=1, seed=1)
    assert np.all(to_numpy(exact_kl(policy, other, [0, 1], 3)) > 1e-3)


@pytest.mark.parametrize("features,length,eos", SHAPES)
def test_exact_kl_recursion_matches_brute_force_enumeration(backend, features, length, eos):
    p = SoftmaxPolicy(4, 3, features=features, backend=backend, eos_token=eos, seed=0, init_std=1.5)
    q = SoftmaxPolicy(4, 3, features=features, backend=backend, eos_token=eos, seed=9, init_std=1.5)
    space = response_space(4, length, eos)
    lp = to_numpy(response_log_probs(p, np.arange(3), space))
    lq = to_numpy(response_log_probs(q, np.arange(3), space))
    brute = np.sum(np.exp(lp) * (lp - lq), axis=1)
    assert_close(exact_kl(p, q, np.arange(3), length), brute, rtol=1e-11)


@pytest.mark.parametrize(
    ("prompts", "length", "message"),
    [(np.array([2]), 3, r"prompts: expected ids in \[0, 2\); got 2"),
     (np.array([-1]), 3, r"prompts: expected ids in \[0, 2\); got -1"),
     (np.array([0.0]), 3, "prompts: expected a 1-d array of prompt ids"),
     (np.array([[0]]), 3, "prompts: expected a 1-d array of prompt ids"),
     (np.array([0]), 0, "length: expected a positive int"),
     (np.array([0]), 2.5, "length: expected a positive int")],
)
def test_exact_kl_refuses_prompts_out_of_range_and_bad_lengths(pair, prompts, length, message):
    policy, reference, _ = pair
    with pytest.raises(ValueError, match=message):
        exact_kl(policy, reference, prompts, length)


def test_exact_kl_refuses_a_reference_of_another_vocabulary_or_end_token(pair):
    policy, _, _ = pair
    for other in (SoftmaxPolicy(6, 2, eos_token=0), SoftmaxPolicy(5, 2, eos_token=None)):
        message = "reference: expected the policy's (vocab_size|eos_token)"
        with pytest.raises(ValueError, match=message):
            exact_kl(policy, other, np.array([0]), 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 3), "vocab_size: expected a positive int; got 0"),
     ((3, 2.5), "length: expected a positive int; got 2.5"),
     ((True, 2), "vocab_size: expected a positive int; got True"),
     ((3, 2, 7), r"eos_token: expected None or an id in \[0, 3\); got 7"),
     ((3, 2, -1), r"eos_token: expected None or an id in \[0, 3\); got -1")],
)
def test_response_space_refuses_bad_sizes_and_end_tokens(args, message):
    with pytest.raises(ValueError, match=message):
        response_space(*args)


def test_exact_evaluation_refuses_a_task_or_reference_that_does_not_fit():
    task = default_task()
    with pytest.raises(TypeError, match="task: expected a ToyTask .* got NoneType"):
        ExactEvaluator(None, task.base_policy())
    with pytest.raises(ValueError, match="reference: expected the task's vocab_size, 12; got 3"):
        ExactEvaluator(task, SoftmaxPolicy(3, 2))


@settings(max_examples=examples(40))
@given(shape=policy_shapes(), length=st.integers(1, 3), seed=st.integers(0, 2**16),
       init_std=st.floats(0.1, 5.0))
def test_response_probabilities_sum_to_one_and_the_exact_kl_is_not_negative(
    shape, length, seed, init_std
):
    shape = {**shape, "init_std": init_std}
    policy = SoftmaxPolicy(seed=seed, **shape)
    reference = SoftmaxPolicy(seed=seed + 1, **shape)
    prompts = np.arange(shape["num_prompts"])
    space = response_space(shape["vocab_size"], length, shape["eos_token"])
    logp = to_numpy(response_log_probs(policy, prompts, space))
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-12)
    ones = np.ones((prompts.size, space.shape[0]))
    np.testing.assert_allclose(to_numpy(expected_value(policy, prompts, space, ones)), 1.0,
                               rtol=1e-12)
    # the exact KL recursion agrees with the sum over the enumerated space, and is >= 0
    logq = to_numpy(response_log_probs(reference, prompts, space))
    brute = np.sum(np.exp(logp) * (logp - logq), axis=1)
    kl = to_numpy(exact_kl(policy, reference, prompts, length))
    np.testing.assert_allclose(kl, brute, rtol=1e-9, atol=1e-12)
    assert np.all(kl >= -1e-12)
