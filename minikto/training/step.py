"""One training step for each objective: the loss, the parameter gradients, TRL's metrics.

Every step has the same shape: forward log-probs, a loss function from
:mod:`minikto.kto` or :mod:`minikto.losses` that returns its own gradient with respect to
the log-probs, then ``policy.sequence_logps_backward`` to the parameters. The metrics carry
the names TRL logs (``loss``, ``kl``, ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``logps/chosen``, ``logps/rejected``, and for DPO
``rewards/accuracies``, the fraction of pairs whose chosen reward exceeds the rejected one);
a mean over an empty set (a batch without desirable examples, say) is reported as ``None``,
never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import to_numpy
from ..losses import apo_zero_unpaired_loss, dpo_loss, sft_loss
from ..objective import batch_objective

__all__ = ["StepResult", "paired_step", "unpaired_step"]


@dataclass
class StepResult:
    """The loss (a float), the gradients (dict like ``policy.params``) and the metrics."""

    loss: float
    grads: dict[str, Any]
    metrics: dict[str, float | None]


def unpaired_step(
    policy: Any,
    reference: Any,
    batch: Any,
    desirable: Any,
    reference_logps: Any,
    config: Any,
    *,
    max_length: int | None = None,
) -> StepResult:
    """One step of ``"kto"``, ``"apo_zero_unpaired"`` or ``"sft"`` on an unpaired batch.

    Parameters
    ----------
    policy, reference : SoftmaxPolicy
    batch : TokenBatch
        The (B,) prompts and (B, T) responses, checked once when the data were loaded
        (``policy.token_batch``); the step does not check them again.
    desirable : bool array (B,)
    reference_logps : array (B,)
        The reference's log-probs of this batch (computed once for the whole dataset).
    config : KTOConfig
    max_length : int, optional
        T of the response space (for ``z0="exact"``).
    """
    kl = kl_unclamped = None
    if config.loss == "kto":
        out = batch_objective(
            policy,
            reference,
            batch,
            desirable,
            z0=config.z0,
            beta=config.beta,
            desirable_weight=config.desirable_weight,
            undesirable_weight=config.undesirable_weight,
            reference_logps=reference_logps,
            max_length=max_length,
        )
        loss, grads, policy_logps, rewards = out.loss, out.grads, out.policy_logps, out.kto.rewards
        kl = float(to_numpy(out.z0))
        if out.kl_logratio_mean is not None:
            kl_unclamped = float(to_numpy(out.kl_logratio_mean))
    else:
        policy_logps, cache = policy.batch_logps(batch, return_cache=True)
        if config.loss == "apo_zero_unpaired":
            out = apo_zero_unpaired_loss(
                policy_logps,
                reference_logps,
                desirable,
                beta=config.beta,
                desirable_weight=config.desirable_weight,
                undesirable_weight=config.undesirable_weight,
            )
            rewards = out.rewards
        elif config.loss == "sft":
            out = sft_loss(policy_logps, desirable)
            rewards = config.beta * (policy_logps - reference_logps)
        else:
            raise ValueError(f"config.loss: expected an unpaired loss; got {config.loss!r}")
        loss = out.loss
        grads = policy.batch_logps_backward(batch, out.grad_policy_logps, cache=cache)
    metrics = _reward_metrics(rewards, policy_logps, desirable)
    metrics = {"loss": float(to_numpy(loss)), "kl": kl, "kl/unclamped": kl_unclamped, **metrics}
    return StepResult(loss=metrics["loss"], grads=grads, metrics=metrics)


def paired_step(
    policy: Any,
    chosen: Any,
    rejected: Any,
    reference_chosen_logps: Any,
    reference_rejected_logps: Any,
    config: Any,
) -> StepResult:
    """One DPO step on a paired batch: two forwards, the DPO loss, two backwards.

    ``chosen`` and ``rejected`` are the TokenBatches of the prompts with each response,
    checked once when the data were loaded.
    """
    xp = policy.xp
    chosen_logps, chosen_cache = policy.batch_logps(chosen, return_cache=True)
    rejected_logps, rejected_cache = policy.batch_logps(rejected, return_cache=True)
    out = dpo_loss(
        chosen_logps,
        rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta=config.beta,
    )
    g_chosen = policy.batch_logps_backward(
        chosen, out.grad_policy_chosen_logps, cache=chosen_cache
    )
    g_rejected = policy.batch_logps_backward(
        rejected, out.grad_policy_rejected_logps, cache=rejected_cache
    )
    grads = {k: g_chosen[k] + g_rejected[k] for k in g_chosen}
    rc, rr = float(xp.mean(out.chosen_rewards)), float(xp.mean(out.rejected_rewards))
    metrics = {
        "loss": float(to_numpy(out.loss)),
        "kl": None,
        "kl/unclamped": None,
        "rewards/chosen": rc,
        "rewards/rejected": rr,
        "rewards/margins": rc - rr,
        "rewards/accuracies": float(xp.mean(xp.astype(
            out.chosen_rewards > out.rejected_rewards, out.chosen_rewards.dtype))),
        "logps/chosen": float(xp.mean(chosen_logps)),
        "logps/rejected": float(xp.mean(rejected_logps)),
    }
    return StepResult(loss=metrics["loss"], grads=grads, metrics=metrics)


def _reward_metrics(rewards: Any, logps: Any, desirable: Any) -> dict[str, float | None]:
    """Means over the desirable ("chosen") and undesirable ("rejected") examples, as TRL."""
    rewards, logps, desirable = to_numpy(rewards), to_numpy(logps), to_numpy(desirable)

    def mean(values: Any, mask: Any) -> float | None:
        return float(values[mask].mean()) if mask.any() else None

    rc, rr = mean(rewards, desirable), mean(rewards, ~desirable)
    return {
        "rewards/chosen": rc,
        "rewards/rejected": rr,
        "rewards/margins": None if rc is None or rr is None else rc - rr,
        "logps/chosen": mean(logps, desirable),
        "logps/rejected": mean(logps, ~desirable),
    }
