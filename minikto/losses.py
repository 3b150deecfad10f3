r"""The KTO family beyond KTO itself: DPO, SFT and APO-zero (unpaired), with their gradients.

These are the baselines that KTO is compared with (HALOs offers all of them; TRL offers DPO,
SFT and ``apo_zero_unpaired``). Like :mod:`minikto.kto`, every function returns its value
and the hand-derived gradient of its inputs side by side; a reader checks each line of code
against one line of the docstring's ``Notes``.

Notation: ``r = log pi(y|x) - log pi_ref(y|x)`` is the implied reward (log-ratio) of a
response, ``sigma`` the logistic sigmoid, ``B`` the batch size (pairs for DPO, examples
otherwise). Every batch loss is a plain MEAN.

- :func:`dpo_loss`: paired. ``-log sigma(beta * (r_chosen - r_rejected))`` per pair
  (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7).
- :func:`sft_loss`: unpaired. The negative log-likelihood ``-log pi(y|x)`` of each desirable
  response, averaged over the desirable responses only; undesirable ones are ignored.
- :func:`apo_zero_unpaired_loss`: unpaired. ``1 - sigma(beta r)`` for a desirable response,
  ``sigma(beta r)`` for an undesirable one (TRL's ``apo_zero_unpaired``, the unpaired form of
  APO-zero, D'Oosterlinck et al. 2024, arXiv 2408.06266, Eq. 7).

KTO with ``z0 = 0`` ("KTO-zero", no reference point; the KTO authors warn it behaves like
unlikelihood training) needs no function of its own: it is ``kto_loss(..., z0=0.0)``.

It is also EXACTLY the APO-zero unpaired loss. With ``z0 = 0`` KTO's undesirable loss is
``1 - sigma(beta (0 - r)) = 1 - sigma(-beta r) = sigma(beta r)`` and its desirable loss is
``1 - sigma(beta r)``: the two formulas coincide term by term, weights included, and so do
their gradients. :func:`apo_zero_unpaired_loss` is therefore that call of
:func:`~minikto.kto.kto_loss`; the tests check it against the APO/TRL formula written out.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _checks
from .backend import array_namespace, log_sigmoid
from .kto import kto_loss

__all__ = ["APOZeroLoss", "DPOLoss", "SFTLoss", "apo_zero_unpaired_loss", "dpo_loss", "sft_loss"]


class DPOLoss(NamedTuple):
    """What :func:`dpo_loss` returns (all arrays of the input's namespace and dtype)."""

    loss: Any  #: 0-d, the mean of ``losses`` over the B pairs
    losses: Any  #: (B,), per-pair losses ``-log sigmoid(h_i)``, each >= 0
    grad_policy_chosen_logps: Any  #: (B,), dLoss / d policy_chosen_logps (always < 0)
    grad_policy_rejected_logps: Any  #: (B,), dLoss / d policy_rejected_logps (always > 0)
    chosen_rewards: Any  #: (B,), beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_rewards: Any  #: (B,), beta * (policy_rejected_logps - reference_rejected_logps)


class SFTLoss(NamedTuple):
    """What :func:`sft_loss` returns."""

    loss: Any  #: 0-d, the mean negative log-likelihood over the desirable examples
    losses: Any  #: (B,), ``-policy_logps`` for a desirable example, 0 for an undesirable one
    grad_policy_logps: Any  #: (B,), dLoss / d policy_logps: ``-1/n_D`` or 0


class APOZeroLoss(NamedTuple):
    """What :func:`apo_zero_unpaired_loss` returns."""

    loss: Any  #: 0-d, the mean of ``losses`` over the batch
    losses: Any  #: (B,), weighted per-example losses, each in [0, its weight]
    grad_policy_logps: Any  #: (B,), dLoss / d policy_logps
    rewards: Any  #: (B,), beta * (policy_logps - reference_logps), as TRL logs them


# ------------------------------------------------------------------------------------------
# DPO (paired)


def dpo_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    reference_chosen_logps: Any,
    reference_rejected_logps: Any,
    *,
    beta: float = 0.1,
) -> DPOLoss:
    r"""The sigmoid DPO loss of a batch of preference pairs, with its gradient (DPO Eq. 7).

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : array, shape (B,)
        ``log pi(y_w | x)`` and ``log pi(y_l | x)``: the SUM of the response tokens'
        log-probabilities of the chosen (preferred) and rejected response of each pair.
    reference_chosen_logps, reference_rejected_logps : array, shape (B,)
        The same under the frozen reference policy (no gradient is returned for them).
    beta : float, > 0
        Inverse temperature of the implied reward (TRL and HALOs default 0.1).

    Returns
    -------
    DPOLoss
        ``loss`` (0-d mean over pairs), ``losses`` (B,), ``grad_policy_chosen_logps`` (B,),
        ``grad_policy_rejected_logps`` (B,), ``chosen_rewards`` (B,), ``rejected_rewards``
        (B,).

    Notes
    -----
    Value (Rafailov et al. 2023, Eq. 7). With the log-ratios
    :math:`r^w_i = \log\pi(y_w|x) - \log\pi_{ref}(y_w|x)` and
    :math:`r^l_i = \log\pi(y_l|x) - \log\pi_{ref}(y_l|x)`, let
    :math:`h_i = \beta (r^w_i - r^l_i)` (the reward margin). Then

    .. math:: \ell_i = -\log\sigma(h_i), \qquad L = \frac{1}{B} \sum_i \ell_i .

    :math:`\log\sigma` is the stable log-sigmoid, finite for any :math:`h` (a margin of
    :math:`-10^4` gives :math:`\ell = 10^4`, not ``inf``). At :math:`\pi = \pi_{ref}`,
    :math:`h = 0` and :math:`\ell = \log 2`.

    Gradient (as in DPO Sec. 4, "What does the DPO update do?"). Since
    :math:`\frac{d}{dh}(-\log\sigma(h)) = -\sigma(-h)`,

    .. math:: \frac{\partial L}{\partial \log\pi(y_w|x)_i} = -\frac{\beta}{B}\,\sigma(-h_i),
              \qquad
              \frac{\partial L}{\partial \log\pi(y_l|x)_i} = +\frac{\beta}{B}\,\sigma(-h_i).

    The chosen response is always pushed up and the rejected one down, each with weight
    :math:`\sigma(-h_i)`: large when the policy orders the pair wrongly, vanishing only as
    the margin grows (unlike KTO's :math:`\sigma(z)\sigma(-z)`, this weight does not vanish
    for a very wrong, possibly mislabeled, pair). :math:`\sigma(-h)` is evaluated as
    :math:`\exp(\log\sigma(-h))`.
    """
    xp, batch = _checks.paired_batch(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    beta = _checks.loss_weights(beta, 1.0, 1.0, policy_chosen_logps.dtype)[0]

    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    _checks.bounded_product(beta, chosen_logratios - rejected_logratios, xp, "beta")
    h = beta * (chosen_logratios - rejected_logratios)

    # forward: l_i = -log sigmoid(h_i)
    losses = -log_sigmoid(h)
    loss = xp.mean(losses)

    # backward: dL/d chosen_i = -(beta/B) sigmoid(-h_i); dL/d rejected_i = +(beta/B) sigmoid(-h_i)
    weight = (beta / batch) * xp.exp(log_sigmoid(-h))

    return DPOLoss(
        loss=loss,
        losses=losses,
        grad_policy_chosen_logps=-weight,
        grad_policy_rejected_logps=weight,
        chosen_rewards=beta * chosen_logratios,
        rejected_rewards=beta * rejected_logratios,
    )


# ------------------------------------------------------------------------------------------
# SFT (unpaired: learns from the desirable examples only)


def sft_loss(policy_logps: Any, desirable: Any) -> SFTLoss:
    r"""Mean negative log-likelihood of the desirable responses, with its gradient.

    Parameters
    ----------
    policy_logps : array, shape (B,)
        ``log pi(y_i | x_i)``: the SUM of the response tokens' log-probabilities, so the
        loss is a per-SEQUENCE negative log-likelihood (not per token).
    desirable : bool array, shape (B,)
        True for a thumbs-up example. Undesirable examples are ignored (zero loss, zero
        gradient). At least one example must be desirable.

    Returns
    -------
    SFTLoss
        ``loss`` (0-d), ``losses`` (B,), ``grad_policy_logps`` (B,).

    Raises
    ------
    ValueError
        When no example of the batch is desirable: the mean over an empty set is undefined
        (it would be 0/0 = NaN), and silently returning 0 would hide a batch that teaches
        SFT nothing. Skip such a batch in the caller instead.

    Notes
    -----
    Value. With :math:`D = \{i : \text{desirable}_i\}` and :math:`n_D = |D| \ge 1`,

    .. math:: \ell_i = -\log\pi(y_i|x_i) \;(i \in D), \quad \ell_i = 0 \;(i \notin D),
              \qquad L = \frac{1}{n_D} \sum_{i \in D} \ell_i .

    The denominator is :math:`n_D`, not :math:`B`: a batch with few desirable examples
    weighs each of them more, and the loss does not depend on how many undesirable examples
    ride along in the batch.

    Gradient.

    .. math:: \frac{\partial L}{\partial \log\pi(y_i|x_i)} = -\frac{1}{n_D} \;(i \in D),
              \qquad 0 \;(i \notin D).
    """
    xp = array_namespace(policy_logps=policy_logps, desirable=desirable)
    batch = _checks.float_vector(policy_logps, "policy_logps", xp).shape[0]
    _checks.bool_vector(desirable, "desirable", xp, length=batch)
    num_desirable = int(xp.sum(xp.astype(desirable, xp.int64)))
    if num_desirable == 0:
        raise ValueError(
            f"desirable: expected at least one desirable (True) example, since the SFT loss is "
            f"the mean over the desirable examples; got {batch} undesirable ones and no "
            "desirable one (skip this batch, or use an unpaired loss such as KTO)"
        )

    zero = xp.zeros_like(policy_logps)
    # forward: l_i = -log pi(y_i|x_i) on D, 0 elsewhere; L = sum(l) / n_D
    losses = xp.where(desirable, -policy_logps, zero)
    loss = xp.sum(losses) / num_desirable

    # backward: dL/d policy_logps_i = -1/n_D on D, 0 elsewhere
    grad = xp.where(desirable, xp.asarray(-1.0 / num_desirable, dtype=policy_logps.dtype), zero)

    return SFTLoss(loss=loss, losses=losses, grad_policy_logps=grad)


# ------------------------------------------------------------------------------------------
# APO-zero, unpaired (TRL's "apo_zero_unpaired")


def apo_zero_unpaired_loss(
    policy_logps: Any,
    reference_logps: Any,
    desirable: Any,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> APOZeroLoss:
    r"""The unpaired APO-zero loss (TRL's ``apo_zero_unpaired``), with its gradient.

    Parameters
    ----------
    policy_logps : array, shape (B,)
        ``log pi(y_i | x_i)``: the SUM of the response tokens' log-probabilities.
    reference_logps : array, shape (B,)
        ``log pi_ref(y_i | x_i)`` under the frozen reference policy.
    desirable : bool array, shape (B,)
        True for a thumbs-up example, False for a thumbs-down one. The batch may hold only
        one kind.
    beta : float, > 0
        Sharpness of the sigmoid (TRL default 0.1).
    desirable_weight, undesirable_weight : float, >= 0
        ``lambda_D`` and ``lambda_U``, applied as in KTO.

    Returns
    -------
    APOZeroLoss
        ``loss`` (0-d mean over all B examples), ``losses`` (B,), ``grad_policy_logps``
        (B,), ``rewards`` (B,) ``= beta * (policy_logps - reference_logps)``.

    Notes
    -----
    Value (the unpaired form of APO-zero, D'Oosterlinck et al. 2024, Eq. 7). With the
    log-ratio :math:`r_i` and :math:`u_i = \beta r_i`,

    .. math:: \ell_i = \lambda_D (1 - \sigma(u_i)) = \lambda_D \sigma(-u_i)
              \;\text{(desirable)}, \qquad
              \ell_i = \lambda_U \sigma(u_i) \;\text{(undesirable)},
              \qquad L = \frac{1}{B} \sum_i \ell_i .

    Desirable responses are pushed above the reference (:math:`r > 0`), undesirable ones
    below it, with no KL reference point. Writing :math:`s_i = \pm 1` for a
    desirable/undesirable example, both cases are :math:`\ell_i = \lambda_i \sigma(-s_i u_i)`:
    exactly KTO's loss with :math:`z_0 = 0` (see the module docstring), and computed as that
    call of :func:`~minikto.kto.kto_loss`.

    Gradient. Since :math:`\sigma'(u) = \sigma(u)\sigma(-u)`,

    .. math:: \frac{\partial L}{\partial r_i}
              = -\frac{1}{B} \lambda_i s_i \beta \, \sigma(u_i)\sigma(-u_i),

    KTO's gradient at :math:`z_0 = 0`, and ``d r_i / d policy_logps_i = 1``.
    """
    kto = kto_loss(
        policy_logps,
        reference_logps,
        desirable,
        0.0,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    return APOZeroLoss(
        loss=kto.loss,
        losses=kto.losses,
        grad_policy_logps=kto.grad_policy_logps,
        rewards=kto.rewards,
    )
