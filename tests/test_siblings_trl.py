"""bco_loss, simpo_loss and orpo_loss equal TRL 0.19's own BCOTrainer.bco_loss,
CPOTrainer.cpo_loss (loss_type "simpo") and ORPOTrainer.odds_ratio_loss.

Skipped where torch or trl cannot be imported. Run it with the project's torch environment:

    PYTHONPATH=$PWD /path/to/venv-with-torch-and-trl/bin/python -m pytest -q \
        -p no:cacheprovider tests/test_siblings_trl.py

Each method is called unbound on a stand-in holding the attributes it reads (see
``trl_methods``); gradients on TRL's side come from torch autograd of the loss TRL's trainer
optimises (``losses.nanmean()`` for BCO, ``losses.mean()`` for SimPO with ``cpo_alpha = 0``,
``nll - losses.mean()`` for ORPO, the NLL written from TRL's token-level cross-entropy).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from minikto.bco import bco_loss
from minikto.reference_free import orpo_loss, simpo_loss

torch = pytest.importorskip("torch")
trl_utils = pytest.importorskip("trl.trainer.utils")
from trl_methods import trl_method  # noqa: E402  (after the skips: it imports torch and trl)

TOLERANCE = 1e-12  # norm-wise, as in test_pairwise_trl.py


def close(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    error = float(np.max(np.abs(got - want)))
    assert error <= TOLERANCE * float(np.max(np.abs(want))), (what, error)


def tensor(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def accelerator():
    return SimpleNamespace(device=torch.device("cpu"), use_distributed=False)


@pytest.mark.parametrize(("seed", "beta"), [(0, 0.1), (1, 1.3)])
def test_bco_loss_equals_trl(seed, beta):
    rng = np.random.default_rng(seed)
    reference = -rng.uniform(5, 40, 9)
    policy = reference + rng.normal(0, 4, 9)
    desirable = rng.random(9) < 0.5
    desirable[:2] = [True, False]
    owner = SimpleNamespace(
        beta=beta,
        running=trl_utils.RunningMoments(accelerator()),
        match_underlying_distribution=False,
    )
    pc, pr = tensor(policy[desirable], True), tensor(policy[~desirable], True)
    losses, chosen_rewards, rejected_rewards, delta = trl_method(
        "bco_trainer", "BCOTrainer", "bco_loss"
    )(owner, pc, pr, tensor(reference[desirable]), tensor(reference[~desirable]), None, None)
    losses.nanmean().backward()
    got = bco_loss(policy, reference, desirable, beta=beta, delta=float(delta))
    close(got.loss, losses.nanmean().item(), "loss")
    order = np.concatenate([np.flatnonzero(desirable), np.flatnonzero(~desirable)])
    close(got.losses[order], losses.detach().numpy(), "losses")
    close(got.grad_policy_logps[desirable], pc.grad.numpy(), "grad chosen")
    close(got.grad_policy_logps[~desirable], pr.grad.numpy(), "grad rejected")
    close(got.rewards[desirable], chosen_rewards.detach().numpy(), "rewards chosen")
    close(got.rewards[~desirable], rejected_rewards.detach().numpy(), "rewards rejected")


def mean_logps(seed, batch):
    rng = np.random.default_rng(seed)
    return -rng.uniform(0.05, 3.0, batch), -rng.uniform(0.05, 3.0, batch)


@pytest.mark.parametrize(("seed", "beta", "gamma", "eps"), [(0, 0.1, 0.5, 0.0), (1, 2.5, 1.4, 0.1)])
def test_simpo_loss_equals_trl(seed, beta, gamma, eps):
    chosen, rejected = mean_logps(seed, 8)
    owner = SimpleNamespace(
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=eps,
        loss_type="simpo",
        accelerator=accelerator(),
    )
    pc, pr = tensor(chosen, True), tensor(rejected, True)
    losses, chosen_rewards, rejected_rewards = trl_method("cpo_trainer", "CPOTrainer", "cpo_loss")(
        owner, pc, pr
    )
    losses.mean().backward()
    got = simpo_loss(chosen, rejected, beta=beta, simpo_gamma=gamma, label_smoothing=eps)
    want = {
        "loss": losses.mean().item(),
        "losses": losses.detach().numpy(),
        "grad_policy_chosen_logps": pc.grad.numpy(),
        "grad_policy_rejected_logps": pr.grad.numpy(),
        "chosen_rewards": chosen_rewards.numpy(),
        "rejected_rewards": rejected_rewards.numpy(),
    }
    for field in got._fields:
        close(getattr(got, field), want[field], field)


@pytest.mark.parametrize(("seed", "beta"), [(0, 0.1), (1, 0.7)])
def test_orpo_loss_equals_trl(seed, beta):
    chosen, rejected = mean_logps(seed, 7)
    lengths = np.random.default_rng(seed + 10).integers(1, 9, 7).astype(np.float64)
    owner = SimpleNamespace(beta=beta, accelerator=accelerator())
    pc, pr = tensor(chosen, True), tensor(rejected, True)
    losses, chosen_rewards, rejected_rewards, log_odds_ratio, log_odds_chosen = trl_method(
        "orpo_trainer", "ORPOTrainer", "odds_ratio_loss"
    )(owner, pc, pr)
    # TRL's chosen NLL: the cross-entropy averaged over all chosen tokens, i.e. the summed
    # log-probs (mean * length) over the total length
    nll = -(pc * tensor(lengths)).sum() / lengths.sum()
    loss = nll - losses.mean()
    loss.backward()
    got = orpo_loss(chosen, rejected, lengths, beta=beta)
    close(got.loss, loss.item(), "loss")
    close(got.nll_loss, nll.item(), "nll_loss")
    close(got.losses, -losses.detach().numpy(), "losses")
    close(got.grad_policy_chosen_logps, pc.grad.numpy(), "grad chosen")
    close(got.grad_policy_rejected_logps, pr.grad.numpy(), "grad rejected")
    close(got.chosen_rewards, chosen_rewards.numpy(), "chosen_rewards")
    close(got.rejected_rewards, rejected_rewards.numpy(), "rejected_rewards")
    close(got.log_odds_ratio, log_odds_ratio.item(), "log_odds_ratio")
    close(got.log_odds_chosen, log_odds_chosen.item(), "log_odds_chosen")
