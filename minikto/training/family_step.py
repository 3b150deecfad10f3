"""One training step for the rest of the preference-loss family, with the metrics TRL logs.

The losses of :mod:`minikto.pairwise` (TRL's ``DPOConfig.loss_type``), of
:mod:`minikto.reference_free` (SimPO as ``CPOTrainer``'s ``loss_type="simpo"`` with
``cpo_alpha=0``, ORPO as ``ORPOTrainer``) and of :mod:`minikto.bco` (``BCOTrainer``), trained
like DPO and KTO in :mod:`minikto.training.step`: forward log-probs, the loss with its gradient
with respect to them, then the policy's backward pass. The knobs without a field in
:class:`~minikto.training.config.KTOConfig` take TRL's defaults: ``label_smoothing = 0``,
``discopop_tau = 0.05``, ``simpo_gamma = 0.5``.

Which log-probs each loss reads, as TRL: the SUM of the response tokens' log-probs, except
``ipo`` (policy AND reference per-token means, as ``DPOTrainer.concatenated_forward`` divides
both by the length), ``simpo`` and ``orpo`` (policy per-token means, no reference).

``bco_pair`` and ``bco`` shift the rewards by ``delta``, the running mean of every reward seen
so far (TRL's ``RunningMoments``), which :class:`RewardMean` carries from step to step
(``BCOTrainer`` folds in every reward, ``DPOTrainer``'s ``bco_pair`` each batch's mean as one
value). It lives as long as the run's batches: a resumed run starts it again from its next batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import to_numpy
from ..bco import bco_loss, running_mean
from ..pairwise import PAIRWISE_LOSS_TYPES, preference_loss
from ..reference_free import orpo_loss, simpo_loss
from .step import StepResult

__all__ = ["FAMILY_LOSSES", "PAIRED_FAMILY", "RewardMean", "family_step"]

#: The paired losses trained here ("sigmoid" is DPO again, through preference_loss).
PAIRED_FAMILY = (*PAIRWISE_LOSS_TYPES, "simpo", "orpo")
#: Every loss trained here; "bco" reads unpaired data.
FAMILY_LOSSES = (*PAIRED_FAMILY, "bco")


@dataclass
class RewardMean:
    """The running mean of every (detached) reward seen so far: BCO's ``delta``."""

    mean: float = 0.0
    count: float = 0.0

    def update(self, rewards: Any) -> float:
        """Fold this batch's rewards in; return the new mean (the delta of this step)."""
        self.mean, self.count = running_mean(self.mean, self.count, rewards)
        return self.mean


