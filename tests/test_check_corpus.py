"""The corpus of correct KTO losses: every algebraically different correct form passes.

A verifier that rejects correct code is worse than none. Each form below is a correct float64
KTO loss written the way a user might write it (NumPy here; PyTorch, JAX and TRL's own code in
test_check_torch.py, test_check_jax.py and test_check_trl.py, skipped where not installed).
Each must pass ``minikto.check_kto`` (z0 given and estimated), and, paired with a hand
gradient, ``minikto.gradcheck`` on notebook 02's exercise-3 cases, among them beta = 2 with
|z| from 15 to 32, where the gradient is ~1e-7 and the difference quotient's round-off ~1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

import minikto
from minikto.gradcheck import gradcheck


def _signs(d):
    return np.where(d, 1.0, -1.0)


def _weights(d, desirable_weight, undesirable_weight):
    return np.where(d, desirable_weight, undesirable_weight)


def _z(p, r, d, z0, beta):
    return _signs(d) * beta * (p - r - z0)


# ------------------------------------------------------------------------------------------
# The forms: f(p, r, d, z0, *, beta, desirable_weight, undesirable_weight) -> loss or outputs


def one_minus_sigmoid(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    with np.errstate(over="ignore"):
        sigmoid = 1 / (1 + np.exp(-_z(p, r, d, z0, beta)))
    return np.mean(_weights(d, desirable_weight, undesirable_weight) * (1 - sigmoid))


def sigmoid_of_minus_z(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    return np.mean(
        _weights(d, desirable_weight, undesirable_weight) * expit(-_z(p, r, d, z0, beta))
    )


def exp_based(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    with np.errstate(over="ignore"):
        return np.mean(
            _weights(d, desirable_weight, undesirable_weight) / (1 + np.exp(_z(p, r, d, z0, beta)))
        )


def logaddexp_form(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    losses = _weights(d, desirable_weight, undesirable_weight) * np.exp(
        -np.logaddexp(0.0, _z(p, r, d, z0, beta))
    )
    return {"loss": losses.mean(), "losses": losses, "rewards": beta * (p - r)}


def softplus_form(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    z = _z(p, r, d, z0, beta)
    softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    return np.mean(_weights(d, desirable_weight, undesirable_weight) * np.exp(-softplus))


def tanh_form(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    z = _z(p, r, d, z0, beta)
    return np.mean(_weights(d, desirable_weight, undesirable_weight) * (1 - np.tanh(z / 2)) / 2)


def per_example_then_mean(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    losses = []
    for i in range(len(p)):
        ratio = p[i] - r[i]
        if d[i]:
            losses.append(desirable_weight * (1 - expit(beta * (ratio - z0))))
        else:
            losses.append(undesirable_weight * (1 - expit(beta * (z0 - ratio))))
    return sum(losses) / len(losses), np.array(losses)


def sum_over_batch(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    weighted = _weights(d, desirable_weight, undesirable_weight) * expit(-_z(p, r, d, z0, beta))
    return weighted.sum() / p.shape[0]


def subsets_concatenated(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    """TRL's arrangement: each kind on its own subset, concatenated, one mean; the losses and
    rewards are returned in that concatenated (chosen first) order."""
    chosen, rejected = p[d] - r[d], p[~d] - r[~d]
    losses = np.concatenate(
        [
            desirable_weight * (1 - expit(beta * (chosen - z0))),
            undesirable_weight * (1 - expit(beta * (z0 - rejected))),
        ]
    )
    rewards = np.concatenate([beta * chosen, beta * rejected])
    return losses.mean(), losses, rewards


def trl_signature_numpy(
    self,
    policy_chosen_logps,
    policy_rejected_logps,
    policy_KL_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    reference_KL_logps,
):
    """TRL 0.19's kto_loss signature and return value, in NumPy (z0 estimated)."""
    kl = max(0.0, float(np.mean(policy_KL_logps - reference_KL_logps)))
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    losses = np.concatenate(
        [
            self.desirable_weight * (1 - expit(self.beta * (chosen - kl))),
            self.undesirable_weight * (1 - expit(self.beta * (kl - rejected))),
        ]
    )
    return losses, self.beta * chosen, self.beta * rejected, kl


def test_trls_signature_is_accepted_in_numpy_too():
    report = minikto.check_kto(trl_signature_numpy, num_random=40)
    assert report.passed, str(report)
    assert "TRL kto_loss signature" in report.settings


def kto_loss_wrapper(p, r, d, z0, **kwargs):
    return minikto.kto_loss(p, r, d, z0, **kwargs)[0]


def minikto_named_tuple(p, r, d, z0, **kwargs):
    return minikto.kto_loss(p, r, d, z0, **kwargs)


