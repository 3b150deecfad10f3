"""Properties that hold for EVERY input, checked on inputs that Hypothesis generates.

Part 1, gradients. Over random vocabularies, response lengths, padding patterns, batch
compositions (all desirable, all undesirable, mixed), beta, weights, z0 modes, feature maps
and backends, every hand-derived gradient agrees with central finite differences:
``kto_loss``, ``kl_estimate``, ``dpo_loss``, ``apo_zero_unpaired_loss`` and ``sft_loss`` on
their inputs, ``SoftmaxPolicy.sequence_logps_backward`` and the full objective on the
parameters. Each passed case is counted (``conftest.count_case``); the total is printed at
the end of the run.

The tolerance of every finite-difference check here (float64, step ``H = 1e-6``, through
:func:`minikto.gradcheck`): a block passes when its norm-wise relative error is at most
``1e-6``, or when its absolute error is under the round-off floor of a central difference,
``16 * eps * max(1, |f|) / H`` (about ``3.6e-9`` for ``|f| <= 1``): each of the two values of
f carries a rounding error of a few ``eps * |f|``, and the quotient divides their difference
by ``2H``. Nothing finer can be resolved by finite differences, and the floor is what lets a
block whose true gradient is (nearly) zero pass.

Part 2, invariants. Each example's loss lies in [0, its weight]; it falls as the reward of a
desirable example rises and rises for an undesirable one; the batch estimate of z0 is never
negative; permuting the batch leaves the objective unchanged in the precise sense stated by
each test; the probabilities of all responses sum to 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _cupy_available, count_case, examples
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from minikto import SoftmaxPolicy
from minikto.backend import get_namespace, to_numpy
from minikto.exact import exact_kl, expected_value, response_log_probs, response_space
from minikto.gradcheck import gradcheck
from minikto.kto import kl_estimate, kto_loss
from minikto.losses import apo_zero_unpaired_loss, dpo_loss, sft_loss
from minikto.objective import FlatObjective, kto_objective

BACKENDS = ["numpy", "array_api_strict"] + (["cupy"] if _cupy_available() else [])
H = 1e-6  # the finite-difference step
EPS = float(np.finfo(np.float64).eps)
RTOL = 1e-6


def fd_floor(value: float) -> float:
    """The round-off floor of a central difference of a function whose value is ``value``."""
    return 16 * EPS * max(1.0, abs(value)) / H


def check(fun, x, blocks=None):
    """gradcheck with this file's tolerance; returns the report after asserting it passed."""
    x = np.asarray(x, dtype=np.float64)
    report = gradcheck(fun, x, blocks=blocks, eps=H, rtol=RTOL, atol=fd_floor(fun(x)[0]))
    assert report.passed, "\n" + report.table()
    return report


# ------------------------------------------------------------------------------------------
# Strategies

BETAS = st.floats(-2.0, 1.0).map(lambda e: 10.0**e)  # beta in [0.01, 10], log-uniform
WEIGHTS = st.floats(0.0, 3.0)
LOGPS = st.floats(-30.0, 5.0)


@st.composite
def labels(draw, batch: int, kind: str) -> np.ndarray:
    """A batch composition: "desirable" (all), "undesirable" (all), or "mixed" (both kinds;
    a batch of one is then desirable)."""
    if kind == "desirable" or (kind == "mixed" and batch == 1):
        return np.ones(batch, dtype=bool)
    if kind == "undesirable":
        return np.zeros(batch, dtype=bool)
    mask = np.array(draw(st.lists(st.booleans(), min_size=batch, max_size=batch)))
    if mask.all() or not mask.any():
        mask[draw(st.integers(0, batch - 1))] = not mask[0]
    return mask


KINDS = ["desirable", "undesirable", "mixed"]


def vectors(batch: int, elements=LOGPS):
    return st.lists(elements, min_size=batch, max_size=batch).map(np.array)


