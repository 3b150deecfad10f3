"""The fast paths of a training step compute the same numbers as the plain math.

NumPy (and CuPy) take native bodies in :mod:`minikto.fast.kernels` (in-place softmax, no
one-hot matrix, BLAS sums, scatter by one-hot product or flat ``add.at``), and the policy
processes large batches block by block
(:mod:`minikto.fast.blocks`). Each test here pins one of those paths to the simple path (the
math, which the finite-difference tests prove) or to the portable body.
"""

import numpy as np
import pytest
from conftest import assert_close

from minikto import SoftmaxPolicy
from minikto import backend as B
from minikto.backend import to_numpy
from minikto.fast import blocks
from minikto.fast import checks as C
from minikto.fast import kernels as K
from minikto.objective import kto_objective

STRICT = B.get_namespace("array_api_strict")


def _both(x):
    """The same values as a NumPy array and as an array_api_strict array."""
    return np.asarray(x), STRICT.asarray(np.asarray(x))


@pytest.mark.parametrize("width", [11, K.SHORT_ROWS + 36])  # both ways to take row maxima
def test_log_softmax_at_native_body_equals_the_portable_body(width):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, width)) * 30.0
    targets = rng.integers(0, width, size=7)
    (ln, ls), (tn, ts) = _both(logits), _both(targets)
    picked_n, probs_n = K.log_softmax_at(ln, tn, return_probs=True)
    picked_s, probs_s = K.log_softmax_at(ls, ts, return_probs=True)
    assert_close(picked_n, picked_s)
    assert_close(probs_n, probs_s)
    peak = logits.max(1)
    expected = logits[np.arange(7), targets] - peak - np.log(np.exp(logits - peak[:, None]).sum(1))
    assert_close(picked_n, expected, rtol=1e-12)
    np.testing.assert_array_equal(ln, logits)  # overwrite=False leaves the logits alone


def test_log_softmax_at_overwrite_reuses_the_logits_memory_for_the_probabilities():
    logits = np.random.default_rng(1).normal(size=(5, 9))
    expected = B.softmax(logits.copy())
    _, probs = K.log_softmax_at(
        logits, np.zeros(5, dtype=np.int64), return_probs=True, overwrite=True
    )
    assert probs is logits or np.shares_memory(probs, logits)
    assert_close(probs, expected)


def test_softmax_grad_native_body_equals_the_one_hot_formula():
    rng = np.random.default_rng(2)
    probs = B.softmax(rng.normal(size=(6, 5)))
    targets = rng.integers(0, 5, size=6)
    weight = rng.normal(size=6)
    native = K.softmax_grad(probs, targets, weight)
    portable = K.softmax_grad(*(_both(a)[1] for a in (probs, targets, weight)))
    onehot = np.eye(5)[targets]
    assert_close(native, weight[:, None] * (onehot - probs), rtol=1e-15, atol=1e-16)
    assert_close(portable, native, rtol=1e-15, atol=1e-16)
    out = np.empty_like(probs)
    assert K.softmax_grad(probs, targets, weight, out=out) is out


def test_blas_row_and_column_sums_equal_plain_sums():
    x = np.random.default_rng(3).normal(size=(13, 8))
    assert_close(K.row_sums(x), x.sum(axis=1), rtol=1e-13)
    assert_close(K.column_sums(x), x.sum(axis=0), rtol=1e-13)
    assert_close(K.row_sums(STRICT.asarray(x)), x.sum(axis=1), rtol=1e-13)


@pytest.mark.parametrize("num_rows", [5, K.ONEHOT_SCATTER_ROWS + 7])
def test_both_native_scatter_paths_equal_the_portable_one_hot_product(num_rows):
    rng = np.random.default_rng(4)
    index = rng.integers(0, num_rows, size=300)
    values = rng.normal(size=(300, 6))
    native = K.scatter_add(values, index, num_rows)
    portable = B.scatter_add(STRICT.asarray(values), STRICT.asarray(index), num_rows)
    assert native.shape == (num_rows, 6)
    assert_close(native, portable)


