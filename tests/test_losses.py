"""Specifications of minikto.losses: DPO, SFT and APO-zero (unpaired).

Each value is checked against an independent float64 NumPy/SciPy transcription of the
reference formula (TRL's lines, written with ``scipy.special``), each hand-derived gradient
against central finite differences, and each backend against NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cases import (
    BETAS,
    DESIRABLE,
    DTYPES,
    EXTREME_BETAS,
    KINDS,
    POLICY,
    RAISE,
    REFERENCE,
    WEIGHTS,
    check,
    finite_fields,
    unpaired_batches,
    vectors,
)
from conftest import count_case, examples
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, log_expit

from minikto import kto_loss
from minikto.backend import get_namespace, to_numpy
from minikto.losses import apo_zero_unpaired_loss, dpo_loss, sft_loss

BACKENDS = ["numpy", "array_api_strict"]
BATCH_SIZES = [1, 3, 8, 16]


@pytest.fixture(params=BACKENDS)
def xp(request):
    return get_namespace(request.param)


def as_xp(xp, *arrays):
    return tuple(xp.asarray(np.asarray(a)) for a in arrays)


def logps_pair(rng, batch, spread=3.0):
    """Realistic sequence log-probabilities: reference in [-50, -5], policy nearby."""
    reference = -rng.uniform(5.0, 50.0, size=batch)
    policy = reference + rng.normal(0.0, spread, size=batch)
    return policy, reference


def dpo_inputs(seed, batch):
    rng = np.random.default_rng(seed)
    pc, rc = logps_pair(rng, batch)
    pr, rr = logps_pair(rng, batch)
    return pc, pr, rc, rr


def unpaired_inputs(seed, batch):
    rng = np.random.default_rng(seed)
    policy, reference = logps_pair(rng, batch)
    desirable = rng.random(batch) < 0.5
    desirable[0] = True  # SFT needs one desirable example
    return policy, reference, desirable


# ------------------------------------------------------------------------------------------
# Independent float64 references (straight transcriptions of the formulas)


def reference_dpo(pc, pr, rc, rr, beta):
    losses = -log_expit(beta * ((pc - rc) - (pr - rr)))
    return losses.mean(), losses


def reference_apo_zero_unpaired(policy, reference, desirable, beta, wd, wu):
    u = beta * (policy - reference)
    losses = np.where(desirable, wd * (1.0 - expit(u)), wu * expit(u))
    return losses.mean(), losses


def reference_sft(policy, desirable):
    return -policy[desirable].mean(), np.where(desirable, -policy, 0.0)


# ------------------------------------------------------------------------------------------
# Values match independent references


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_dpo_value_matches_sigmoid_dpo_reference(xp, batch, beta):
    pc, pr, rc, rr = dpo_inputs(batch, batch)
    out = dpo_loss(*as_xp(xp, pc, pr, rc, rr), beta=beta)
    want_loss, want_losses = reference_dpo(pc, pr, rc, rr, beta)
    np.testing.assert_allclose(to_numpy(out.loss), want_loss, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(out.losses), want_losses, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(out.chosen_rewards), beta * (pc - rc), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(out.rejected_rewards), beta * (pr - rr), rtol=1e-12)


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize(("beta", "wd", "wu"), [(0.1, 1.0, 1.0), (0.5, 1.33, 0.7), (1.0, 0.0, 2.0)])
def test_apo_zero_unpaired_value_matches_trl_formula(xp, batch, beta, wd, wu):
    policy, reference, desirable = unpaired_inputs(batch + 100, batch)
    out = apo_zero_unpaired_loss(
        *as_xp(xp, policy, reference, desirable),
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    want_loss, want_losses = reference_apo_zero_unpaired(policy, reference, desirable, beta, wd, wu)
    np.testing.assert_allclose(to_numpy(out.loss), want_loss, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(out.losses), want_losses, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(to_numpy(out.rewards), beta * (policy - reference), rtol=1e-12)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_sft_value_is_mean_nll_of_desirable_examples(xp, batch):
    policy, _, desirable = unpaired_inputs(batch + 200, batch)
    out = sft_loss(*as_xp(xp, policy, desirable))
    want_loss, want_losses = reference_sft(policy, desirable)
    np.testing.assert_allclose(to_numpy(out.loss), want_loss, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(out.losses), want_losses, rtol=1e-12)


def test_every_backend_agrees_with_numpy(xp):
    numpy = get_namespace("numpy")
    pc, pr, rc, rr = dpo_inputs(7, 9)
    policy, reference, desirable = unpaired_inputs(8, 9)
    calls = [
        lambda ns: dpo_loss(*as_xp(ns, pc, pr, rc, rr), beta=0.3),
        lambda ns: sft_loss(*as_xp(ns, policy, desirable)),
        lambda ns: apo_zero_unpaired_loss(
            *as_xp(ns, policy, reference, desirable), beta=0.3, desirable_weight=1.2
        ),
    ]
    for call in calls:
        got, want = call(xp), call(numpy)
        for field in got._fields:
            g, w = to_numpy(getattr(got, field)), to_numpy(getattr(want, field))
            assert g.shape == w.shape, field
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=0.0, err_msg=field)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_keep_the_input_dtype(xp, dtype):
    pc, pr, rc, rr = (np.asarray(a, dtype=dtype) for a in dpo_inputs(1, 4))
    policy, reference, desirable = unpaired_inputs(2, 4)
    policy, reference = policy.astype(dtype), reference.astype(dtype)
    want = getattr(xp, dtype)
    for out in (
        dpo_loss(*as_xp(xp, pc, pr, rc, rr)),
        sft_loss(*as_xp(xp, policy, desirable)),
        apo_zero_unpaired_loss(*as_xp(xp, policy, reference, desirable)),
    ):
        assert all(getattr(out, field).dtype == want for field in out._fields)


# ------------------------------------------------------------------------------------------
# Gradients agree with central finite differences


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


# ------------------------------------------------------------------------------------------
# Properties


def test_dpo_loss_is_log2_when_policy_equals_reference(xp):
    pc, pr, _, _ = dpo_inputs(9, 6)
    out = dpo_loss(*as_xp(xp, pc, pr, pc, pr), beta=0.1)
    assert float(out.loss) == pytest.approx(math.log(2.0), rel=1e-15)
    np.testing.assert_allclose(to_numpy(out.grad_policy_chosen_logps), -0.1 / (2 * 6), rtol=1e-15)
    np.testing.assert_allclose(to_numpy(out.grad_policy_rejected_logps), 0.1 / (2 * 6), rtol=1e-15)
    assert np.all(to_numpy(out.chosen_rewards) == 0.0)


def test_dpo_gradient_pushes_chosen_up_and_rejected_down(xp):
    pc, pr, rc, rr = dpo_inputs(10, 32)
    out = dpo_loss(*as_xp(xp, pc, pr, rc, rr), beta=0.5)
    grad_chosen = to_numpy(out.grad_policy_chosen_logps)
    assert np.all(grad_chosen < 0)
    np.testing.assert_array_equal(to_numpy(out.grad_policy_rejected_logps), -grad_chosen)


def test_dpo_swapping_chosen_and_rejected_flips_the_sign_of_the_margin(xp):
    pc, pr, rc, rr = dpo_inputs(11, 8)
    beta = 0.4
    out = dpo_loss(*as_xp(xp, pc, pr, rc, rr), beta=beta)
    swapped = dpo_loss(*as_xp(xp, pr, pc, rr, rc), beta=beta)
    margin = to_numpy(out.chosen_rewards) - to_numpy(out.rejected_rewards)
    swapped_margin = to_numpy(swapped.chosen_rewards) - to_numpy(swapped.rejected_rewards)
    np.testing.assert_array_equal(swapped_margin, -margin)
    # -log sigmoid(-h) = -log sigmoid(h) + h, so the per-pair losses differ by the margin
    np.testing.assert_allclose(
        to_numpy(swapped.losses) - to_numpy(out.losses), margin, rtol=1e-9, atol=1e-12
    )
    # the pair's weights sigmoid(-h) and sigmoid(h) sum to one
    np.testing.assert_allclose(
        to_numpy(out.grad_policy_rejected_logps) + to_numpy(swapped.grad_policy_rejected_logps),
        beta / 8,
        rtol=1e-12,
    )


@pytest.mark.parametrize("beta", [1e-6, 0.1, 1.0, 1e3])
def test_extreme_inputs_give_finite_values_and_gradients(xp, beta):
    big = np.array([1e4, -1e4, 1e4, -1e4, 0.0, 3e3])
    zero = np.zeros_like(big)
    desirable = np.array([True, True, False, False, True, False])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        dpo = dpo_loss(*as_xp(xp, big, -big, zero, zero), beta=beta)
        apo = apo_zero_unpaired_loss(*as_xp(xp, big, zero, desirable), beta=beta)
        sft = sft_loss(*as_xp(xp, -np.abs(big), desirable))
    for out in (dpo, apo, sft):
        for field in out._fields:
            assert np.all(np.isfinite(to_numpy(getattr(out, field)))), field
    if beta >= 0.1:  # saturated: a wrongly ordered pair's loss is its margin, its weight 1
        h = 2e4 * beta
        assert to_numpy(dpo.losses)[1] == pytest.approx(h, rel=1e-12)
        assert to_numpy(dpo.grad_policy_chosen_logps)[1] == pytest.approx(-beta / 6, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    margin=st.floats(-1e6, 1e6, allow_nan=False),
    beta=st.floats(1e-6, 1e3),
)
def test_dpo_loss_and_weight_stay_in_range_for_any_margin(margin, beta):
    xp = get_namespace("numpy")
    one = np.array([margin])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        out = dpo_loss(*as_xp(xp, one, np.zeros(1), np.zeros(1), np.zeros(1)), beta=beta)
    assert float(out.loss) >= 0.0
    assert -beta <= float(out.grad_policy_chosen_logps[0]) <= 0.0


def test_apo_zero_unpaired_equals_kto_with_zero_reference_point(xp):
    policy, reference, desirable = unpaired_inputs(12, 16)
    args = as_xp(xp, policy, reference, desirable)
    kwargs = {"beta": 0.3, "desirable_weight": 1.33, "undesirable_weight": 0.8}
    apo = apo_zero_unpaired_loss(*args, **kwargs)
    kto = kto_loss(*args, 0.0, **kwargs)
    for field in ("loss", "losses", "grad_policy_logps", "rewards"):
        np.testing.assert_allclose(
            to_numpy(getattr(apo, field)), to_numpy(getattr(kto, field)), rtol=1e-14, err_msg=field
        )


def test_apo_zero_unpaired_at_the_reference_costs_half_of_each_weight(xp):
    policy, _, desirable = unpaired_inputs(13, 8)
    out = apo_zero_unpaired_loss(
        *as_xp(xp, policy, policy, desirable),
        beta=0.1,
        desirable_weight=2.0,
        undesirable_weight=1.0,
    )
    np.testing.assert_allclose(to_numpy(out.losses), np.where(desirable, 1.0, 0.5), rtol=1e-15)
    np.testing.assert_allclose(
        np.abs(to_numpy(out.grad_policy_logps)),
        np.where(desirable, 2.0, 1.0) * 0.1 / (4 * 8),
        rtol=1e-15,
    )


def test_apo_zero_unpaired_pushes_desirable_up_and_undesirable_down(xp):
    policy, reference, desirable = unpaired_inputs(14, 16)
    grad = to_numpy(
        apo_zero_unpaired_loss(*as_xp(xp, policy, reference, desirable)).grad_policy_logps
    )
    assert np.all(grad[desirable] < 0) and np.all(grad[~desirable] > 0)


def test_sft_ignores_undesirable_examples(xp):
    policy, _, desirable = unpaired_inputs(15, 10)
    moved = np.where(desirable, policy, policy - 100.0)
    a = sft_loss(*as_xp(xp, policy, desirable))
    b = sft_loss(*as_xp(xp, moved, desirable))
    assert float(a.loss) == float(b.loss)
    grad = to_numpy(a.grad_policy_logps)
    np.testing.assert_array_equal(grad, np.where(desirable, -1.0 / desirable.sum(), 0.0))


def test_sft_without_desirable_examples_is_a_clear_error(xp):
    policy, _, _ = unpaired_inputs(16, 5)
    with pytest.raises(ValueError, match=r"^desirable: expected at least one desirable"):
        sft_loss(*as_xp(xp, policy, np.zeros(5, dtype=bool)))


# ------------------------------------------------------------------------------------------
# Bad input is refused with an error naming the argument


def _good(xp, batch=4):
    pc, pr, rc, rr = dpo_inputs(0, batch)
    desirable = np.array([True, False, True, False][:batch])
    return {
        "dpo": {
            "policy_chosen_logps": pc,
            "policy_rejected_logps": pr,
            "reference_chosen_logps": rc,
            "reference_rejected_logps": rr,
        },
        "sft": {"policy_logps": pc, "desirable": desirable},
        "apo": {"policy_logps": pc, "reference_logps": rc, "desirable": desirable},
    }


FUNCTIONS = {"dpo": dpo_loss, "sft": sft_loss, "apo": apo_zero_unpaired_loss}
ARRAY_ARGS = [(kind, name) for kind, args in _good(get_namespace()).items() for name in args]
FLOAT_ARGS = [(kind, name) for kind, name in ARRAY_ARGS if name != "desirable"]
# the first array sets the batch size B; the others must match it
LATER_ARGS = [a for a in ARRAY_ARGS if a[1] not in ("policy_chosen_logps", "policy_logps")]


def _call(xp, kind, **overrides):
    arrays = _good(xp)[kind]
    scalars = {k: overrides.pop(k) for k in list(overrides) if k not in arrays}
    arrays.update(overrides)
    converted = [xp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays.values()]
    return FUNCTIONS[kind](*converted, **scalars)


@pytest.mark.parametrize(("kind", "name"), LATER_ARGS)
def test_shape_mismatch_names_the_argument(xp, kind, name):
    value = _good(xp)[kind][name][:3]
    with pytest.raises(ValueError, match=rf"^{name}: expected shape \(4,\)"):
        _call(xp, kind, **{name: value})


@pytest.mark.parametrize(("kind", "name"), ARRAY_ARGS)
def test_two_dimensional_input_names_the_argument(xp, kind, name):
    value = np.stack([_good(xp)[kind][name]] * 2)
    with pytest.raises(ValueError, match=rf"^{name}: expected shape"):
        _call(xp, kind, **{name: value})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("kind", "name"), FLOAT_ARGS)
def test_nan_or_infinite_input_names_the_argument(xp, kind, name, bad):
    value = _good(xp)[kind][name].copy()
    value[2] = bad
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values; got 1 "):
        _call(xp, kind, **{name: value})


@pytest.mark.parametrize("kind", ["dpo", "sft", "apo"])
def test_empty_batch_is_refused(xp, kind):
    empty = {name: value[:0] for name, value in _good(xp)[kind].items()}
    first = next(iter(empty))
    with pytest.raises(ValueError, match=rf"^{first}: expected a non-empty batch"):
        _call(xp, kind, **empty)


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
@pytest.mark.parametrize("kind", ["dpo", "apo"])
def test_beta_must_be_positive_and_finite(xp, kind, beta):
    with pytest.raises(ValueError, match=r"^beta: expected"):
        _call(xp, kind, beta=beta)


@pytest.mark.parametrize("beta", ["0.1", True, None, np.array([0.1])])
@pytest.mark.parametrize("kind", ["dpo", "apo"])
def test_beta_must_be_a_real_number(xp, kind, beta):
    with pytest.raises(TypeError, match=r"^beta: expected a real number"):
        _call(xp, kind, beta=beta)


@pytest.mark.parametrize("name", ["desirable_weight", "undesirable_weight"])
def test_negative_weights_are_refused(xp, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected a number >= 0"):
        _call(xp, "apo", **{name: -1.0})


@pytest.mark.parametrize("kind", ["sft", "apo"])
def test_labels_must_be_boolean(xp, kind):
    with pytest.raises(TypeError, match=r"^desirable: expected a boolean array"):
        _call(xp, kind, desirable=np.array([1.0, 0.0, 1.0, 0.0]))


@pytest.mark.parametrize(("kind", "name"), FLOAT_ARGS)
def test_integer_or_list_input_names_the_argument(xp, kind, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected an? "):
        _call(xp, kind, **{name: np.array([-1, -2, -3, -4])})
    with pytest.raises(TypeError, match=rf"^{name}: expected an? "):
        _call(xp, kind, **{name: [-1.0, -2.0, -3.0, -4.0]})


@pytest.mark.parametrize(("kind", "name"), [a for a in ARRAY_ARGS if a[1].startswith("ref")])
def test_mixed_float_dtypes_name_the_argument(xp, kind, name):
    value = _good(xp)[kind][name].astype(np.float32)
    with pytest.raises(TypeError, match=rf"^{name}: expected dtype float64"):
        _call(xp, kind, **{name: value})


def test_arrays_from_two_libraries_are_refused():
    strict = get_namespace("array_api_strict")
    pc, pr, rc, rr = dpo_inputs(0, 4)
    with pytest.raises(TypeError, match=r"^arrays: expected all arrays from one array library"):
        dpo_loss(strict.asarray(pc), pr, rc, rr)


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", EXTREME_BETAS)
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
