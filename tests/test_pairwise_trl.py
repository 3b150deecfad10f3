"""minikto.preference_loss equals TRL's own DPOTrainer.dpo_loss, loss type by loss type.

Skipped where torch or trl cannot be imported. Run it with the project's torch environment:

    PYTHONPATH=$PWD /path/to/venv-with-torch-and-trl/bin/python -m pytest -q \
        -p no:cacheprovider tests/test_pairwise_trl.py

(measured with torch 2.14.1 and trl 0.19.1: every field of every loss type agrees to at most
2e-15 relative to the field's largest entry).

TRL's ``dpo_loss`` is an ordinary method; it is called unbound on a small stand-in object holding
only the attributes it reads (``beta``, ``loss_type``, ``label_smoothing``, ``args.discopop_tau``,
``reference_free``, ``f_divergence_type``, ``running``, ``accelerator.device``), so no model or
trainer is built. The gradient on TRL's side comes from torch autograd through ``losses.mean()``.
The method comes from :func:`trl_methods.trl_method` (see there for trl 0.19.1 with a newer
transformers).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from minikto.pairwise import PAIRWISE_LOSS_TYPES, preference_loss

torch = pytest.importorskip("torch")
trl_utils = pytest.importorskip("trl.trainer.utils")
from trl_methods import trl_method  # noqa: E402  (after the skips: it imports torch and trl)

DPO_LOSS = trl_method("dpo_trainer", "DPOTrainer", "dpo_loss")

#: Norm-wise: max |minikto - TRL| <= TOLERANCE * max |TRL| per field. Both sides are float64
#: but group the sums differently (autograd of exo_pair's product of sigmoids against its closed
#: form, for one), so a gradient entry that is 1e-5 of the field's largest and comes out of a
#: cancellation carries an absolute error of a few eps times the field's scale, not its own.
TOLERANCE = 1e-12


def assert_close_normwise(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    error = float(np.max(np.abs(got - want)))
    assert error <= TOLERANCE * float(np.max(np.abs(want))), (what, error, got, want)


def trl_stand_in(loss_type: str, beta: float, label_smoothing: float, tau: float):
    accelerator = SimpleNamespace(device=torch.device("cpu"), use_distributed=False)
    return SimpleNamespace(
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        reference_free=False,
        f_divergence_type="reverse_kl",
        args=SimpleNamespace(discopop_tau=tau),
        running=trl_utils.RunningMoments(accelerator),
        accelerator=accelerator,
    )


def trl_loss(loss_type, arrays, *, beta, label_smoothing, tau):
    """TRL's losses, rewards, gradient of the mean loss, and bco_pair's running-mean delta."""
    pc, pr, rc, rr = (torch.tensor(a, dtype=torch.float64) for a in arrays)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    owner = trl_stand_in(loss_type, beta, label_smoothing, tau)
    losses, chosen_rewards, rejected_rewards = DPO_LOSS(owner, pc, pr, rc, rr)
    losses.mean().backward()
    return {
        "loss": losses.mean().item(),
        "losses": losses.detach().numpy(),
        "grad_policy_chosen_logps": pc.grad.numpy(),
        "grad_policy_rejected_logps": pr.grad.numpy(),
        "chosen_rewards": chosen_rewards.numpy(),
        "rejected_rewards": rejected_rewards.numpy(),
        "delta": owner.running.mean if loss_type == "bco_pair" else None,
    }


def random_pairs(seed: int, batch: int):
    rng = np.random.default_rng(seed)
    reference = -rng.uniform(5.0, 40.0, size=(2, batch))
    policy = reference + rng.normal(0.0, 4.0, size=(2, batch))
    return policy[0], policy[1], reference[0], reference[1]


SMOOTHING = {"sigmoid": 0.1, "robust": 0.2, "exo_pair": 0.05, "aot": 0.1, "aot_pair": 0.3}


CASES = [(t, 0.0) for t in PAIRWISE_LOSS_TYPES] + list(SMOOTHING.items())


@pytest.mark.parametrize(("loss_type", "eps"), CASES)
@pytest.mark.parametrize(("seed", "beta"), [(0, 0.1), (1, 0.5), (2, 2.0)])
def test_every_field_equals_trl(loss_type, eps, seed, beta):
    tau = 0.05 if seed != 2 else 0.3
    arrays = random_pairs(seed, 7 + seed)
    want = trl_loss(loss_type, arrays, beta=beta, label_smoothing=eps, tau=tau)
    got = preference_loss(
        loss_type, *arrays, beta=beta, label_smoothing=eps, delta=want["delta"], discopop_tau=tau
    )
    for field in got._fields:
        assert_close_normwise(getattr(got, field), want[field], f"{loss_type}: {field}")


def test_hinge_at_its_kink_takes_the_gradient_trl_trains_with():
    # beta * ((2 - 0) - (0 - 0)) = 1 exactly: the hinge's kink for pair 0; pair 1 is active
    arrays = (np.array([2.0, 1.0]), np.zeros(2), np.zeros(2), np.zeros(2))
    want = trl_loss("hinge", arrays, beta=0.5, label_smoothing=0.0, tau=0.05)
    got = preference_loss("hinge", *arrays, beta=0.5)
    np.testing.assert_array_equal(got.grad_policy_chosen_logps, want["grad_policy_chosen_logps"])
    assert got.grad_policy_chosen_logps[0] == 0.0


def test_bco_pair_without_delta_uses_trls_first_running_mean():
    arrays = random_pairs(5, 6)
    want = trl_loss("bco_pair", arrays, beta=0.3, label_smoothing=0.0, tau=0.05)
    got = preference_loss("bco_pair", *arrays, beta=0.3)
    batch_mean = float(np.mean(np.concatenate([got.chosen_rewards, got.rejected_rewards])))
    # TRL's running mean after one update is the batch mean, rounded to float32 on the way
    assert abs(want["delta"] - batch_mean) <= np.finfo(np.float32).eps * abs(batch_mean)
    explicit = preference_loss("bco_pair", *arrays, beta=0.3, delta=batch_mean)
    for field in got._fields:
        np.testing.assert_array_equal(getattr(got, field), getattr(explicit, field))