def value_then_weight_split(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    """The paper's form: lambda_y - v(x, y), with v = lambda sigmoid(+-beta (r - z0))."""
    value = _weights(d, desirable_weight, undesirable_weight) * expit(_z(p, r, d, z0, beta))
    return np.mean(_weights(d, desirable_weight, undesirable_weight) - value)


FORMS = [
    one_minus_sigmoid,
    sigmoid_of_minus_z,
    exp_based,
    logaddexp_form,
    softplus_form,
    tanh_form,
    per_example_then_mean,
    sum_over_batch,
    subsets_concatenated,
    kto_loss_wrapper,
    minikto_named_tuple,
    value_then_weight_split,
]


def estimating(form):
    """The same form estimating z0 from the mismatched pairs (clamped after the mean)."""

    def fn(p, r, d, kl_p, kl_r, **kwargs):
        return form(p, r, d, max(0.0, float(np.mean(kl_p - kl_r))), **kwargs)

    fn.__name__ = form.__name__ + "_estimating"
    return fn


def test_the_corpus_holds_at_least_twelve_numpy_forms():
    assert len(FORMS) >= 12 and len({f.__name__ for f in FORMS}) == len(FORMS)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_every_correct_numpy_form_passes_with_z0_given(form):
    report = minikto.check_kto(form, num_random=100)
    assert report.passed and report.diagnosis is None, str(report)


@pytest.mark.parametrize("form", FORMS[:6] + [subsets_concatenated], ids=lambda f: f.__name__)
def test_every_correct_numpy_form_passes_estimating_z0(form):
    report = minikto.check_kto(estimating(form), z0="estimated", num_random=60)
    assert report.passed and report.diagnosis is None, str(report)


def test_losses_in_trls_concatenated_order_are_accepted_with_a_note():
    report = minikto.check_kto(subsets_concatenated, num_random=20)
    assert report.passed, str(report)
    assert any("chosen first, then rejected" in note for note in report.notes)


def test_the_extreme_cases_include_beta_2_with_z_from_15_to_32_and_beta_10():
    from minikto.tools.check_cases import loss_cases

    cases = {c.name: c for c in loss_cases(0, 0, estimated=False)}
    sharp = cases["extremes beta 2, |z| 15 to 32"]
    z = np.abs(sharp.beta * (sharp.policy_logps - sharp.reference_logps - sharp.z0))
    assert sharp.beta == 2.0 and 15 <= z.min() and z.max() <= 32
    steep = cases["extremes beta 10, |r - z0| up to 50"]
    assert steep.beta == 10.0
    assert np.max(np.abs(steep.policy_logps - steep.reference_logps - steep.z0)) >= 49.9


# ------------------------------------------------------------------------------------------
# The gradient: notebook 02's exercise 3 (value and hand gradient through gradcheck)


def sigmoid_times_complement(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
    """dL/dp_i = -s_i beta lambda_i sigmoid(z_i) (1 - sigmoid(z_i)) / B, in the 1 - s form."""
    s = expit(_z(p, r, d, z0, beta))
    return (
        -_signs(d)
        * beta
        * _weights(d, desirable_weight, undesirable_weight)
        * s
        * (1 - s)
        / p.shape[0]
    )


def minikto_gradient(p, r, d, z0, **kwargs):
    return minikto.kto_loss(p, r, d, z0, **kwargs).grad_policy_logps


def _exercise_cases():
    """The 50 random cases of notebook 02's exercise-3 check (its seed, 0 + 3)."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        size = int(rng.integers(2, 9))
        logps, ref_logps = rng.normal(-8, 6, size), rng.normal(-8, 6, size)
        labels = rng.random(size) < 0.5
        kwargs = dict(
            beta=float(rng.choice([0.05, 0.1, 0.5, 2.0])),
            desirable_weight=float(rng.uniform(0.2, 3)),
            undesirable_weight=float(rng.uniform(0.2, 3)),
        )
        yield logps, ref_logps, labels, float(rng.uniform(-2, 10)), kwargs


def test_exercise_case_17_is_the_hard_one_beta_2_and_z_from_15_to_32():
    logps, ref, labels, z0, kwargs = list(_exercise_cases())[17]
    z = np.abs(_z(logps, ref, labels, z0, kwargs["beta"]))
    assert kwargs["beta"] == 2.0 and z.min() > 15 and z.max() < 33
    grad = minikto_gradient(logps, ref, labels, z0, **kwargs)
    assert np.max(np.abs(grad)) < 2e-7  # a gradient below the old absolute floor's reach


@pytest.mark.parametrize(
    "gradient", [sigmoid_times_complement, minikto_gradient], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.__name__)
def test_every_form_with_a_correct_hand_gradient_passes_gradcheck_on_every_exercise_case(
    form, gradient
):
    for case, (logps, ref, labels, z0, kwargs) in enumerate(_exercise_cases()):

        def fun(x, ref=ref, labels=labels, z0=z0, kwargs=kwargs):
            out = form(x, ref, labels, z0, **kwargs)
            loss = (
                out["loss"]
                if isinstance(out, dict)
                else (out[0] if isinstance(out, tuple) else out)
            )
            return float(loss), gradient(x, ref, labels, z0, **kwargs)

        report = gradcheck(fun, logps)
        assert report.passed, f"case {case}\n{report.table()}"


def test_a_wrong_gradient_fails_on_the_hard_case_too():
    logps, ref, labels, z0, kwargs = list(_exercise_cases())[17]

    def fun(x, factor):
        return (
            one_minus_sigmoid(x, ref, labels, z0, **kwargs),
            factor * minikto_gradient(x, ref, labels, z0, **kwargs),
        )

    assert gradcheck(lambda x: fun(x, 1.0), logps).passed
    for factor in (2.0, 0.5, -1.0):  # a missing 1/2, a doubled term, a sign
        assert not gradcheck(lambda x, f=factor: fun(x, f), logps).passed
