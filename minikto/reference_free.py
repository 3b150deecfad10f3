r"""SimPO and ORPO: pairwise losses with no reference policy, on MEAN token log-probs.

Both score a response by the mean of its tokens' log-probabilities,
``a(y|x) = log pi(y|x) / |y|`` (:meth:`~minikto.policy.SoftmaxPolicy.mean_token_logps`, whose
backward divides the upstream gradient by ``|y|``), and need no frozen reference model.

- :func:`simpo_loss`: SimPO (Meng et al. 2024, arXiv 2405.14734, Eq. 6), as TRL 0.19's
  ``CPOTrainer`` with ``loss_type="simpo"``: the DPO sigmoid on the mean log-prob margin, shifted
  by a target margin gamma. (TRL's ``CPOTrainer`` adds ``cpo_alpha`` times the chosen NLL, 1.0
  by default; SimPO proper is ``cpo_alpha = 0``, which is what this function computes.)
- :func:`orpo_loss`: ORPO (Hong et al. 2024, arXiv 2403.07691, Eqs. 4-7), as TRL 0.19's
  ``ORPOTrainer``: the chosen responses' NLL plus beta times a log-odds-ratio term.

Every batch loss is a MEAN over the B pairs (the NLL: over the chosen tokens).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import _checks
from .backend import log_sigmoid
from .pairwise import PreferenceLoss

__all__ = ["ORPOLoss", "orpo_loss", "simpo_loss"]


def simpo_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    *,
    beta: float = 0.1,
    simpo_gamma: float = 0.5,
    label_smoothing: float = 0.0,
) -> PreferenceLoss:
    r"""The SimPO loss of a batch of pairs, with its gradient.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array, shape (B,)
        MEAN token log-probs ``a_w = log pi(y_w|x) / |y_w|`` and ``a_l`` of each pair.
    beta : float, > 0
        Scale of the reward ``beta * a`` (TRL's ``CPOConfig`` default 0.1; the SimPO paper
        uses 2 to 10).
    simpo_gamma : float
        gamma, the target reward margin (TRL default 0.5).
    label_smoothing : float in [0, 1]
        As in cDPO.

    Returns
    -------
    PreferenceLoss
        The fields of :func:`~minikto.losses.dpo_loss`; the rewards are ``beta * a`` (no
        reference).

    Notes
    -----
    Value (SimPO Eq. 6). With :math:`h = \beta(a_w - a_l) - \gamma`,

    .. math:: \ell = -(1-\epsilon)\log\sigma(h) - \epsilon\log\sigma(-h),
              \qquad L = \frac1B\sum_i \ell_i .

    Gradient. As for cDPO, :math:`d\ell/dh = -(1-\epsilon)\sigma(-h) + \epsilon\sigma(h)`, and

    .. math:: \frac{\partial L}{\partial a_{w,i}} = \frac{\beta}{B}\frac{d\ell_i}{dh_i}
              = -\frac{\partial L}{\partial a_{l,i}} .

    gamma shifts the point where the weight :math:`\sigma(-h)` is one half from an equal
    reward to a margin of gamma: a pair counts as learned only once its margin exceeds gamma.
    """
    xp, batch = _checks.paired_batch(
        policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps
    )
    beta = _checks.loss_weights(beta, 1.0, 1.0, policy_chosen_logps.dtype)[0]
    gamma = _checks.scalar(simpo_gamma, "simpo_gamma")
    eps = _checks.scalar(label_smoothing, "label_smoothing", nonnegative=True)
    if eps > 1.0:
        raise ValueError(f"label_smoothing: expected a probability in [0, 1]; got {eps}")
    margin = policy_chosen_logps - policy_rejected_logps
    _checks.bounded_product(beta, margin, xp, "beta")

    h = beta * margin - gamma
    # forward: l = -(1 - eps) log sigmoid(h) - eps log sigmoid(-h)
    losses = -(1.0 - eps) * log_sigmoid(h) - eps * log_sigmoid(-h)
    # backward: dl/dh = -(1 - eps) sigmoid(-h) + eps sigmoid(h); dh/da_w = beta = -dh/da_l
    d_h = -(1.0 - eps) * xp.exp(log_sigmoid(-h)) + eps * xp.exp(log_sigmoid(h))
    return PreferenceLoss(
        loss=xp.mean(losses),
        losses=losses,
        grad_policy_chosen_logps=(beta / batch) * d_h,
        grad_policy_rejected_logps=-(beta / batch) * d_h,
        chosen_rewards=beta * policy_chosen_logps,
        rejected_rewards=beta * policy_rejected_logps,
    )


class ORPOLoss(NamedTuple):
    """What :func:`orpo_loss` returns (arrays of the input's namespace and dtype)."""

    loss: Any  #: 0-d, ``nll_loss + mean(losses)``
    losses: Any  #: (B,), the odds-ratio terms ``-beta log sigmoid(log_odds)``, each >= 0
    nll_loss: Any  #: 0-d, the chosen responses' negative log-likelihood per token
    grad_policy_chosen_logps: Any  #: (B,), dLoss / d (mean token log-prob of y_w)
    grad_policy_rejected_logps: Any  #: (B,), dLoss / d (mean token log-prob of y_l)
    chosen_rewards: Any  #: (B,), beta * a_w, as TRL logs them
    rejected_rewards: Any  #: (B,), beta * a_l
    log_odds_ratio: Any  #: 0-d, mean of log sigmoid(log_odds) (TRL's ``log_odds_ratio``)
    log_odds_chosen: Any  #: 0-d, mean of log_odds (TRL's ``log_odds_chosen``)


def orpo_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    chosen_lengths: Any,
    *,
    beta: float = 0.1,
) -> ORPOLoss:
    r"""The ORPO loss of a batch of pairs (NLL of the chosen + odds ratio), with its gradient.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array, shape (B,)
        MEAN token log-probs ``a_w`` and ``a_l``, each < 0 (a response of probability one
        has no finite odds).
    chosen_lengths : array, shape (B,)
        ``|y_w|``, the token counts of the chosen responses (floats >= 1, as
        :meth:`~minikto.policy.SoftmaxPolicy.response_lengths` returns them), for the NLL.
    beta : float, > 0
        lambda of the paper, the weight of the odds-ratio term (TRL default 0.1).

    Returns
    -------
    ORPOLoss

    Notes
    -----
    Value. The odds of a response are :math:`p/(1-p)` with :math:`p = e^{a}` (ORPO Eq. 4, on
    the mean token log-prob as TRL computes it), so its log-odds are
    :math:`a - \log(1 - e^{a})` and the log odds ratio of a pair is

    .. math:: z = a_w - a_l - \log(1 - e^{a_w}) + \log(1 - e^{a_l}).

    With the chosen NLL per token (TRL's cross-entropy over the chosen tokens;
    :math:`a_w |y_w|` is the chosen response's summed log-prob),

    .. math:: L_{NLL} = -\frac{\sum_i a_{w,i}|y_{w,i}|}{\sum_i |y_{w,i}|}, \qquad
              L = L_{NLL} + \frac1B\sum_i -\beta\log\sigma(z_i) .

    :math:`\log(1 - e^{a})` is evaluated as ``log(-expm1(a))`` for :math:`a > -\log 2` and
    ``log1p(-exp(a))`` otherwise (each exact where the other loses digits).

    Gradient. :math:`\frac{d}{da}[a - \log(1 - e^a)] = 1 + \frac{e^a}{1-e^a} = \frac{1}{1-e^a}`,
    and :math:`\frac{d}{dz}(-\log\sigma(z)) = -\sigma(-z)`, so

    .. math:: \frac{\partial L}{\partial a_{w,i}} = -\frac{|y_{w,i}|}{\sum_j |y_{w,j}|}
              - \frac{\beta}{B}\frac{\sigma(-z_i)}{1 - e^{a_{w,i}}}, \qquad
              \frac{\partial L}{\partial a_{l,i}} = +\frac{\beta}{B}
              \frac{\sigma(-z_i)}{1 - e^{a_{l,i}}} .

    The quotients are computed as :math:`\exp(\log\sigma(-z) - \log(1 - e^{a}))`: as
    :math:`a_w \to 0` the log-odds grow and :math:`\sigma(-z)` shrinks as fast, so the chosen
    term stays finite. TRL's NLL (decoder-only models) also counts the prompt's tokens;
    minikto's prompts are ids, not token sequences, so its NLL is over the response tokens.
    """
    xp, batch = _checks.paired_batch(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        chosen_lengths=chosen_lengths,
    )
    beta = _checks.loss_weights(beta, 1.0, 1.0, policy_chosen_logps.dtype)[0]
    for name, a in (
        ("policy_chosen_logps", policy_chosen_logps),
        ("policy_rejected_logps", policy_rejected_logps),
    ):
        if not bool(xp.all(a < 0)):
            raise ValueError(
                f"{name}: expected mean token log-probs < 0 (a response of probability 1 has "
                f"infinite odds); got a largest value of {float(xp.max(a))}"
            )
    if not bool(xp.all(chosen_lengths >= 1)):
        raise ValueError(
            f"chosen_lengths: expected token counts >= 1; got {float(xp.min(chosen_lengths))}"
        )

    log_not_w, log_not_l = _log1mexp(xp, policy_chosen_logps), _log1mexp(xp, policy_rejected_logps)
    z = (policy_chosen_logps - policy_rejected_logps) - (log_not_w - log_not_l)
    _checks.bounded_product(beta, z, xp, "beta")
    # forward: L = NLL + mean(-beta log sigmoid(z))
    total_tokens = xp.sum(chosen_lengths)
    nll = -xp.sum(policy_chosen_logps * chosen_lengths) / total_tokens
    losses = -beta * log_sigmoid(z)
    # backward: the NLL's share, then -(beta/B) sigmoid(-z) dz/da with dz/da = +-1/(1 - e^a)
    log_weight = log_sigmoid(-z)
    grad_w = -chosen_lengths / total_tokens - (beta / batch) * xp.exp(log_weight - log_not_w)
    grad_l = (beta / batch) * xp.exp(log_weight - log_not_l)
    return ORPOLoss(
        loss=nll + xp.mean(losses),
        losses=losses,
        nll_loss=nll,
        grad_policy_chosen_logps=grad_w,
        grad_policy_rejected_logps=grad_l,
        chosen_rewards=beta * policy_chosen_logps,
        rejected_rewards=beta * policy_rejected_logps,
        log_odds_ratio=xp.mean(log_sigmoid(z)),
        log_odds_chosen=xp.mean(z),
    )


def _log1mexp(xp: Any, a: Any) -> Any:
    """``log(1 - exp(a))`` for ``a < 0``, each branch fed only the inputs it is exact on."""
    cut = -math.log(2.0)
    near_zero = xp.maximum(a, xp.full_like(a, cut))  # a in [-log 2, 0): log(-expm1(a))
    far = xp.minimum(a, xp.full_like(a, cut))  # a < -log 2: log1p(-exp(a))
    return xp.where(a > cut, xp.log(-xp.expm1(near_zero)), xp.log1p(-xp.exp(far)))