@st.composite
def unpaired_batches(draw, kind: str = "mixed", elements=LOGPS):
    """(backend, policy_logps, reference_logps, desirable) with 1 <= B <= 8."""
    backend = draw(st.sampled_from(BACKENDS))
    batch = draw(st.integers(1, 8))
    policy = draw(vectors(batch, elements))
    reference = draw(vectors(batch, elements))
    return backend, policy, reference, draw(labels(batch, kind))


@st.composite
def responses(draw, batch: int, vocab: int, length: int, eos: int | None) -> np.ndarray:
    """Valid padded responses (B, T): 1..T tokens, the end token only last, then -1s."""
    ordinary = [v for v in range(vocab) if v != eos]
    rows = []
    for _ in range(batch):
        n = draw(st.integers(1, length))
        body = draw(st.lists(st.sampled_from(ordinary), min_size=n - 1, max_size=n - 1))
        last = draw(st.integers(0, vocab - 1))  # the end token, or a response cut short
        rows.append(body + [last] + [-1] * (length - n))
    return np.array(rows, dtype=np.int64)


@st.composite
def policy_shapes(draw) -> dict:
    """The constructor arguments of a small random SoftmaxPolicy."""
    vocab = draw(st.integers(2, 6))
    return dict(
        vocab_size=vocab,
        num_prompts=draw(st.integers(1, 3)),
        features=draw(st.just("onehot") | st.integers(1, 4)),
        backend=draw(st.sampled_from(BACKENDS)),
        eos_token=draw(st.none() | st.integers(0, vocab - 1)),
        init_std=draw(st.floats(0.1, 2.0)),
    )


@st.composite
def policy_batches(draw, min_batch: int = 1, kind: str = "mixed") -> tuple:
    """(policy, reference, prompts, responses, desirable) on the policy's backend."""
    shape = draw(policy_shapes())
    seed = draw(st.integers(0, 2**16))
    policy = SoftmaxPolicy(seed=seed, **shape)
    reference = SoftmaxPolicy(seed=seed + 1, **shape).copy()
    batch = draw(st.integers(min_batch, 6))
    length = draw(st.integers(1, 4))
    xp = policy.xp
    prompts = np.array(draw(st.lists(st.integers(0, shape["num_prompts"] - 1),
                                     min_size=batch, max_size=batch)))
    resp = draw(responses(batch, shape["vocab_size"], length, shape["eos_token"]))
    desirable = draw(labels(batch, kind))
    return policy, reference, xp.asarray(prompts), xp.asarray(resp), xp.asarray(desirable)


#: every reference-point mode; "fixed" stands for a number drawn in [-2, 5]
Z0_MODES = ["batch", "batch-grad", "exact", "zero", "fixed"]


def describe(policy, resp, desirable, z0) -> list[str]:
    """Labels of a case, for Hypothesis's statistics."""
    lab = to_numpy(desirable)
    padded = bool(np.any(to_numpy(resp) < 0))
    composition = "mixed" if 0 < lab.sum() < lab.size else ("all desirable" if lab.all()
                                                            else "all undesirable")
    return [
        f"backend {policy.backend}",
        f"features {'onehot' if policy.feature_spec == 'onehot' else 'dense'}",
        f"z0 {z0 if isinstance(z0, str) else 'fixed number'}",
        f"batch {composition}",
        f"end token {'none' if policy.eos_token is None else 'yes'}, padding {padded}",
        f"T = {resp.shape[1]}",
    ]


# ------------------------------------------------------------------------------------------
# Part 1: every hand-derived gradient agrees with central finite differences


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


@settings(max_examples=examples(30))
@given(data=st.data(), backend=st.sampled_from(BACKENDS), batch=st.integers(1, 8), beta=BETAS)
def test_dpo_loss_gradient_agrees_with_finite_differences(data, backend, batch, beta):
    xp = get_namespace(backend)
    chosen, rejected, ref_chosen, ref_rejected = (data.draw(vectors(batch)) for _ in range(4))
    refs = xp.asarray(ref_chosen), xp.asarray(ref_rejected)

    def fun(x):  # x = (policy_chosen_logps..., policy_rejected_logps...)
        out = dpo_loss(xp.asarray(x[:batch]), xp.asarray(x[batch:]), *refs, beta=beta)
        grad = np.concatenate(
            [to_numpy(out.grad_policy_chosen_logps), to_numpy(out.grad_policy_rejected_logps)]
        )
        return float(out.loss), grad

    blocks = {"chosen": slice(0, batch), "rejected": slice(batch, 2 * batch)}
    check(fun, np.concatenate([chosen, rejected]), blocks)
    count_case("dpo_loss")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples(10))
