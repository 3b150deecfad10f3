"""The softmax policy: sequence log-probabilities and their hand-derived backward pass,
sampling, copies, and the errors of its queries (exact probabilities and KL: test_exact)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import DTYPES, RAISE, check, extreme_policy, policy_batches, vectors
from conftest import assert_close, count_case, examples
from hypothesis import given, settings
from hypothesis import strategies as st

from minikto import SoftmaxPolicy, kto_loss
from minikto.backend import get_namespace, to_numpy
from minikto.exact import response_log_probs, response_space


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


@settings(max_examples=examples(30))
@given(case=policy_batches(), data=st.data())
def test_sequence_logps_backward_agrees_with_finite_differences(case, data):
    policy, _, prompts, resp, _ = case
    xp = policy.xp
    upstream = xp.asarray(data.draw(vectors(prompts.shape[0], st.floats(-3.0, 3.0))))
    work = policy.copy(frozen=False)

    def fun(theta):  # f(theta) = sum_b upstream_b * log pi_theta(y_b | x_b)
        work.set_flat(theta)
        value = float(xp.sum(upstream * work.sequence_logps(prompts, resp)))
        return value, work.flatten_grads(work.sequence_logps_backward(prompts, resp, upstream))

    check(fun, policy.get_flat(), policy.param_slices())
    count_case("sequence_logps_backward")


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


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [(dict(vocab_size=True), TypeError, "vocab_size: expected a positive int; got True"),
     (dict(vocab_size=2.5), TypeError, "vocab_size: expected a positive int"),
     (dict(vocab_size="5"), TypeError, "vocab_size: expected a positive int"),
     (dict(num_prompts=0), ValueError, "num_prompts: expected a positive int; got 0"),
     (dict(num_prompts=-2), ValueError, "num_prompts: expected a positive int"),
     (dict(features=0), ValueError, "features: expected a positive int; got 0"),
     (dict(features=True), ValueError, "features: expected 'onehot' or a positive int"),
     (dict(features=2.5), ValueError, "features: expected 'onehot' or a positive int"),
     (dict(eos_token=-1), ValueError, r"eos_token: expected an id in \[0, 5\)"),
     (dict(eos_token=True), TypeError, "eos_token: expected an int or None"),
     (dict(eos_token=1.0), TypeError, "eos_token: expected an int or None"),
     (dict(dtype="int32"), ValueError, "dtype: expected 'float32' or 'float64'"),
     (dict(dtype=None), ValueError, "dtype: expected 'float32' or 'float64'"),
     (dict(backend="nope"), ValueError, "backend: expected 'numpy', 'cupy'")],
)
def test_the_policy_constructor_refuses_bad_arguments_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        SoftmaxPolicy(**{"vocab_size": 5, "num_prompts": 2, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(backend=3), "backend: expected"),  # AttributeError: 'int' has no '__name__'
     (dict(seed=-1), "seed: expected"),  # NumPy's "expected non-negative integer"
     (dict(seed="a"), "seed: expected"),
     (dict(init_std=float("nan")), "init_std: expected")],  # accepted: NaN parameters
)
def test_the_policy_constructor_names_a_bad_backend_seed_or_init_std(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        SoftmaxPolicy(5, 2, **kwargs)


def test_policy_queries_refuse_shapes_that_do_not_fit_and_accept_any_integer_width():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(ValueError, match=r"states: expected shape \(2,\) like prompts; got \(1,\)"):
        policy.next_token_logits(np.array([0, 1]), np.array([0]))
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    wide = policy.sequence_logps(prompts, responses)
    narrow = policy.sequence_logps(prompts.astype(np.int32), responses.astype(np.int16))
    np.testing.assert_array_equal(narrow, wide)


def test_responses_without_a_single_position_are_refused_naming_them():
    # policy.py takes the min of the ids before its T >= 1 check: NumPy's "zero-size array"
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(ValueError, match=r"responses: expected at least one position \(T >= 1\)"):
        policy.sequence_logps(np.array([0, 1]), np.zeros((2, 0), dtype=np.int64))


@pytest.mark.parametrize(
    ("prompts", "length", "error", "message"),
    [([0, 2], 3, ValueError, r"prompts: expected ids in \[0, 2\); got 2"),
     ([-1], 3, ValueError, r"prompts: expected ids in \[0, 2\); got -1"),
     ([0.0], 3, TypeError, "prompts: expected integer ids"),
     ([[0]], 3, ValueError, "prompts: expected a 1-d array"),
     ([], 3, ValueError, "prompts: expected a non-empty batch"),
     ("01", 3, TypeError, "prompts: expected an integer array; got str"),
     ([0], 0, ValueError, "length: expected a positive int; got 0"),
     ([0], 1.5, TypeError, "length: expected a positive int"),
     ([0], True, TypeError, "length: expected a positive int")],
)
def test_sample_refuses_bad_prompts_and_lengths_naming_them(prompts, length, error, message):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(error, match=message):
        policy.sample(prompts if isinstance(prompts, str) else np.asarray(prompts), length)


@pytest.mark.parametrize("seed", [-1, "x"])
def test_sample_names_a_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed: expected"):
        SoftmaxPolicy(5, 2).sample(np.array([0]), 2, seed=seed)


def test_the_backward_pass_refuses_an_upstream_gradient_or_cache_that_does_not_fit():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match=r"grad_logps: expected shape \(2,\)"):
        policy.sequence_logps_backward(prompts, responses, np.ones(3))
    with pytest.raises(ValueError, match=r"grad_logps: expected shape \(2,\)"):
        policy.sequence_logps_backward(prompts, responses, [1.0, 2.0])
    _, other = policy.sequence_logps(np.array([0]), np.array([[3, 0]]), return_cache=True)
    with pytest.raises(ValueError, match="cache: expected the cache of this batch"):
        policy.sequence_logps_backward(prompts, responses, np.ones(2), cache=other)
    with pytest.raises(ValueError, match=r"theta: expected shape \(\d+,\)"):
        policy.set_flat(np.zeros(3))


@pytest.mark.parametrize("kind", ["another backend", "NaN"])
def test_the_backward_pass_refuses_an_upstream_gradient_of_another_backend_or_nan(kind):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    grad = (get_namespace("array_api_strict").asarray([1.0, 2.0]) if kind == "another backend"
            else np.array([np.nan, 1.0]))
    with pytest.raises((TypeError, ValueError), match="grad_logps: expected"):
        policy.sequence_logps_backward(prompts, responses, grad)


def test_token_arrays_of_another_backend_are_refused_naming_the_argument():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    strict = get_namespace("array_api_strict")
    with pytest.raises(TypeError, match="prompts: expected an array of the policy's backend"):
        policy.sequence_logps(strict.asarray([0, 1]), np.array([[1, 0], [2, 0]]))
    with pytest.raises(TypeError, match="responses: expected an array of the policy's backend"):
        policy.sequence_logps(np.array([0, 1]), strict.asarray([[1, 0], [2, 0]]))
    with pytest.raises(TypeError, match="one array library"):
        kto_loss(np.zeros(2), np.zeros(2), np.array([True, False]), strict.asarray(0.5))


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


@pytest.mark.parametrize(
    "prompts,responses,pattern",
    [
        (
            [0, 1],
            [[1, 2], [3, 9]],
            r"responses: expected ids in \[0, 5\) \(or -1 for padding\); got 9",
        ),
        ([0, 1], [[1, 2], [3, -2]], r"responses: expected ids in \[0, 5\).*got -2"),
        (
            [0, 1],
            [[1, -1, 2], [3, 4, 4]],
            "responses: expected -1 padding only after the last token; row 0",
        ),
        ([0, 1], [[1, 2], [-1, -1]], "responses: expected at least one token per response; row 1"),
        ([0, 3], [[1, 2], [3, 4]], r"prompts: expected ids in \[0, 2\); got 3"),
        ([0], [[1, 2], [3, 4]], "responses: expected 1 rows, one per prompt"),
        ([], np.zeros((0, 2), dtype=int), "prompts: expected a non-empty batch"),
        ([0, 1], [1, 2], "responses: expected a 2-d array"),
        (
            [0, 1],
            [[0, 2], [3, 4]],
            "responses: expected nothing but -1 after the end token 0; row 0",
        ),
        ([0.0, 1.0], [[1, 2], [3, 4]], "prompts: expected integer ids"),
    ],
)
def test_policy_refuses_bad_token_arrays_naming_the_argument(prompts, responses, pattern):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        policy.sequence_logps(np.asarray(prompts), np.asarray(responses))


def test_policy_constructor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="features: expected 'onehot' or a positive int"):
        SoftmaxPolicy(5, 2, features="mlp")
    with pytest.raises(ValueError, match="vocab_size: expected a positive int"):
        SoftmaxPolicy(0, 2)
    with pytest.raises(ValueError, match=r"eos_token: expected an id in \[0, 5\)"):
        SoftmaxPolicy(5, 2, eos_token=5)
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        SoftmaxPolicy(5, 2, dtype="float16")


# ------------------------------------------------------------------------------------------
# Copies: frozen references, other backends and dtypes


@pytest.mark.parametrize("features", ["onehot", 3])
def test_to_without_a_dtype_keeps_the_dtype_on_every_backend(features):
    for dtype in ("float64", "float32"):
        policy = SoftmaxPolicy(5, 2, features=features, dtype=dtype, seed=1)
        for backend in ("numpy", "array_api_strict"):
            moved = policy.to(backend)
            assert moved.dtype_name == dtype and moved.backend == backend
            assert moved.frozen == policy.frozen
            for k, v in policy.params.items():
                np.testing.assert_array_equal(to_numpy(moved.params[k]), to_numpy(v))
        assert policy.to("numpy", "float64").dtype_name == "float64"


def test_a_frozen_copy_refuses_an_optimizer_step_and_in_place_writes():
    from minikto.training.optim import SGD, Adam

    policy = SoftmaxPolicy(5, 2, seed=0)
    reference = policy.copy()
    assert reference.frozen and reference.to("numpy").frozen
    before = reference.get_flat()
    grads = {k: np.ones_like(v) for k, v in reference.params.items()}
    for optimizer in (Adam(0.1), SGD(0.1)):
        with pytest.raises(TypeError, match="params: expected a trainable policy; got a frozen"):
            optimizer.step(reference.params, grads)
    with pytest.raises(ValueError, match="read-only"):
        reference.params["bias"][0] = 1.0
    np.testing.assert_array_equal(reference.get_flat(), before)
    trainable = reference.copy(frozen=False)
    Adam(0.1).step(trainable.params, grads)  # a trainable copy of a frozen policy trains
    trainable.params["bias"][0] = 1.0
    assert not np.array_equal(trainable.get_flat(), before)
    np.testing.assert_array_equal(reference.get_flat(), before)
    policy.params["bias"][0] = 5.0  # the original stays writable
    import copy
    import pickle

    params = reference.params  # the frozen mapping survives pickle and deepcopy whole
    for twin in (pickle.loads(pickle.dumps(params)), copy.deepcopy(params)):
        assert type(twin) is type(params) and list(twin) == list(params)
        with pytest.raises(TypeError, match="params: expected a trainable policy"):
            twin["bias"] = 0.0


def test_masked_token_ids_or_upstream_gradients_are_refused_naming_them():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    masked = np.ma.masked_array
    with pytest.raises(TypeError, match="prompts: expected a plain array; got a masked array"):
        policy.sequence_logps(masked(prompts, mask=[0, 1]), responses)
    with pytest.raises(TypeError, match="responses: expected a plain array; got a masked"):
        policy.sequence_logps(prompts, masked(responses, mask=np.zeros((2, 2))))
    with pytest.raises(TypeError, match="grad_logps: expected a plain array; got a masked"):
        policy.sequence_logps_backward(prompts, responses, masked(np.ones(2), mask=[0, 1]))