def _batch(policy, batch=20, length=5):
    rng = np.random.default_rng(5)
    prompts = rng.integers(0, policy.num_prompts, size=batch)
    responses = to_numpy(policy.sample(prompts, length, seed=6))  # padded after eos
    return prompts, responses


def _force_blocks(monkeypatch, rows):
    """Send every batch down the block-wise path, in blocks of ``rows`` positions."""
    monkeypatch.setattr(blocks, "pays_off", lambda xp, positions, row_bytes: True)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1)
    monkeypatch.setattr(blocks, "MIN_BLOCK_ROWS", rows)


@pytest.mark.parametrize("features", ["onehot", 4])
@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
def test_the_block_wise_path_equals_the_simple_path(features, xp_name, monkeypatch):
    """float64, several blocks, both backends: the optional fast path is the same math."""
    policy = SoftmaxPolicy(
        7, 3, features=features, eos_token=0, seed=3, init_std=1.0, backend=xp_name
    )
    xp = policy.xp
    prompts, responses = _batch(policy)
    assert np.any(responses < 0), "the batch should contain padding"
    prompts, responses = xp.asarray(prompts), xp.asarray(responses)
    g = xp.asarray(np.random.default_rng(7).normal(size=prompts.shape[0]))
    simple_logps, simple_cache = policy.sequence_logps(prompts, responses, return_cache=True)
    simple = policy.sequence_logps_backward(prompts, responses, g, cache=simple_cache)
    assert simple_cache.context is None  # the simple path keeps no block-wise context

    _force_blocks(monkeypatch, rows=8)  # 100 positions: 13 blocks forward, 4 backward
    assert blocks.rows_per_block(xp, 100, policy.row_bytes) == 8
    assert blocks.rows_per_block(xp, 100, policy.row_bytes, backward=True) == 32
    logps, cache = policy.sequence_logps(prompts, responses, return_cache=True)
    assert cache.context is not None
    assert_close(logps, simple_logps, rtol=1e-12, atol=1e-12)
    assert_close(policy.sequence_logps(prompts, responses), simple_logps, rtol=1e-12, atol=1e-12)
    for grads in (
        policy.sequence_logps_backward(prompts, responses, g, cache=cache),
        policy.sequence_logps_backward(prompts, responses, g),
        policy.sequence_logps_backward(prompts[:], responses[:, :], g, cache=cache),  # re-checked
    ):
        assert list(grads) == list(simple) == list(policy.params)
        for k in simple:
            assert_close(grads[k], simple[k], rtol=1e-12, atol=1e-12)