@given(data=st.data(), beta=BETAS, wd=WEIGHTS, wu=WEIGHTS)
def test_apo_zero_unpaired_loss_gradient_agrees_with_finite_differences(
    kind, data, beta, wd, wu
):
    backend, policy, reference, desirable = data.draw(unpaired_batches(kind))
    xp = get_namespace(backend)
    ref, lab = xp.asarray(reference), xp.asarray(desirable)
    kw = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)

    def fun(x):
        out = apo_zero_unpaired_loss(xp.asarray(x), ref, lab, **kw)
        return float(out.loss), to_numpy(out.grad_policy_logps)

    check(fun, policy)
    count_case("apo_zero_unpaired_loss")


@pytest.mark.parametrize("kind", ["desirable", "mixed"])  # SFT needs a desirable example
@settings(max_examples=examples(15))
@given(data=st.data())
def test_sft_loss_gradient_agrees_with_finite_differences(kind, data):
    backend, policy, _, desirable = data.draw(unpaired_batches(kind))
    xp = get_namespace(backend)
    lab = xp.asarray(desirable)

    def fun(x):
        out = sft_loss(xp.asarray(x), lab)
        return float(out.loss), to_numpy(out.grad_policy_logps)

    check(fun, policy)
    count_case("sft_loss")


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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", Z0_MODES)
@settings(max_examples=examples(4))
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


# ------------------------------------------------------------------------------------------
# Part 2: invariants

WIDE = st.floats(-1e4, 1e4)
WIDE_BETAS = st.floats(-6.0, 3.0).map(lambda e: 10.0**e)  # beta in [1e-6, 1e3]


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


@settings(max_examples=examples(30))
@given(data=st.data(), backend=st.sampled_from(BACKENDS), batch=st.integers(1, 8), beta=BETAS,
       rise=st.floats(1e-3, 50.0))
def test_dpo_loss_falls_as_the_chosen_reward_rises_and_rises_with_the_rejected_one(
    data, backend, batch, beta, rise
):
    xp = get_namespace(backend)
    pc, pr, rc, rr = (data.draw(vectors(batch)) for _ in range(4))
    i = data.draw(st.integers(0, batch - 1))
    up = np.zeros(batch)
    up[i] = rise

    def losses(chosen, rejected):
        out = dpo_loss(*(xp.asarray(a) for a in (chosen, rejected, rc, rr)), beta=beta)
        return to_numpy(out.losses)

    base = losses(pc, pr)
    assert losses(pc + up, pr)[i] <= base[i] <= losses(pc, pr + up)[i]


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


def objective(case, permutation=None, **kw):
    """kto_objective of a policy_batches case, its batch optionally permuted."""
    policy, reference, prompts, resp, desirable = case
    if permutation is not None:
        idx = policy.xp.asarray(np.asarray(permutation))
        prompts, resp, desirable = (
            policy.xp.take(a, idx, axis=0) for a in (prompts, resp, desirable)
        )
    return kto_objective(policy, reference, prompts, resp, desirable, **kw)


def assert_same_objective(a, b):
    """Equal loss and gradients up to the rounding of a sum taken in another order."""
    assert abs(float(a.loss) - float(b.loss)) <= 1e-12 * max(1.0, abs(float(a.loss)))
    for k in a.grads:
        ga, gb = to_numpy(a.grads[k]), to_numpy(b.grads[k])
        assert np.max(np.abs(ga - gb)) <= 1e-12 * max(1e-300, np.max(np.abs(ga))) + 1e-16, k


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
