"""The KTO loss and the batch estimate of its reference point (KTO_REFERENCE §1-§3, §9)."""

import numpy as np
import pytest
from conftest import assert_close
from scipy.special import expit

from minikto import kl_estimate, kto_loss, mismatched_indices
from minikto.backend import to_numpy


def trl_style_kto(policy, reference, desirable, kl, beta, wd, wu):
    """An independent float64 transcription of TRL's/HALOs' KTO semantics."""
    r = policy - reference
    chosen = 1.0 - expit(beta * (r[desirable] - kl))
    rejected = 1.0 - expit(beta * (kl - r[~desirable]))
    losses = np.concatenate([wd * chosen, wu * rejected])
    return losses.mean()


def batch(rng, n, *, scale=3.0):
    policy = rng.normal(size=n) * scale - 5
    reference = rng.normal(size=n) * scale - 5
    desirable = rng.random(n) < 0.5
    return policy, reference, desirable


@pytest.mark.parametrize("seed", range(5))
def test_loss_matches_the_reference_implementations_semantics_to_1e_12(xp, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 20))
    p, r, d = batch(rng, n)
    beta, wd, wu, z0 = rng.uniform(0.01, 2), rng.uniform(0, 3), rng.uniform(0, 3), rng.uniform(0, 2)
    out = kto_loss(
        xp.asarray(p),
        xp.asarray(r),
        xp.asarray(d),
        z0,
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    assert abs(float(out.loss) - trl_style_kto(p, r, d, z0, beta, wd, wu)) <= 1e-12
    assert_close(out.rewards, beta * (p - r))


def test_at_initialisation_the_loss_is_one_half_and_each_gradient_is_beta_over_4b(xp):
    n, beta = 8, 0.1
    logps = xp.asarray(np.full(n, -3.7))
    desirable = xp.asarray(np.arange(n) % 3 == 0)
    out = kto_loss(logps, logps, desirable, 0.0, beta=beta)
    assert float(out.loss) == 0.5
    assert_close(xp.abs(out.grad_policy_logps), np.full(n, beta / (4 * n)), rtol=1e-15)
    # desirable examples are pushed up (negative gradient), undesirable ones down
    assert np.all(to_numpy(out.grad_policy_logps)[to_numpy(desirable)] < 0)
    assert np.all(to_numpy(out.grad_policy_logps)[~to_numpy(desirable)] > 0)


@pytest.mark.parametrize("only", [True, False])
def test_a_batch_of_one_kind_only_has_a_finite_loss(xp, only):
    rng = np.random.default_rng(3)
    p, r, _ = batch(rng, 5)
    out = kto_loss(xp.asarray(p), xp.asarray(r), xp.asarray(np.full(5, only)), 0.2)
    assert np.isfinite(float(out.loss))
    assert abs(float(out.loss) - trl_style_kto(p, r, np.full(5, only), 0.2, 0.1, 1, 1)) < 1e-12


def test_gradients_agree_with_central_differences(xp):
    rng = np.random.default_rng(4)
    p, r, d = batch(rng, 7, scale=2)
    kw = dict(beta=0.7, desirable_weight=1.4, undesirable_weight=0.6)
    z0 = 0.4
    out = kto_loss(xp.asarray(p), xp.asarray(r), xp.asarray(d), z0, **kw)

    def f(pp, zz):
        return float(kto_loss(xp.asarray(pp), xp.asarray(r), xp.asarray(d), zz, **kw).loss)

    h = 1e-6
    fd = np.array([(f(p + h * e, z0) - f(p - h * e, z0)) / (2 * h) for e in np.eye(7)])
    g = to_numpy(out.grad_policy_logps)
    assert np.max(np.abs(fd - g)) / np.max(np.abs(g)) <= 1e-6
    fd_z0 = (f(p, z0 + h) - f(p, z0 - h)) / (2 * h)
    assert abs(fd_z0 - float(out.grad_z0)) / abs(fd_z0) <= 1e-6


def test_each_loss_lies_between_zero_and_its_weight(xp):
    rng = np.random.default_rng(5)
    p, r, d = batch(rng, 50, scale=30)
    out = kto_loss(
        xp.asarray(p),
        xp.asarray(r),
        xp.asarray(d),
        1.0,
        beta=1.0,
        desirable_weight=2.0,
        undesirable_weight=0.5,
    )
    w = np.where(d, 2.0, 0.5)
    losses = to_numpy(out.losses)
    assert np.all(losses >= 0) and np.all(losses <= w)


def test_gradient_weight_vanishes_far_from_the_reference_point_prop_4_1(xp):
    """Prop. 4.1: |dL/dr| = lambda beta sigma(z) sigma(-z) / B -> 0 as |z| grows."""
    r = np.array([-200.0, -20.0, -2.0, 0.0, 2.0, 20.0, 200.0])
    for label in (True, False):
        out = kto_loss(
            xp.asarray(r), xp.asarray(np.zeros(7)), xp.asarray(np.full(7, label)), 0.0, beta=1.0
        )
        w = np.abs(to_numpy(out.grad_policy_logps)) * 7
        assert w[3] == pytest.approx(0.25)
        assert np.all(np.diff(w[:4]) > 0) and np.all(np.diff(w[3:]) < 0)
        assert w[0] < 1e-80 and w[-1] < 1e-80


def test_no_warning_nan_or_inf_at_extreme_log_ratios_and_beta(xp):
    r = xp.asarray([-1e4, -1.0, 0.0, 1.0, 1e4])
    d = xp.asarray([True, False, True, False, True])
    for beta in (1e-6, 0.1, 1e3):
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            out = kto_loss(r, xp.zeros_like(r), d, 5.0, beta=beta)
        for a in out:
            assert np.all(np.isfinite(to_numpy(a)))


def test_kl_estimate_is_the_mean_log_ratio_clamped_at_zero_after_the_mean(xp):
    p = xp.asarray([-1.0, -2.0, -9.0])
    r = xp.asarray([-2.0, -4.0, -5.0])  # log-ratios +1, +2, -4: mean -1/3 -> clamped
    est = kl_estimate(p, r)
    assert float(est.z0) == 0.0
    assert_close(est.grad_kl_policy_logps, np.zeros(3))
    est = kl_estimate(p, xp.asarray([-2.0, -4.0, -10.0]))  # +1, +2, +1: mean 4/3
    assert float(est.z0) == pytest.approx(4 / 3, rel=1e-15)
    assert_close(est.grad_kl_policy_logps, np.full(3, 1 / 3))


def test_mismatched_pairs_rotate_by_one_and_never_pair_an_example_with_itself():
    for b in range(2, 12):
        idx = to_numpy(mismatched_indices(b))
        assert list(idx) == [(i - 1) % b for i in range(b)]
        assert np.all(idx != np.arange(b))


def test_a_batch_of_one_cannot_estimate_the_reference_point():
    with pytest.raises(ValueError, match="batch_size.*at least 2"):
        mismatched_indices(1)