def test_the_dispatch_takes_the_block_wise_path_only_past_the_memory_budget(monkeypatch):
    numpy, strict = B.get_namespace("numpy"), STRICT
    budget = blocks.MEMORY_BUDGET_BYTES
    assert not blocks.pays_off(numpy, 1000, budget // 1000)
    assert blocks.pays_off(numpy, 1000, budget // 1000 + 1)
    assert not blocks.pays_off(strict, 10**6, 10**6)  # the portable path stays the math
    calls = []
    original = blocks.target_logps
    spy = lambda *a, **k: calls.append(1) or original(*a, **k)  # noqa: E731
    monkeypatch.setattr(blocks, "target_logps", spy)
    policy = SoftmaxPolicy(5, 2, seed=0)
    policy.sequence_logps(np.array([0, 1]), np.array([[1, 2], [3, 4]]))
    assert calls == []
    monkeypatch.setattr(blocks, "MEMORY_BUDGET_BYTES", 0)
    policy.sequence_logps(np.array([0, 1]), np.array([[1, 2], [3, 4]]))
    assert calls == [1]


def test_a_cache_is_only_read_so_it_serves_two_backward_passes():
    policy = SoftmaxPolicy(9, 2, features=3, eos_token=1, seed=4)
    prompts, responses = _batch(policy)
    _, cache = policy.sequence_logps(prompts, responses, return_cache=True)
    g = np.linspace(-1.0, 1.0, prompts.shape[0])
    first = policy.sequence_logps_backward(prompts, responses, g, cache=cache)
    second = policy.sequence_logps_backward(prompts, responses, 2 * g, cache=cache)
    # a cache passed with equal arrays that are other objects is used the same way
    third = policy.sequence_logps_backward(prompts.copy(), responses.copy(), g, cache=cache)
    for k in first:
        assert_close(second[k], 2 * first[k], rtol=1e-13, atol=1e-15)
        assert_close(third[k], first[k], rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("features", ["onehot", 8])
def test_float32_policies_compute_in_float32_throughout(features):
    policy = SoftmaxPolicy(6, 3, features=features, dtype="float32", eos_token=0, seed=1)
    reference = policy.copy()
    prompts, responses = _batch(policy)
    desirable = np.arange(prompts.shape[0]) % 2 == 0
    out = kto_objective(policy, reference, prompts, responses, desirable)
    assert out.policy_logps.dtype == np.float32
    assert all(g.dtype == np.float32 for g in out.grads.values())
    reference64 = policy.to("numpy", "float64")
    out64 = kto_objective(reference64, reference64.copy(), prompts, responses, desirable)
    for k in out.grads:
        assert_close(out.grads[k], out64.grads[k], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("features", ["onehot", 5])
@pytest.mark.parametrize("xp_name", ["numpy", "array_api_strict"])
def test_the_readable_whole_batch_feature_map_equals_its_block_form(features, xp_name):
    """``logits``/``backward`` (the form a reader checks against the math) and the
    block form of :mod:`minikto.fast.blocks` give the same numbers."""
    policy = SoftmaxPolicy(6, 3, features=features, seed=2, init_std=1.0, backend=xp_name)
    xp, fmap = policy.xp, policy.features
    rng = np.random.default_rng(0)
    prompts = xp.asarray(rng.integers(0, 3, 10))
    states = xp.asarray(rng.integers(0, 7, 10))  # 6 is the begin-of-response state
    grad_logits = xp.asarray(rng.normal(size=(10, 6)))
    whole_logits = fmap.logits(xp, policy.params, prompts, states)
    whole_grads = fmap.backward(xp, policy.params, grad_logits, prompts, states)
    context = blocks.context(fmap, xp, policy.params, prompts, states)
    rows = [slice(0, 4), slice(4, 10)]
    block_logits = xp.concat(
        [blocks.logits_rows(fmap, xp, policy.params, context, b, None) for b in rows]
    )
    assert_close(block_logits, whole_logits, rtol=1e-13, atol=1e-13)
    parts = [blocks.backward_rows(fmap, policy.params, grad_logits[b, :], context, b) for b in rows]
    for name, value in whole_grads.items():
        assert_close(parts[0][name] + parts[1][name], value, rtol=1e-13, atol=1e-13)


def test_the_quick_answers_of_the_checks_equal_the_namespace_answers():
    arrays = [
        np.array([3, -1, 7]),
        np.array([3, 9], dtype=np.uint8),
        np.array([0.5, 2.0], dtype=np.float32),
        np.array([True, False]),
        np.array([1 + 2j]),
    ]
    for x in arrays:
        assert C.dtype_kind(x) == C.dtype_kind(STRICT.asarray(x))
    kinds = [C.dtype_kind(x) for x in arrays]
    assert kinds == ["integral", "integral", "real floating", "bool", "other"]
    assert C.dtype_kind(STRICT.asarray(np.array([1 + 2j]))) == "other"
    for x in arrays[:2]:
        assert C.integer_range(x) == C.integer_range(STRICT.asarray(x)) == (x.min(), x.max())
