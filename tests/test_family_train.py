"""Training with the family's losses: minikto.train and ``minikto train --loss NAME`` for TRL's 13
DPO loss types, SimPO, ORPO and BCO, with the metrics TRL logs for each."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minikto import KTOConfig, default_task, preference_loss, sample_paired, sample_unpaired, train
from minikto.bco import bco_loss
from minikto.reference_free import orpo_loss
from minikto.training.config import LOSSES, PAIRED_LOSSES
from minikto.training.family_step import FAMILY_LOSSES, RewardMean, family_step

TASK = default_task()
PAIRS = sample_paired(TASK, 300, seed=1)
UNPAIRED = sample_unpaired(TASK, 300, seed=1)
TRL_METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def data_for(loss):
    return PAIRS if loss in PAIRED_LOSSES else UNPAIRED


@pytest.mark.parametrize("loss", FAMILY_LOSSES)
def test_every_family_loss_trains_and_logs_trls_metrics(loss):
    config = KTOConfig(loss=loss, max_steps=40, batch_size=16, eval_every=0)
    result = train(TASK, data_for(loss), config, quiet=True)
    assert len(result.history) == 40
    extra = {
        "orpo": ("nll_loss", "log_odds_ratio", "log_odds_chosen"),
        "bco": ("delta",),
        "bco_pair": ("delta",),
    }.get(loss, ("rewards/accuracies",))
    for row in result.history:
        for name in (*TRL_METRICS, *extra):
            assert math.isfinite(row[name]), (name, row)
    first = np.mean([row["loss"] for row in result.history[:5]])
    last = np.mean([row["loss"] for row in result.history[-5:]])
    assert last < first, (first, last)


def test_every_family_loss_is_a_choice_of_the_config():
    assert set(FAMILY_LOSSES) <= set(LOSSES)
    assert set(PAIRED_LOSSES) == {"dpo", *FAMILY_LOSSES} - {"bco"}


def batch(policy, loss, n=8):
    data = data_for(loss)
    xp = policy.xp
    if loss in PAIRED_LOSSES:
        return {
            "prompts": xp.asarray(data.prompts[:n]),
            "chosen": xp.asarray(data.chosen[:n]),
            "rejected": xp.asarray(data.rejected[:n]),
        }
    return {
        "prompts": xp.asarray(data.prompts[:n]),
        "responses": xp.asarray(data.responses[:n]),
        "desirable": xp.asarray(data.desirable[:n]),
    }


def moved_policy():
    reference = TASK.base_policy()
    policy = reference.copy(frozen=False)
    policy.set_flat(
        policy.get_flat() + np.random.default_rng(0).normal(0, 0.3, policy.num_parameters)
    )
    return policy, reference


def test_ipo_reads_per_token_means_of_the_policy_and_the_reference_as_trl():
    policy, reference = moved_policy()
    a = batch(policy, "ipo")
    ref = {s: reference.sequence_logps(a["prompts"], a[s]) for s in ("chosen", "rejected")}
    out = family_step(policy, a, ref, KTOConfig(loss="ipo", beta=0.3), RewardMean())
    means = {s: policy.mean_token_logps(a["prompts"], a[s]) for s in ("chosen", "rejected")}
    lengths = {s: policy.response_lengths(a["prompts"], a[s]) for s in ("chosen", "rejected")}
    want = preference_loss(
        "ipo",
        means["chosen"],
        means["rejected"],
        ref["chosen"] / lengths["chosen"],
        ref["rejected"] / lengths["rejected"],
        beta=0.3,
    )
    assert out.loss == pytest.approx(float(want.loss), rel=1e-14)


def test_orpo_reads_per_token_means_and_the_chosen_lengths():
    policy, reference = moved_policy()
    a = batch(policy, "orpo")
    out = family_step(policy, a, {}, KTOConfig(loss="orpo", beta=0.2), RewardMean())
    means = {s: policy.mean_token_logps(a["prompts"], a[s]) for s in ("chosen", "rejected")}
    want = orpo_loss(
        means["chosen"],
        means["rejected"],
        policy.response_lengths(a["prompts"], a["chosen"]),
        beta=0.2,
    )
    assert out.loss == pytest.approx(float(want.loss), rel=1e-14)
    assert out.metrics["nll_loss"] == pytest.approx(float(want.nll_loss), rel=1e-14)


def test_bco_delta_is_the_running_mean_of_every_reward_and_bco_pair_of_batch_means():
    policy, reference = moved_policy()
    running, seen = RewardMean(), []
    for start in (0, 8, 16):
        a = {k: v[start : start + 5 + start // 8] for k, v in batch(policy, "bco", 40).items()}
        ref = reference.sequence_logps(a["prompts"], a["responses"])
        out = family_step(policy, a, {"responses": ref}, KTOConfig(loss="bco"), running)
        seen.append(0.1 * (policy.sequence_logps(a["prompts"], a["responses"]) - ref))
    assert out.metrics["delta"] == pytest.approx(np.concatenate(seen).mean(), rel=1e-13)
    want = bco_loss(
        policy.sequence_logps(a["prompts"], a["responses"]),
        ref,
        a["desirable"],
        delta=np.concatenate(seen).mean(),
    )
    assert out.loss == pytest.approx(float(want.loss), rel=1e-13)

    running, batch_means = RewardMean(), []
    for start, n in ((0, 4), (4, 7)):
        a = {k: v[start : start + n] for k, v in batch(policy, "bco_pair", 16).items()}
        ref = {s: reference.sequence_logps(a["prompts"], a[s]) for s in ("chosen", "rejected")}
        out = family_step(policy, a, ref, KTOConfig(loss="bco_pair"), running)
        rewards = [
            0.1 * (policy.sequence_logps(a["prompts"], a[s]) - ref[s])
            for s in ("chosen", "rejected")
        ]
        batch_means.append(np.concatenate(rewards).mean())
    assert out.metrics["delta"] == pytest.approx(np.mean(batch_means), rel=1e-13)


@pytest.mark.parametrize("loss", ["hinge", "simpo", "orpo"])
def test_a_paired_loss_refuses_unpaired_data_naming_the_loss(loss):
    with pytest.raises(TypeError, match=rf"^data: loss='{loss}' expects a PairedDataset"):
        train(TASK, UNPAIRED, KTOConfig(loss=loss, max_steps=1), quiet=True)


def test_bco_refuses_paired_data():
    with pytest.raises(TypeError, match=r"^data: loss='bco' expects an UnpairedDataset"):
        train(TASK, PAIRS, KTOConfig(loss="bco", max_steps=1), quiet=True)


def test_the_command_line_trains_a_family_loss_and_lists_them_all(tmp_path, capsys):
    from minikto.tools.cli import main

    out = str(tmp_path / "run")
    code = main(["train", "--loss", "simpo", "--max-steps", "5", "--n", "200", "--out", out])
    assert code == 0, capsys.readouterr().err
    assert '"loss": "simpo"' in (tmp_path / "run" / "summary.json").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # argparse exits after printing the help
        main(["train", "--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    for loss in FAMILY_LOSSES:
        assert loss in shown, loss
