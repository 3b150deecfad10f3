"""minikto.check_kto on JAX implementations (skipped where jax cannot be imported).

Run with JAX 0.10.2 (CPU): ``pip install ".[test]" jax``; the check turns on float64.
"""

from __future__ import annotations

import pytest

import minikto

jax = pytest.importorskip("jax")
jnp = jax.numpy


def jax_kto(mistake: str | None = None):
    """A JAX KTO loss (estimated z0, detached with stop_gradient)."""

    def kto(policy_logps, reference_logps, desirable, kl_policy_logps, kl_reference_logps, *,
            beta, desirable_weight, undesirable_weight):
        ratios = kl_policy_logps - kl_reference_logps
        if mistake == "clamp_before_mean":
            z0 = jnp.mean(jnp.maximum(ratios, 0.0))
        else:
            z0 = jnp.maximum(jnp.mean(ratios), 0.0)
        if mistake != "z0_not_detached":
            z0 = jax.lax.stop_gradient(z0)
        sign = jnp.where(desirable, 1.0, -1.0)
        weight = jnp.where(desirable, desirable_weight, undesirable_weight)
        losses = weight * jax.nn.sigmoid(-sign * beta * (policy_logps - reference_logps - z0))
        return {"loss": jnp.mean(losses), "losses": losses,
                "rewards": beta * (policy_logps - reference_logps)}

    return kto


def jax_forms(form: str):
    """Correct JAX forms with z0 given: the sigmoid's three spellings."""

    def kto(policy_logps, reference_logps, desirable, z0, *, beta, desirable_weight,
            undesirable_weight):
        z = jnp.where(desirable, 1.0, -1.0) * beta * (policy_logps - reference_logps - z0)
        weight = jnp.where(desirable, desirable_weight, undesirable_weight)
        if form == "1 - sigmoid(z)":
            unweighted = 1 - jax.nn.sigmoid(z)
        elif form == "sigmoid(-z)":
            unweighted = jax.nn.sigmoid(-z)
        else:
            unweighted = jnp.exp(-jnp.logaddexp(0.0, z))
        return jnp.mean(weight * unweighted)

    return kto


@pytest.mark.parametrize("form", ["1 - sigmoid(z)", "sigmoid(-z)", "exp(-logaddexp(0, z))"])
def test_correct_jax_forms_pass(form):
    report = minikto.check_kto(jax_forms(form), num_random=40)
    assert report.passed, str(report)


def test_a_jax_kto_passes_with_jax_grad():
    report = minikto.check_kto(jax_kto(), z0="estimated", num_random=50)
    assert report.passed, str(report)
    assert "jax, gradients by autograd" in report.settings


@pytest.mark.parametrize("mistake", ["clamp_before_mean", "z0_not_detached"])
def test_jax_mistakes_are_diagnosed(mistake):
    report = minikto.check_kto(jax_kto(mistake), z0="estimated", num_random=50)
    assert report.variants == [mistake], str(report)


def test_a_jax_sequence_function_is_checked_with_jax_grad():
    def summed(token_logps, mask):
        return jnp.sum(jnp.where(mask, token_logps, 0.0), axis=1)

    def averaged(token_logps, mask):
        return summed(token_logps, mask) / jnp.sum(mask, axis=1)

    assert minikto.check_kto(jax_kto(), z0="estimated", num_random=5,
                             sequence_fn=summed).passed
    report = minikto.check_kto(jax_kto(), z0="estimated", num_random=5, sequence_fn=averaged)
    assert report.diagnosis.startswith("token_logps_averaged: ")