def family_step(
    policy: Any,
    arrays: dict[str, Any],
    reference_logps: dict[str, Any],
    config: Any,
    reward_mean: RewardMean,
) -> StepResult:
    """One step of ``config.loss`` (one of :data:`FAMILY_LOSSES`) on a batch.

    Parameters
    ----------
    policy : SoftmaxPolicy
    arrays : dict
        ``prompts``, ``chosen``, ``rejected`` (paired) or ``prompts``, ``responses``,
        ``desirable`` (``bco``), on the policy's backend.
    reference_logps : dict
        The reference's summed log-probs of ``chosen`` and ``rejected`` (or ``responses``).
    config : KTOConfig
    reward_mean : RewardMean
        BCO's running mean, updated in place by ``bco_pair`` and ``bco``.
    """
    if config.loss == "bco":
        return _bco_step(policy, arrays, reference_logps["responses"], config, reward_mean)
    xp, prompts = policy.xp, arrays["prompts"]
    mean_logps = config.loss in ("ipo", "simpo", "orpo")
    forward = policy.mean_token_logps if mean_logps else policy.sequence_logps
    backward = policy.mean_token_logps_backward if mean_logps else policy.sequence_logps_backward
    logps, caches = {}, {}
    for side in ("chosen", "rejected"):
        logps[side], caches[side] = forward(prompts, arrays[side], return_cache=True)

    extra: dict[str, float | None] = {}
    if config.loss == "simpo":
        out = simpo_loss(logps["chosen"], logps["rejected"], beta=config.beta)
    elif config.loss == "orpo":
        lengths = policy.response_lengths(prompts, arrays["chosen"])
        out = orpo_loss(logps["chosen"], logps["rejected"], lengths, beta=config.beta)
        extra = {
            name: float(to_numpy(getattr(out, name)))
            for name in ("nll_loss", "log_odds_ratio", "log_odds_chosen")
        }
    else:
        ref = dict(reference_logps)
        if config.loss == "ipo":  # TRL divides the reference's sums by the lengths too
            ref = {s: ref[s] / policy.response_lengths(prompts, arrays[s]) for s in ref}
        delta = None
        if config.loss == "bco_pair":  # TRL's DPOTrainer folds in the batch's MEAN reward as
            rewards = config.beta * xp.concat(
                [
                    logps["chosen"] - ref["chosen"],  # one value
                    logps["rejected"] - ref["rejected"],
                ]
            )
            delta = reward_mean.update(xp.reshape(xp.mean(rewards), (1,)))
            extra = {"delta": delta}
        out = preference_loss(
            config.loss,
            logps["chosen"],
            logps["rejected"],
            ref["chosen"],
            ref["rejected"],
            beta=config.beta,
            delta=delta,
        )

    g_chosen = backward(
        prompts, arrays["chosen"], out.grad_policy_chosen_logps, cache=caches["chosen"]
    )
    g_rejected = backward(
        prompts, arrays["rejected"], out.grad_policy_rejected_logps, cache=caches["rejected"]
    )
    grads = {k: g_chosen[k] + g_rejected[k] for k in g_chosen}
    rc, rr = float(xp.mean(out.chosen_rewards)), float(xp.mean(out.rejected_rewards))
    accuracy = xp.mean(xp.astype(out.chosen_rewards > out.rejected_rewards, logps["chosen"].dtype))
    metrics = {
        "loss": float(to_numpy(out.loss)),
        "kl": None,
        "kl/unclamped": None,
        "rewards/chosen": rc,
        "rewards/rejected": rr,
        "rewards/margins": rc - rr,
        "rewards/accuracies": float(accuracy),
        "logps/chosen": float(xp.mean(logps["chosen"])),
        "logps/rejected": float(xp.mean(logps["rejected"])),
        **extra,
    }
    return StepResult(loss=metrics["loss"], grads=grads, metrics=metrics)


def _bco_step(
    policy: Any,
    arrays: dict[str, Any],
    reference_logps: Any,
    config: Any,
    reward_mean: RewardMean,
) -> StepResult:
    """BCO on an unpaired batch; TRL's ``BCOTrainer`` metrics (its sums over counts as means)."""
    prompts, responses = arrays["prompts"], arrays["responses"]
    desirable = arrays["desirable"]
    logps, cache = policy.sequence_logps(prompts, responses, return_cache=True)
    delta = reward_mean.update(config.beta * (logps - reference_logps))
    out = bco_loss(logps, reference_logps, desirable, beta=config.beta, delta=delta)
    grads = policy.sequence_logps_backward(prompts, responses, out.grad_policy_logps, cache=cache)
    rewards, lp, lab = to_numpy(out.rewards), to_numpy(logps), to_numpy(desirable)

    def mean(values: Any, mask: Any) -> float | None:
        return float(values[mask].mean()) if mask.any() else None

    rc, rr = mean(rewards, lab), mean(rewards, ~lab)
    metrics = {
        "loss": float(to_numpy(out.loss)),
        "kl": None,
        "kl/unclamped": None,
        "rewards/chosen": rc,
        "rewards/rejected": rr,
        "rewards/margins": None if rc is None or rr is None else rc - rr,
        "logps/chosen": mean(lp, lab),
        "logps/rejected": mean(lp, ~lab),
        "delta": delta,
    }
    return StepResult(loss=metrics["loss"], grads=grads, metrics=metrics)
