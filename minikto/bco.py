r"""BCO, unpaired: a logistic classifier of desirable vs undesirable responses by their reward.

Binary Classifier Optimization (Jung et al. 2024, arXiv 2404.04656) as TRL 0.19's
``BCOTrainer`` computes its loss, without the optional density-ratio classifier that reweights
undesirable prompts (``match_underlying_distribution``). Like KTO it learns from unpaired
thumbs-up/thumbs-down examples; where KTO's reference point is a KL estimate from mismatched
pairs, BCO's is ``delta``, the running mean of every reward seen so far (detached).

Notation: ``u_i = beta * (log pi(y_i|x_i) - log pi_ref(y_i|x_i))`` the reward of example i.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _checks
from .backend import array_namespace, log_sigmoid

__all__ = ["BCOLoss", "bco_loss", "running_mean"]


class BCOLoss(NamedTuple):
    """What :func:`bco_loss` returns (all arrays of the input's namespace and dtype)."""

    loss: Any  #: 0-d, the mean of ``losses`` over the B examples
    losses: Any  #: (B,), per-example losses, each >= 0
    grad_policy_logps: Any  #: (B,), dLoss / d policy_logps
    rewards: Any  #: (B,), beta * (policy_logps - reference_logps), as TRL logs them
    delta: float  #: the reward shift used (TRL logs it as ``delta``)


def bco_loss(
    policy_logps: Any,
    reference_logps: Any,
    desirable: Any,
    *,
    delta: float | None = None,
    beta: float = 0.1,
) -> BCOLoss:
    r"""The BCO loss of a batch of unpaired examples, with its gradient.

    Parameters
    ----------
    policy_logps, reference_logps : array, shape (B,)
        ``log pi(y_i|x_i)`` and ``log pi_ref(y_i|x_i)``: sums of the response tokens' log-probs.
    desirable : bool array, shape (B,)
        True for a thumbs-up example. The batch may hold only one kind.
    delta : float, optional
        The reward shift: the running mean of the rewards, including this batch's (see
        :func:`running_mean`), a constant for the gradient. None means this batch's mean
        reward, which is TRL's running mean at its first step.
    beta : float, > 0
        TRL's default 0.1.

    Returns
    -------
    BCOLoss

    Notes
    -----
    Value. With :math:`s_i = +1` for a desirable and :math:`-1` for an undesirable example,

    .. math:: \ell_i = -\log\sigma\bigl(s_i (u_i - \delta)\bigr), \qquad
              L = \frac{1}{B}\sum_i \ell_i :

    a logistic regression whose logit is the reward minus ``delta``, label ``s_i``. TRL
    computes the desirable and the undesirable losses apart, concatenates them and takes the
    mean over all B: the same number.

    Gradient. :math:`\frac{d}{dz}(-\log\sigma(z)) = -\sigma(-z)` and
    :math:`\partial u_i / \partial \log\pi(y_i|x_i) = \beta`, with delta held constant:

    .. math:: \frac{\partial L}{\partial \log\pi(y_i|x_i)}
              = -\frac{\beta}{B} s_i\, \sigma\bigl(-s_i(u_i - \delta)\bigr).

    Compared with KTO's :math:`\sigma(z)\sigma(-z)`, the weight :math:`\sigma(-s_i(u_i-\delta))`
    does not vanish for an example on the wrong side of delta: like DPO, BCO keeps pushing
    hard (or mislabeled) examples.
    """
    xp, batch = _checks.unpaired_batch(policy_logps, reference_logps, desirable)
    dtype = policy_logps.dtype
    beta = _checks.loss_weights(beta, 1.0, 1.0, dtype)[0]
    logratios = policy_logps - reference_logps
    _checks.bounded_product(beta, logratios, xp, "beta")
    rewards = beta * logratios
    delta = float(xp.mean(rewards)) if delta is None else _checks.scalar(delta, "delta")

    sign = xp.where(desirable, xp.asarray(1.0, dtype=dtype), xp.asarray(-1.0, dtype=dtype))
    z = sign * (rewards - delta)
    # forward: l_i = -log sigmoid(s_i (u_i - delta))
    losses = -log_sigmoid(z)
    # backward: dL/d logp_i = -(beta / B) s_i sigmoid(-z_i)
    grad = -(beta / batch) * sign * xp.exp(log_sigmoid(-z))
    return BCOLoss(
        loss=xp.mean(losses), losses=losses, grad_policy_logps=grad, rewards=rewards, delta=delta
    )


def running_mean(mean: float, count: float, rewards: Any) -> tuple[float, float]:
    r"""Fold a batch of rewards into a running mean: ``(mean, count) -> (mean', count')``.

    .. math:: \text{mean}' = \text{mean} + (\bar u - \text{mean})\frac{n}{\text{count} + n},
              \qquad \text{count}' = \text{count} + n,

    with :math:`\bar u` the batch mean and n its size: starting from ``count = 0`` it is the
    mean of every reward seen so far. TRL's ``RunningMoments`` does the same (from a count of
    1e-24, in float32). The rewards are detached: the result is a plain float.
    """
    xp = array_namespace(rewards=rewards)
    n = _checks.float_vector(rewards, "rewards", xp).shape[0]
    mean = _checks.scalar(mean, "mean")
    count = _checks.scalar(count, "count", nonnegative=True)
    batch_mean = float(xp.mean(rewards))
    return mean + (batch_mean - mean) * n / (count + n), count + n
