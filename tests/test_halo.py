"""minikto.halo: each loss's implied value function, measured, agrees with its stated verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_expit

from minikto import preference_loss
from minikto.halo import (
    HALO_LOSSES,
    MARGIN_LOSSES,
    STRUCTURAL,
    VERDICTS,
    halo_properties,
    implied_values,
)
from minikto.reference_free import orpo_loss


def test_every_loss_has_a_verdict_with_a_reason():
    assert set(VERDICTS) == set(HALO_LOSSES)
    assert all(isinstance(ok, bool) and len(why) > 20 for ok, why in VERDICTS.values())


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("loss", sorted(set(HALO_LOSSES) - set(STRUCTURAL)))
def test_the_measured_value_function_agrees_with_the_verdict(loss, beta):
    assert halo_properties(loss, beta=beta).halo == VERDICTS[loss][0]


def test_dpos_and_ktos_value_functions_are_the_papers():
    z = np.linspace(-5, 5, 11)
    dpo = implied_values("sigmoid", z, beta=0.5)
    assert set(dpo) == {"chosen"}
    np.testing.assert_allclose(dpo["chosen"], log_expit(0.5 * z) - log_expit(0.0), atol=1e-15)
    kto = implied_values("kto", z, beta=0.5)
    for side in ("chosen", "rejected"):
        np.testing.assert_allclose(kto[side], expit(0.5 * z) - 0.5, atol=1e-15)


def test_robust_dpo_is_a_halo_and_cdpo_turns_down():
    z = np.linspace(0, 60, 601)
    h = z  # beta = 1
    eps = 0.1
    cdpo = (1 - eps) * log_expit(h) + eps * log_expit(-h)
    assert np.argmax(cdpo) < len(z) - 1  # a maximum inside: v decreases past log(9)
    assert z[np.argmax(cdpo)] == pytest.approx(np.log(9.0), abs=0.1)
    # rDPO, through the loss itself: v'' <= 0 and v' > 0 everywhere on the grid
    losses = np.array(
        [
            float(
                preference_loss(
                    "robust",
                    np.array([u]),
                    np.zeros(1),
                    np.zeros(1),
                    np.zeros(1),
                    beta=1.0,
                    label_smoothing=eps,
                ).loss
            )
            for u in z
        ]
    )
    assert np.all(np.diff(-losses) > 0) and np.all(np.diff(-losses, 2) <= 1e-12)


def test_aot_is_not_a_function_of_the_rewards():
    """Move pi and pi_ref of one response together: no reward changes, the aot loss does."""
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (-rng.uniform(5, 20, 3) for _ in range(4))
    before = float(preference_loss("aot", pc, pr, rc, rr).loss)
    shift = np.array([6.0, 0.0, 0.0])
    after = float(preference_loss("aot", pc + shift, pr, rc + shift, rr).loss)
    assert abs(after - before) > 1e-3
    # aot_pair, whose sorted quantities ARE rewards, does not move
    same = float(preference_loss("aot_pair", pc + shift, pr, rc + shift, rr).loss)
    assert same == pytest.approx(float(preference_loss("aot_pair", pc, pr, rc, rr).loss), rel=1e-14)


def test_orpos_value_depends_on_where_the_pair_sits():
    z = np.linspace(-1, 1, 21)

    def value(base):
        at = [float(orpo_loss(np.array([base + u]), np.array([base]), np.ones(1)).loss) for u in z]
        return at[10] - np.array(at)

    assert np.max(np.abs(value(-8.0) - value(-1.5))) > 1e-2


def test_margin_losses_read_one_data_point_per_pair():
    for loss in MARGIN_LOSSES:
        assert set(implied_values(loss, [0.0, 1.0])) == {"chosen"}
