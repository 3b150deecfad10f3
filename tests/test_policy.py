"""The softmax policy: a normalized response distribution and a hand-derived backward pass."""

import numpy as np
import pytest
from conftest import assert_close

from minikto import SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.exact import exact_kl, response_log_probs, response_space
from minikto.gradcheck import gradcheck

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


def test_sequence_log_prob_is_the_sum_of_next_token_log_probs_padding_excluded(backend):
    policy = SoftmaxPolicy(5, 2, backend=backend, eos_token=0)
    xp = policy.xp
    prompts = xp.asarray([1, 0])
    responses = xp.asarray([[3, 0, -1], [2, 4, 1]])
    logps = to_numpy(policy.sequence_logps(prompts, responses))
    table = lambda p, s: to_numpy(policy.next_token_logprobs(xp.asarray([p]), xp.asarray([s])))[0]  # noqa: E731
    bos = policy.bos_state
    expected = [
        table(1, bos)[3] + table(1, 3)[0],
        table(0, bos)[2] + table(0, 2)[4] + table(0, 4)[1],
    ]
    np.testing.assert_allclose(logps, expected, rtol=1e-13)


@pytest.mark.parametrize("features", ["onehot", 4])
def test_backward_agrees_with_finite_differences(backend, features):
    policy = SoftmaxPolicy(5, 3, features=features, backend=backend, eos_token=0, seed=3)
    xp = policy.xp
    prompts = xp.asarray([0, 2, 1, 2])
    responses = xp.asarray([[1, 2, 0], [0, -1, -1], [4, 4, 4], [3, 0, -1]])
    weights = xp.asarray([0.3, -1.2, 0.7, 2.0])
    work = policy.copy(frozen=False)

    def fun(theta):
        work.set_flat(theta)
        value = float(xp.sum(weights * work.sequence_logps(prompts, responses)))
        grads = work.sequence_logps_backward(prompts, responses, weights)
        return value, work.flatten_grads(grads)

    report = gradcheck(fun, policy.get_flat(), blocks=policy.param_slices())
    assert report.passed, report.table()
    assert report.max_rel_error <= 1e-6


def test_backward_with_the_forward_cache_equals_the_recomputed_backward(backend):
    policy = SoftmaxPolicy(6, 2, features=3, backend=backend, seed=1)
    xp = policy.xp
    prompts = xp.asarray([0, 1, 1])
    responses = policy.sample(prompts, 4, seed=0)
    g = xp.asarray([1.0, -0.5, 0.25])
    _, cache = policy.sequence_logps(prompts, responses, return_cache=True)
    a = policy.sequence_logps_backward(prompts, responses, g, cache=cache)
    b = policy.sequence_logps_backward(prompts, responses, g)
    for k in a:
        assert_close(a[k], b[k], rtol=1e-14, atol=1e-15)


def test_every_backend_equals_numpy_to_1e_12(backend):
    ref = SoftmaxPolicy(5, 3, features=4, eos_token=0, seed=7)
    other = SoftmaxPolicy(5, 3, features=4, eos_token=0, seed=7, backend=backend)
    prompts = np.array([0, 1, 2, 1])
    responses = to_numpy(ref.sample(prompts, 3, seed=2))
    xp = other.xp
    assert_close(
        other.sequence_logps(xp.asarray(prompts), xp.asarray(responses)),
        ref.sequence_logps(prompts, responses),
    )
    g = np.array([0.1, -0.2, 0.3, 0.4])
    ga = other.sequence_logps_backward(xp.asarray(prompts), xp.asarray(responses), xp.asarray(g))
    gb = ref.sequence_logps_backward(prompts, responses, g)
    for k in gb:
        assert_close(ga[k], gb[k])
    np.testing.assert_array_equal(to_numpy(other.sample(xp.asarray(prompts), 3, seed=2)), responses)


def test_samples_are_valid_responses_with_the_exact_frequencies():
    policy = SoftmaxPolicy(3, 1, eos_token=0, init_std=1.0, seed=2)
    n = 40000
    samples = to_numpy(policy.sample(np.zeros(n, dtype=np.int64), 2, seed=5))
    space = response_space(3, 2, 0)
    probs = np.exp(to_numpy(response_log_probs(policy, np.array([0]), space)))[0]
    counts = np.array([np.sum(np.all(samples == row, axis=1)) for row in space])
    assert counts.sum() == n  # every sample lies in the response space
    # each frequency within 5 standard errors of its exact probability
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(counts / n - probs) <= 5 * se + 1e-12)


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


def test_copy_is_independent_and_flat_vectors_round_trip():
    policy = SoftmaxPolicy(4, 2, features=3)
    ref = policy.copy()
    assert ref.frozen and not policy.frozen
    theta = policy.get_flat()
    policy.set_flat(theta + 1.0)
    np.testing.assert_array_equal(ref.get_flat(), theta)
    np.testing.assert_array_equal(policy.get_flat(), theta + 1.0)
    assert policy.num_parameters == theta.size == 3 * 4 + 4


def test_logits_of_plus_minus_1e4_give_finite_log_probs_without_warnings(backend):
    policy = SoftmaxPolicy(4, 1, backend=backend, eos_token=0)
    xp = policy.xp
    policy.params["bias"] = xp.asarray([1e4, -1e4, 0.0, 1e4])
    prompts, responses = xp.asarray([0, 0]), xp.asarray([[1, 2], [3, 0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        logps = policy.sequence_logps(prompts, responses)
        grads = policy.sequence_logps_backward(prompts, responses, xp.asarray([1.0, -1.0]))
    assert np.all(np.isfinite(to_numpy(logps)))
    assert all(np.all(np.isfinite(to_numpy(g))) for g in grads.values())
